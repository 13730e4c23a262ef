#!lua flags=no-cluster
-- The code a delivery was given up with, by its dedup key; false if it was not.
-- KEYS[1] its dedup key; ARGV[1] key prefix
local id = redis.call('GET', KEYS[1])
if not id then
    return false
end
local h = redis.call('HMGET', ARGV[1] .. 'outbox:' .. id, 'status', 'code')
if h[1] == 'given_up' then
    return h[2]
end
return false
