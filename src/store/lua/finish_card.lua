#!lua flags=no-cluster
-- Stores the result card of a claim that still exists (never recreates one).
-- KEYS[1] the card; ARGV[1] the result
if redis.call('EXISTS', KEYS[1]) == 1 then
    redis.call('HSET', KEYS[1], 'result', ARGV[1])
end
return 0
