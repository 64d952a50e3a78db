-- The key marks (src/privacy/marks.rs), one hash per key prefix.
-- KEYS[1]: <prefix>:keymarks
-- ARGV[1]: the hashing mark the writer read ('' = none was recorded)
-- ARGV[2]: a new hashing mark ('' = leave it)
-- ARGV[3]: a new sealing mark ('' = leave it)
-- Returns 1, or 0 (nothing written) when the hashing mark moved meanwhile.
local current = redis.call('HGET', KEYS[1], 'hash') or ''
if ARGV[2] ~= '' then
  if current ~= ARGV[1] then
    return 0
  end
  redis.call('HSET', KEYS[1], 'hash', ARGV[2])
end
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[1], 'seal', ARGV[3])
end
return 1
