#!lua flags=no-cluster
-- Ends a delivery (delivered, or given up with a code): off the due set, and kept with a TTL
-- (its dedup key too), so a given-up one can still be read until then.
-- KEYS[1] the delivery, KEYS[2] due set; ARGV[1] id, ARGV[2] status, ARGV[3] code ('' for
-- none), ARGV[4] now (s), ARGV[5] TTL, ARGV[6] key prefix
if redis.call('ZREM', KEYS[2], ARGV[1]) == 0 then
    return 0
end
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'code', ARGV[3], 'finished_at', ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
local key = redis.call('HGET', KEYS[1], 'key')
if key then
    redis.call('EXPIRE', ARGV[6] .. 'outbox-key:' .. key, ARGV[5])
end
return 1
