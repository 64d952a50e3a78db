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
cargo test --all-targets --locked 2>&1 | tee "$log"
read -r passed failed < <(awk '/^test result:/ { for (i = 2; i <= NF; i++) {
  if ($i == "passed;") p += $(i - 1); if ($i == "failed;") f += $(i - 1) } } END { print p + 0, f + 0 }' "$log")
rm -f "$log"
echo "== fuzz (bounded)"
./scripts/fuzz.sh 15
echo "tests: ${passed} passed, ${failed} failed"
