"""echo_server.py PORT: a threaded TCP echo server on 127.0.0.1:PORT, the backend of the data
plane tests (each connection gets back exactly what it sends, until it closes)."""
import socketserver
import sys


class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        try:
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
    Server(("127.0.0.1", int(sys.argv[1])), Echo).serve_forever()
