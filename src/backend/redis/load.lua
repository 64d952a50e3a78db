-- Load a conversation's snapshot, refresh its sliding TTL, and look up a
-- dedupe record: one round trip (the same read acquire.lua does when it
-- grants the turn at once).
-- After a wait for a turn, the alias of the key asked for is checked too:
-- links change only under the member's turn, so if it no longer names the
-- member the turn was queued for (or now names one), the request must
-- begin again ('moved').
-- KEYS[1] snapshot hash {t}:s (fields v = version, d = JSON; no d =
--         cleared; k = channels are linked to it)
-- KEYS[2] dedupe record {t}:d:<id>
-- KEYS[3] (after a wait) the alias {t}:a of the key the request names
-- KEYS[4] expiry mark {t}:x, KEYS[5] the audit stream (after a wait, with
--         the trail on: an expiry is noticed as in acquire.lua)
-- ARGV[1] '1' to look up the dedupe record
-- ARGV[2] (with KEYS[3]) the member tag the turn was queued for ('' : none)
-- Returns {version, data or nil, recorded response or nil, linked}, or
-- {'moved'}
if KEYS[3] then
  local member = redis.call('GET', KEYS[3])
  if member then
    member = string.sub(member, string.find(member, ' ', 1, true) + 1)
  end
  if (member or '') ~= ARGV[2] then
    return {'moved'}
  end
end
local fields = redis.call('HMGET', KEYS[1], 'v', 'd', 'k')
if fields[1] or fields[3] then
  redis.call('PEXPIRE', KEYS[1], ${TTL_MS})
end
if fields[3] then
  local tag = string.sub(KEYS[1], 1, -3)
  redis.call('PEXPIRE', tag .. ':k', ${TTL_MS})
  for _, channel in ipairs(redis.call('SMEMBERS', tag .. ':k')) do
    redis.call('PEXPIRE', channel .. ':a', ${TTL_MS})
  end
end
if KEYS[5] and not fields[1] then
  -- No record, but the mark of one: it expired. Noticed now, audited once
  -- (the event built here: this path is rare, so no request pays for it).
  local last = redis.call('GET', KEYS[4])
  if last then
    local named = string.sub(KEYS[1], #${PREFIX} + 3, -4)
      :gsub('%%7B', '{'):gsub('%%7D', '}'):gsub('%%25', '%%')
    local route = string.match(named, '^([^:]*)'):gsub('#$', '')
    local now = redis.call('TIME')
    local at = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
    redis.call('XADD', KEYS[5], 'MAXLEN', '~', ${AUDIT}, '*', 'e',
      '{"from_version":' .. last .. ',"to_version":0,"at":' .. at .. ',"key":' .. cjson.encode(named)
      .. ',"kind":"expire","route":' .. cjson.encode(route)
      .. ',"request_id":null,"bytes":0,"changed":[]}')
    redis.call('DEL', KEYS[4])
  end
end
local recorded = false
if ARGV[1] == '1' then
  recorded = redis.call('GET', KEYS[2])
end
return {fields[1] or '0', fields[2], recorded, fields[3]}
