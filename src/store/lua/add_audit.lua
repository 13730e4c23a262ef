#!lua flags=no-cluster
-- Adds audit lines; a line whose key is stored already is kept as it was.
-- ARGV[1] key prefix, ARGV[2..] audit lines as triples: line key, time (ms), the line (JSON)
for i = 2, #ARGV, 3 do
    if redis.call('SET', ARGV[1] .. 'audit:' .. ARGV[i], ARGV[i + 2], 'NX') then
        redis.call('ZADD', ARGV[1] .. 'index:audit', ARGV[i + 1], ARGV[i])
    end
end
return 0
