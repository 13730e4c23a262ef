#!lua flags=no-cluster
-- Ends an inbox item: off the pending, ready and leased sets, onto the purge index, and
-- (like every dedup key) given a TTL so that it goes away even if purge never runs.
-- KEYS[1] the item, KEYS[2] pending set, KEYS[3] finished index, KEYS[4] ready set,
-- KEYS[5] leased set
-- ARGV[1] id, ARGV[2] status, ARGV[3] now, ARGV[4] TTL
if redis.call('EXISTS', KEYS[1]) == 0 then
    return 0
end
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'finished_at', ARGV[3])
redis.call('HDEL', KEYS[1], 'owner')
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[4])
local dedup = redis.call('HGET', KEYS[1], 'dedup')
if dedup then
    redis.call('EXPIRE', dedup, ARGV[4])
end
return 1
