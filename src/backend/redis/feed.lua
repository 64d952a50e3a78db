#!lua flags=allow-cross-slot-keys,no-writes
-- One Cluster node's part of a page of the audit feed: the events of the
-- slot streams it serves after their starts, and the node's clock (pages
-- are merged up to the oldest clock seen: an event written later on any
-- node has a later id, so nothing can appear below a position given out).
-- The streams are arguments, not declared keys: a script may declare keys
-- of one slot only, but may read any key of its node's slots with the
-- flag above. A stream this node cannot read now (its slot is being moved,
-- or moved already) is named 'elsewhere': statehold reads that slot on its
-- own, through the client's redirects.
-- ARGV[1] COUNT; then pairs: a slot stream, its XRANGE start.
-- Returns {ms now, [pair number, entries or 'elsewhere']...}, leaving out
-- the streams without events.
local now = redis.call('TIME')
local out = {tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)}
for i = 2, #ARGV, 2 do
  local rows = redis.pcall('XRANGE', ARGV[i], ARGV[i + 1], '+', 'COUNT', ARGV[1])
  if rows.err then
    out[#out + 1] = i / 2
    out[#out + 1] = 'elsewhere'
  elseif #rows > 0 then
    out[#out + 1] = i / 2
    out[#out + 1] = rows
  end
end
return out
