#!/usr/bin/env bash
# Two statehold builds side by side on one redis-server and the bench's
# bot, alternating rounds, with `perf stat` on each process: CPU µs,
# syscalls and context switches per request, passthrough and the full
# Redis pipeline, at a fixed rate or (RATE=0) at saturation.
#   A=old/statehold B=new/statehold [RATE=1000] [SECS=5] [ROUNDS=3] scripts/ab.sh
# Needs perf, redis-server and `cargo build --release --example loadbench`.
# Fixed loopback ports 16380 to 16389.
set -u
cd "$(dirname "$0")/.."
: "${A:?A=path to the first build}" "${B:?B=path to the second build}"
RATE=${RATE:-1000}; SECS=${SECS:-5}; ROUNDS=${ROUNDS:-3}
LB=$PWD/target/release/examples/loadbench
dir=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$dir"' EXIT
config() { # listen admin prefix
  cat <<T
[server]
listen = "127.0.0.1:$1"
[upstream]
url = "http://127.0.0.1:16380"
[store]
backend = "redis"
url = "redis://127.0.0.1:16381/0"
key_prefix = "$3"
[[route]]
path = "/telegram"
namespace = "tg"
preset = "telegram"
[admin]
listen = "127.0.0.1:$2"
[log]
level = "warn"
T
}
redis-server --port 16381 --bind 127.0.0.1 --save "" --appendonly no > "$dir/redis.log" 2>&1 &
"$LB" bot --listen 127.0.0.1:16380 > "$dir/bot.log" 2>&1 &
config 16382 16383 a > "$dir/a.toml"; config 16384 16385 b > "$dir/b.toml"
"$A" serve --config "$dir/a.toml" > "$dir/a.log" 2>&1 & pid_a=$!
"$B" serve --config "$dir/b.toml" > "$dir/b.log" 2>&1 & pid_b=$!
for port in 16380 16381 16382 16384; do
  for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
done
measure() { # name pid url
  local rate=() n
  [ "$RATE" != 0 ] && rate=("$RATE")
  "$LB" drive "$3" 1 "${rate[@]}" > /dev/null 2>&1
  perf stat -e raw_syscalls:sys_enter,context-switches,task-clock -x, -o "$dir/stat" -p "$2" -- sleep "$SECS" 2>/dev/null &
  local perf_pid=$!
  "$LB" drive "$3" "$SECS" "${rate[@]}" > "$dir/drive" 2>&1
  wait "$perf_pid"
  n=$(awk -v s="$SECS" '/ rps$/ { printf "%d", $1 * s }' "$dir/drive")
  awk -F, -v n="$n" -v p="$1" '/sys_enter/{s=$1} /context-switches/{c=$1} /task-clock/{t=$1}
    END { printf "%-8s %8d req  CPU %6.1f µs/req  syscalls %5.2f  switches %5.3f\n", p, n, t*1000/n, s/n, c/n }' "$dir/stat"
}
for _ in $(seq "$ROUNDS"); do
  measure A-pass $pid_a http://127.0.0.1:16382/other
  measure B-pass $pid_b http://127.0.0.1:16384/other
  measure A-redis $pid_a http://127.0.0.1:16382/telegram
  measure B-redis $pid_b http://127.0.0.1:16384/telegram
done
