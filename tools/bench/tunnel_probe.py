"""TCP helpers for bench_tunnel.sh.

  tunnel_probe.py echo PORT                  echo server on 127.0.0.1:PORT (threads, runs forever)
  tunnel_probe.py wait HOST PORT [TIMEOUT]   waits until a 64-byte round trip through HOST:PORT works
  tunnel_probe.py lat HOST PORT [N]          N (default 2000) sequential 64-byte round trips over one
                                             connection; prints "p50_us p99_us"
  tunnel_probe.py failover HOST PORT PID     new connection + 64-byte round trip every 20 ms; once
                                             one works, SIGKILLs PID and prints the ms from the kill
                                             to the first successful round trip after it
  tunnel_probe.py npops SITE N               exit 0 if SITE (sites JSON on stdin) has N PoPs
                                             and one primary, printing "primary standby,..."
"""
import json
import os
import signal
import socket
import sys
import threading
import time

MSG = b"x" * 64


def recv_exact(s, n):
    data = b""
    while len(data) < n:
        c = s.recv(n - len(data))
        if not c:
            raise ConnectionError("closed")
        data += c
    return data


def echo_server(port):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(128)

    def serve(c):
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                d = c.recv(65536)
                if not d:
                    break
                c.sendall(d)
        except OSError:
            pass
        finally:
            c.close()

    while True:
        c, _ = ls.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()


def one_rt(host, port, timeout):
    s = socket.create_connection((host, port), timeout=timeout)
    try:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(MSG)
        recv_exact(s, len(MSG))
    finally:
        s.close()


def main():
    mode = sys.argv[1]
    if mode == "echo":
        echo_server(int(sys.argv[2]))
    elif mode == "wait":
        host, port = sys.argv[2], int(sys.argv[3])
        limit = float(sys.argv[4]) if len(sys.argv) > 4 else 30
        t0 = time.monotonic()
        while True:
            try:
                one_rt(host, port, 1)
                return
            except OSError:
                if time.monotonic() - t0 > limit:
                    raise SystemExit("wait: %s:%d not answering after %.0fs" % (host, port, limit))
                time.sleep(0.05)
    elif mode == "lat":
        host, port = sys.argv[2], int(sys.argv[3])
        n = int(sys.argv[4]) if len(sys.argv) > 4 else 2000
        s = socket.create_connection((host, port), timeout=10)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(100):  # warm-up
            s.sendall(MSG)
            recv_exact(s, 64)
        rt = []
        pc = time.perf_counter
        for _ in range(n):
            t = pc()
            s.sendall(MSG)
            recv_exact(s, 64)
            rt.append(pc() - t)
        s.close()
        rt.sort()
        p50 = rt[len(rt) // 2]
        p99 = rt[min(len(rt) - 1, int(0.99 * len(rt)))]
        print("%.1f %.1f" % (p50 * 1e6, p99 * 1e6))
    elif mode == "failover":
        host, port, pid = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
        t0 = time.monotonic()
        while True:  # a working path before the kill
            try:
                one_rt(host, port, 1)
                break
            except OSError:
                if time.monotonic() - t0 > 30:
                    raise SystemExit("failover: no working round trip before the kill")
                time.sleep(0.02)
        time.sleep(0.02)
        tk = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        while True:
            t = time.monotonic()
            try:
                one_rt(host, port, 1)
                print("%.1f" % ((time.monotonic() - tk) * 1000))
                return
            except OSError:
                if t - tk > 60:
                    raise SystemExit("failover: no round trip within 60 s of the kill")
            nxt = t + 0.02
            d = nxt - time.monotonic()
            if d > 0:
                time.sleep(d)
    elif mode == "npops":
        name, n = sys.argv[2], int(sys.argv[3])
        j = json.load(sys.stdin)
        s = [x for x in j.get("sites", []) if x.get("name") == name][0]
        pops = s.get("pops", [])
        prim = [p["name"] for p in pops if p.get("role") == "primary"]
        stby = [p["name"] for p in pops if p.get("role") == "standby"]
        if len(pops) >= n and len(prim) == 1:
            print(prim[0], ",".join(stby) or "-")
            sys.exit(0)
        sys.exit(1)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
