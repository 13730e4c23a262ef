#!lua flags=no-cluster
-- A try failed for a reason that can pass: one more attempt, due again later.
-- KEYS[1] the delivery, KEYS[2] due set; ARGV[1] id, ARGV[2] next try (ms)
if redis.call('ZSCORE', KEYS[2], ARGV[1]) == false then
    return 0
end
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 1
