#!/usr/bin/env bash
# End-to-end load benchmark (see examples/loadbench.rs): one invocation runs
# direct, nginx and three statehold configurations side by side and prints
# the README's table. Installs nginx and redis-server with apt when missing.
#   scripts/bench.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v nginx >/dev/null 2>&1 || need+=(nginx-light)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
# statehold as it ships (the `dist` profile, as the image builds it); the
# generator, the bot and the floor in plain release.
cargo build --profile dist --locked --bin statehold
cargo build --release --locked --example loadbench --example floor
export STATEHOLD_BIN="${STATEHOLD_BIN:-$PWD/target/dist/statehold}"
exec target/release/examples/loadbench "$@"
