#!lua flags=no-cluster
-- Counts one more attempt at an inbox item that still exists (never recreates one).
-- KEYS[1] the item
if redis.call('EXISTS', KEYS[1]) == 1 then
    redis.call('HINCRBY', KEYS[1], 'attempts', 1)
end
return 0
