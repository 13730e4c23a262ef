#!lua flags=no-cluster
-- Claims a page of the inbox for one owner: first events whose lease has expired (their
-- holder died or stalled: a takeover, counted as an attempt), then waiting events that are
-- due, oldest due first. Each moves to the leased set until now + lease. Every time is the
-- server's own (TIME), so the clocks of the bots never matter.
-- KEYS[1] ready set, KEYS[2] leased set, KEYS[3] pending set
-- ARGV[1] key prefix, ARGV[2] owner, ARGV[3] lease (ms), ARGV[4] limit
-- Returns {{id, kind, payload, attempts, received_at, taken_over}, …}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local until_ms = now + tonumber(ARGV[3])
local limit = tonumber(ARGV[4])
local out = {}
local function take(id, took)
    local item = ARGV[1] .. 'inbox:' .. id
    local h = redis.call('HMGET', item, 'kind', 'payload', 'attempts', 'received_at', 'status')
    redis.call('ZREM', KEYS[1], id)
    if not h[1] or not h[2] or h[5] ~= 'pending' then
        -- Its record is gone or finished: nothing to run.
        redis.call('ZREM', KEYS[2], id)
        redis.call('ZREM', KEYS[3], id)
        return
    end
    local attempts = tonumber(h[3] or '0')
    if took == 1 then
        attempts = redis.call('HINCRBY', item, 'attempts', 1)
    end
    redis.call('HSET', item, 'owner', ARGV[2])
    redis.call('ZADD', KEYS[2], until_ms, id)
    out[#out + 1] = {id, h[1], h[2], attempts, h[4] or '0', took}
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, limit)) do
    take(id, 1)
end
if #out < limit then
    for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0,
        limit - #out)) do
        take(id, 0)
    end
end
return out
