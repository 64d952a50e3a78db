#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine with only Rust installed.
# Installs redis-server when it is missing (the Redis backend's tests start
# their own instances on free ports; nothing uses a shared Redis).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1; then
  echo "== installing redis-server"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo test"
log="$(mktemp)"
# --no-fail-fast: every test binary runs, so a failure still prints the count.
set +e
cargo test --all-targets --locked --no-fail-fast 2>&1 | tee "$log"
test_status=${PIPESTATUS[0]}
set -e
read -r passed failed < <(awk '/^test result:/ { for (i = 2; i <= NF; i++) {
  if ($i == "passed;") p += $(i - 1); if ($i == "failed;") f += $(i - 1) } } END { print p + 0, f + 0 }' "$log")
rm -f "$log"
echo "== fuzz (bounded)"
set +e
./scripts/fuzz.sh 15
fuzz_status=$?
set -e
echo "tests: ${passed} passed, ${failed} failed"
if [ "$test_status" -ne 0 ] || [ "$fuzz_status" -ne 0 ]; then
  exit 1
fi
