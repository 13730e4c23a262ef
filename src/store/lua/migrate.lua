#!lua flags=no-cluster
-- Brings the key layout to version 2 (the inbox as a leased queue), in one step: a fresh
-- database is marked 2; in layout 1 every pending event goes to the ready set, due from when
-- it was received. Any other version is left alone (and refused by the caller).
-- KEYS[1] schema key, KEYS[2] pending set, KEYS[3] ready set; ARGV[1] key prefix
-- Returns the layout the database now holds.
local v = redis.call('GET', KEYS[1])
if v == '1' then
    for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
        local at = redis.call('HGET', ARGV[1] .. 'inbox:' .. id, 'received_at')
        redis.call('ZADD', KEYS[3], (tonumber(at) or 0) * 1000, id)
    end
elseif v then
    return v
end
redis.call('SET', KEYS[1], '2')
return '2'
