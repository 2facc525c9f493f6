"""What one client can hold at a PoP's HTTP ingress (driven by http_limits.sh, which starts
popd with POPMESH_TEST_HTTP_PER_IP=8, POPMESH_TEST_HTTP_MAX_CONNS=20 and
POPMESH_TEST_HTTP_TIMEOUT_SCALE=0.1: request body idle 3 s, response 6 s, response idle 6 s).

    python3 http_limits.py PORT POPD_PID

Client addresses are distinct 127.0.0.x sources, so each check has its own per-address count.
Prints one "ok - ..." or "FAIL - ..." line per check and exits 1 if any failed."""
import socket
import sys
import time

PORT = int(sys.argv[1])
POPD = int(sys.argv[2])
FAILED = []
PER_IP, MAX_CONNS = 8, 20
BODY_S, RESPONSE_S, RESP_IDLE_S = 3.0, 6.0, 6.0


def check(cond, what, detail=""):
    if cond:
        print("ok - %s" % what)
    else:
        print("FAIL - %s: %s" % (what, detail))
        FAILED.append(what)


def conn(src, timeout=5.0):
    return socket.create_connection(("127.0.0.1", PORT), timeout=timeout, source_address=(src, 0))


def read_until(s, deadline, stop):
    """Bytes from s until stop(data) holds, EOF, a reset or the deadline (monotonic)."""
    out = b""
    while not stop(out):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        s.settimeout(left)
        try:
            d = s.recv(65536)
        except socket.timeout:
            break
        except OSError:
            return out, "reset"
        if not d:
            return out, "eof"
        out += d
    return out, "open" if not stop(out) else "done"


