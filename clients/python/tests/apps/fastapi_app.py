"""FastAPI + uvicorn behind statehold (ASGI middleware)."""

import socket
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the statehold package
sys.path.insert(0, str(Path(__file__).resolve().parent))

import uvicorn  # noqa: E402
from fastapi import FastAPI, Request  # noqa: E402

import statehold  # noqa: E402
import wizard  # noqa: E402

args = wizard.serve_args()
app = FastAPI()
app.add_middleware(statehold.asgi.StateholdMiddleware, body_mode=args.body_mode)
conversation_states = statehold.ConversationStates()  # was: {}


@app.post("/telegram")
async def telegram(request: Request):
    update = await request.json()
    message = update["message"]
    chat_id = message["chat"]["id"]
    reply = wizard.handle(conversation_states, chat_id, message.get("text", ""))
    return {"method": "sendMessage", "chat_id": chat_id, "text": reply}


if __name__ == "__main__":
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.listen(128)  # connections wait in the backlog until the server runs
    wizard.announce(sock.getsockname()[1])
    config = uvicorn.Config(app, log_level="warning")
    uvicorn.Server(config).run(sockets=[sock])
