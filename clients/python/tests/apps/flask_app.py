"""Flask behind statehold (WSGI middleware), on werkzeug's server."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from flask import Flask, jsonify, request  # noqa: E402
from werkzeug.serving import make_server  # noqa: E402

import statehold  # noqa: E402
import wizard  # noqa: E402

args = wizard.serve_args()
app = Flask(__name__)
app.wsgi_app = statehold.wsgi.StateholdMiddleware(app.wsgi_app, body_mode=args.body_mode)
conversation_states = statehold.ConversationStates()  # was: {}


@app.post("/telegram")
def telegram():
    message = request.get_json()["message"]
    chat_id = message["chat"]["id"]
    reply = wizard.handle(conversation_states, chat_id, message.get("text", ""))
    return jsonify(method="sendMessage", chat_id=chat_id, text=reply)


if __name__ == "__main__":
    server = make_server("127.0.0.1", args.port, app, threaded=True)
    wizard.announce(server.server_port)
    server.serve_forever()
