"""The operator's console (issue 24, first slice) in a real browser:
Debian's ``chromium`` driven by Playwright (``executable_path``: no browser
download), against the real statehold binary and the demo bot, on the
embedded store and on a redis-server the test starts with hashed keys and
sealed values (the operator types the plain key; no raw id reaches Redis). Signs in
with a wrong then the right token, finds a conversation by its plain key,
reveals its snapshot, rolls it back through the button, sees the audit
trail name the rollback and the bot receive the rolled-back state, signs
out."""

import json
import os
import shutil
import subprocess

import pytest

from harness import DemoBot, Process, Statehold, free_port, get, post_json, tg_update, wait_until

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")

CHAT = 1111111
STEPS = ["/start", "Ann", "ann@example.com"]


PRIVATE = (
    'key_secret_env = "SH_KEY_SECRET"\n'
    'encryption = { keys = [{ id = "k1", secret_env = "SH_KEY_K1" }] }\n'
)
SECRETS = {
    "SH_KEY_SECRET": "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=",
    "SH_KEY_K1": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
}


@pytest.fixture(params=["embedded", "redis-private"])
def deployment(request, tmp_path):
    bot = DemoBot(tmp_path)
    routes = '[[route]]\npath = "/telegram"\nnamespace = "tg"\npreset = "telegram"\n'
    store, env, redis = "history = 5\n", None, None
    if request.param == "redis-private":
        port = free_port()
        redis = Process(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                         "--appendonly", "no"], str(tmp_path / "redis.log"), stdout=subprocess.DEVNULL)
        wait_until(lambda: subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True,
                                          text=True).stdout.strip() == "PONG", "redis-server")
        store += f'backend = "redis"\nurl = "redis://127.0.0.1:{port}/0"\nkey_prefix = "console"\n' + PRIVATE
        env = dict(os.environ, **SECRETS)
    proxy = Statehold(tmp_path, bot.port, routes=routes, store_extra=store, env=env,
                      extra='token = "console-token"\n[audit]\nmax_events = 1000\n')
    yield bot, proxy, redis and port
    proxy.kill9()
    bot.kill9()
    if redis:
        redis.kill9()


def test_the_console_finds_reveals_and_rolls_back_a_conversation(deployment):
    from playwright.sync_api import sync_playwright

    bot, proxy, redis_port = deployment
    for n, text in enumerate(STEPS, start=1):
        status, _, _ = post_json(proxy.url + "/telegram", tg_update(n, CHAT, text))
        assert status == 200
    status, headers, _ = get(proxy.admin + "/ui/")
    assert status == 200
    assert "script-src 'self'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 360, "height": 800})
        page.goto(proxy.admin + "/ui/")
        page.get_by_label("Admin token").fill("not-the-token")
        page.get_by_role("button", name="Sign in").click()
        page.get_by_text("Invalid token").wait_for()
        page.get_by_label("Admin token").fill("console-token")
        page.get_by_role("button", name="Sign in").click()
        page.get_by_label("Conversation key").fill(f"tg:{CHAT}")
        page.get_by_role("button", name="Open").click()
        page.get_by_role("button", name="Roll back to v2").wait_for()
        page.get_by_role("button", name="Reveal state").click()
        page.locator("#state").wait_for()
        revealed = json.loads(page.locator("#state").inner_text())
        assert revealed["email"] == "ann@example.com"
        page.get_by_role("button", name="Diff").first.click()
        page.locator("#diff").wait_for()
        assert "email" in page.locator("#diff").inner_text()
        page.on("dialog", lambda dialog: dialog.accept())
        page.get_by_role("button", name="Roll back to v2").click()
        page.get_by_text("Rolled back: now v4").wait_for()
        page.get_by_text("rollback v3 → v4").wait_for()
        assert "store up" in page.locator("#glance").inner_text()
        page.get_by_role("button", name="Sign out").click()
        page.get_by_label("Admin token").wait_for()
        assert page.evaluate("sessionStorage.length") == 0
        browser.close()
    # The bot gets the rolled-back state: asked for the email again.
    status, _, answer = post_json(proxy.url + "/telegram", tg_update(4, CHAT, "ann@example.com"))
    assert status == 200
    assert answer["text"] == "Which plan: basic or pro?"
    if redis_port:
        # The operator typed the plain key; Redis holds only hashed names
        # and sealed values.
        dump = subprocess.run(["redis-cli", "-p", str(redis_port), "--no-raw", "keys", "*"],
                              capture_output=True, text=True).stdout
        assert dump.strip() and str(CHAT) not in dump, dump
        cli = ["redis-cli", "-p", str(redis_port), "--no-raw"]
        for name in subprocess.run(cli[:-1] + ["--scan"], capture_output=True, text=True).stdout.split():
            kind = subprocess.run(cli + ["type", name], capture_output=True, text=True).stdout.strip()
            if kind == "hash":
                values = subprocess.run(cli + ["hgetall", name], capture_output=True, text=True).stdout
                assert "ann@example.com" not in values, name
