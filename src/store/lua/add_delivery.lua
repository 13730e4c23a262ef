#!lua flags=no-cluster
-- Stores a delivery due at once, unless its key was stored before.
-- KEYS[1] its dedup key, KEYS[2] outbox next-id, KEYS[3] due set
-- ARGV[1] key prefix, ARGV[2] dedup key (as stored), ARGV[3] payload, ARGV[4] now (ms)
-- Returns the new id, or 0.
if redis.call('EXISTS', KEYS[1]) == 1 then
    return 0
end
local id = redis.call('INCR', KEYS[2])
redis.call('HSET', ARGV[1] .. 'outbox:' .. id, 'key', ARGV[2], 'payload', ARGV[3],
    'attempts', 0, 'created_at', ARGV[4], 'status', 'waiting')
redis.call('SET', KEYS[1], id)
redis.call('ZADD', KEYS[3], ARGV[4], id)
return id
