"""A WhatsApp Cloud API banking bot on Flask: INIT -> AUTH -> MENU ->
transfer, with each customer's stage in a dict. Replies go out through the
Graph API (``send``); the webhook answers 200 with what was sent.

    flask --app bot run --port 3000
"""

import statehold
from flask import Flask, jsonify, request

app = Flask(__name__)
app.wsgi_app = statehold.wsgi.StateholdMiddleware(app.wsgi_app)
conversation_states = statehold.ConversationStates()

PINS = {"14155550100": "2468"}  # the bank's records, for the example
BALANCES = {"14155550100": 1250}


def send(to, text):
    # A real bot POSTs to graph.facebook.com/v20.0/<phone id>/messages here.
    return {"to": to, "text": text}


def step(user, text, state):
    stage = state["stage"]
    if stage == "INIT":
        state["stage"] = "AUTH"
        return "Welcome to Example Bank. Enter your PIN."
    if stage == "AUTH":
        if text != PINS.get(user):
            state["tries"] = state.get("tries", 0) + 1
            return "Wrong PIN. Try again." if state["tries"] < 3 else "Locked. Call us."
        state["stage"] = "MENU"
        return "1: balance, 2: transfer"
    if stage == "MENU":
        if text == "1":
            return f"Balance: {BALANCES[user]} EUR. 1: balance, 2: transfer"
        if text == "2":
            state["stage"] = "AMOUNT"
            return "Amount?"
        return "1: balance, 2: transfer"
    if stage == "AMOUNT":
        if not text.isdigit() or not 0 < int(text) <= BALANCES[user]:
            return "An amount up to your balance, please."
        state["amount"] = int(text)
        state["stage"] = "RECIPIENT"
        return "Recipient IBAN?"
    if stage == "RECIPIENT":
        state["iban"] = text
        state["stage"] = "CONFIRM"
        return f"Send {state['amount']} EUR to {text}? yes/no"
    if stage == "CONFIRM":
        state["stage"] = "MENU"
        if text == "yes":
            BALANCES[user] -= state["amount"]
            return f"Sent {state['amount']} EUR to {state['iban']}. 1: balance, 2: transfer"
        return "Cancelled. 1: balance, 2: transfer"
    return "Session expired. Say hi to start again."


@app.post("/whatsapp")
def whatsapp():
    value = request.get_json()["entry"][0]["changes"][0]["value"]
    sent = []
    for message in value.get("messages", []):
        user = message["from"]
        text = message.get("text", {}).get("body", "").strip()
        state = conversation_states.setdefault(user, {"stage": "INIT"})
        sent.append(send(user, step(user, text, state)))
    return jsonify(sent=sent)
