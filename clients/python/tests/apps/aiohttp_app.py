"""aiohttp behind statehold (aiohttp middleware)."""

import socket
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from aiohttp import web  # noqa: E402

import statehold  # noqa: E402
import statehold.aiohttp  # noqa: E402
import wizard  # noqa: E402

args = wizard.serve_args()
conversation_states = statehold.ConversationStates()  # was: {}


async def telegram(request):
    message = (await request.json())["message"]
    chat_id = message["chat"]["id"]
    reply = wizard.handle(conversation_states, chat_id, message.get("text", ""))
    return web.json_response({"method": "sendMessage", "chat_id": chat_id, "text": reply})


app = web.Application(middlewares=[statehold.aiohttp.middleware(body_mode=args.body_mode)])
app.router.add_post("/telegram", telegram)

if __name__ == "__main__":
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.listen(128)  # connections wait in the backlog until the server runs
    wizard.announce(sock.getsockname()[1])
    web.run_app(app, sock=sock, print=None)
