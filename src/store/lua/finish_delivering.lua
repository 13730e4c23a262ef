#!lua flags=no-cluster
-- Ends an inbox item as done (as finish.lua does) and stores its answer as a delivery due at
-- once (as add_delivery.lua does), in one step.
-- KEYS[1] the item, KEYS[2] pending set, KEYS[3] finished index,
-- KEYS[4] the delivery's dedup key, KEYS[5] outbox next-id, KEYS[6] due set,
-- KEYS[7] ready set, KEYS[8] leased set
-- ARGV[1] id, ARGV[2] now (s), ARGV[3] TTL, ARGV[4] key prefix, ARGV[5] dedup key (as
-- stored), ARGV[6] payload, ARGV[7] now (ms),
-- ARGV[8..] audit lines as triples: line key, time (ms), the line (JSON)
for i = 8, #ARGV, 3 do
    if redis.call('SET', ARGV[4] .. 'audit:' .. ARGV[i], ARGV[i + 2], 'NX') then
        redis.call('ZADD', ARGV[4] .. 'index:audit', ARGV[i + 1], ARGV[i])
    end
end
if redis.call('EXISTS', KEYS[1]) == 1 then
    redis.call('HSET', KEYS[1], 'status', 'done', 'finished_at', ARGV[2])
    redis.call('HDEL', KEYS[1], 'owner')
    redis.call('ZREM', KEYS[2], ARGV[1])
    redis.call('ZREM', KEYS[7], ARGV[1])
    redis.call('ZREM', KEYS[8], ARGV[1])
    redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
    redis.call('EXPIRE', KEYS[1], ARGV[3])
    local dedup = redis.call('HGET', KEYS[1], 'dedup')
    if dedup then
        redis.call('EXPIRE', dedup, ARGV[3])
    end
end
if redis.call('EXISTS', KEYS[4]) == 1 then
    return 0
end
local id = redis.call('INCR', KEYS[5])
redis.call('HSET', ARGV[4] .. 'outbox:' .. id, 'key', ARGV[5], 'payload', ARGV[6],
    'attempts', 0, 'created_at', ARGV[7], 'status', 'waiting')
redis.call('SET', KEYS[4], id)
redis.call('ZADD', KEYS[6], ARGV[7], id)
return id
