-- Leave the queue: after a turn (release) or when giving up (cancel). A
-- holder hands the lease straight to the next in line and tells it.
-- (turn_lib.lua is prepended.)
-- KEYS[1] lease  KEYS[2] queue
-- ARGV[1] token  ARGV[2] lease ms  ARGV[3] channel
-- Returns 1 when we held the turn, 0 otherwise.
return leave(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], false)
