#!lua flags=no-cluster
-- Takes a card's one action for a click, with the SQLite store's rules: a finished claim,
-- a fresh one, or this very click's own are held; an unfinished claim older than
-- stale_before (its holder died) is taken over, keeping its expiry.
-- KEYS[1] the card, KEYS[2] card index
-- ARGV[1] nonce, ARGV[2] click_id, ARGV[3] kind, ARGV[4] by_open_id, ARGV[5] now,
-- ARGV[6] expires_at, ARGV[7] stale_before, ARGV[8] TTL
-- Returns {1, …} when granted, {0, click_id, kind, by_open_id, claimed_at, result} when held.
local h = redis.call('HMGET', KEYS[1], 'click_id', 'kind', 'by_open_id', 'claimed_at', 'result')
if h[1] then
    if h[5] or tonumber(h[4]) >= tonumber(ARGV[7]) or h[1] == ARGV[2] then
        return {0, h[1], h[2], h[3], h[4], h[5]}
    end
    redis.call('HSET', KEYS[1], 'click_id', ARGV[2], 'kind', ARGV[3], 'by_open_id', ARGV[4],
        'claimed_at', ARGV[5])
    return {1, false, false, false, false, false}
end
redis.call('HSET', KEYS[1], 'click_id', ARGV[2], 'kind', ARGV[3], 'by_open_id', ARGV[4],
    'claimed_at', ARGV[5], 'expires_at', ARGV[6])
redis.call('ZADD', KEYS[2], ARGV[6], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[8])
return {1, false, false, false, false, false}
