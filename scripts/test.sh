#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine with only Rust installed.
# Installs what is missing with apt: redis-server and redis-sentinel (the
# tests start their own instances on free ports; nothing uses a shared
# Redis), Python 3 with venv, Node.js with npm, prometheus (for promtool,
# which checks deploy/prometheus/alerts.yml) and chromium (the console's
# browser test). Python packages (the frameworks the client helpers are
# tested with, and Playwright) go into target/pyenv.
set -euo pipefail
cd "$(dirname "$0")/.."

# Wall time of each phase, printed with the summary (the suite's budget
# is 10 minutes on 2 cores; this says where the time goes).
timings=""
phase_name=""
phase_start=$SECONDS
phase() {
  if [ -n "$phase_name" ]; then timings="${timings}${phase_name} $((SECONDS - phase_start))s, "; fi
  phase_name="$1"
  phase_start=$SECONDS
  echo "== $1"
}

phase "system packages"
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-sentinel >/dev/null 2>&1 || need+=(redis-sentinel)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3 python3-venv)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing ${need[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

phase "cargo fmt --check"
cargo fmt --all -- --check
phase "cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
phase "cargo test (build)"
built="$(mktemp)"
set +e
cargo test --all-targets --locked --no-run --message-format=json-render-diagnostics >"$built"
build_status=$?
set -e
# The image's code in release and the fuzz build need no test to finish
# first: they go on in the background at the lowest CPU priority while the
# tests run (which mostly wait on the processes they start), and take
# whatever CPU the tests leave idle.
background_log="$(mktemp)"
(
  set +e
  nice -n 19 cargo build --release --locked --bin statehold
  echo "image build status $?"
  nice -n 19 ./scripts/fuzz.sh build
  echo "fuzz build status $?"
) >"$background_log" 2>&1 &
background=$!
phase "cargo test"
log="$(mktemp)"
# What `cargo test --all-targets --no-fail-fast` runs, two executables at a
# time (scripts/run_tests.py): every one runs, so a failure still prints
# the count.
set +e
python3 scripts/run_tests.py <"$built" 2>&1 | tee "$log"
test_status=${PIPESTATUS[0]}
set -e
rm -f "$built"
if [ "$build_status" -ne 0 ]; then test_status=1; fi
read -r passed failed < <(awk '/^test result:/ { for (i = 2; i <= NF; i++) {
  if ($i == "passed;") p += $(i - 1); if ($i == "failed;") f += $(i - 1) } } END { print p + 0, f + 0 }' "$log")
rm -f "$log"
# A test that does not compile is a failure too.
if [ "$build_status" -ne 0 ]; then failed=$((failed + 1)); fi

# The client helpers and example bots, against the statehold binary the
# cargo run just built (target/debug/statehold).
phase "python helper and examples"
# A venv whose interpreter moved (the tree was copied) is made anew.
if ! target/pyenv/bin/python -c '' >/dev/null 2>&1; then
  rm -rf target/pyenv
  python3 -m venv target/pyenv
fi
# An install that fails is reported and the tests below then fail and are
# counted: the summary line is printed whatever happens.
target/pyenv/bin/pip install -q --disable-pip-version-check -r clients/python/requirements-test.txt \
  || echo "== pip install failed"
# The helper as a user installs it (the example bots import it from there).
target/pyenv/bin/pip install -q --disable-pip-version-check --force-reinstall --no-deps ./clients/python \
  || echo "== pip install of the helper failed"
log="$(mktemp)"
set +e
PYTHONDONTWRITEBYTECODE=1 target/pyenv/bin/python -m pytest -q -p no:cacheprovider \
  clients/python/tests examples/fastapi-telegram-wizard examples/flask-whatsapp-bank \
  deploy/tests 2>&1 | tee "$log"
py_status=${PIPESTATUS[0]}
set -e
read -r p f < <(awk '/(passed|failed).* in [0-9.]+s/ { for (i = 2; i <= NF; i++) {
  if ($i ~ /^passed/) p += $(i - 1); if ($i ~ /^failed/) f += $(i - 1) } } END { print p + 0, f + 0 }' "$log")
rm -f "$log"
passed=$((passed + p)); failed=$((failed + f))
if [ "$py_status" -ne 0 ] && [ "$f" -eq 0 ]; then failed=$((failed + 1)); fi

phase "node helper and example"
mkdir -p target/node
(cd target/node && npm install --no-audit --no-fund --silent ../../clients/node express@5.3.0 grammy@1.46.0 @slack/bolt@5.1.0) \
  || echo "== npm install failed"
log="$(mktemp)"
set +e
# A test that hangs fails after 4 minutes instead of holding the run.
NODE_PATH="$PWD/target/node/node_modules" node --test --test-timeout=240000 clients/node/test/*.test.js \
  examples/express-webchat/test/*.test.js 2>&1 | tee "$log"
node_status=${PIPESTATUS[0]}
set -e
p=$(awk '/^# pass / { print $3 }' "$log"); f=$(awk '/^# fail / { print $3 }' "$log")
rm -f "$log"
passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0}))
if [ "$node_status" -ne 0 ] && [ "${f:-0}" -eq 0 ]; then failed=$((failed + 1)); fi

# The code the Dockerfile builds (tests/it/image.rs checks the recipe), in
# release: the image's `dist` profile is the same code with fat LTO, whose
# serial link cost CI 141 s more (651 s in all); and the fuzz targets over
# its dependencies: what of the background build is left.
phase "the image's code (cargo build --release --locked --bin statehold) and the fuzz build, the rest"
wait "$background" || true
cat "$background_log"
image_status=$(awk '/^image build status/ { print $4 }' "$background_log")
fuzz_build_status=$(awk '/^fuzz build status/ { print $4 }' "$background_log")
rm -f "$background_log"
image_status=${image_status:-1}
if [ "$image_status" -ne 0 ]; then failed=$((failed + 1)); fi
phase "fuzz (bounded)"
set +e
if [ "${fuzz_build_status:-1}" -eq 0 ]; then
  ./scripts/fuzz.sh run 15
  fuzz_status=$?
else
  echo "fuzz: the build failed"
  fuzz_status=1
fi
set -e
phase "done"
echo "phases: ${timings%, }; total $((SECONDS))s"
echo "tests: ${passed} passed, ${failed} failed"
if [ "$test_status" -ne 0 ] || [ "$py_status" -ne 0 ] || [ "$node_status" -ne 0 ] \
  || [ "$fuzz_status" -ne 0 ] || [ "$image_status" -ne 0 ]; then
  exit 1
fi
