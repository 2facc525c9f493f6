"""Adversarial probes against a PoP's HTTP ingress (driven by http_hardening.sh): what a
client or a misbehaving application must not be able to do through the proxy.

    python3 http_hardening.py PORT APIKEY

Expects the resources of http_hardening.sh: open.test (auth none, a deny rule on /admin/*),
app.test (auth login), users alice and bob, the application http_backend.py. Prints one
"ok - ..." or "FAIL - ..." line per check and exits 1 if any check failed: every check runs,
so one run shows every hole at once."""
import base64
import hashlib
import json
import os
import socket
import sys
import time

PORT = int(sys.argv[1])
APIKEY = sys.argv[2]
FAILED = []
# Users u0..u19 (password PW) made by http_hardening.sh: one sign-in each, so the per-user
# rate limit never gets in the way.
USERS = iter("u%d" % i for i in range(20))
PW = "a-long-test-password"


def check(cond, what, detail=""):
    if cond:
        print("ok - %s" % what)
    else:
        print("FAIL - %s: %s" % (what, detail))
        FAILED.append(what)


class Conn:
    """One client connection that reads whole responses (Content-Length, chunked or to EOF)."""

    def __init__(self, timeout=5):
        self.s = socket.create_connection(("127.0.0.1", PORT), timeout=timeout)
        self.f = self.s.makefile("rb")

    def send(self, data):
        self.s.sendall(data)

    def response(self, head_request=False):
        """(status, [(name, value)], body, raw head) or None at EOF / timeout."""
        try:
            line = self.f.readline()
            if not line:
                return None
            raw = line
            status = int(line.split()[1])
            hdrs = []
            while True:
                l = self.f.readline()
                raw += l
                if l in (b"\r\n", b"\n", b""):
                    break
                k, v = l.split(b":", 1)
                hdrs.append((k.strip().decode().lower(), v.strip().decode("latin-1")))
            h = dict(hdrs)
            body = b""
            if head_request or status in (101, 204, 304):
                pass
            elif h.get("transfer-encoding") == "chunked":
                while True:
                    n = int(self.f.readline(), 16)
                    if n == 0:
                        self.f.readline()
                        break
                    body += self.f.read(n)
                    self.f.readline()
            elif "content-length" in h:
                body = self.f.read(int(h["content-length"]))
            else:
                body = self.f.read()
            return status, hdrs, body, raw
        except (OSError, ValueError, IndexError):
            return None

    def rest(self, wait=2.0):
        """Everything the server sends until it closes (or wait seconds pass)."""
        self.s.settimeout(wait)
        out = b""
        try:
            while True:
                d = self.s.recv(65536)
                if not d:
                    break
                out += d
        except OSError:
            pass
        return out

    def close(self):
        self.s.close()


def get(host, path, headers=(), method="GET", body=b""):
    c = Conn()
    req = "%s %s HTTP/1.1\r\nHost: %s\r\n" % (method, path, host)
    for k, v in headers:
        req += "%s: %s\r\n" % (k, v)
    if body or method == "POST":
        req += "Content-Length: %d\r\n" % len(body)
    c.send(req.encode("latin-1") + b"\r\n" + body)
    r = c.response(head_request=method == "HEAD")
    c.close()
    return r


def app_json(r):
    try:
        return json.loads(r[2])
    except (TypeError, ValueError):
        return {}


def hdr(r, name):
    return [v for k, v in r[1] if k == name] if r else []


def norm(name):
    return name.lower().replace("_", "-")


def login(user, password, rd="/", headers=()):
    form = ("username=%s&password=%s&rd=%s" % (user, password, rd)).encode()
    return get("app.test", "/.popmesh/login",
               (("Content-Type", "application/x-www-form-urlencoded"),) + tuple(headers),
               "POST", form)


def session_of(r):
    for v in hdr(r, "set-cookie"):
        if v.startswith("popmesh_session=") and not v.startswith("popmesh_session=;"):
            return v.split(";", 1)[0].split("=", 1)[1]
    return None


# ---- Upgrade: WebSocket only, and a 101 only as a real WebSocket handshake --------------------
c = Conn()
c.send(b"GET /h2c HTTP/1.1\r\nHost: open.test\r\nUpgrade: h2c\r\n"
       b"Connection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n")
r = c.response()
seen = [norm(k) for k, _ in app_json(r).get("headers", [])]
check(r and r[0] == 200 and "upgrade" not in seen and "http2-settings" not in seen,
      "Upgrade: h2c is not relayed (the app gets a plain request, no Upgrade)",
      "got %r" % (r[:2] if r else r,))
c.send(b"GET /admin/x HTTP/1.1\r\nHost: open.test\r\nRemote-User: root\r\n\r\n")
r = c.response()
check(r and r[0] == 403, "after an Upgrade: h2c, the next request on the connection still meets the "
      "deny rule", "got %r" % (r[:3] if r else r,))
c.close()

