#!lua flags=no-cluster
-- Forgets, in one bounded step, audit lines older than `before`.
-- ARGV[1] key prefix, ARGV[2] before (ms), ARGV[3] most lines
-- Returns {removed, 1 if more may be older}.
local p, batch = ARGV[1], tonumber(ARGV[3])
local keys = redis.call('ZRANGEBYSCORE', p .. 'index:audit', '-inf', '(' .. ARGV[2],
    'LIMIT', 0, batch)
for _, k in ipairs(keys) do
    redis.call('DEL', p .. 'audit:' .. k)
    redis.call('ZREM', p .. 'index:audit', k)
end
local more = 0
if #keys == batch then
    more = 1
end
return {#keys, more}
