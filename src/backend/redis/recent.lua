#!lua flags=allow-cross-slot-keys,no-writes
-- One Cluster node's newest audit events, for the console's list of
-- recent conversations: the last COUNT entries of each slot stream it
-- serves. As in feed.lua the streams are arguments, read with the flag
-- above; a stream this node cannot read now (its slot is on the move) is
-- left out: the list is a convenience, and the trail itself is whole.
-- ARGV[1] COUNT; then the slot streams.
-- Returns {[argument number, entries]...}, leaving out empty streams.
local out = {}
for i = 2, #ARGV do
  local rows = redis.pcall('XREVRANGE', ARGV[i], '+', '-', 'COUNT', ARGV[1])
  if not rows.err and #rows > 0 then
    out[#out + 1] = i - 1
    out[#out + 1] = rows
  end
end
return out
