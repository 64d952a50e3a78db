"""aiogram 3 at its defaults behind statehold: ``SimpleRequestHandler``
answers the webhook at once (``handle_in_background=True``) and the
handler works afterwards (an LLM call), then answers through the Bot API.
The statehold lines are marked."""

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from aiogram import Bot, Dispatcher  # noqa: E402
from aiogram.client.session.aiohttp import AiohttpSession  # noqa: E402
from aiogram.client.telegram import TelegramAPIServer  # noqa: E402
from aiogram.types import Message  # noqa: E402
from aiogram.webhook.aiohttp_server import SimpleRequestHandler  # noqa: E402
from aiohttp import web  # noqa: E402

import fake_bot_api  # noqa: E402
import wizard  # noqa: E402
import statehold  # noqa: E402  (statehold)
import statehold.aiohttp  # noqa: E402  (statehold)

args = wizard.serve_args()
api = TelegramAPIServer.from_base(fake_bot_api.start())
bot = Bot(fake_bot_api.TOKEN, session=AiohttpSession(api=api))
dp = Dispatcher()
conversation_states = statehold.ConversationStates()  # (statehold) was: {}


@dp.message()
async def on_message(message: Message):
    await asyncio.sleep(args.work)  # the LLM thinks
    reply = wizard.handle(conversation_states, message.chat.id, message.text or "", plan=True)
    await message.answer(reply)


async def sent(_request):
    return web.json_response(fake_bot_api.SENT)


app = web.Application(middlewares=[statehold.aiohttp.middleware(body_mode=args.body_mode)])  # (statehold)
SimpleRequestHandler(dispatcher=dp, bot=bot).register(app, path="/telegram")
app.router.add_get("/_sent", sent)

if __name__ == "__main__":
    sock = wizard.bound_socket(args.port)
    wizard.announce(sock.getsockname()[1])
    web.run_app(app, sock=sock, print=None)
