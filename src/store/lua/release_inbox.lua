#!lua flags=no-cluster
-- Hands an owner's leases back: each event is due again at once, for anyone.
-- KEYS[1] ready set, KEYS[2] leased set; ARGV[1] key prefix, ARGV[2] owner, ARGV[3…] ids
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 3, #ARGV do
    local id = ARGV[i]
    local item = ARGV[1] .. 'inbox:' .. id
    if redis.call('ZSCORE', KEYS[2], id) and redis.call('HGET', item, 'owner') == ARGV[2] then
        redis.call('ZREM', KEYS[2], id)
        redis.call('HDEL', item, 'owner')
        redis.call('ZADD', KEYS[1], now, id)
    end
end
return 0
