#!lua flags=no-cluster
-- The seen-check, the message dedup and the enqueue of one message event, all or nothing.
-- KEYS[1] seen key, KEYS[2] seen index, KEYS[3] message key, KEYS[4] id counter,
-- KEYS[5] pending set, KEYS[6] ready set
-- ARGV[1] event_id, ARGV[2] now, ARGV[3] TTL, ARGV[4] payload, ARGV[5] key prefix
-- Returns the new inbox id, -1 for a seen event_id, -2 for a message already stored.
if not redis.call('SET', KEYS[1], ARGV[2], 'NX', 'EX', ARGV[3]) then
    return -1
end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
if redis.call('EXISTS', KEYS[3]) == 1 then
    return -2
end
local id = redis.call('INCR', KEYS[4])
redis.call('HSET', ARGV[5] .. 'inbox:' .. id,
    'kind', 'message', 'payload', ARGV[4], 'attempts', 0, 'status', 'pending',
    'received_at', ARGV[2], 'dedup', KEYS[3])
redis.call('SET', KEYS[3], id)
redis.call('ZADD', KEYS[5], id, id)
-- Due at once, on the server's clock (as every lease time is).
local t = redis.call('TIME')
redis.call('ZADD', KEYS[6], tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), id)
return id
