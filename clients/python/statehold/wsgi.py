"""WSGI middleware (Flask, Django, any WSGI app)::

    app = Flask(__name__)
    app.wsgi_app = statehold.wsgi.StateholdMiddleware(app.wsgi_app)

``body_mode=True`` for ``contract.mode = "body"``.
"""

import io
from typing import Any, Callable, Iterable, List, Optional, Tuple

from . import state as _state
from .contract import BODY_FIELD, Incoming, put_member, take_member


class StateholdMiddleware:
    def __init__(self, app: Callable, body_mode: bool = False, body_field: str = BODY_FIELD):
        self.app = app
        self.body_mode = body_mode
        self.body_field = body_field

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        incoming = Incoming.from_headers(_EnvironHeaders(environ))
        if self.body_mode or incoming.state_in_body:
            incoming = incoming.with_body_member(self._take_member(environ))
        conversation, token = _state.begin(incoming)
        try:
            if not self.body_mode:
                def reporting_start(status: str, headers: List[Tuple[str, str]], exc_info=None):
                    return start_response(status, list(headers) + conversation.report_headers(),
                                          exc_info)

                # Consume the body inside the request's context: a lazily
                # iterated body still sees the conversation.
                return list(self.app(environ, reporting_start))
            captured: dict = {}

            def capturing_start(status: str, headers: List[Tuple[str, str]], exc_info=None):
                captured["status"], captured["headers"] = status, list(headers)
                return lambda data: None

            body = b"".join(self.app(environ, capturing_start))
            status, headers = captured["status"], captured["headers"]
            body, headers = self._with_member(body, headers, conversation)
            start_response(status, headers)
            return [body]
        finally:
            _state.end(token)

    def _take_member(self, environ: dict) -> Any:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        body = environ["wsgi.input"].read(length) if length > 0 else b""
        member, body = take_member(body, self.body_field)
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        return member

    def _with_member(self, body: bytes, headers: List[Tuple[str, str]],
                     conversation: "_state.Conversation") -> Tuple[bytes, List[Tuple[str, str]]]:
        member = conversation.report_member()
        if member is not None:
            with_member = put_member(body, member, self.body_field)
            if with_member is not None:
                body = with_member
            else:
                headers = headers + conversation.report_headers()
        headers = [(n, v) for n, v in headers if n.lower() != "content-length"]
        headers.append(("Content-Length", str(len(body))))
        return body, headers


class _EnvironHeaders:
    """Header lookup over a WSGI environ (``X-Statehold-Key`` is
    ``HTTP_X_STATEHOLD_KEY``)."""

    def __init__(self, environ: dict):
        self.environ = environ

    def get(self, name: str, default: Optional[str] = None) -> Optional[str]:
        return self.environ.get("HTTP_" + name.upper().replace("-", "_"), default)
