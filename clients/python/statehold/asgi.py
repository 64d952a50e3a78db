"""ASGI middleware (FastAPI, Starlette, any ASGI app)::

    app = FastAPI()
    app.add_middleware(statehold.asgi.StateholdMiddleware)          # header mode
    app.add_middleware(statehold.asgi.StateholdMiddleware, body_mode=True)

Work that goes on after the answer (``BackgroundTasks``, tasks the handler
started) defers the report: the answer says ``X-Statehold-Deferred: 1`` and
the report follows when the work is done (``statehold.deferred``).
"""

from typing import Any, Awaitable, Callable, Dict, List, Optional, Tuple

from . import state as _state
from .contract import BODY_FIELD, Incoming, put_member, take_member

Scope = Dict[str, Any]
Message = Dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class StateholdMiddleware:
    def __init__(self, app: Callable, body_mode: bool = False, body_field: str = BODY_FIELD):
        self.app = app
        self.body_mode = body_mode
        self.body_field = body_field

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        _state.track_work()
        headers = _headers(scope)
        incoming = Incoming.from_headers(headers)
        if self.body_mode or incoming.state_in_body:
            receive, member = await self._take_member(receive)
            incoming = incoming.with_body_member(member)
        conversation, token = _state.begin(incoming)
        try:
            if self.body_mode:
                await self.app(scope, receive, _BodyReporter(send, conversation, self.body_field))
            else:
                await self.app(scope, receive, _header_reporter(send, conversation))
        finally:
            _state.end(token)

    async def _take_member(self, receive: Receive) -> Tuple[Receive, Any]:
        """Reads the whole request body, removes statehold's member from a
        JSON object body, and replays the rest to the app."""
        chunks: List[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return _replay(b"".join(chunks), message), None
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        member, body = take_member(b"".join(chunks), self.body_field)
        return _replay(body, None), member


def _headers(scope: Scope) -> Dict[str, str]:
    out: Dict[str, str] = {}
    for name, value in scope.get("headers", []):
        out[name.decode("latin-1").lower()] = value.decode("latin-1")
    return _CaseInsensitive(out)


class _CaseInsensitive(dict):
    def get(self, name: str, default: Optional[str] = None) -> Optional[str]:  # type: ignore[override]
        return super().get(name.lower(), default)


def _replay(body: bytes, then: Optional[Message]) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        if then is not None:
            return then
        # After the body, an ASGI server's receive() waits for disconnect.
        return {"type": "http.disconnect"}

    return receive


def _header_reporter(send: Send, conversation: "_state.Conversation") -> Send:
    async def reporting_send(message: Message) -> None:
        if message["type"] == "http.response.start":
            extra = [(n.lower().encode("latin-1"), v.encode("latin-1"))
                     for n, v in conversation.report_headers()]
            message = dict(message, headers=list(message.get("headers", [])) + extra)
        await send(message)

    return reporting_send


class _BodyReporter:
    """Body mode: holds the response back to add the member to a JSON
    object body (and fix Content-Length); anything else passes as it is."""

    def __init__(self, send: Send, conversation: "_state.Conversation", field: str):
        self.send = send
        self.conversation = conversation
        self.field = field
        self.start: Optional[Message] = None
        self.chunks: List[bytes] = []

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.start = message
            return
        if message["type"] != "http.response.body" or self.start is None:
            await self.send(message)
            return
        self.chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        body = b"".join(self.chunks)
        headers = list(self.start.get("headers", []))
        member = self.conversation.report_member()
        if member is not None:
            body, headers = _with_member(body, headers, self.field, member, self.conversation)
        headers = [(n, v) for n, v in headers if n.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode("ascii")))
        await self.send(dict(self.start, headers=headers))
        await self.send({"type": "http.response.body", "body": body, "more_body": False})


def _with_member(body: bytes, headers: list, field: str, member: dict,
                 conversation: "_state.Conversation") -> Tuple[bytes, list]:
    with_member = put_member(body, member, field)
    if with_member is not None:
        return with_member, headers
    # Not a JSON object: report in headers instead (statehold reads both).
    extra = [(n.lower().encode("latin-1"), v.encode("latin-1"))
             for n, v in conversation.report_headers()]
    return body, headers + extra
