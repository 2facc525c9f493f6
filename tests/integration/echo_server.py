"""echo_server.py [HOST:]PORT [GREETING]: a threaded TCP echo server on HOST:PORT (HOST
127.0.0.1 unless given; an IPv6 one bracketed, "[::1]:8000"), the backend of the data plane
tests and benchmarks: each connection gets GREETING first (when given, so a test can tell two
backends apart), then exactly what it sends, until it closes."""
import socket
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
    # socketserver listens with a backlog of 5. Past it, Linux drops the handshake's last ACK:
    # the dialer (popsite) believes it is connected and writes, while the server side retries
    # its SYN-ACK with backoff and may give up, so a burst of 200 connections left a few
    # round trips hanging for 30 s in the data plane test. A backlog that holds the burst:
    request_queue_size = 1024


class Server6(Server):
    address_family = socket.AF_INET6


if __name__ == "__main__":
    if len(sys.argv) > 2:
        GREETING = sys.argv[2].encode()
    host, _, port = sys.argv[1].rpartition(":")
    if host.startswith("["):
        Server6((host.strip("[]"), int(port)), Echo).serve_forever()
    else:
        Server((host or "127.0.0.1", int(port)), Echo).serve_forever()
