-- One slot's part of a page of the audit feed on a Cluster, for a slot
-- being moved (feed.lua named it 'elsewhere'): the stream is a declared
-- key, so the client follows the slot to whichever node serves it now.
-- KEYS[1] the slot's stream   ARGV[1] XRANGE start   ARGV[2] COUNT
-- Returns {ms now, entries}.
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
return {ms, redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', ARGV[2])}
