#!lua flags=no-cluster
-- The deliveries due now, oldest due first, each taken for a lease (due again after it).
-- KEYS[1] due set; ARGV[1] key prefix, ARGV[2] now (ms), ARGV[3] lease (ms), ARGV[4] limit
-- Returns {{id, key, payload, attempts, created_at}, …}.
local out = {}
local until_ms = tonumber(ARGV[2]) + tonumber(ARGV[3])
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'LIMIT', 0, ARGV[4])) do
    local h = redis.call('HMGET', ARGV[1] .. 'outbox:' .. id, 'key', 'payload', 'attempts',
        'created_at')
    if h[1] and h[2] then
        redis.call('ZADD', KEYS[1], until_ms, id)
        out[#out + 1] = {id, h[1], h[2], h[3] or '0', h[4] or '0'}
    else
        -- Its record is gone (it cannot be delivered): nothing to wait for.
        redis.call('ZREM', KEYS[1], id)
    end
end
return out
