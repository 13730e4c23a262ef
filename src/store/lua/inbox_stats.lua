#!lua flags=no-cluster
-- How many inbox items are unfinished, and when the oldest of them was received.
-- KEYS[1] pending set; ARGV[1] key prefix
-- Returns {count, received_at or false}.
local first = redis.call('ZRANGE', KEYS[1], 0, 0)
local oldest = false
if first[1] then
    oldest = redis.call('HGET', ARGV[1] .. 'inbox:' .. first[1], 'received_at') or false
end
return {redis.call('ZCARD', KEYS[1]), oldest}
