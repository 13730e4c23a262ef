#!lua flags=no-cluster
-- Stores a card click that outlived its answer as an inbox item of kind `click`, leased at
-- once to the process that goes on working on it; unless this click was stored before.
-- KEYS[1] the click's dedup key, KEYS[2] id counter, KEYS[3] pending set, KEYS[4] leased set
-- ARGV[1] key prefix, ARGV[2] payload, ARGV[3] now (s), ARGV[4] owner, ARGV[5] lease (ms)
-- Returns the new inbox id, or 0.
if redis.call('EXISTS', KEYS[1]) == 1 then
    return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local id = redis.call('INCR', KEYS[2])
redis.call('HSET', ARGV[1] .. 'inbox:' .. id,
    'kind', 'click', 'payload', ARGV[2], 'attempts', 0, 'status', 'pending',
    'received_at', ARGV[3], 'dedup', KEYS[1], 'owner', ARGV[4])
redis.call('SET', KEYS[1], id)
redis.call('ZADD', KEYS[3], id, id)
redis.call('ZADD', KEYS[4], now + tonumber(ARGV[5]), id)
return id
