"""The banking bot behind statehold, which checks Meta's signature: INIT ->
AUTH -> MENU -> transfer, the bot killed (kill -9) mid-transfer, and the
transfer completes. Unsigned or mis-signed webhooks never reach the bot."""

import hashlib
import hmac
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "clients" / "python" / "tests"))

from harness import Statehold, changed_lines, example_app, post_json  # noqa: E402

SECRET = "meta-app-secret"
ROUTES = '[[route]]\npath = "/whatsapp"\nnamespace = "wa"\npreset = "whatsapp"\n' \
         '[route.verify]\nsecret_env = "META_APP_SECRET"\n'
USER = "14155550100"


def webhook(n, text):
    return {"object": "whatsapp_business_account", "entry": [{"id": "WABA", "changes": [{
        "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550001111", "phone_number_id": "PNID"},
            "contacts": [{"profile": {"name": "Ann"}, "wa_id": USER}],
            "messages": [{"from": USER, "id": f"wamid.{n}", "timestamp": "1700000000",
                          "type": "text", "text": {"body": text}}]}}]}]}


def signed(body, secret=SECRET):
    raw = json.dumps(body).encode()
    sig = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    return raw, {"X-Hub-Signature-256": "sha256=" + sig}


STEPS = [
    ("hi", "Welcome to Example Bank. Enter your PIN."),
    ("0000", "Wrong PIN. Try again."),
    ("2468", "1: balance, 2: transfer"),
    ("1", "Balance: 1250 EUR. 1: balance, 2: transfer"),
    ("2", "Amount?"),
    ("200", "Recipient IBAN?"),
    # kill -9 of the bot here
    ("PT50000201231234567890154", "Send 200 EUR to PT50000201231234567890154? yes/no"),
    ("yes", "Sent 200 EUR to PT50000201231234567890154. 1: balance, 2: transfer"),
]
KILL_AFTER = 6


def run_flow(tmp_path, directory):
    app = example_app(directory, "bot:app", "wsgi", tmp_path)
    proxy = Statehold(tmp_path, app.port, routes=ROUTES,
                      env={"META_APP_SECRET": SECRET, "PATH": "/usr/bin:/bin"})
    answers = []
    try:
        for i, (text, _) in enumerate(STEPS):
            if i == KILL_AFTER:
                app = app.crash_and_restart()
            raw, headers = signed(webhook(i, text))
            status, response_headers, answer = post_json(proxy.url + "/whatsapp", raw, headers)
            assert status == 200, answer
            assert not any(h.startswith("x-statehold") for h in response_headers)
            answers.append(answer["sent"][0]["text"])
        # A forged webhook (wrong secret) and an unsigned one never reach the bot.
        raw, headers = signed(webhook(100, "2"), secret="guess")
        assert post_json(proxy.url + "/whatsapp", raw, headers)[0] == 401
        assert post_json(proxy.url + "/whatsapp", webhook(101, "2"))[0] == 401
    finally:
        app.kill9()
        proxy.kill9()
    return answers


def test_the_migrated_bot_survives_kill_9_mid_transfer(tmp_path):
    assert run_flow(tmp_path, HERE) == [expected for _, expected in STEPS]


def test_the_legacy_bot_forgets_the_transfer(tmp_path):
    answers = run_flow(tmp_path, HERE / "legacy")
    # Its memory is gone: the customer is greeted as new, mid-transfer.
    assert answers[KILL_AFTER] == "Welcome to Example Bank. Enter your PIN."


def test_the_migration_is_at_most_five_changed_lines():
    changed = changed_lines(HERE / "legacy" / "bot.py", HERE / "bot.py")
    assert 0 < len(changed) <= 5, changed
