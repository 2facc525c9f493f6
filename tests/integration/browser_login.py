"""Logs in through popmesh's login page with a real browser (headless Chromium, driven over
the DevTools protocol with a small WebSocket client of our own: no extra Python packages).

    python3 browser_login.py CHROMIUM URL USER PASSWORD EXPECT SCREENSHOT [OPTIONS]

Opens URL (an app behind `auth login`), expects to land on the login page, fills the form
like a user, submits it, waits until the page shows EXPECT (text the app serves), and saves
a PNG screenshot. Exit 0 on success; otherwise prints what it saw.

Options, for an https URL with a test CA:
    --spki-hash B64     trust exactly the certificate key whose SPKI SHA-256 is B64
                        (Chromium's --ignore-certificate-errors-spki-list: that key only, so
                        any other certificate still fails; never --ignore-certificate-errors)
    --resolve HOST=IP   the browser resolves HOST to IP (--host-resolver-rules)
    --cookie NAME       after login, the cookie NAME (DevTools Network.getCookies) must be
                        Secure and HttpOnly
    --then URL2 EXPECT2 then open URL2 in the same browser (its cookies kept) and expect
                        EXPECT2 with no login page in between"""
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


class WS:
    """A minimal WebSocket client (RFC 6455): text frames, masked, no extensions."""

    def __init__(self, url):
        assert url.startswith("ws://")
        hostport, path = url[5:].split("/", 1)
        host, port = hostport.rsplit(":", 1)
        self.s = socket.create_connection((host, int(port)), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        self.s.sendall(("GET /%s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
                        "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                        "Sec-WebSocket-Version: 13\r\n\r\n" % (path, hostport, key)).encode())
        self.f = self.s.makefile("rb")
        if b"101" not in self.f.readline():
            raise RuntimeError("no websocket upgrade")
        while self.f.readline() not in (b"\r\n", b""):
            pass
        self.next_id = 0

    def send(self, obj):
        data = json.dumps(obj).encode()
        mask = os.urandom(4)
        n = len(data)
        hdr = bytes([0x81])
        if n < 126:
            hdr += bytes([0x80 | n])
        elif n < 65536:
            hdr += bytes([0x80 | 126]) + n.to_bytes(2, "big")
        else:
            hdr += bytes([0x80 | 127]) + n.to_bytes(8, "big")
        self.s.sendall(hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def recv(self):
        payload = b""
        while True:
            b0, b1 = self.f.read(2)
            n = b1 & 0x7F
            if n == 126:
                n = int.from_bytes(self.f.read(2), "big")
            elif n == 127:
                n = int.from_bytes(self.f.read(8), "big")
            payload += self.f.read(n)
            if b0 & 0x80:
                return json.loads(payload)

    def call(self, method, **params):
        self.next_id += 1
        mid = self.next_id
        self.send({"id": mid, "method": method, "params": params})
        while True:
            msg = self.recv()
            if msg.get("id") == mid:
                if "error" in msg:
                    raise RuntimeError("%s: %s" % (method, msg["error"]))
                return msg.get("result", {})


def parse_options(argv):
    opts = {"spki": None, "resolve": [], "cookie": None, "then": None}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--spki-hash" and i + 1 < len(argv):
            opts["spki"] = argv[i + 1]
            i += 2
        elif a == "--resolve" and i + 1 < len(argv) and "=" in argv[i + 1]:
            opts["resolve"].append(argv[i + 1].split("=", 1))
            i += 2
        elif a == "--cookie" and i + 1 < len(argv):
            opts["cookie"] = argv[i + 1]
            i += 2
        elif a == "--then" and i + 2 < len(argv):
            opts["then"] = (argv[i + 1], argv[i + 2])
            i += 3
        else:
            raise SystemExit("browser_login.py: bad option %r (see the docstring)" % a)
    return opts


def main():
    if len(sys.argv) < 7:
        raise SystemExit(__doc__)
    chromium, url, user, password, expect, shot = sys.argv[1:7]
    opts = parse_options(sys.argv[7:])
    profile = tempfile.mkdtemp(prefix="popmesh-chromium-")
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    args = [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-extensions", "--remote-debugging-port=%d" % port,
            "--user-data-dir=" + profile]
    if opts["spki"]:
        args.append("--ignore-certificate-errors-spki-list=" + opts["spki"])
    if opts["resolve"]:
        args.append("--host-resolver-rules=" +
                    ", ".join("MAP %s %s" % (h, ip) for h, ip in opts["resolve"]))
    proc = subprocess.Popen(args + ["about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 30
        pages = None
        while time.time() < deadline:
            try:
                pages = json.load(urllib.request.urlopen("http://127.0.0.1:%d/json" % port,
                                                         timeout=2))
                if any(p.get("type") == "page" for p in pages):
                    break
            except OSError:
                time.sleep(0.2)
        page = next(p for p in pages if p.get("type") == "page")
        ws = WS(page["webSocketDebuggerUrl"])
        ws.call("Page.enable")

        def js(expr):
            r = ws.call("Runtime.evaluate", expression=expr, returnByValue=True)
            return r.get("result", {}).get("value")

        def wait(cond, what, secs=20):
            end = time.time() + secs
            while time.time() < end:
                v = js(cond)
                if v:
                    return v
                time.sleep(0.2)
            raise RuntimeError("timed out waiting for %s; page: %s | %s" % (
                what, js("location.href"), js("document.body ? document.body.innerText : ''")))

        ws.call("Page.navigate", url=url)
        wait("location.pathname == '/.popmesh/login' && document.readyState == 'complete' "
             "&& !!document.querySelector('input[name=password]')", "the login page")
        print("landed on the login page:", js("location.href"))
        js("document.querySelector('input[name=username]').value = %s;"
           "document.querySelector('input[name=password]').value = %s;"
           "document.querySelector('form').submit(); true" % (json.dumps(user),
                                                              json.dumps(password)))
        wait("document.readyState == 'complete' && document.body && "
             "document.body.innerText.includes(%s)" % json.dumps(expect), "the app after login")
        print("after login:", js("location.href"), "|", js("document.body.innerText")[:80])
        png = base64.b64decode(ws.call("Page.captureScreenshot", format="png")["data"])
        with open(shot, "wb") as f:
            f.write(png)
        print("screenshot:", shot, len(png), "bytes")
        if opts["cookie"]:
            ws.call("Network.enable")
            jar = ws.call("Network.getCookies", urls=[js("location.href")])["cookies"]
            c = next((c for c in jar if c["name"] == opts["cookie"]), None)
            if not c:
                raise RuntimeError("no cookie %s after login; cookies: %s" % (
                    opts["cookie"], [x["name"] for x in jar]))
            print("cookie %s: domain %s path %s secure %s httpOnly %s sameSite %s" % (
                c["name"], c["domain"], c["path"], c["secure"], c["httpOnly"],
                c.get("sameSite", "-")))
            if not (c["secure"] and c["httpOnly"]):
                raise RuntimeError("the cookie %s is not Secure and HttpOnly" % c["name"])
        if opts["then"]:
            url2, expect2 = opts["then"]
            ws.call("Page.navigate", url=url2)
            wait("location.href.startsWith(%s) && document.readyState == 'complete' && "
                 "document.body && document.body.innerText.includes(%s)" % (
                     json.dumps(url2), json.dumps(expect2)), "the app at " + url2)
            if "/.popmesh/login" in js("location.href"):
                raise RuntimeError("sent to the login page at " + url2)
            print("then:", js("location.href"), "|", js("document.body.innerText")[:80])
        return 0
    except Exception as e:  # report what the browser saw
        print("FAILED:", e)
        return 1
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
