"""A Telegram registration wizard on FastAPI, as many are written: the flow
lives in a dict, and a restart, a crash or a second replica loses it.

    uvicorn bot:app --port 3000
"""

import re

from fastapi import FastAPI, Request

app = FastAPI()
conversation_states = {}

STEPS = ["name", "age", "email", "phone", "city", "photo", "pin", "pin_again", "plan", "confirm"]
QUESTIONS = {
    "name": "Welcome! What's your full name?",
    "age": "How old are you?",
    "email": "Your email?",
    "phone": "Your phone number?",
    "city": "Which city do you live in?",
    "photo": "Send a photo for your profile.",
    "pin": "Choose a 4-digit PIN.",
    "pin_again": "Type the PIN again.",
    "plan": "Which plan: basic or pro?",
    "confirm": "Type yes to confirm.",
}


def reply(chat_id, text):
    # Telegram accepts a method call as the webhook's answer.
    return {"method": "sendMessage", "chat_id": chat_id, "text": text}


def check(step, message, state):
    """The answer to ``step``, or an error text."""
    text = (message.get("text") or "").strip()
    if step == "photo":
        photos = message.get("photo") or []
        return (photos[-1]["file_id"], None) if photos else (None, "That is not a photo.")
    if step == "age":
        return (int(text), None) if text.isdigit() and 13 <= int(text) <= 120 else (None, "A number, please.")
    if step == "email":
        return (text, None) if re.fullmatch(r"[^@\s]+@[^@\s]+\.\w+", text) else (None, "That is not an email.")
    if step in ("pin", "pin_again"):
        if not re.fullmatch(r"\d{4}", text):
            return None, "Four digits, please."
        if step == "pin_again" and text != state["pin"]:
            return None, "The PINs differ. Type the PIN again."
        return text, None
    if step == "plan":
        return (text, None) if text in ("basic", "pro") else (None, "basic or pro?")
    if step == "confirm":
        return (True, None) if text.lower() == "yes" else (None, "Type yes to confirm.")
    return (text, None) if text else (None, "Please answer.")


@app.post("/telegram")
async def telegram(request: Request):
    update = await request.json()
    message = update.get("message") or {}
    chat_id = message.get("chat", {}).get("id")
    if chat_id is None:
        return {}
    if message.get("text") == "/start":
        conversation_states[chat_id] = {"step": "name"}
        return reply(chat_id, QUESTIONS["name"])
    state = conversation_states.get(chat_id)
    if state is None:
        return reply(chat_id, "Session expired. Send /start to begin again.")
    step = state["step"]
    value, error = check(step, message, state)
    if error:
        return reply(chat_id, error)
    state[step] = value
    following = STEPS[STEPS.index(step) + 1] if step != "confirm" else None
    if following is None:
        del conversation_states[chat_id]
        return reply(chat_id, f"Registered {state['name']} ({state['plan']}). Done!")
    state["step"] = following
    return reply(chat_id, QUESTIONS[following])
