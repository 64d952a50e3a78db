-- Shared by load.lua and acquire.lua (prepended to each).

-- Reads a conversation's record, slides its TTL, and looks up a dedupe
-- record: {version, data or nil, recorded response or nil}.
local function load_record(snapshot, dedupe, ttl_ms, want_dedupe)
  local fields = redis.call('HMGET', snapshot, 'v', 'd')
  if fields[1] then
    redis.call('PEXPIRE', snapshot, ttl_ms)
  end
  local recorded = false
  if want_dedupe then
    recorded = redis.call('GET', dedupe)
  end
  return {fields[1] or '0', fields[2], recorded}
end
