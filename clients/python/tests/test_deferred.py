"""Bots that answer first and work afterwards, at their frameworks'
defaults, through the helper (issue 19): aiogram 3
(``handle_in_background=True``), python-telegram-bot (custom webhook,
update queue, ``block=False`` handler) and FastAPI ``BackgroundTasks``.
Each handler works 0.3 s after the webhook was answered; the helper
defers the report and posts it when the work is done. A four-step flow
survives kill -9 of the bot mid-flow, and no report is lost."""

import json
import os
from pathlib import Path

import pytest

from harness import App, Statehold, free_port, get, post_json, wait_until

APPS = [
    ("aiogram_app.py", False),
    ("aiogram_app.py", True),
    ("ptb_app.py", False),
    ("fastapi_background_app.py", False),
    ("fastapi_background_app.py", True),
]
STEPS = [
    ("/start", "Welcome! What's your name?"),
    ("Ann", "Nice to meet you, Ann. Your email?"),
    ("ann@example.com", "Which plan: basic or pro?"),
    ("pro", "Registered Ann <ann@example.com> on the pro plan. Done!"),
]


def tg_update(update_id, chat, text):
    """A whole Telegram update, as the frameworks validate it."""
    user = {"id": chat, "is_bot": False, "first_name": "Ann"}
    return {"update_id": update_id,
            "message": {"message_id": update_id, "date": 1700000000 + update_id,
                        "chat": {"id": chat, "type": "private"}, "from": user, "text": text}}


def reports(proxy, result):
    return proxy.metric(f'statehold_deferred_reports_total{{route="tg",result="{result}"}}')


def sent(app):
    return [m["text"] for m in json.loads(get(f"http://127.0.0.1:{app.port}/_sent")[2])]


@pytest.mark.parametrize("script,body_mode", APPS,
                         ids=[f"{s[:-7]}-{'body' if b else 'header'}" for s, b in APPS])
def test_an_answer_first_bot_keeps_its_flow_across_kill_9(tmp_path, script, body_mode):
    admin = free_port()
    env = dict(os.environ, STATEHOLD_REPORT_URL=f"http://127.0.0.1:{admin}")
    app = App(script, tmp_path, body_mode=body_mode, env=env)
    proxy = Statehold(tmp_path, app.port, mode="body" if body_mode else "header", admin_port=admin)
    try:
        for n, (text, expected) in enumerate(STEPS, start=1):
            status, headers, body = post_json(proxy.url + "/telegram", tg_update(n, 4242, text))
            assert status == 200, body
            assert not any(h.startswith("x-statehold") for h in headers), headers
            assert "_statehold" not in json.dumps(body or {})
            settled = lambda: reports(proxy, "saved") + reports(proxy, "cleared") == n  # noqa: E731
            wait_until(settled, f"the late report of step {n}")
            wait_until(lambda: expected in sent(app), f"the bot's answer to step {n}")
            if n == 2:
                app = app.crash_and_restart()  # mid-flow: its memory is gone
        assert reports(proxy, "cleared") == 1
        assert reports(proxy, "timeout") == 0
        assert proxy.metric('statehold_unreported_total{route="tg"}') == 0
        assert "lost" not in app.logs(), app.logs()
    finally:
        app.kill9()
        proxy.kill9()


def test_a_change_after_an_undeferred_answer_is_logged_once(tmp_path):
    """Without a turn token (an older statehold, or none in front), a
    change after the answer left cannot be reported: an error names the
    guide, once per conversation."""
    app = App("fastapi_background_app.py", tmp_path)
    try:
        url = f"http://127.0.0.1:{app.port}/telegram"
        headers = {"x-statehold-key": "tg:7", "x-statehold-version": "0", "x-statehold-status": "new"}
        for n, text in enumerate(["/start", "Ann", "x@example.com"], start=1):
            status, answer, _ = post_json(url, tg_update(n, 7, text), headers)
            assert status == 200 and "x-statehold-deferred" not in answer
        wait_until(lambda: len(json.loads(get(f"http://127.0.0.1:{app.port}/_sent")[2])) == 3,
                   "the background work")
        wait_until(lambda: "answer-first-work-later" in app.logs(), "the error")
        assert app.logs().count("answer-first-work-later") == 1, app.logs()
    finally:
        app.kill9()


@pytest.mark.parametrize("script", ["aiogram_app.py", "ptb_app.py", "fastapi_background_app.py"])
def test_adopting_takes_at_most_five_lines(script):
    lines = Path(__file__).parent.joinpath("apps", script).read_text().splitlines()
    marked = [line for line in lines if "(statehold)" in line]
    assert 1 <= len(marked) <= 5, marked
