"""aiohttp middleware::

    app = web.Application(middlewares=[statehold.aiohttp.middleware()])

``middleware(body_mode=True)`` for ``contract.mode = "body"``. In header
mode a snapshot too large for a header comes in the body's member
(``X-Statehold-State-In: body``) and is read from there. Tasks the
handler starts (aiogram's ``handle_in_background=True``) defer the report
until they are done (``statehold.deferred``).
"""

from typing import Awaitable, Callable

from . import state as _state
from .contract import BODY_FIELD, Incoming, put_member, take_member


def middleware(body_mode: bool = False, body_field: str = BODY_FIELD) -> Callable:
    from aiohttp import web

    @web.middleware
    async def statehold_middleware(request: "web.Request", handler: Callable[..., Awaitable]):
        _state.track_work()
        incoming = Incoming.from_headers(request.headers)
        if body_mode or incoming.state_in_body:
            # aiohttp caches the body: the handler's json() still works, and
            # still shows statehold's member (ignore it).
            member, _ = take_member(await request.read(), body_field)
            incoming = incoming.with_body_member(member)
        conversation, token = _state.begin(incoming)
        try:
            response = await handler(request)
            member = conversation.report_member() if body_mode else None
            body = getattr(response, "body", None)
            if member is not None and isinstance(body, (bytes, bytearray)):
                with_member = put_member(bytes(body), member, body_field)
                if with_member is not None:
                    response.body = with_member
                    return response
            for name, value in conversation.report_headers():
                response.headers[name] = value
            return response
        finally:
            _state.end(token)

    return statehold_middleware

