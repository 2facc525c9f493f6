"""webhook_receiver.py PORT LOG [--hang]: a webhook receiver for the alert tests.

Default: an HTTP server on 127.0.0.1:PORT that answers every POST with 204 and appends its
body, one JSON line per request, to LOG (with the Content-Type it came with), so a test
counts alerts by kind, subject and state.

--hang: accepts connections and never answers (a slow receiver); appends one line per
connection accepted ("connection N") to LOG, so a test counts the attempts that reached it."""
import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, log = int(sys.argv[1]), sys.argv[2]
lock = threading.Lock()


def append(line):
    with lock, open(log, "a") as f:
        f.write(line + "\n")


class Hook(BaseHTTPRequestHandler):
    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n) if 0 < n <= 1 << 20 else b""
        try:
            j = json.loads(body)
        except ValueError:
            j = {"unparsed": body.decode("utf-8", "replace")}
        j["_content_type"] = self.headers.get("Content-Type", "")
        j["_path"] = self.path
        append(json.dumps(j, sort_keys=True))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *a):
        pass


if "--hang" in sys.argv:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(64)
    held, n = [], 0
    while True:
        c, _ = s.accept()
        n += 1
        held.append(c)  # never read, never answered, never closed by us
        append("connection %d at %.3f" % (n, time.time()))
else:
    ThreadingHTTPServer.allow_reuse_address = True
    ThreadingHTTPServer(("127.0.0.1", port), Hook).serve_forever()
