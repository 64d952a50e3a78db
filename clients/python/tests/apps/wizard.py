"""The flow of a legacy registration bot, written against a plain dict.

The apps in this folder serve it from FastAPI, Flask and aiohttp. Each
passes ``statehold.ConversationStates()`` where the legacy bot had
``conversation_states = {}``: the flow code itself is unchanged.
"""


def handle(conversation_states, user_id, text):
    state = conversation_states.get(user_id)
    if text == "/start" or state is None:
        conversation_states[user_id] = {"step": "name"}
        return "Welcome! What's your name?"
    if state["step"] == "name":
        state["name"] = text
        state["step"] = "email"
        return f"Nice to meet you, {text}. Your email?"
    if state["step"] == "email":
        name = state["name"]
        del conversation_states[user_id]
        return f"Registered {name} <{text}>. Done!"
    return "Session expired"


def serve_args():
    """``--port N`` (0: any free port) and ``--body-mode``."""
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--body-mode", action="store_true")
    return parser.parse_args()


def announce(port):
    # The harness reads this line to learn the bound port.
    print(f"listening on {port}", flush=True)