def has_response(data):
    """A whole response with a Content-Length body (all our probes' answers have one)."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return True


def get(s, path="/hello"):
    """Status of one keep-alive GET on s, or None."""
    s.sendall(b"GET %s HTTP/1.1\r\nHost: open.test\r\n\r\n" % path.encode())
    data, _ = read_until(s, time.monotonic() + 5, has_response)
    try:
        return int(data.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return None


def fresh_get(src, path="/hello"):
    try:
        s = conn(src)
    except OSError as e:
        return "connect: %s" % e
    st = get(s, path)
    s.close()
    return st


def refused_at_once(src):
    """True if a new connection from src is answered 503 or closed within 1 s."""
    t0 = time.monotonic()
    try:
        s = conn(src)
    except OSError:
        return True, 0.0, "connect refused"
    data, how = read_until(s, t0 + 2.0, lambda d: False)
    s.close()
    dt = time.monotonic() - t0
    ok = dt < 1.0 and how in ("eof", "reset") and (not data or data.startswith(b"HTTP/1.1 503 "))
    return ok, dt, "%s %r" % (how, data[:40])


def fds():
    try:
        import os
        return len(os.listdir("/proc/%d/fd" % POPD))
    except OSError:
        return -1


def rss_kib():
    with open("/proc/%d/status" % POPD) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


# ---- per-address cap --------------------------------------------------------------------------
held = [conn("127.0.0.1") for _ in range(PER_IP)]
codes = [get(s) for s in held]
check(codes == [200] * PER_IP, "%d connections from one address are served" % PER_IP, "got %r" % codes)
extra = [refused_at_once("127.0.0.1") for _ in range(4)]
check(all(e[0] for e in extra), "connections past the per-address cap are refused at once (503 or close)",
      "got %r" % extra)
st = fresh_get("127.0.0.2")
check(st == 200, "another address is served meanwhile", "got %r" % st)
held.pop().close()
time.sleep(0.3)
st = fresh_get("127.0.0.1")
check(st == 200, "a closed connection gives its address's slot back", "got %r" % st)
for s in held:
    s.close()
time.sleep(0.3)

# ---- overall cap ------------------------------------------------------------------------------
held = []
for src, n in (("127.0.0.3", PER_IP), ("127.0.0.4", PER_IP), ("127.0.0.5", MAX_CONNS - 2 * PER_IP)):
    held += [conn(src) for _ in range(n)]
codes = [get(s) for s in held]
check(codes == [200] * MAX_CONNS, "%d connections from 3 addresses are served" % MAX_CONNS,
      "got %r" % codes)
ok, dt, how = refused_at_once("127.0.0.6")
check(ok, "a connection past the overall cap is refused at once", "%.2f s, %s" % (dt, how))
for s in held:
    s.close()
time.sleep(0.3)
st = fresh_get("127.0.0.6")
check(st == 200, "below the overall cap again, a new address is served", "got %r" % st)

# ---- a flood from one address: popd's descriptors and memory stay bounded ----------------------
fd0, rss0 = fds(), rss_kib()
flood = []
for _ in range(300):
    try:
        flood.append(conn("127.0.0.7"))
    except OSError:
        pass
time.sleep(0.5)
st = fresh_get("127.0.0.8")
fd1, rss1 = fds(), rss_kib()
check(st == 200, "during a flood of 300 connections from one address, another is served", "got %r" % st)
check(fd1 <= fd0 + PER_IP + 4, "popd holds at most the per-address cap of the flood's descriptors",
      "fds %d -> %d" % (fd0, fd1))
check(rss1 - rss0 < 12 * 1024, "popd's memory does not grow with the flood", "RSS %d -> %d KiB" % (rss0, rss1))
for s in flood:
    s.close()
time.sleep(0.3)

# ---- time: a body that stops, an application that never answers or stops mid-response -------
t0 = time.monotonic()
slow = conn("127.0.0.9", timeout=15)
slow.sendall(b"POST /hello HTTP/1.1\r\nHost: open.test\r\nContent-Length: 100\r\n\r\nx")
never = conn("127.0.0.10", timeout=15)
never.sendall(b"GET /never HTTP/1.1\r\nHost: open.test\r\n\r\n")
stall = conn("127.0.0.11", timeout=15)
stall.sendall(b"GET /stall HTTP/1.1\r\nHost: open.test\r\n\r\n")
time.sleep(1.5)
slow.sendall(b"y")  # one more byte: the body idle time counts from here
t_last = time.monotonic()
st = fresh_get("127.0.0.12")
check(st == 200, "other clients are served while three connections are stuck", "got %r" % st)

data, how = read_until(slow, t0 + 12, lambda d: b"\r\n\r\n" in d)
dt = time.monotonic() - t_last
check(data.startswith(b"HTTP/1.1 408 ") and BODY_S - 0.5 <= dt <= BODY_S + 3,
      "a request body that stops gets 408 after the body idle time (%.0f s from its last byte)" % BODY_S,
      "after %.1f s: %s %r" % (dt, how, data[:40]))
slow.close()

data, how = read_until(never, t0 + 15, lambda d: b"\r\n\r\n" in d)
dt = time.monotonic() - t0
check(data.startswith(b"HTTP/1.1 504 ") and RESPONSE_S - 0.5 <= dt <= RESPONSE_S + 4,
      "an application that never answers gets 504 after the response time (%.0f s)" % RESPONSE_S,
      "after %.1f s: %s %r" % (dt, how, data[:40]))
never.close()

data, how = read_until(stall, t0 + 15, lambda d: False)
dt = time.monotonic() - t0
check(data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"0123456789") and how in ("eof", "reset")
      and dt <= RESP_IDLE_S + 4,
      "a response that stops mid-body is closed after the response idle time (%.0f s)" % RESP_IDLE_S,
      "after %.1f s: %s %r" % (dt, how, data[-20:]))
stall.close()

st = fresh_get("127.0.0.1")
check(st == 200, "popd still serves after every probe", "got %r" % st)
print("%d check(s) failed" % len(FAILED) if FAILED else "all checks passed")
sys.exit(1 if FAILED else 0)
