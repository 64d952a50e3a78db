"""The wizard behind statehold: ten steps with a photo and a PIN, the bot
killed (kill -9) mid-flow, and the flow carries on. The same flow against
the legacy bot shows what users got before: "Session expired"."""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "clients" / "python" / "tests"))

from harness import Statehold, changed_lines, example_app, post_json  # noqa: E402

SECRET = "wizard-secret-token"
ROUTES = '[[route]]\npath = "/telegram"\nnamespace = "tg"\npreset = "telegram"\n' \
         '[route.verify]\nsecret_env = "TELEGRAM_SECRET_TOKEN"\n'
CHAT = 777001


def update(n, text=None, photo=None):
    message = {"message_id": n, "chat": {"id": CHAT, "type": "private"}, "from": {"id": CHAT}}
    if photo:
        message["photo"] = [{"file_id": photo + "-small", "width": 90}, {"file_id": photo, "width": 800}]
    else:
        message["text"] = text
    return {"update_id": 5000 + n, "message": message}


STEPS = [
    (update(1, "/start"), "Welcome! What's your full name?"),
    (update(2, "Ann Lee"), "How old are you?"),
    (update(3, "thirty"), "A number, please."),
    (update(4, "31"), "Your email?"),
    (update(5, "ann@example.com"), "Your phone number?"),
    (update(6, "+14155550100"), "Which city do you live in?"),
    (update(7, "Lisbon"), "Send a photo for your profile."),
    (update(8, photo="AgACAgIAAxkBAAIB"), "Choose a 4-digit PIN."),
    # kill -9 of the bot here
    (update(9, "4321"), "Type the PIN again."),
    (update(10, "4320"), "The PINs differ. Type the PIN again."),
    (update(11, "4321"), "Which plan: basic or pro?"),
    (update(12, "pro"), "Type yes to confirm."),
    (update(13, "yes"), "Registered Ann Lee (pro). Done!"),
]
KILL_AFTER = 8


def run_flow(tmp_path, directory):
    app = example_app(directory, "bot:app", "asgi", tmp_path)
    proxy = Statehold(tmp_path, app.port, routes=ROUTES,
                      env={"TELEGRAM_SECRET_TOKEN": SECRET, "PATH": "/usr/bin:/bin"})
    answers = []
    try:
        for i, (body, _) in enumerate(STEPS):
            if i == KILL_AFTER:
                app = app.crash_and_restart()
            status, headers, answer = post_json(proxy.url + "/telegram", body,
                                                {"X-Telegram-Bot-Api-Secret-Token": SECRET})
            assert status == 200, answer
            assert not any(h.startswith("x-statehold") for h in headers)
            answers.append(answer["text"])
        # A forged update (no secret token) never reaches the bot.
        status, _, _ = post_json(proxy.url + "/telegram", update(99, "/start"))
        assert status == 401
    finally:
        app.kill9()
        proxy.kill9()
    return answers


def test_the_migrated_wizard_survives_kill_9_mid_flow(tmp_path):
    assert run_flow(tmp_path, HERE) == [expected for _, expected in STEPS]


def test_the_legacy_wizard_loses_the_flow(tmp_path):
    answers = run_flow(tmp_path, HERE / "legacy")
    assert answers[KILL_AFTER] == "Session expired. Send /start to begin again."


def test_the_migration_is_at_most_five_changed_lines():
    changed = changed_lines(HERE / "legacy" / "bot.py", HERE / "bot.py")
    assert 0 < len(changed) <= 5, changed
