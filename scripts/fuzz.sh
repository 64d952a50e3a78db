#!/usr/bin/env bash
# Bounded libFuzzer runs of the fuzz targets on the stable toolchain
# (no cargo-fuzz or nightly needed: the coverage flags set by
# fuzz/rustc-wrapper.sh on the code under test only).
#   scripts/fuzz.sh [seconds per target, default 20]   build, then run
#   scripts/fuzz.sh build                              build only
#   scripts/fuzz.sh run [seconds per target]           run what was built
# Targets run two at a time (libFuzzer uses one core each). Exits non-zero
# on the first crash; the crashing input is left in fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
step="all"
case "${1:-}" in
  build | run) step="$1"; shift ;;
esac
secs="${1:-20}"
targets=(key_extraction path_normalize contract_decode config_parse)

if [ "$step" != "run" ]; then
  if ! command -v c++ >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq g++ >/dev/null
  fi
  # Only the fuzzed library and the targets are instrumented; the
  # dependencies are the release build's, in the same target directory.
  unset RUSTFLAGS CARGO_ENCODED_RUSTFLAGS
  RUSTC_WRAPPER="$PWD/rustc-wrapper.sh" cargo build --release --locked --quiet --target-dir ../target
fi
[ "$step" = "build" ] && exit 0

mkdir -p artifacts
fuzz_one() {
  local t="$1"
  mkdir -p "corpus/$t"
  "../target/release/$t" "corpus/$t" "seeds/$t" -max_total_time="$secs" -rss_limit_mb=2048 \
    -max_len=65536 -artifact_prefix="artifacts/$t-" -print_final_stats=1 >"artifacts/.$t.log" 2>&1 || true
  # One write per target, so the two running at once do not interleave.
  local stats
  stats=$(grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+ +DONE)|ERROR|panicked|SUMMARY" \
    "artifacts/.$t.log" || true)
  printf '== fuzz %s for %ss\n%s\n' "$t" "$secs" "$stats"
  rm -f "artifacts/.$t.log"
}
for ((i = 0; i < ${#targets[@]}; i += 2)); do
  fuzz_one "${targets[$i]}" &
  first=$!
  if [ $((i + 1)) -lt ${#targets[@]} ]; then fuzz_one "${targets[$((i + 1))]}"; fi
  wait "$first"
done
for t in "${targets[@]}"; do
  if ls artifacts/"$t"-* >/dev/null 2>&1; then
    echo "fuzz $t: crash, see fuzz/artifacts/"; exit 1
  fi
done
echo "fuzz: no crashes"
