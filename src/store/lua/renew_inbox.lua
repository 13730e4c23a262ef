#!lua flags=no-cluster
-- Extends an owner's leases to now + lease (the server's clock).
-- KEYS[1] leased set; ARGV[1] key prefix, ARGV[2] owner, ARGV[3] lease (ms), ARGV[4…] ids
-- Returns the ids this owner no longer holds.
local t = redis.call('TIME')
local until_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[3])
local lost = {}
for i = 4, #ARGV do
    local id = ARGV[i]
    if redis.call('ZSCORE', KEYS[1], id)
        and redis.call('HGET', ARGV[1] .. 'inbox:' .. id, 'owner') == ARGV[2] then
        redis.call('ZADD', KEYS[1], 'XX', until_ms, id)
    else
        lost[#lost + 1] = tonumber(id)
    end
end
return lost
