"""echo_server.py PORT [GREETING]: a threaded TCP echo server on 127.0.0.1:PORT, the backend of
the data plane tests and benchmarks: each connection gets GREETING first (when given, so a test
can tell two backends apart), then exactly what it sends, until it closes."""
import socketserver
import sys


GREETING = b""


class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        try:
            if GREETING:
                self.request.sendall(GREETING)
            while True:
                b = self.request.recv(262144)
                if not b:
                    return
                self.request.sendall(b)
        except OSError:
            pass


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


if __name__ == "__main__":
    if len(sys.argv) > 2:
        GREETING = sys.argv[2].encode()
    Server(("127.0.0.1", int(sys.argv[1])), Echo).serve_forever()
