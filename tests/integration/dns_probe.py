"""Bad input against a PoP's name server: malformed packets, other zones, ANY, huge EDNS sizes,
bad client subnets, TCP clients that stall or pile up. Checks the server answers what it must
(or nothing), never more than the size it may, and reports the worst amplification (response
bytes / query bytes over UDP).

    python3 dns_probe.py HOST PORT ZONE

The queries are assembled here from their fields: this is the adversary, so it must be able to
write what no DNS library would.
"""
import random
import socket
import struct
import sys
import time

HOST, PORT, ZONE = sys.argv[1], int(sys.argv[2]), sys.argv[3]
random.seed(7)  # the same probes every run
failures = []
worst = (0.0, "")


def name(n):
    out = b""
    for label in n.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def query(qname, qtype=1, qid=0x1234, flags=0x0100, qd=1, opt=None, extra=b""):
    ar = 1 if opt is not None else 0
    h = struct.pack(">HHHHHH", qid, flags, qd, 0, 0, ar)
    body = name(qname) + struct.pack(">HH", qtype, 1) + extra
    if opt is not None:
        payload, options = opt
        body += b"\0" + struct.pack(">HHIH", 41, payload, 0, len(options)) + options
    return h + body


def ecs(family, source, addr):
    return struct.pack(">HHHBB", 8, 4 + len(addr), family, source, 0) + addr


def udp(pkt, timeout=0.5):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(pkt, (HOST, PORT))
        return s.recv(65535)
    except socket.timeout:
        return None
    finally:
        s.close()


def rcode(resp):
    return resp[3] & 0x0F if resp and len(resp) >= 4 else None


def check(what, pkt, want_rcode=None, want_none=False, limit=512):
    global worst
    resp = udp(pkt)
    if want_none:
        if resp is not None:
            failures.append("%s: answered (%d bytes), expected silence" % (what, len(resp)))
        return resp
    if resp is None:
        failures.append("%s: no answer" % what)
        return None
    if len(resp) > limit:
        failures.append("%s: %d bytes, over the %d a client allowed" % (what, len(resp), limit))
    if resp[:2] != pkt[:2]:
        failures.append("%s: the answer's id differs from the query's" % what)
    if want_rcode is not None and rcode(resp) != want_rcode:
        failures.append("%s: rcode %s, expected %d" % (what, rcode(resp), want_rcode))
    amp = len(resp) / len(pkt)
    if amp > worst[0]:
        worst = (amp, "%s (%d -> %d bytes)" % (what, len(pkt), len(resp)))
    return resp


NOERROR, FORMERR, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 3, 4, 5
check("A for the apex", query(ZONE), NOERROR)
check("NS for the apex", query(ZONE, 2), NOERROR)
check("NS for the apex, EDNS 4096", query(ZONE, 2, opt=(4096, b"")), NOERROR, limit=1232)
check("SOA", query(ZONE, 6), NOERROR)
check("ANY for the apex (RFC 8482: minimal)", query(ZONE, 255), NOERROR)
check("ANY for the apex, EDNS 65535", query(ZONE, 255, opt=(65535, b"")), NOERROR, limit=1232)
check("TXT for the apex (NODATA)", query(ZONE, 16), NOERROR)
check("other zone", query("example.com"), REFUSED)
check("the root", query("."), REFUSED)
check("no such name", query("nope." + ZONE), NXDOMAIN)
check("two questions", query(ZONE, qd=2), FORMERR)
check("opcode UPDATE", query(ZONE, flags=0x2800), NOTIMP)
check("QR set (a response)", query(ZONE, flags=0x8100), want_none=True)
check("a 5-byte packet", b"\x12\x34\x01\x00\x00", want_none=True)
check("EDNS payload 65535", query(ZONE, opt=(65535, b"")), NOERROR, limit=1232)
check("EDNS payload 0", query(ZONE, opt=(0, b"")), NOERROR)
check("ECS with host bits past the prefix", query(ZONE, opt=(1232, ecs(1, 8, b"\x0a\x01"))), FORMERR)
check("ECS family 9", query(ZONE, opt=(1232, ecs(9, 8, b"\x0a"))), FORMERR)
check("ECS source 33 for IPv4", query(ZONE, opt=(1232, ecs(1, 33, b"\x0a\x01\x02\x03\x04"))), FORMERR)
check("ECS shorter than it says", query(ZONE, opt=(1232, struct.pack(">HHHBB", 8, 12, 1, 24, 0) + b"\x0a")), FORMERR)
check("OPT record cut short", query(ZONE, opt=(1232, b""))[:-1], FORMERR)
# random garbage, and random mutations of a good query: never a crash, never over 512 bytes
good = query("app." + ZONE, opt=(1232, ecs(1, 24, b"\x0a\x01\x07")))
for i in range(300):
    if i % 2:
        pkt = bytes(random.getrandbits(8) for _ in range(random.randint(0, 300)))
    else:
        b = bytearray(good)
        for _ in range(random.randint(1, 6)):
            b[random.randrange(len(b))] = random.getrandbits(8)
        pkt = bytes(b)
    resp = udp(pkt, timeout=0.05)
    if resp is not None and len(resp) > 1232:
        failures.append("garbage %d: a %d-byte answer" % (i, len(resp)))
# still answering
if rcode(udp(query(ZONE))) != NOERROR:
    failures.append("the server stopped answering after the garbage")

# TCP: a query in two halves with a pause; a stalled client does not block another; a pile of
# connections from one address is capped.
def tcp_query(pkt, split=None, pause=0.0):
    s = socket.create_connection((HOST, PORT), timeout=3)
    data = struct.pack(">H", len(pkt)) + pkt
    if split:
        s.sendall(data[:split])
        time.sleep(pause)
        s.sendall(data[split:])
    else:
        s.sendall(data)
    n = struct.unpack(">H", s.recv(2, socket.MSG_WAITALL))[0]
    resp = s.recv(n, socket.MSG_WAITALL)
    s.close()
    return resp


stalled = socket.create_connection((HOST, PORT), timeout=3)
stalled.sendall(b"\x00")  # one byte of a length, then nothing
r = tcp_query(query(ZONE, 2), split=5, pause=0.3)
if rcode(r) != NOERROR:
    failures.append("TCP query in two halves: rcode %s" % rcode(r))
big = tcp_query(query(ZONE, 255, opt=(65535, b"")))
if rcode(big) != NOERROR:
    failures.append("TCP ANY: rcode %s" % rcode(big))
pile, refused = [], 0
for _ in range(40):
    try:
        c = socket.create_connection((HOST, PORT), timeout=1)
        pile.append(c)
    except OSError:
        refused += 1
# the server closes what is over its per-address cap: count the ones closed at once
time.sleep(0.3)
closed = 0
for c in pile:
    c.settimeout(0.05)
    try:
        if c.recv(1) == b"":
            closed += 1
    except (socket.timeout, ConnectionResetError):
        pass
    c.close()
stalled.close()
if closed + refused < 40 - 16:
    failures.append("40 TCP connections from one address: only %d refused or closed (cap 16)" % (closed + refused))
if rcode(udp(query(ZONE))) != NOERROR:
    failures.append("the server stopped answering after the TCP probes")

print("dns_probe: worst UDP amplification %.1fx: %s" % worst)
print("dns_probe: 40 TCP connections from one address: %d closed or refused" % (closed + refused))
if failures:
    print("\n".join("FAIL: " + f for f in failures))
    sys.exit(1)
print("dns_probe: all checks passed")
