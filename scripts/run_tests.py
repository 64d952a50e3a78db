#!/usr/bin/env python3
"""Runs the test executables `cargo test --no-run --message-format=json`
built (read on stdin), two jobs at a time, the longest first, as `cargo
test --no-fail-fast` would one after another: most of the suite waits on
the processes it starts (failovers, TTLs, soaks) rather than computing, so
two run in about the time of one. The integration tests are one executable
(`tests/it`); its slow modules are jobs of their own (a name filter each),
and the rest is one more job. Each job's output is printed whole when it
ends, with its wall time. Exits 1 if any failed."""

import json
import os
import subprocess
import sys
import threading
import time

# Modules of tests/it known to take longest, slowest first: each runs as its
# own job, started first, so the short ones fill the other slot.
SLOW_MODULES = ["soak", "fleet", "sentinel", "cluster", "replicas", "export", "store_down",
                "migration", "store_conformance", "deferred", "hostile"]
PARALLEL = int(os.environ.get("STATEHOLD_TEST_JOBS", "2"))


def executables(lines):
    seen = []
    for line in lines:
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if msg.get("reason") != "compiler-artifact" or not msg.get("executable"):
            continue
        if not msg.get("profile", {}).get("test"):
            continue
        if msg["executable"] not in seen:
            seen.append(msg["executable"])
    return seen


def jobs(exes):
    """(label, argv) for each job, the slow modules first."""
    slow, rest = [], []
    for exe in exes:
        name = os.path.basename(exe).rsplit("-", 1)[0]
        label = os.path.relpath(exe)
        if name != "it":
            rest.append((label, [exe]))
            continue
        for module in SLOW_MODULES:
            slow.append((f"{label} {module}::", [exe, f"{module}::"]))
        skips = [arg for module in SLOW_MODULES for arg in ("--skip", f"{module}::")]
        rest.insert(0, (f"{label} (the other modules)", [exe] + skips))
    return slow + rest


def main():
    todo = jobs(executables(sys.stdin))
    lock = threading.Lock()
    failed = []

    def worker():
        while True:
            with lock:
                if not todo:
                    return
                label, argv = todo.pop(0)
            started = time.monotonic()
            run = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL)
            took = time.monotonic() - started
            with lock:
                print(f"     Running {label} ({took:.0f} s)", flush=True)
                sys.stdout.write(run.stdout.decode(errors="replace"))
                sys.stdout.flush()
                if run.returncode != 0:
                    failed.append(label)

    threads = [threading.Thread(target=worker) for _ in range(PARALLEL)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failed:
        print(f"error: test jobs failed: {', '.join(failed)}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
