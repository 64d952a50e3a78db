"""aiohttp middleware::

    app = web.Application(middlewares=[statehold.aiohttp.middleware()])

``middleware(body_mode=True)`` for ``contract.mode = "body"``.
"""

import json
from typing import Any, Awaitable, Callable

from . import state as _state
from .contract import BODY_FIELD, Incoming


def middleware(body_mode: bool = False, body_field: str = BODY_FIELD) -> Callable:
    from aiohttp import web

    @web.middleware
    async def statehold_middleware(request: "web.Request", handler: Callable[..., Awaitable]):
        incoming = Incoming.from_headers(request.headers)
        if body_mode:
            # aiohttp caches the body: the handler's json() still works, and
            # still shows statehold's member (ignore it).
            member = _member(await request.read(), body_field)
            incoming = incoming.with_body_member(member)
        conversation, token = _state.begin(incoming)
        try:
            response = await handler(request)
            if body_mode and isinstance(response, web.Response) and response.body is not None:
                member = conversation.report_member()
                if member is not None:
                    try:
                        parsed = json.loads(response.body)
                    except (ValueError, TypeError):
                        parsed = None
                    if isinstance(parsed, dict):
                        parsed[body_field] = member
                        response.body = json.dumps(parsed, separators=(",", ":"),
                                                   ensure_ascii=False).encode("utf-8")
                        return response
            for name, value in conversation.report_headers():
                response.headers[name] = value
            return response
        finally:
            _state.end(token)

    return statehold_middleware


def _member(raw: bytes, field: str) -> Any:
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        return None
    return parsed.get(field) if isinstance(parsed, dict) else None
