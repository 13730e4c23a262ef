#!lua flags=no-cluster
-- Forgets, in one bounded step, what the SQLite store's purge deletes: dedup keys and sent
-- PUTs recorded before `before`, finished inbox items (and their message keys) finished
-- before it, and cards that expired before it. TTLs remove the keys anyway; the indexes make
-- purge follow the bot's clock and keep the indexes themselves from growing.
-- ARGV[1] key prefix, ARGV[2] before, ARGV[3] most members per index
-- Returns {removed, 1 if an index may hold more}.
local p, before, batch = ARGV[1], ARGV[2], tonumber(ARGV[3])
local removed, more = 0, 0
local function sweep(index, forget)
    local members = redis.call('ZRANGEBYSCORE', p .. index, '-inf', '(' .. before,
        'LIMIT', 0, batch)
    for _, m in ipairs(members) do
        forget(m)
        redis.call('ZREM', p .. index, m)
    end
    removed = removed + #members
    if #members == batch then
        more = 1
    end
end
sweep('index:seen', function(m) redis.call('DEL', p .. 'seen:' .. m) end)
sweep('index:puts', function(m) redis.call('DEL', p .. 'put:' .. m) end)
sweep('index:cards', function(m) redis.call('DEL', p .. 'card:' .. m) end)
sweep('index:finished', function(id)
    local item = p .. 'inbox:' .. id
    local dedup = redis.call('HGET', item, 'dedup')
    if dedup and redis.call('GET', dedup) == id then
        redis.call('DEL', dedup)
    end
    redis.call('DEL', item)
end)
return {removed, more}
