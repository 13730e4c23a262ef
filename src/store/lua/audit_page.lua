#!lua flags=no-cluster
-- One page of the audit trail, oldest first: at most `limit` lines from `since` (ms), after
-- the cursor (time, line key) when one is given. Lines sort by time, then by key, as in the
-- sorted set.
-- ARGV[1] key prefix, ARGV[2] since (ms), ARGV[3] cursor time ('' = none), ARGV[4] cursor
-- key, ARGV[5] limit
local p, limit = ARGV[1], tonumber(ARGV[5])
local after_at, after_key = ARGV[3], ARGV[4]
local from = ARGV[2]
if after_at ~= '' and tonumber(after_at) > tonumber(from) then
    from = after_at
end
local out, offset = {}, 0
while #out < limit do
    local rows = redis.call('ZRANGEBYSCORE', p .. 'index:audit', from, '+inf', 'WITHSCORES',
        'LIMIT', offset, limit)
    if #rows == 0 then
        break
    end
    for i = 1, #rows, 2 do
        local key, at = rows[i], tonumber(rows[i + 1])
        if after_at == '' or at > tonumber(after_at) or key > after_key then
            local line = redis.call('GET', p .. 'audit:' .. key)
            if line then
                out[#out + 1] = line
                if #out == limit then
                    break
                end
            end
        end
    end
    offset = offset + #rows / 2
end
return out
