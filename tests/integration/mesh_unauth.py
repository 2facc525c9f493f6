#!/usr/bin/env python3
"""What an unauthenticated peer can make a popd hold on its mesh port.

Usage: mesh_unauth.py PID HOST PORT CASE

Speaks raw ZMTP 3.0 (RFC 23/ZMTP): a 64-byte greeting naming a mechanism, then frames of
[flags][size] where flag 0x02 means an 8-byte size and 0x04 a command. Nothing here gets past
the CURVE handshake; the point is what the server does before it knows who we are.

Prints one line of measurements per case and exits 1 when a bound is broken."""
import socket
import sys
import time

PID, HOST, PORT, CASE = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
MiB = 1 << 20


def rss_kb(field="VmRSS"):
    with open("/proc/%d/status" % PID) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise SystemExit("popd %d is gone" % PID)


def greeting(mechanism):
    g = b"\xff" + b"\x00" * 8 + b"\x7f" + bytes([3, 0])
    g += mechanism.ljust(20, b"\x00") + b"\x00" + b"\x00" * 31
    assert len(g) == 64
    return g


def connect():
    s = socket.create_connection((HOST, PORT), timeout=5)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    return s


PEAK = [0]


def send_some(s, data, seconds):
    """Sends as much of data as the peer takes within seconds, sampling popd's RSS into
    PEAK as it goes; returns bytes sent."""
    s.settimeout(0.2)
    sent, deadline = 0, time.time() + seconds
    view = memoryview(data)
    while sent < len(data) and time.time() < deadline:
        try:
            sent += s.send(view[sent:sent + 65536])
        except socket.timeout:
            continue
        except OSError:
            break
        finally:
            PEAK[0] = max(PEAK[0], rss_kb())
    return sent


def closed_within(s, seconds):
    """True if the server closes s within seconds (reads and discards its greeting)."""
    s.settimeout(0.25)
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            if s.recv(4096) == b"":
                return True
        except socket.timeout:
            continue
        except OSError:
            return True
    return False


def big_frame(mech, flags, conns, claim=1 << 30, payload=24 * MiB, seconds=4.0):
    """conns connections each announce a frame of claim bytes and push up to payload bytes."""
    before = rss_kb()
    socks = [connect() for _ in range(conns)]
    header = bytes([flags]) + claim.to_bytes(8, "big")
    for s in socks:
        s.sendall(greeting(mech) + header)
    sent = 0
    filler = b"\x00" * payload
    for s in socks:
        sent += send_some(s, filler, seconds / conns)
    time.sleep(0.3)
    peak = max(PEAK[0], rss_kb())
    for s in socks:
        s.close()
    grew = (peak - before) / 1024.0
    PEAK[0] = 0
    print("%s: %d conns, claim %d MiB, pushed %.1f MiB, rss %.1f -> %.1f MiB (+%.1f)" %
          (CASE, conns, claim // MiB, sent / MiB, before / 1024.0, peak / 1024.0, grew))
    return grew


def main():
    if CASE == "curve-1g":
        grew = big_frame(b"CURVE", 0x06, 1, payload=64 * MiB)  # a command frame: HELLO's slot
    elif CASE == "curve-2e62":
        # A size no allocator can satisfy: libzmq asserts on a failed malloc.
        grew = big_frame(b"CURVE", 0x06, 1, claim=1 << 62, payload=MiB, seconds=1.0)
    elif CASE == "curve-1g-x3":
        grew = big_frame(b"CURVE", 0x06, 3)
    elif CASE == "null-1g":
        grew = big_frame(b"NULL", 0x02, 2)  # a message frame under the NULL mechanism
    elif CASE == "curve-1g-x16":
        grew = big_frame(b"CURVE", 0x06, 16, payload=4 * MiB, seconds=6.0)
    elif CASE == "stall":
        # A greeting, then nothing: the server must give up on the handshake by itself.
        s = connect()
        s.sendall(greeting(b"CURVE"))
        t0 = time.time()
        ok = closed_within(s, 15.0)
        print("stall: closed=%s after %.1f s" % (ok, time.time() - t0))
        if not ok:
            raise SystemExit("a stalled handshake was kept open for more than 15 s")
        return
    elif CASE == "many":
        # Many idle connections from one address: only a bounded number may be held.
        before = rss_kb()
        socks = []
        for _ in range(400):
            try:
                s = connect()
                s.sendall(greeting(b"CURVE"))
                socks.append(s)
            except OSError:
                break
        time.sleep(1.5)
        open_ = 0
        for s in socks:
            s.setblocking(False)
            try:
                while s.recv(4096) != b"":  # the server's greeting may come first
                    pass
            except BlockingIOError:
                open_ += 1  # nothing more to read and no EOF: still held
            except OSError:
                pass
        peak = rss_kb()
        for s in socks:
            s.close()
        print("many: %d connections opened, %d still open after 1.5 s, rss %.1f -> %.1f MiB" %
              (len(socks), open_, before / 1024.0, peak / 1024.0))
        if open_ > 64:
            raise SystemExit("%d unauthenticated connections from one address held" % open_)
        return
    else:
        raise SystemExit("unknown case " + CASE)
    if grew > 48:
        raise SystemExit("%s: RSS grew by %.1f MiB" % (CASE, grew))


main()
