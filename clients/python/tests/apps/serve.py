"""Serves any ASGI or WSGI app on a port (0: any free one) and prints
``listening on PORT`` once it accepts: lets tests run an example bot as it
is, without port plumbing in the bot.

    python serve.py --dir examples/x --app bot:app --kind asgi --port 0
"""

import argparse
import importlib
import socket
import sys

parser = argparse.ArgumentParser()
parser.add_argument("--dir", required=True)
parser.add_argument("--app", required=True)
parser.add_argument("--kind", choices=["asgi", "wsgi"], required=True)
parser.add_argument("--port", type=int, default=0)
args = parser.parse_args()

sys.path.insert(0, args.dir)
module_name, attr = args.app.split(":")
app = getattr(importlib.import_module(module_name), attr)

if args.kind == "asgi":
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.listen(128)
    print(f"listening on {sock.getsockname()[1]}", flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
else:
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", args.port, app, threaded=True)
    print(f"listening on {server.server_port}", flush=True)
    server.serve_forever()
