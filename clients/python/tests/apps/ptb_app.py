"""python-telegram-bot (v21+) behind statehold, with PTB's custom-webhook
set-up (Starlette + uvicorn): the webhook puts the update on PTB's queue
and answers; PTB handles it later, in a ``block=False`` handler that works
for a while and answers through the Bot API. The statehold lines are
marked."""

import asyncio
import contextlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import uvicorn  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import JSONResponse, Response  # noqa: E402
from starlette.routing import Route  # noqa: E402
from telegram import Update  # noqa: E402
from telegram.ext import Application, ContextTypes, MessageHandler, filters  # noqa: E402

import fake_bot_api  # noqa: E402
import wizard  # noqa: E402
import statehold  # noqa: E402  (statehold)
import statehold.ptb  # noqa: E402  (statehold)

args = wizard.serve_args()
application = (Application.builder().token(fake_bot_api.TOKEN)
               .base_url(fake_bot_api.start() + "/bot").updater(None).build())
statehold.ptb.track(application)  # (statehold)
conversation_states = statehold.ConversationStates()  # (statehold) was: {}


async def on_message(update: Update, context: ContextTypes.DEFAULT_TYPE):
    await asyncio.sleep(args.work)  # the LLM thinks
    reply = wizard.handle(conversation_states, update.effective_chat.id, update.message.text or "", plan=True)
    await update.message.reply_text(reply)


application.add_handler(MessageHandler(filters.ALL, on_message, block=False))


async def telegram(request: Request):
    await application.update_queue.put(Update.de_json(await request.json(), application.bot))
    return Response()


async def sent(_request: Request):
    return JSONResponse(fake_bot_api.SENT)


@contextlib.asynccontextmanager
async def lifespan(_app):
    async with application:
        await application.start()
        yield
        await application.stop()


app = Starlette(routes=[Route("/telegram", telegram, methods=["POST"]), Route("/_sent", sent)],
                lifespan=lifespan)
app.add_middleware(statehold.asgi.StateholdMiddleware, body_mode=args.body_mode)  # (statehold)

if __name__ == "__main__":
    sock = wizard.bound_socket(args.port)
    wizard.announce(sock.getsockname()[1])
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
