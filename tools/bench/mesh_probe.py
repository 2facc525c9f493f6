"""Measures a running local mesh through the nodes' control sockets (bench_mesh.sh drives it).

  mesh_probe.py detect  VICTIM_NAME DIR...   waits until every DIR's node marks VICTIM dead;
                                             prints seconds since the start mark in argv
  mesh_probe.py write   DIR...               writes on DIR[0], prints seconds until all have it
  mesh_probe.py alive   N DIR...             waits until every node lists N alive members

Persistent connections and 5 ms polling: the polling adds at most ~5 ms to each figure."""
import os
import socket
import struct
import sys
import time

import msgpack


class Ctl:
    def __init__(self, d):
        self.s = socket.socket(socket.AF_UNIX)
        self.s.settimeout(10)
        self.s.connect(os.path.join(d, "control.sock"))

    def call(self, cmd, args=None):
        body = msgpack.packb([1, cmd, args or {}])
        self.s.sendall(struct.pack(">I", len(body)) + body)
        hdr = self._recv(4)
        v, st, b = msgpack.unpackb(self._recv(struct.unpack(">I", hdr)[0]), raw=False)
        return st, b

    def _recv(self, n):
        data = b""
        while len(data) < n:
            c = self.s.recv(n - len(data))
            if not c:
                raise ConnectionError("closed")
            data += c
        return data


def wait_all(ctls, pred, timeout):
    t0 = time.monotonic()
    pending = set(range(len(ctls)))
    while pending:
        if time.monotonic() - t0 > timeout:
            raise SystemExit("timeout: %d nodes not there yet" % len(pending))
        for i in list(pending):
            if pred(ctls[i]):
                pending.discard(i)
        time.sleep(0.005)


def main():
    mode = sys.argv[1]
    if mode == "detect":
        victim, t_kill, dirs = sys.argv[2], float(sys.argv[3]), sys.argv[4:]
        ctls = [Ctl(d) for d in dirs]

        def dead(c):
            st, ms = c.call("members")
            return any(m["name"] == victim and m["state"] == "dead" for m in ms)

        wait_all(ctls, dead, 60)
        print("%.3f" % (time.time() - t_kill))
    elif mode == "write":
        dirs = sys.argv[2:]
        ctls = [Ctl(d) for d in dirs]
        key = "bench/write-%d" % int(time.time() * 1e6)
        t0 = time.time()
        st, b = ctls[0].call("config.set", {"key": key, "value": "x"})
        assert st == 0, b

        def has(c):
            st, b = c.call("config.get", {"key": key})
            return st == 0

        wait_all(ctls[1:], has, 60)
        print("%.3f" % (time.time() - t0))
    elif mode == "alive":
        n, dirs = int(sys.argv[2]), sys.argv[3:]
        ctls = [Ctl(d) for d in dirs]

        def all_alive(c):
            st, ms = c.call("members")
            return sum(1 for m in ms if m["state"] == "alive") == n

        wait_all(ctls, all_alive, 120)
    else:
        raise SystemExit("unknown mode " + mode)


main()
