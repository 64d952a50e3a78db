-- The end-of-turn write, atomic: fence check, version check, snapshot write,
-- dedupe record, and the turn's release with hand-over to the next in line
-- (also when the write is refused: the turn is over either way).
-- A key is never written without its TTL: the load under this turn slid
-- the record's TTL moments ago, and a record this write creates gets it
-- here.
-- Hot path, so written out in full (no local functions; the hand-over
-- repeats turn_lib.lua's grant_next). The deployment's constants are written
-- in when the script is built (scripts.rs).
-- The layout below is built in one place, redis/commit_call.rs (CommitCall),
-- which pads an empty optional slot that comes before a filled one.
-- KEYS[1] snapshot hash {t}:s   KEYS[2] lease {t}:l
-- KEYS[3] dedupe record {t}:d:<id>   KEYS[4] turn queue {t}:q
-- KEYS[5] history {t}:h (only with store.history or the audit trail on)
-- KEYS[6] the audit stream {prefix:audit} (only with the audit trail on;
--         one stream, so not on a Cluster)
-- KEYS[7] the expiry mark {t}:x (with the trail on): the last version, kept
--         ${EXPIRY_MARK_MS} ms (twice the record's TTL) after each commit,
--         so a later load can tell an expired record from none
-- ARGV[1] the turn's fencing token
-- ARGV[2] expected version ('' : any)
-- ARGV[3] change: 'p' put, 'c' clear, 'k' keep, 'f' forget (migrate: the
--         record goes, version included)
-- ARGV[4] snapshot JSON (put)
-- ARGV[5] '1' to write the dedupe record   ARGV[6] recorded response
-- ARGV[7] (with history) the new version's 'kind at_ms'
-- ARGV[8] (with audit) the event's members but the versions ('' : none)
-- ARGV[9] (a link change) 'l' link, 'u' unlink   ARGV[10] the channel's tag
--         (ARGV[7] and [8] are then always sent). The channel's alias
--         {c}:a and this member's link set {t}:k are named here, not
--         declared. On a Cluster ({c}:a is in another slot) the channel's
--         side was checked and written first, under the channel's turn
--         (alias.lua), the alias dropped after an unlink; here {t}:k is a
--         hash channel tag -> link id, ARGV[11] the link id.
-- ${HISTORY}: versions kept per conversation; 0 leaves KEYS[5] alone.
-- ${AUDIT}: audit events kept; 0 leaves KEYS[6] alone.
-- The record's 'f' field names the turn (fencing token) that last committed.
-- Returns {'ok', version} | {'conflict', version} | {'fenced', version}
local current = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  -- This very commit, sent again because its reply was lost: the record
  -- names this turn's token as its last writer ('f'). It ran: say so.
  if redis.call('HGET', KEYS[1], 'f') == ARGV[1] then
    return {'ok', current}
  end
  -- Fenced off: someone else holds the lease now, and we are in no queue.
  return {'fenced', current}
end
local result
local tag = string.sub(KEYS[1], 1, -3)
local refused = false
if ARGV[9] == 'l' and ${CLUSTER} == 1 then
  refused = redis.call('EXISTS', tag .. ':a') == 1
elseif ARGV[9] == 'l' then
  -- One level only: the channel has no channels of its own and is no
  -- other member's alias, and this member is nobody's alias.
  local alias = redis.call('GET', ARGV[10] .. ':a')
  refused = redis.call('EXISTS', ARGV[10] .. ':k') == 1
    or redis.call('EXISTS', tag .. ':a') == 1
    or (alias and alias ~= ${TTL_MS} .. ' ' .. tag)
end
if refused or (ARGV[2] ~= '' and tonumber(ARGV[2]) ~= current) then
  result = {'conflict', current}
else
  local version = current
  if ARGV[3] == 'p' then
    version = current + 1
    redis.call('HSET', KEYS[1], 'v', version, 'd', ARGV[4], 'f', ARGV[1])
    if current == 0 then
      redis.call('PEXPIRE', KEYS[1], ${TTL_MS})
    end
  elseif ARGV[3] == 'c' and current > 0 then
    version = current + 1
    redis.call('HSET', KEYS[1], 'v', version, 'f', ARGV[1])
    redis.call('HDEL', KEYS[1], 'd')
  elseif current > 0 and ARGV[3] ~= 'f' then
    -- Keep: the record names its last turn, for a replay (above).
    redis.call('HSET', KEYS[1], 'f', ARGV[1])
  elseif ARGV[3] == 'f' then
    version = 0
    redis.call('DEL', KEYS[1])
    if ${HISTORY} > 0 then
      redis.call('DEL', KEYS[5])
    end
  end
  if ${HISTORY} > 0 and version > current then
    if ARGV[3] == 'p' then
      redis.call('HSET', KEYS[5], 'm' .. version, ARGV[7], 'v' .. version, ARGV[4])
    else
      redis.call('HSET', KEYS[5], 'm' .. version, ARGV[7])
    end
    local gone = version - ${HISTORY}
    if gone > 0 then
      redis.call('HDEL', KEYS[5], 'm' .. gone, 'v' .. gone)
    end
  end
  if ${HISTORY} > 0 and version > 0 then
    redis.call('PEXPIRE', KEYS[5], ${TTL_MS})
  end
  if ARGV[9] == 'l' then
    if ${CLUSTER} == 1 then
      redis.call('HSET', tag .. ':k', ARGV[10], ARGV[11])
    else
      redis.call('SET', ARGV[10] .. ':a', ${TTL_MS} .. ' ' .. tag, 'PX', ${TTL_MS})
      redis.call('SADD', tag .. ':k', ARGV[10])
    end
    redis.call('PEXPIRE', tag .. ':k', ${TTL_MS})
    redis.call('HSET', KEYS[1], 'k', '1')
    redis.call('PEXPIRE', KEYS[1], ${TTL_MS})
  elseif ARGV[9] == 'u' and ${CLUSTER} == 1 then
    redis.call('HDEL', tag .. ':k', ARGV[10])
    if redis.call('EXISTS', tag .. ':k') == 0 then
      redis.call('HDEL', KEYS[1], 'k')
    end
  elseif ARGV[9] == 'u' then
    redis.call('DEL', ARGV[10] .. ':a')
    redis.call('SREM', tag .. ':k', ARGV[10])
    if redis.call('EXISTS', tag .. ':k') == 0 then
      redis.call('HDEL', KEYS[1], 'k')
    end
  end
  if ${AUDIT} > 0 and version > 0 then
    redis.call('SET', KEYS[7], version, 'PX', ${EXPIRY_MARK_MS})
  elseif ${AUDIT} > 0 and ARGV[3] == 'f' then
    redis.call('DEL', KEYS[7])
  end
  local linking = ARGV[9] == 'l' or ARGV[9] == 'u'
  if ${AUDIT} > 0 and (version ~= current or linking) and ARGV[8] ~= '' then
    redis.call('XADD', KEYS[6], 'MAXLEN', '~', ${AUDIT}, '*', 'e',
      '{"from_version":' .. current .. ',"to_version":' .. version .. ',' .. ARGV[8] .. '}')
  end
  if ARGV[5] == '1' then
    redis.call('SET', KEYS[3], ARGV[6], 'PX', ${DEDUPE_MS}, 'NX')
  end
  result = {'ok', version}
end
-- The turn passes to the first waiter, or ends.
local head = redis.call('LPOP', KEYS[4])
if head then
  redis.call('SET', KEYS[2], head, 'PX', ${LEASE_MS})
  redis.call('PUBLISH', ${CHANNEL} .. ':' .. string.sub(head, -4), head)
else
  redis.call('DEL', KEYS[2])
end
return result
