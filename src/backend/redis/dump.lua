-- A record as stored, for `statehold export` (never on the request path).
-- KEYS[1] snapshot hash {t}:s
-- Returns {version or nil, data or nil, PTTL}
local fields = redis.call('HMGET', KEYS[1], 'v', 'd')
return {fields[1], fields[2], redis.call('PTTL', KEYS[1])}
