#!lua flags=no-cluster
-- Gives a card's one action back: the claim of this click, not yet finished, is forgotten so
-- the card can act for someone else. Anyone else's claim, or a finished one, stays.
-- KEYS[1] the card, KEYS[2] card index; ARGV[1] nonce, ARGV[2] click_id
-- Returns 1 when released.
local h = redis.call('HMGET', KEYS[1], 'click_id', 'result')
if h[1] == ARGV[2] and not h[2] then
    redis.call('DEL', KEYS[1])
    redis.call('ZREM', KEYS[2], ARGV[1])
    return 1
end
return 0
