"""FastAPI answering first and handling the update in ``BackgroundTasks``
(after the response left), behind statehold. The statehold lines are
marked."""

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import uvicorn  # noqa: E402
from fastapi import BackgroundTasks, FastAPI, Request  # noqa: E402

import wizard  # noqa: E402
import statehold  # noqa: E402  (statehold)

args = wizard.serve_args()
app = FastAPI()
app.add_middleware(statehold.asgi.StateholdMiddleware, body_mode=args.body_mode)  # (statehold)
conversation_states = statehold.ConversationStates()  # (statehold) was: {}
SENT = []


async def process(update: dict):
    await asyncio.sleep(args.work)  # the LLM thinks
    message = update["message"]
    chat_id = message["chat"]["id"]
    reply = wizard.handle(conversation_states, chat_id, message.get("text", ""), plan=True)
    SENT.append({"chat_id": chat_id, "text": reply})  # sendMessage, in real life


@app.post("/telegram")
async def telegram(request: Request, background_tasks: BackgroundTasks):
    background_tasks.add_task(process, await request.json())
    return {"ok": True}


@app.get("/_sent")
async def sent():
    return SENT


if __name__ == "__main__":
    sock = wizard.bound_socket(args.port)
    wizard.announce(sock.getsockname()[1])
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
