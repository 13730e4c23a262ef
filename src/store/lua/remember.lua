#!lua flags=no-cluster
-- Remembers a dedup key (a seen event_id or click, a sent PUT) unless it is already there.
-- KEYS[1] the key, KEYS[2] its purge index
-- ARGV[1] the member in the index, ARGV[2] now, ARGV[3] TTL in seconds
-- Returns 1 if it was new, 0 if it was there.
if not redis.call('SET', KEYS[1], ARGV[2], 'NX', 'EX', ARGV[3]) then
    return 0
end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 1