key = base64.b64encode(os.urandom(16)).decode()
ws_req = ("GET %s HTTP/1.1\r\nHost: open.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          "Sec-WebSocket-Key: " + key + "\r\nSec-WebSocket-Version: 13\r\n\r\n")
c = Conn()
c.send((ws_req % "/ws-badaccept").encode())
r = c.response()
check(r and r[0] == 502, "a 101 with a wrong Sec-WebSocket-Accept gets 502", "got %r" % (r[:2] if r else r,))
c.close()
r = get("open.test", "/ws-unasked")
check(r and r[0] == 502, "a 101 to a request that asked for no upgrade gets 502",
      "got %r" % (r[:2] if r else r,))
c = Conn()
c.send((ws_req % "/ws").encode())
r = c.response()
want = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode())
                        .digest()).decode()
ok = r and r[0] == 101 and hdr(r, "sec-websocket-accept") == [want]
if ok:
    mask = os.urandom(4)
    msg = b"still echoed"
    c.send(bytes([0x81, 0x80 | len(msg)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(msg)))
    h2 = c.f.read(2)
    ok = c.f.read(h2[1] & 0x7F) == msg
check(ok, "a real WebSocket handshake still works (101, right accept, frames echoed)",
      "got %r" % (r[:2] if r else r,))
c.close()

# ---- one response per request -----------------------------------------------------------------
for first, pause in (("/double", 0.0), ("/late", 0.8)):
    c = Conn()
    c.send(b"GET %s HTTP/1.1\r\nHost: open.test\r\n\r\n" % first.encode())
    r1 = c.response()
    time.sleep(pause)
    c.send(b"GET /hello HTTP/1.1\r\nHost: open.test\r\n\r\n")
    r2 = c.response()
    c.close()
    check(r1 and app_json(r1).get("path") == first and r2 and r2[0] == 200 and
          app_json(r2).get("path") == "/hello",
          "an extra response from the app (%s) is not delivered as the answer to the next request"
          % first, "got %r then %r" % (r1 and r1[2], r2 and r2[2]))

# ---- what popmesh consumed does not reach the app -------------------------------------------
r = get("app.test", "/headers", (("Authorization", "Bearer " + APIKEY),))
seen = [norm(k) for k, _ in app_json(r).get("headers", [])]
check(r and r[0] == 200 and "authorization" not in seen,
      "an API key used to sign in does not reach the app", "got %r %r" % (r and r[0], seen))
r = get("open.test", "/headers", (("Authorization", "Basic YWxpY2U6eA=="),))
vals = [v for k, v in app_json(r).get("headers", []) if norm(k) == "authorization"]
check(vals == ["Basic YWxpY2U6eA=="], "the app's own Authorization (Basic) still reaches it",
      "got %r" % vals)

# ---- redirects after login, and cross-site login/logout forms ------------------------------
for rd in ("/%09/evil.example/", "/%0a/evil.example/", "/%5c/evil.example/", "%2f%2fevil.example/",
           "/%2f/evil.example", "https:%2f%2fevil.example/", "/%0d%0aSet-Cookie:%20x=1", "javascript:x",
           "/\\evil.example", "/%00x"):
    r = login(next(USERS), PW, rd)
    loc = hdr(r, "location")
    good = (r and r[0] == 302 and len(loc) == 1 and loc[0].startswith("/") and
            all(0x21 <= ord(ch) < 0x7f for ch in loc[0]) and not loc[0].startswith("//") and
            "\\" not in loc[0] and len(hdr(r, "set-cookie")) == 1)
    check(good, "rd=%s is not followed to another site" % rd, "got %r" % (r and (r[0], r[3]),))
r = login(next(USERS), PW, "/a%2520b/c%3Fx%3D%252F")  # the form-encoded "/a%20b/c?x=%2F"
check(r and hdr(r, "location") == ["/a%20b/c?x=%2F"], "a same-site rd with a query is kept",
      "got %r" % (r and hdr(r, "location")))
r = login(next(USERS), PW, "/",
          (("Origin", "http://evil.example"), ("Sec-Fetch-Site", "cross-site")))
check(r and r[0] == 403 and not session_of(r), "a cross-site login POST is refused",
      "got %r" % (r and (r[0], r[3]),))
r = login(next(USERS), PW, "/", (("Origin", "null"),))
check(r and r[0] == 403 and not session_of(r), "a login POST with Origin: null is refused",
      "got %r" % (r and (r[0], r[3]),))
r = login(next(USERS), PW, "/",
          (("Origin", "http://app.test"), ("Sec-Fetch-Site", "same-origin")))
check(r and r[0] == 302 and session_of(r), "a same-origin login POST works", "got %r" % (r and r[3],))
r = get("app.test", "/.popmesh/logout", (("Sec-Fetch-Site", "cross-site"),))
check(r and r[0] == 403 and not hdr(r, "set-cookie"), "a cross-site logout is refused",
      "got %r" % (r and r[3],))

# ---- identity headers and their look-alikes -------------------------------------------------
spoof = (("Remote_User", "root"), ("remote-user", "root"), ("REMOTE_GROUPS", "admin"),
         ("Forwarded", "for=6.6.6.6;host=evil"), ("X-Real-IP", "6.6.6.6"),
         ("X_Forwarded_For", "6.6.6.6"), ("x-forwarded-host", "evil"), ("X-Forwarded-Port", "1"),
         ("X-Original-URL", "/admin/x"), ("Remote-Email", "root@x"))
r = get("open.test", "/headers", spoof)
seen = app_json(r).get("headers", [])
bad = [(k, v) for k, v in seen if "6.6.6.6" in v or "root" in v or "admin" in v or "evil" in v]
names = [norm(k) for k, _ in seen]
check(r and r[0] == 200 and not bad and names.count("x-forwarded-for") == 1 and
      "x-original-url" not in names and "x-forwarded-port" not in names,
      "look-alike identity headers (Remote_User, Forwarded, X-Real-IP...) do not reach the app",
      "the app saw %r" % (bad or names))

# ---- cookies: the app cannot set popmesh's, ambiguity refused, big app cookies kept ----------
r = get("open.test", "/setcookie")
sc = hdr(r, "set-cookie")
check(r and r[0] == 200 and sc == ["app=1; Path=/"],
      "the app cannot set popmesh_session (its Set-Cookie for it is dropped, others kept)",
      "got %r" % sc)
bob = session_of(login("bob", "another-long-secret"))
alice = session_of(login("alice", "correct-horse-battery"))
r = get("app.test", "/headers", (("Cookie", "popmesh_session=%s; popmesh_session=%s" % (bob, alice)),))
check(r and r[0] == 400 and b"more than one" in r[2],
      "two different popmesh_session cookies are refused (400), not 'the first wins'",
      "got %r" % (r and (r[0], r[2][:200]),))
r = get("app.test", "/headers", (("Cookie", "popmesh_session=%s; popmesh_session=%s" % (alice, alice)),))
check(r and r[0] == 200, "the same popmesh_session cookie twice is not ambiguous", "got %r" % (r and r[0],))
big = "big=" + "c" * 10000
r = get("app.test", "/headers", (("Cookie", "popmesh_session=%s; %s; small=1" % (alice, big)),))
check(r and r[0] == 200 and app_json(r).get("cookie") == big + "; small=1",
      "10 kB of application cookies reach the app intact",
      "got %r %r" % (r and r[0], (app_json(r).get("cookie") or "")[:40]))

# ---- log injection --------------------------------------------------------------------------
login("FORGED%0aFORGED-LINE%20INFO%20http:%20root%20signed%20in", "x")
get("open.test", "/nope%0aFORGED-LINE", (("X-Probe", "\x7f"),))

# ---- parsing leniencies -----------------------------------------------------------------------
def raw_all(data, wait=2.0):
    c = Conn()
    c.send(data)
    out = c.rest(wait)
    c.close()
    return out


for what, body in (("chunk data not followed by CRLF", b"3\r\nabcXX0\r\n\r\n"),
                   ("a space after a chunk size", b"3 \r\nabc\r\n0\r\n\r\n"),
                   ("a bare LF after a chunk size", b"3\nabc\r\n0\r\n\r\n")):
    out = raw_all(b"POST /hello HTTP/1.1\r\nHost: open.test\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
    check(out.startswith(b"HTTP/1.1 400 "), "%s gets 400" % what, "got %r" % out[:60])
for host in ("open.test:80:80", "open.test:abc", "open.test:99999", "[::1", "open.test:"):
    out = raw_all(b"GET /hello HTTP/1.1\r\nHost: %s\r\n\r\n" % host.encode())
    check(out.startswith(b"HTTP/1.1 400 "), "Host: %s gets 400" % host, "got %r" % out[:60])
out = raw_all(b"GET /" + b"a" * 3000 + b" HTTP/1.1\r\nHost: open.test\r\n\r\n")
check(out.startswith(b"HTTP/1.1 414 ") and out.count(b"HTTP/1.1 ") == 1,
      "a request target over the limit gets one 414 and nothing else", "got %r" % out[:300])
out = raw_all(b"GET /bighead HTTP/1.1\r\nHost: open.test\r\n\r\n")
check(out.startswith(b"HTTP/1.1 502 ") and b"X-F" not in out,
      "a response head over 64 KiB is answered by a clean 502 (none of it relayed)", "got %r" % out[:80])
out = raw_all(b"GET /badchunk HTTP/1.1\r\nHost: open.test\r\n\r\n")
check(out.startswith(b"HTTP/1.1 502 "), "a malformed chunk from the app gets 502 when nothing was sent yet",
      "got %r" % out[:80])

print("%d check(s) failed" % len(FAILED) if FAILED else "all checks passed")
sys.exit(1 if FAILED else 0)
