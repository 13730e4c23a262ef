#!lua flags=no-cluster
-- Stores the result card of a claim that still exists (never recreates one), and the audit
-- lines of its action (whether or not the claim is still there).
-- KEYS[1] the card; ARGV[1] the result, ARGV[2] key prefix,
-- ARGV[3..] audit lines as triples: line key, time (ms), the line (JSON)
if redis.call('EXISTS', KEYS[1]) == 1 then
    redis.call('HSET', KEYS[1], 'result', ARGV[1])
end
for i = 3, #ARGV, 3 do
    if redis.call('SET', ARGV[2] .. 'audit:' .. ARGV[i], ARGV[i + 2], 'NX') then
        redis.call('ZADD', ARGV[2] .. 'index:audit', ARGV[i + 1], ARGV[i])
    end
end
return 0
