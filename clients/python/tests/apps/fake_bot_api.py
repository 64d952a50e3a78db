"""A stand-in for the Telegram Bot API on loopback (no network here): the
frameworks' bots send their messages to it, and the tests read them back
from ``SENT`` (served by each app as ``GET /_sent``)."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SENT = []
TOKEN = "123456:TEST-token"
ME = {"id": 123456, "is_bot": True, "first_name": "Test", "username": "test_bot",
      "can_join_groups": True, "can_read_all_group_messages": False,
      "supports_inline_queries": False}


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's name)
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length)
        params = {}
        kind = self.headers.get("content-type", "")
        if raw and "json" in kind:
            params = json.loads(raw)
        elif raw:
            from urllib.parse import parse_qsl
            params = dict(parse_qsl(raw.decode()))
        method = self.path.rsplit("/", 1)[-1]
        if method == "getMe":
            result = ME
        elif method == "sendMessage":
            chat = int(params.get("chat_id"))
            SENT.append({"chat_id": chat, "text": params.get("text")})
            result = {"message_id": len(SENT), "date": int(time.time()),
                      "chat": {"id": chat, "type": "private"}, "text": params.get("text")}
        else:
            result = True
        body = json.dumps({"ok": True, "result": result}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST

    def log_message(self, *args):
        pass


def start():
    """Serves in a thread; returns its base URL (``http://127.0.0.1:N``)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"
