"""A minimal control-socket client for integration tests (protocol: docs/protocol.md).

It speaks the frame format directly, so tests can send what meshctl never would:
garbage, truncated frames, oversized lengths, wrong types."""
import socket
import struct

import msgpack

VERSION = 1


class Ctl:
    def __init__(self, path, timeout=10.0):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        self.s.connect(path)

    def close(self):
        self.s.close()

    def send_raw(self, data):
        self.s.sendall(data)

    def send_body(self, body):
        self.s.sendall(struct.pack(">I", len(body)) + body)

    def recv_exact(self, n):
        data = b""
        while len(data) < n:
            chunk = self.s.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed by popd after %d of %d bytes" % (len(data), n))
            data += chunk
        return data

    def recv_response(self):
        n = struct.unpack(">I", self.recv_exact(4))[0]
        return msgpack.unpackb(self.recv_exact(n), raw=False, strict_map_key=False)

    def call(self, cmd, args=None, version=VERSION):
        self.send_body(msgpack.packb([version, cmd, args or {}]))
        v, status, body = self.recv_response()
        return status, body
