#!lua flags=no-cluster
-- The pending inbox items, oldest first, read in one consistent step.
-- KEYS[1] pending set; ARGV[1] key prefix, ARGV[2] index of the last item (-1: all)
-- Returns {{id, kind, payload, attempts, received_at}, …}.
local out = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, ARGV[2])) do
    local h = redis.call('HMGET', ARGV[1] .. 'inbox:' .. id, 'kind', 'payload', 'attempts',
        'received_at')
    if h[1] and h[2] then
        out[#out + 1] = {id, h[1], h[2], h[3] or '0', h[4] or '0'}
    end
end
return out
