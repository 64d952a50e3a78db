"""Real processes on loopback for the client tests: the statehold binary and
framework apps, each on port 0 and read back, killed on exit."""

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
READY_WITHIN = 20.0


def statehold_bin():
    """This checkout's debug build, or ``STATEHOLD_BIN``."""
    path = os.environ.get("STATEHOLD_BIN") or str(REPO / "target" / "debug" / "statehold")
    if not Path(path).exists():
        raise RuntimeError(f"{path} missing: run `cargo build` first")
    return path


class Process:
    def __init__(self, args, log_path, stdout=None, env=None):
        self.args = args
        self.log_path = log_path
        self.log = open(log_path, "ab")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=stdout,
                                     stderr=self.log, env=env)

    def kill9(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def logs(self):
        return Path(self.log_path).read_text(errors="replace")


class App(Process):
    """A framework app from ``apps/``, started on ``port`` (0: any);
    ``extra`` arguments go to the script."""

    def __init__(self, script, tmp, port=0, body_mode=False, extra=(), env=None):
        self.script, self.tmp, self.body_mode, self.extra, self.env = script, tmp, body_mode, extra, env
        args = [sys.executable, str(Path(__file__).parent / "apps" / script), "--port", str(port)]
        if body_mode:
            args.append("--body-mode")
        args.extend(extra)
        super().__init__(args, str(Path(tmp) / (Path(script).name + ".log")),
                         stdout=subprocess.PIPE, env=env)
        line = self.proc.stdout.readline().decode()
        match = re.match(r"listening on (\d+)", line)
        if not match:
            self.kill9()
            raise RuntimeError(f"{script} did not start: {line!r}\n{self.logs()}")
        self.port = int(match.group(1))

    def crash_and_restart(self):
        """kill -9, then the same app on the same port: its memory is gone."""
        self.kill9()
        return App(self.script, self.tmp, port=self.port, body_mode=self.body_mode,
                   extra=self.extra, env=self.env)


def example_app(example_dir, app, kind, tmp):
    """An example bot from ``examples/`` served as it is."""
    return App("serve.py", tmp, extra=["--dir", str(example_dir), "--app", app, "--kind", kind])


_next_port = [10_000 + (os.getpid() % 97) * 123]


def free_port():
    """A port nothing listens on now (for an address an app must know
    before statehold starts: its admin listener, where late reports go).

    Taken below the kernel's ephemeral range, so that no outgoing
    connection can hold it by the time statehold binds it."""
    import socket

    for _ in range(12_000):
        port = 10_000 + (_next_port[0] - 10_000) % 12_000
        _next_port[0] += 1
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


class DemoBot(Process):
    """The demo registration bot (``statehold-demo-bot``), on any port."""

    def __init__(self, tmp):
        bin_path = Path(statehold_bin()).with_name("statehold-demo-bot")
        log = Path(tmp) / "demo-bot.log"
        super().__init__([str(bin_path), "--listen", "127.0.0.1:0"], str(log))
        wait_until(lambda: re.search(r"listening on 127\.0\.0\.1:(\d+)", self.logs()), "the demo bot")
        self.port = int(re.search(r"listening on 127\.0\.0\.1:(\d+)", self.logs()).group(1))


class Statehold(Process):
    def __init__(self, tmp, upstream_port, mode="header", routes=None, env=None, admin_port=0,
                 store_extra="", extra=""):
        routes = routes or (
            '[[route]]\npath = "/telegram"\nnamespace = "tg"\n'
            'key = "json:/message/chat/id"\ndedupe = "json:/update_id"\n'
        )
        config = Path(tmp) / "statehold.toml"
        config.write_text(
            f'[server]\nlisten = "127.0.0.1:0"\n'
            f'[upstream]\nurl = "http://127.0.0.1:{upstream_port}"\n'
            f'[store]\npath = "{Path(tmp) / "statehold.db"}"\n{store_extra}'
            f'[contract]\nmode = "{mode}"\n{routes}'
            f'[admin]\nlisten = "127.0.0.1:{admin_port}"\n{extra}'
        )
        super().__init__([statehold_bin(), "serve", "--config", str(config)],
                         str(Path(tmp) / "statehold.log"), env=env)
        self.url, self.admin = self._wait_serving()

    def _wait_serving(self):
        deadline = time.monotonic() + READY_WITHIN
        while time.monotonic() < deadline:
            match = re.search(r"statehold serving listen=(\S+) admin=(\S+)", self.logs())
            if match:
                url, admin = f"http://{match.group(1)}", f"http://{match.group(2)}"
                wait_until(lambda: get(admin + "/healthz")[0] == 200, "statehold /healthz")
                return url, admin
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise RuntimeError("statehold did not start:\n" + self.logs())

    def metric(self, series):
        for line in get(self.admin + "/metrics")[2].splitlines():
            if line.startswith(series + " "):
                return float(line.split()[-1])
        return 0.0


def wait_until(check, what):
    deadline = time.monotonic() + READY_WITHIN
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.02)
    raise RuntimeError(f"timed out waiting for {what}")


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


def post_json(url, body, headers=None):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST",
                                 headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read().decode()


def tg_update(update_id, chat, text):
    return {"update_id": update_id,
            "message": {"message_id": update_id, "chat": {"id": chat, "type": "private"},
                        "from": {"id": chat}, "text": text}}


def changed_lines(legacy, migrated):
    """The lines a migration adds or removes (a unified diff without context)."""
    import difflib

    diff = difflib.unified_diff(Path(legacy).read_text().splitlines(),
                                Path(migrated).read_text().splitlines(), lineterm="", n=0)
    return [line for line in diff if line[:1] in "+-" and not line.startswith(("+++", "---"))]
