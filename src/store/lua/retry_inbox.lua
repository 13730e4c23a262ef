#!lua flags=no-cluster
-- A try failed for a reason that can pass: one more attempt, the lease dropped, due again
-- after the pause (the server's clock). Only for the owner of the lease.
-- KEYS[1] the item, KEYS[2] ready set, KEYS[3] leased set
-- ARGV[1] id, ARGV[2] owner, ARGV[3] pause (ms)
-- Returns 1 when done, 0 when the owner no longer held it.
if not redis.call('ZSCORE', KEYS[3], ARGV[1])
    or redis.call('HGET', KEYS[1], 'owner') ~= ARGV[2] then
    return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HDEL', KEYS[1], 'owner')
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[1])
return 1
