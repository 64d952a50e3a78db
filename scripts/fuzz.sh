#!/usr/bin/env bash
# Bounded libFuzzer runs of the fuzz targets on the stable toolchain
# (no cargo-fuzz or nightly needed: the same coverage flags, set by hand).
#   scripts/fuzz.sh [seconds per target, default 20]
# Exits non-zero on the first crash; the crashing input is left in fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${1:-20}"
if ! command -v c++ >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq g++ >/dev/null
fi
# Only the fuzzed library and the targets are instrumented (rustc-wrapper.sh);
# the dependencies are the release build's, in the same target directory.
unset RUSTFLAGS CARGO_ENCODED_RUSTFLAGS
RUSTC_WRAPPER="$PWD/rustc-wrapper.sh" cargo build --release --locked --quiet --target-dir ../target
mkdir -p artifacts
for t in key_extraction path_normalize contract_decode config_parse; do
  mkdir -p "corpus/$t"
  echo "== fuzz $t for ${secs}s"
  "../target/release/$t" "corpus/$t" "seeds/$t" -max_total_time="$secs" -rss_limit_mb=2048 \
    -max_len=65536 -artifact_prefix="artifacts/$t-" -print_final_stats=1 2>&1 \
    | grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+ +DONE)|ERROR|panicked|SUMMARY" || true
  if ls artifacts/"$t"-* >/dev/null 2>&1; then
    echo "fuzz $t: crash, see fuzz/artifacts/"; exit 1
  fi
done
echo "fuzz: no crashes"
