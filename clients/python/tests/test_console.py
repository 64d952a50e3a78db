"""The operator's console (issue 24, first slice) in a real browser:
Debian's ``chromium`` driven by Playwright (``executable_path``: no browser
download), against the real statehold binary and the demo bot. Signs in
with a wrong then the right token, finds a conversation by its plain key,
reveals its snapshot, rolls it back through the button, sees the audit
trail name the rollback and the bot receive the rolled-back state, signs
out."""

import json
import shutil

import pytest

from harness import DemoBot, Statehold, get, post_json, tg_update

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")

CHAT = 1111111
STEPS = ["/start", "Ann", "ann@example.com"]


@pytest.fixture
def deployment(tmp_path):
    bot = DemoBot(tmp_path)
    routes = '[[route]]\npath = "/telegram"\nnamespace = "tg"\npreset = "telegram"\n'
    proxy = Statehold(tmp_path, bot.port, routes=routes, store_extra="history = 5\n",
                      extra='token = "console-token"\n[audit]\nmax_events = 1000\n')
    yield bot, proxy
    proxy.kill9()
    bot.kill9()


def test_the_console_finds_reveals_and_rolls_back_a_conversation(deployment):
    from playwright.sync_api import sync_playwright

    bot, proxy = deployment
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
