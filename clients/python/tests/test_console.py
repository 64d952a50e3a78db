"""The operator's console (issue 24) in a real browser:
Debian's ``chromium`` driven by Playwright (``executable_path``: no browser
download), against the real statehold binary and the demo bot, on the
embedded store and on a redis-server the test starts with hashed keys and
sealed values (the operator types the plain key; no raw id reaches Redis). Signs in
(keyboard only) with a wrong then the right token, opens a conversation
from the recent list and by its plain key, sees its status and lifetime
but no value until Reveal state, reveals and diffs (each a `view` in the
trail), rolls it back through the button (the trail names it, the bot
receives the rolled-back state), clears it and sees a rollback refused
with the API's reason, checks that every control has a name and the page
fits 360 px, no CSP violation, signs out."""

import json
import os
import shutil
import subprocess
import urllib.request

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


def accessible(page):
    """Every control has a label or an accessible name, and the page is
    readable at 360 px without scrolling sideways."""
    unnamed = page.evaluate("""() => [...document.querySelectorAll('input, button')]
        .filter((e) => e.offsetParent !== null)
        .filter((e) => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim())
        .map((e) => e.outerHTML)""")
    assert unnamed == [], unnamed
    assert page.evaluate("document.documentElement.scrollWidth") <= 360


def shot(page, name):
    """Screenshots for docs/console.md, only when asked for
    (STATEHOLD_CONSOLE_SHOTS=<dir>): a test run writes no tracked file."""
    where = os.environ.get("STATEHOLD_CONSOLE_SHOTS")
    if where:
        page.screenshot(path=os.path.join(where, f"{name}-360.png"), full_page=True)
        page.set_viewport_size({"width": 1100, "height": 800})
        page.screenshot(path=os.path.join(where, f"{name}.png"), full_page=True)
        page.set_viewport_size({"width": 360, "height": 800})


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
    assert "set-cookie" not in {k.lower() for k in headers}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 360, "height": 800})
        violations = []
        page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
        page.goto(proxy.admin + "/ui/")
        # Keyboard: the token field is reached with Tab.
        for _ in range(10):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.id") == "token":
                break
        assert page.evaluate("document.activeElement.id") == "token"
        page.keyboard.type("not-the-token")
        page.keyboard.press("Enter")
        page.get_by_text("Invalid token").wait_for()
        assert page.locator("#sign-in-error").inner_text() == "Invalid token"
        shot(page, "sign-in")
        page.get_by_label("Admin token").fill("console-token")
        page.get_by_role("button", name="Sign in").click()
        # The recent conversations, from the trail: the stored key (hashed
        # with key_secret) opens the conversation.
        recent = page.locator("#recent button").first
        recent.wait_for()
        listed = recent.inner_text()
        assert listed == f"tg:{CHAT}" if not redis_port else listed.startswith("tg#:")
        accessible(page)
        recent.click()
        page.get_by_role("button", name="Roll back to v2").wait_for()
        # And the plain key, as the bot sees it.
        page.get_by_label("Conversation key").fill(f"tg:{CHAT}")
        page.get_by_role("button", name="Open").click()
        page.get_by_role("button", name="Roll back to v2").wait_for()
        facts = page.locator("#facts").inner_text()
        assert "stored" in facts and "ann@example.com" not in facts, facts
        assert "Lifetime left\n23 h 59 min" in facts, f"a lifetime left (ttl 24 h): {facts}"
        assert "Status\nstored" in facts
        assert page.locator("#state").is_hidden(), "nothing shown before Reveal state"
        page.get_by_role("button", name="Reveal state").click()
        page.locator("#state").wait_for()
        revealed = json.loads(page.locator("#state").inner_text())
        assert revealed["email"] == "ann@example.com"
        page.get_by_role("button", name="Diff").first.click()
        page.locator("#diff").wait_for()
        assert "+ email: \"ann@example.com\"" in page.locator("#diff").inner_text()
        page.get_by_text("view v3 → v3").first.wait_for()
        assert page.get_by_text("view v3 → v3").count() == 2, "the reveal and the diff, each audited"
        accessible(page)
        shot(page, "conversation")
        page.on("dialog", lambda dialog: dialog.accept())
        page.get_by_role("button", name="Roll back to v2").click()
        page.get_by_text("Rolled back: now v4").wait_for()
        page.get_by_text("rollback v3 → v4").wait_for()
        # The bot gets the rolled-back state: asked for the email again.
        status, _, answer = post_json(proxy.url + "/telegram", tg_update(4, CHAT, "ann@example.com"))
        assert status == 200
        assert answer["text"] == "Which plan: basic or pro?"
        # Clear, then a rollback is refused with the API's reason.
        page.get_by_role("button", name="Clear").click()
        page.get_by_text("Cleared: now v6").wait_for()
        assert "cleared" in page.locator("#facts").inner_text()
        page.get_by_role("button", name="Roll back to v2").click()
        page.get_by_text("Refused: the conversation was cleared since").wait_for()
        shot(page, "after-clear")
        # A value that is markup is shown as text, never run.
        hostile = '<img src=x onerror="window.pwned=1">'
        put = urllib.request.Request(proxy.admin + "/v1/state/tg/2222", method="PUT",
                                     data=json.dumps({"name": hostile}).encode(),
                                     headers={"authorization": "Bearer console-token"})
        urllib.request.urlopen(put, timeout=10).close()
        page.get_by_label("Conversation key").fill("tg:2222")
        page.get_by_role("button", name="Open").click()
        page.get_by_role("heading", name="tg:2222").wait_for()
        page.locator("#reveal:enabled").wait_for()
        page.get_by_role("button", name="Reveal state").click()
        page.get_by_text("onerror").wait_for()
        assert json.loads(page.locator("#state").inner_text())["name"] == hostile
        assert page.locator("main img").count() == 0
        assert page.evaluate("window.pwned === undefined")
        glance = page.locator("#glance")
        # The chart: two samples of /metrics 5 s apart make the first rates.
        page.locator("#legend li").first.wait_for(timeout=15000)
        assert "/s" in page.locator("#legend").inner_text()
        assert "store up" in glance.inner_text()
        shot(page, "markup-as-text")
        page.get_by_role("button", name="Sign out").click()
        page.get_by_label("Admin token").wait_for()
        assert page.evaluate("sessionStorage.length") == 0
        assert violations == [], violations
        browser.close()
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
