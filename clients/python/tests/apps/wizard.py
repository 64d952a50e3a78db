"""The flow of a legacy registration bot, written against a plain dict.

The apps in this folder serve it from FastAPI, Flask and aiohttp. Each
passes ``statehold.ConversationStates()`` where the legacy bot had
``conversation_states = {}``: the flow code itself is unchanged.
"""


def handle(conversation_states, user_id, text, plan=False):
    """``plan=True``: a fourth step (the plan) after the email, for the
    bots that answer first and work afterwards (``test_deferred.py``)."""
    state = conversation_states.get(user_id)
    if text == "/start" or state is None:
        conversation_states[user_id] = {"step": "name"}
        return "Welcome! What's your name?"
    if state["step"] == "name":
        state["name"] = text
        state["step"] = "email"
        return f"Nice to meet you, {text}. Your email?"
    if state["step"] == "email" and plan:
        state["email"] = text
        state["step"] = "plan"
        return "Which plan: basic or pro?"
    if state["step"] == "email":
        name = state["name"]
        del conversation_states[user_id]
        return f"Registered {name} <{text}>. Done!"
    if state["step"] == "plan":
        name, email = state["name"], state["email"]
        del conversation_states[user_id]
        return f"Registered {name} <{email}> on the {text} plan. Done!"
    return "Session expired"


def serve_args():
    """``--port N`` (0: any free port), ``--body-mode``, and ``--work S``
    (seconds a handler works after the answer left, like an LLM call, for
    the bots that answer first)."""
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--body-mode", action="store_true")
    parser.add_argument("--work", type=float, default=0.3)
    return parser.parse_args()


def bound_socket(port):
    """A listening socket on ``port``: connections wait in the backlog until
    the server runs."""
    import socket

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    return sock


def announce(port):
    # The harness reads this line to learn the bound port.
    print(f"listening on {port}", flush=True)
