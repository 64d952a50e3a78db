"""A four-step registration flow against a plain dict, for the bots that
answer first and work afterwards (aiogram, python-telegram-bot, FastAPI
background tasks): /start, name, email, plan."""

import argparse
import socket


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
        state["email"] = text
        state["step"] = "plan"
        return "Which plan: basic or pro?"
    name, email = state["name"], state["email"]
    del conversation_states[user_id]
    return f"Registered {name} <{email}> on the {text} plan. Done!"


def serve_args():
    """``--port N`` (0: any), ``--body-mode``, ``--work S`` (seconds each
    update's handler works after the answer left, like an LLM call)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--body-mode", action="store_true")
    parser.add_argument("--work", type=float, default=0.3)
    return parser.parse_args()


def bound_socket(port):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)  # connections wait in the backlog until the server runs
    return sock


def announce(port):
    print(f"listening on {port}", flush=True)
