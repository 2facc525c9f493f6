"""Bad input against a live popd: each case gets a clear answer (or a clean close for
framing that cannot be trusted), and the daemon keeps serving afterwards."""
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from ctlclient import Ctl  # noqa: E402

import msgpack  # noqa: E402

sock = sys.argv[1]
checks = 0

OK, NOT_FOUND, BAD_REQUEST, REFUSED, FAILED, BAD_VERSION = range(6)


def check(cond, what):
    global checks
    if not cond:
        print("FAIL:", what)
        sys.exit(1)
    checks += 1
    print("ok %d - %s" % (checks, what))


def alive():
    c = Ctl(sock)
    st, body = c.call("status")
    c.close()
    return st == OK and body["name"]


def expect(status, cmd, args, needle, what, version=1):
    c = Ctl(sock)
    st, body = c.call(cmd, args, version)
    c.close()
    err = body.get("error", "") if isinstance(body, dict) else ""
    check(st == status and needle in err, "%s -> status %d, '%s' (got %d, %r)" % (what, status, needle, st, err))
    check(alive(), "popd alive after: " + what)


# ---- malformed bodies: answered, connection stays usable ----
c = Ctl(sock)
for name, body in [
    ("garbage bytes", os.urandom(64)),
    ("msgpack nil", msgpack.packb(None)),
    ("empty body", b""),
    ("reserved byte 0xc1", b"\xc1"),
    ("array of 2", msgpack.packb([1, "status"])),
    ("command is an int", msgpack.packb([1, 7, {}])),
    ("args is a list", msgpack.packb([1, "status", []])),
    ("non-string arg key", msgpack.packb([1, "status", {1: 2}])),
    ("trailing bytes", msgpack.packb([1, "status", {}]) + b"\x00"),
    ("truncated msgpack", msgpack.packb([1, "config.get", {"key": "abcdef"}])[:-3]),
    ("array32 claiming 4G elements", b"\xdd\xff\xff\xff\xff"),
]:
    c.send_body(body)
    v, st, resp = c.recv_response()
    check(st == BAD_REQUEST and "malformed request" in resp["error"], "%s: %s" % (name, resp["error"]))
st, body = c.call("status")
check(st == OK, "same connection still serves after 11 malformed requests")
c.close()

# ---- semantic errors ----
expect(BAD_REQUEST, "frobnicate", {}, "unknown command 'frobnicate'", "unknown command")
expect(BAD_VERSION, "status", {}, "speaks control protocol version 1", "version 99", version=99)
expect(BAD_REQUEST, "config.get", {}, "missing argument 'key'", "missing key")
expect(BAD_REQUEST, "config.get", {"key": 5}, "must be a string", "key of the wrong type")
expect(BAD_REQUEST, "config.set", {"key": "a"}, "missing argument 'value'", "missing value")
expect(REFUSED, "config.set", {"key": "k" * 300, "value": 1}, "the limit is 256", "key over 256 bytes")
expect(BAD_REQUEST, "config.set", {"key": "a\x00b", "value": 1}, "printable ASCII", "NUL in key")
expect(BAD_REQUEST, "config.set", {"key": "", "value": 1}, "key is empty", "empty key")
expect(REFUSED, "config.set", {"key": "big", "value": "x" * (64 * 1024 + 1)}, "larger than 65536", "value over 64 KiB")
expect(BAD_REQUEST, "config.list", {"limit": 0}, "'limit' must be", "limit 0")
expect(NOT_FOUND, "config.get", {"key": "nope"}, "no key 'nope'", "absent key")

# ---- oversized frame: refused, connection closed, nothing buffered ----
c = Ctl(sock)
c.send_raw(b"\x7f\xff\xff\xff" + b"x" * 1000)
v, st, body = c.recv_response()
check(st == REFUSED and "larger than" in body["error"], "oversized frame refused: " + body["error"])
try:
    closed = c.s.recv(1) == b""
except OSError:
    closed = True
check(closed, "connection closed after an oversized frame")
c.close()
check(alive(), "popd alive after oversized frame")

# ---- a 1 MiB stream of junk that is never a whole frame ----
c = Ctl(sock)
try:
    c.send_raw(b"\x00\x03\xff\xff" + b"a" * (1 << 20))
except OSError:
    pass  # popd may close as soon as it has seen enough
c.close()
check(alive(), "popd alive after a megabyte of junk")

# ---- truncated frame then the client vanishes ----
for cut in (1, 3, 4, 10):
    c = Ctl(sock)
    body = msgpack.packb([1, "config.set", {"key": "half", "value": "x" * 100}])
    c.send_raw((len(body)).to_bytes(4, "big") + body[:cut])
    c.close()
check(alive(), "popd alive after half-sent requests")
c = Ctl(sock)
st, body = c.call("config.get", {"key": "half"})
check(st == NOT_FOUND, "a half-sent config.set wrote nothing")
c.close()

# ---- pipelined requests are answered in order ----
c = Ctl(sock)
frames = b""
for i in range(200):
    b = msgpack.packb([1, "config.set", {"key": "pipe/%03d" % i, "value": i}])
    frames += len(b).to_bytes(4, "big") + b
c.send_raw(frames)
for i in range(200):
    v, st, body = c.recv_response()
    assert st == OK and body["key"] == "pipe/%03d" % i, body
check(True, "200 pipelined requests answered in order")
c.close()

# ---- connection flood: beyond the cap, extra clients are dropped, popd lives ----
conns = []
for i in range(64):
    try:
        s = socket.socket(socket.AF_UNIX)
        s.connect(sock)
        conns.append(s)
    except OSError:
        break
time.sleep(0.2)
for s in conns:
    s.close()
time.sleep(0.1)
check(alive(), "popd alive after 64 idle connections")

print("popd_badinput: %d checks passed" % checks)
