"""replica_load.py: the backend and the load of the connector replica tests
(site_replicas_netns.sh, site_replicas_regions.sh), where it matters which replica carried
each connection.

  replica_load.py serve HOST PORT [NAME]
      A threaded TCP echo server. Each connection first gets one line: NAME, or without it the
      peer's address (the replica that connected, when each replica has an address of its
      own), then exactly what it sends, until it closes.

  replica_load.py hold --port P --hosts H1,H2,... --n N --until FILE
      Opens N streams over HOSTS in turn and prints one JSON line, [[host, who], ...] (who is
      "none (error)" for one that did not open); then waits (at most 300 s) for FILE to exist,
      makes one round trip on each and prints a second line, [[host, who, kept], ...].

  replica_load.py load --port P --hosts H1,H2,... --n N --interval S
                       [--kill-at K (--pid PID | --cmd CMD)] [--hold H]
      N connections, one every S seconds, over HOSTS in turn; each reads the greeting line
      (who served it), sends 512 random bytes and needs them back, 5 s per step. With
      --kill-at, PID is SIGKILLed just before connection K (or the shell command CMD runs
      there, its end taken as the moment of the kill). With --hold, H connections are
      opened (over HOSTS in turn) before the first and each sends one more round trip after
      the last: held streams, open across the kill. Prints one JSON object:
        failed         connections that failed after the kill (all of them without --kill-at)
        failed_before  connections that failed before the kill
        gap_ms         ms from the kill to the end of the first success after it (-1: none)
        served_before  {who: count} of successes before the kill
        served_after   {who: count} of successes after it
        slowest_ms     the slowest successful connection after the kill (connect to echo)
        held           [[host, who, survived], ...]: each held stream, who carried it, and
                       whether its round trip after the load worked
        errors         the first 10 failures, "i via HOST after MS ms: error"
"""
import argparse
import json
import os
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time


def serve(host, port, name):
    class Echo(socketserver.BaseRequestHandler):
        def handle(self):
            try:
                who = name if name else self.client_address[0]
                self.request.sendall(who.encode() + b"\n")
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
        request_queue_size = 1024  # echo_server.py says why

    Server((host, port), Echo).serve_forever()


def recv_line(s):
    got = b""
    while not got.endswith(b"\n"):
        b = s.recv(1)
        if not b:
            raise EOFError("closed before the greeting (%r)" % got)
        got += b
        if len(got) > 200:
            raise ValueError("greeting too long")
    return got.decode().strip()


def round_trip(s, size):
    msg = os.urandom(size)
    s.sendall(msg)
    got = b""
    while len(got) < len(msg):
        b = s.recv(65536)
        if not b:
            raise EOFError("closed after %d of %d bytes" % (len(got), len(msg)))
        got += b
    if got != msg:
        raise ValueError("echo differs")


def connect(host, port):
    s = socket.create_connection((host, port), timeout=5)
    s.settimeout(5)
    return s, recv_line(s)


def hold(a):
    hosts = a.hosts.split(",")
    held = []
    for i in range(a.n):
        h = hosts[i % len(hosts)]
        try:
            s, who = connect(h, a.port)
            held.append([h, who, s])
        except Exception as e:
            held.append([h, "none (%s)" % e, None])
    print(json.dumps([[h, who] for h, who, _ in held]), flush=True)
    deadline = time.monotonic() + 300
    while not os.path.exists(a.until) and time.monotonic() < deadline:
        time.sleep(0.05)
    out = []
    for h, who, s in held:
        ok = False
        if s is not None:
            try:
                s.settimeout(3)
                round_trip(s, 64)
                ok = True
            except Exception:
                pass
            s.close()
        out.append([h, who, ok])
    print(json.dumps(out), flush=True)


def load(a):
    hosts = a.hosts.split(",")
    held = []
    for i in range(a.hold):
        h = hosts[i % len(hosts)]
        try:
            s, who = connect(h, a.port)
            held.append([h, who, s])
        except Exception as e:  # a held stream that never opened counts as lost
            held.append([h, "none (%s)" % e, None])
    r = {"failed": 0, "failed_before": 0, "gap_ms": -1, "served_before": {},
         "served_after": {}, "slowest_ms": 0, "held": [], "errors": []}
    killed_at = None
    for i in range(a.n):
        if i == a.kill_at:
            if a.pid > 0:
                os.kill(a.pid, signal.SIGKILL)
            else:
                subprocess.run(a.cmd, shell=True, check=True)
            killed_at = time.monotonic()
        h = hosts[i % len(hosts)]
        t0 = time.monotonic()
        try:
            s, who = connect(h, a.port)
            round_trip(s, 512)
            s.close()
            now = time.monotonic()
            if killed_at is None:
                r["served_before"][who] = r["served_before"].get(who, 0) + 1
            else:
                r["served_after"][who] = r["served_after"].get(who, 0) + 1
                r["slowest_ms"] = max(r["slowest_ms"], round((now - t0) * 1000, 1))
                if r["gap_ms"] < 0:
                    r["gap_ms"] = round((now - killed_at) * 1000, 1)
        except Exception as e:
            r["failed" if killed_at is not None or a.kill_at < 0 else "failed_before"] += 1
            if len(r["errors"]) < 10:
                r["errors"].append("%d via %s after %.0f ms: %s" %
                                   (i, h, (time.monotonic() - t0) * 1000, e))
        left = a.interval - (time.monotonic() - t0)
        if left > 0:
            time.sleep(left)
    for h, who, s in held:
        ok = False
        if s is not None:
            try:
                s.settimeout(3)
                round_trip(s, 64)
                ok = True
            except Exception:
                pass
            s.close()
        r["held"].append([h, who, ok])
    print(json.dumps(r))


def main():
    if len(sys.argv) >= 4 and sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]), sys.argv[4] if len(sys.argv) > 4 else "")
        return
    p = argparse.ArgumentParser()
    p.add_argument("command", choices=["load", "hold"])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--hosts", required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--interval", type=float, default=0)
    p.add_argument("--until", default="")
    p.add_argument("--kill-at", type=int, default=-1)
    p.add_argument("--pid", type=int, default=0)
    p.add_argument("--cmd", default="true")
    p.add_argument("--hold", type=int, default=0)
    a = p.parse_args()
    (hold if a.command == "hold" else load)(a)


if __name__ == "__main__":
    main()
