-- The read that comes with a turn, shared by acquire.lua (turn granted at
-- once) and load.lua (after a wait): written into both where they say
-- READ_RECORD when the scripts are built (scripts.rs), so neither pays
-- for a function. The host defines `snapshot`, `ttl`, `dedupe`, `lookup`
-- (look the dedupe record up), `mark` and `stream` (the expiry mark and
-- the audit stream; `mark` nil: no expiry is noticed here), and gets
-- `fields` ({version, data, linked}), `recorded`, and `channels`: on a
-- Cluster, a member's linked channels, whose aliases (in other slots)
-- statehold slides after the read; else false.
local fields = redis.call('HMGET', snapshot, 'v', 'd', 'k')
if fields[1] or fields[3] then
  redis.call('PEXPIRE', snapshot, ttl)
end
-- No table for the usual case (an unlinked read): `false` is an empty reply.
local channels = false
if fields[3] then
  -- A member: its aliases live as long as it does.
  local tag = string.sub(snapshot, 1, -3)
  redis.call('PEXPIRE', tag .. ':k', ttl)
  if ${CLUSTER} == 1 then
    channels = redis.call('HKEYS', tag .. ':k')
  else
    for _, channel in ipairs(redis.call('SMEMBERS', tag .. ':k')) do
      redis.call('PEXPIRE', channel .. ':a', ttl)
    end
  end
end
if mark and not fields[1] then
  -- No record, but the mark of one: it expired. Noticed now, audited once
  -- (the event built here: this path is rare, so no request pays for it).
  local last = redis.call('GET', mark)
  if last then
    local named = string.sub(snapshot, #${PREFIX} + 3, -4)
      :gsub('%%7B', '{'):gsub('%%7D', '}'):gsub('%%25', '%%')
    local route = string.match(named, '^([^:]*)'):gsub('#$', '')
    local now = redis.call('TIME')
    local at = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
    redis.call('XADD', stream, 'MAXLEN', '~', ${AUDIT}, '*', 'e',
      '{"from_version":' .. last .. ',"to_version":0,"at":' .. at .. ',"key":' .. cjson.encode(named)
      .. ',"kind":"expire","route":' .. cjson.encode(route)
      .. ',"request_id":null,"bytes":0,"changed":[]}')
    redis.call('DEL', mark)
  end
end
local recorded = false
if lookup then
  recorded = redis.call('GET', dedupe)
end
