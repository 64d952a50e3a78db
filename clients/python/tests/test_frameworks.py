"""Each helper against the real statehold binary and a real framework app:
the app is killed (kill -9) mid-flow and restarted with an empty memory,
and the flow goes on where it was."""

import pytest

from harness import App, Statehold, post_json, tg_update

APPS = [
    ("fastapi_app.py", False),
    ("fastapi_app.py", True),
    ("flask_app.py", False),
    ("flask_app.py", True),
    ("aiohttp_app.py", False),
    ("aiohttp_app.py", True),
]


@pytest.mark.parametrize("script,body_mode", APPS,
                         ids=[f"{s[:-7]}-{'body' if b else 'header'}" for s, b in APPS])
def test_flow_survives_kill_9_of_the_app(tmp_path, script, body_mode):
    app = App(script, tmp_path, body_mode=body_mode)
    proxy = Statehold(tmp_path, app.port, mode="body" if body_mode else "header")
    try:
        say = lambda n, text: post_json(proxy.url + "/telegram", tg_update(n, 4242, text))  # noqa: E731
        status, headers, body = say(1, "/start")
        assert status == 200, body
        assert body["text"] == "Welcome! What's your name?"
        status, headers, body = say(2, "Ann")
        assert body["text"] == "Nice to meet you, Ann. Your email?"
        assert not any(h.startswith("x-statehold") for h in headers), headers
        assert "_statehold" not in body

        app = app.crash_and_restart()  # its memory is gone
        status, headers, body = say(3, "ann@example.com")
        assert status == 200, body
        assert body["text"] == "Registered Ann <ann@example.com>. Done!", body
        # The flow ended: the snapshot was cleared, the next message starts over.
        status, headers, body = say(4, "hello")
        assert body["text"] == "Welcome! What's your name?"
        assert proxy.metric('statehold_state_saves_total{result="ok"}') >= 2
        assert proxy.metric('statehold_unreported_total{route="tg"}') == 0
    finally:
        app.kill9()
        proxy.kill9()


def test_another_conversations_state_is_never_reached(tmp_path):
    app = App("flask_app.py", tmp_path)
    proxy = Statehold(tmp_path, app.port)
    try:
        say = lambda n, chat, text: post_json(proxy.url + "/telegram", tg_update(n, chat, text))  # noqa: E731
        say(1, 1, "/start")
        say(2, 1, "Ann")
        # Chat 2 starts fresh; chat 1 is where it was.
        assert say(3, 2, "Bob")[2]["text"] == "Welcome! What's your name?"
        assert say(4, 1, "a@example.com")[2]["text"] == "Registered Ann <a@example.com>. Done!"
    finally:
        app.kill9()
        proxy.kill9()


@pytest.mark.parametrize("script", ["aiohttp_app.py", "fastapi_app.py"])
def test_a_snapshot_too_large_for_a_header_travels_in_the_body(tmp_path, script):
    """Issue 20, item 11: header mode, a snapshot of ~20 KB as base64 (over
    aiohttp's 8190-byte header limit, under store.max_state_bytes). Before:
    every later request got 400 from aiohttp, /start included. Now the
    snapshot travels in the JSON body's member (X-Statehold-State-In: body)
    and the helpers read it there (aiohttp and ASGI middleware alike)."""
    app = App(script, tmp_path)
    proxy = Statehold(tmp_path, app.port)
    try:
        say = lambda n, text: post_json(proxy.url + "/telegram", tg_update(n, 4242, text))  # noqa: E731
        name = "Ann" + "n" * 15000
        assert say(1, "/start")[0] == 200
        status, _, body = say(2, name)
        assert status == 200, body
        assert body["text"].startswith("Nice to meet you, Annn")
        status, headers, body = say(3, "ann@example.com")
        assert status == 200, body
        assert body["text"] == f"Registered {name} <ann@example.com>. Done!"
        assert not any(h.startswith("x-statehold") for h in headers), headers
        assert proxy.metric('statehold_state_saves_total{result="rejected"}') == 0
    finally:
        app.kill9()
        proxy.kill9()
