#!/usr/bin/env python3
"""Runs the test executables `cargo test --no-run --message-format=json`
built (read on stdin), two at a time, the longest first, as `cargo test
--no-fail-fast` would one after another: most of the suite waits on the
processes it starts (failovers, TTLs, soaks) rather than computing, so two
run in about the time of one. Each executable's output is printed whole
when it ends. Exits 1 if any failed."""

import json
import os
import subprocess
import sys
import threading
import time

# Known to take longest; started first so the short ones fill the other slot.
SLOW_FIRST = ["soak", "sentinel", "cluster", "export", "replicas", "migration",
              "store_down", "store_conformance", "hostile", "deferred"]
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


def rank(path):
    name = os.path.basename(path).rsplit("-", 1)[0]
    return SLOW_FIRST.index(name) if name in SLOW_FIRST else len(SLOW_FIRST)


def main():
    todo = sorted(executables(sys.stdin), key=rank)
    lock = threading.Lock()
    failed = []

    def worker():
        while True:
            with lock:
                if not todo:
                    return
                exe = todo.pop(0)
            started = time.monotonic()
            run = subprocess.run([exe], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL)
            took = time.monotonic() - started
            with lock:
                print(f"     Running {os.path.relpath(exe)} ({took:.0f} s)", flush=True)
                sys.stdout.write(run.stdout.decode(errors="replace"))
                sys.stdout.flush()
                if run.returncode != 0:
                    failed.append(os.path.basename(exe))

    threads = [threading.Thread(target=worker) for _ in range(PARALLEL)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failed:
        print(f"error: test executables failed: {' '.join(failed)}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
