"""A small HTTP/1.1 application for the HTTP ingress tests (keep-alive, chunked bodies, a
WebSocket echo). Every response is JSON describing the request as the application saw it:
method, path, the identity and forwarding headers, the body's length and sha256.

    python3 http_backend.py PORT
"""
import base64
import hashlib
import json
import socketserver
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler


class App(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive

    def log_message(self, *args):
        pass

    def body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                line = self.rfile.readline()
                size = int(line.split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length", "0") or 0)
        return self.rfile.read(n) if n else b""

    def answer(self):
        if self.path in MISBEHAVE:
            return MISBEHAVE[self.path](self)
        upgrade = self.headers.get("Upgrade", "")
        if upgrade.lower() == "websocket":
            return self.websocket()
        if upgrade:
            return self.switch_any(upgrade)
        data = self.body()
        seen = {
            "method": self.command,
            "path": self.path,
            "remote_user": self.headers.get_all("Remote-User") or [],
            "remote_groups": self.headers.get_all("Remote-Groups") or [],
            "xff": self.headers.get_all("X-Forwarded-For") or [],
            "xfh": self.headers.get("X-Forwarded-Host"),
            "xfp": self.headers.get("X-Forwarded-Proto"),
            "cookie": self.headers.get("Cookie"),
            "headers": [[k, v] for k, v in self.headers.items()],
            "body_len": len(data),
            "body_sha256": hashlib.sha256(data).hexdigest(),
        }
        out = json.dumps(seen).encode()
        if self.path.startswith("/chunked"):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(0, len(out), 7):
                piece = out[i:i + 7]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = answer

    def websocket(self):
        key = self.headers["Sec-WebSocket-Key"]
        accept = base64.b64encode(hashlib.sha1(
            (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.wfile.flush()
        while True:  # echo text frames (client frames are masked; ours are not)
            hdr = self.rfile.read(2)
            if len(hdr) < 2:
                return
            op, ln = hdr[0] & 0x0F, hdr[1] & 0x7F
            if ln == 126:
                ln = int.from_bytes(self.rfile.read(2), "big")
            mask = self.rfile.read(4) if hdr[1] & 0x80 else b"\0\0\0\0"
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(ln)))
            if op == 8:
                return
            self.wfile.write(bytes([0x80 | op, len(data)]) + data)
            self.wfile.flush()


    # ---- a misbehaving application (http_hardening.sh): what the proxy must not trust ----

    def switch_any(self, proto):
        """Agrees to any Upgrade (h2c...) and then keeps reading HTTP/1.1 on the connection,
        as a backend whose 101 turned a proxy into a blind pipe would be driven."""
        self.send_response(101)
        self.send_header("Upgrade", proto)
        self.send_header("Connection", "Upgrade")
        self.end_headers()
        self.wfile.flush()

    def raw(self, data):
        self.wfile.write(data)
        self.wfile.flush()

    def ws_bad_accept(self):
        self.raw(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n")

    def ws_unasked(self):
        self.raw(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")

    def double(self):
        one = b'{"path": "/double"}'
        two = b'{"path": "/forged"}'
        self.raw(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(one), one) +
                 b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(two), two))

    def late(self):
        one = b'{"path": "/late"}'
        two = b'{"path": "/forged-late"}'
        self.raw(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(one), one))
        wfile = self.wfile

        def later():
            time.sleep(0.3)
            try:
                wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(two), two))
                wfile.flush()
            except OSError:
                pass
        threading.Thread(target=later, daemon=True).start()

    def big_head(self):
        self.raw(b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-F%d: %s\r\n" % (i, b"f" * 1000) for i in range(70)) +
                 b"Content-Length: 2\r\n\r\nok")

    def bad_chunk(self):
        self.raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXX0\r\n\r\n")

    def set_cookie(self):
        self.raw(b"HTTP/1.1 200 OK\r\nSet-Cookie: popmesh_session=pms1.forged; Domain=test; Path=/\r\n"
                 b"Set-Cookie:  POPMESH_SESSION =x\r\nSet-Cookie: app=1; Path=/\r\n"
                 b"Content-Length: 2\r\n\r\nok")

    # ---- an application that holds the proxy (http_limits.sh): the timeouts must end it ----

    def never(self):
        """Reads the request and never answers: the proxy must give up (504) and reset."""
        self.close_connection = True
        self.drain()

    def stall(self):
        """Starts a response and stops in the middle of its body."""
        self.close_connection = True
        self.raw(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
        self.drain()

    def drain(self):
        """Waits for the proxy to give up on this connection (EOF or reset)."""
        try:
            while self.rfile.read(1):
                pass
        except OSError:
            pass


MISBEHAVE = {
    "/ws-badaccept": App.ws_bad_accept,
    "/ws-unasked": App.ws_unasked,
    "/double": App.double,
    "/late": App.late,
    "/bighead": App.big_head,
    "/badchunk": App.bad_chunk,
    "/setcookie": App.set_cookie,
    "/never": App.never,
    "/stall": App.stall,
}


class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 1024  # socketserver's 5 drops connections of a burst (echo_server.py)


if __name__ == "__main__":
    Server(("127.0.0.1", int(sys.argv[1])), App).serve_forever()
