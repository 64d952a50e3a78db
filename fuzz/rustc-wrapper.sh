#!/bin/sh
# RUSTC_WRAPPER for scripts/fuzz.sh: instruments for libFuzzer only the code
# under test (the statehold library built with its `fuzzing` feature) and
# the fuzz targets, with debug assertions, overflow checks and opt-level 1
# (quick to build, still fast to run). Every dependency is compiled exactly
# as the release build compiles it, so the fuzz build reuses those.
rustc="$1"
shift
name=""
fuzzed=""
prev=""
for arg in "$@"; do
  if [ "$prev" = "--crate-name" ]; then name="$arg"; fi
  case "$arg" in
    'feature="fuzzing"') fuzzed=1 ;;
  esac
  prev="$arg"
done
case "$name" in
  key_extraction | path_normalize | contract_decode | config_parse) fuzzed=1 ;;
  statehold) ;;
  *) fuzzed="" ;;
esac
if [ -z "$fuzzed" ]; then
  exec "$rustc" "$@"
fi
exec "$rustc" "$@" --cfg fuzzing -Copt-level=1 -Cdebug-assertions -Coverflow-checks \
  -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
  -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
  -Cllvm-args=-sanitizer-coverage-trace-compares
