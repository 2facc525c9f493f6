#!/usr/bin/env bash
# tools/latrelay: a relay with --delay 50 adds 100 ms to a round trip, carries 64 MiB intact
# both ways, propagates half-close, serves 1000 connections at once, takes a new delay and
# down = 1 / down = 0 from its control file on SIGHUP, resets clients when --to refuses, and
# exits 0 on SIGTERM. The peer is a small Python echo server (no socat on this machine).
source "$(dirname "$0")/lib.sh"
: "${LATRELAY:?LATRELAY must point to the latrelay binary}"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true # 1000 connections: the peers need the sockets too

# ---- peer.py: the echo server and the clients --------------------------------------------
# serve PORT          echo every byte; on EOF reply "EOF <sha256 of bytes received> <count>\n",
#                     then shut down its own side (so the client sees EOF after the trailer)
# ping PORT N         N round trips of 16 bytes on one connection; prints the median in ms
# bulk PORT MIB       sends MIB random MiB and half-closes while reading the echo; checks the
#                     echo and the server's trailer against the sha256 of what was sent
# halfclose PORT      sends "hello", half-closes, expects the echo, the trailer, then EOF
# many PORT N         N connections at once, one ping each, every echo checked
# hold PORT           one connection, one ping, prints "held", then expects an RST
# refused PORT        expects the connection refused, reset or closed without an echo
cat >"$WORK/peer.py" <<'EOF'
import asyncio, hashlib, os, socket, statistics, sys, threading, time

def connect(port, timeout=5):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s

def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        d = s.recv(n - len(buf))
        if not d:
            raise SystemExit("EOF after %d of %d bytes" % (len(buf), n))
        buf += d
    return buf

def recv_all(s):
    parts = []
    while True:
        d = s.recv(1 << 20)
        if not d:
            return b"".join(parts)
        parts.append(d)

def serve(port):
    async def handle(r, w):
        h, n = hashlib.sha256(), 0
        try:
            while True:
                d = await r.read(1 << 18)
                if not d:
                    break
                h.update(d)
                n += len(d)
                w.write(d)
                await w.drain()
            w.write(b"EOF %s %d\n" % (h.hexdigest().encode(), n))
            await w.drain()
            w.write_eof()
            await w.drain()
        except OSError:
            pass
        finally:
            w.close()

    async def main():
        srv = await asyncio.start_server(handle, "127.0.0.1", port, backlog=4096)
        print("echo: listening on", port, flush=True)
        async with srv:
            await srv.serve_forever()

    asyncio.run(main())

def ping(port, n):
    s = connect(port)
    rtts = []
    for i in range(n):
        msg = b"ping %10d\n" % i
        t = time.monotonic()
        s.sendall(msg)
        if recv_exact(s, len(msg)) != msg:
            raise SystemExit("ping %d: wrong echo" % i)
        rtts.append((time.monotonic() - t) * 1000)
    s.close()
    print("%.1f" % statistics.median(rtts))

def bulk(port, mib):
    data = os.urandom(mib << 20)
    sent = hashlib.sha256(data).hexdigest()
    s = connect(port, timeout=20)
    def send():
        view = memoryview(data)
        for off in range(0, len(data), 1 << 20):
            s.sendall(view[off:off + (1 << 20)])
        s.shutdown(socket.SHUT_WR)
    t = time.monotonic()
    th = threading.Thread(target=send)
    th.start()
    got = recv_all(s)
    th.join()
    secs = time.monotonic() - t
    s.close()
    echo, trailer = got[:len(data)], got[len(data):]
    if hashlib.sha256(echo).hexdigest() != sent:
        raise SystemExit("echo differs from what was sent (%d bytes back)" % len(got))
    if trailer != b"EOF %s %d\n" % (sent.encode(), len(data)):
        raise SystemExit("server received something else: %r" % trailer[:200])
    print("%d MiB each way in %.2f s, sha256 %s..." % (mib, secs, sent[:16]))

def halfclose(port):
    s = connect(port)
    t = time.monotonic()
    s.sendall(b"hello")
    s.shutdown(socket.SHUT_WR)
    got = recv_all(s)
    want = b"hello" + b"EOF %s 5\n" % hashlib.sha256(b"hello").hexdigest().encode()
    if got != want:
        raise SystemExit("got %r, want %r" % (got, want))
    print("echo, trailer and EOF after %.0f ms" % ((time.monotonic() - t) * 1000))

def many(port, n):
    t = time.monotonic()
    socks = [connect(port, timeout=10) for _ in range(n)]
    for i, s in enumerate(socks):
        s.sendall(b"conn %10d\n" % i)
    for i, s in enumerate(socks):
        if recv_exact(s, 16) != b"conn %10d\n" % i:
            raise SystemExit("connection %d: wrong echo" % i)
    for s in socks:
        s.close()
    print("%d connections echoed in %.2f s" % (n, time.monotonic() - t))

def hold(port):
    s = connect(port, timeout=10)
    s.sendall(b"held")
    recv_exact(s, 4)
    print("held", flush=True)
    try:
        d = s.recv(1)
    except ConnectionResetError:
        print("reset")
        return
    raise SystemExit("expected an RST, got %r" % d)

def refused(port):
    try:
        s = connect(port)
        s.sendall(b"anyone?")
        d = s.recv(100)
    except ConnectionRefusedError:
        print("refused")
        return
    except ConnectionResetError:
        print("reset")
        return
    if d:
        raise SystemExit("got an answer: %r" % d)
    print("closed")

cmd, args = sys.argv[1], [int(a) for a in sys.argv[2:]]
globals()[cmd](*args)
EOF
peer() {
    timeout 30 "$PY" "$WORK/peer.py" "$@"
}

# in_range VALUE LOW HIGH: LOW <= VALUE <= HIGH (decimals allowed).
in_range() {
    awk -v v="$1" -v lo="$2" -v hi="$3" 'BEGIN { exit !(v >= lo && v <= hi) }'
}

# relay_control SETTINGS: writes the control file, sends SIGHUP and waits until it is applied.
APPLIED=0
applied_at_least() {
    [ "$(grep -c '^latrelay: control:' "$WORK/relay.log")" -ge "$1" ]
}
relay_control() {
    printf '%s\n' "$@" >"$WORK/control"
    kill -HUP "$RELAY_PID"
    APPLIED=$((APPLIED + 1))
    wait_for 5 "control file applied" applied_at_least "$APPLIED"
}

# ---- arguments ---------------------------------------------------------------------------
expect_rc 2 "$LATRELAY"
expect_in "$WORK/err" "latrelay: --listen is required"
expect_rc 2 "$LATRELAY" --listen 127.0.0.1:1 --to 127.0.0.1:2 --delay 5x
expect_in "$WORK/err" "latrelay: --delay wants milliseconds, 0..3600000, not '5x'"
expect_rc 2 "$LATRELAY" --listen 127.0.0.1 --to 127.0.0.1:2 --delay 5
expect_in "$WORK/err" "latrelay: --listen '127.0.0.1': expected HOST:PORT"
expect_rc 2 "$LATRELAY" --listen 127.0.0.1:0 --to 127.0.0.1:0 --delay 5
expect_in "$WORK/err" "port must be 1..65535"
printf 'delay = 10\nspeed = 3\n' >"$WORK/bad.control"
expect_rc 2 "$LATRELAY" --listen 127.0.0.1:0 --to 127.0.0.1:2 --delay 5 --control "$WORK/bad.control"
expect_in "$WORK/err" "line 2: unknown setting 'speed' (known: delay, down)"
ok "bad arguments and a bad control file are refused with the reason"

# ---- start: echo server, relay with --delay 50 -------------------------------------------
ECHO_PORT=$(free_port)
"$PY" "$WORK/peer.py" serve "$ECHO_PORT" >"$WORK/echo.log" 2>&1 &
PIDS+=("$!")
wait_for 5 "echo server" grep -q "echo: listening" "$WORK/echo.log"

RELAY_PORT=$(free_port)
"$LATRELAY" --listen "127.0.0.1:$RELAY_PORT" --to "127.0.0.1:$ECHO_PORT" --delay 50 \
    --control "$WORK/control" 2>"$WORK/relay.log" &
RELAY_PID=$!
PIDS+=("$RELAY_PID")
wait_for 5 "relay ready" grep -q "^latrelay: listening on 127.0.0.1:$RELAY_PORT" "$WORK/relay.log"
ok "relay listening on $RELAY_PORT"

# ---- latency ----------------------------------------------------------------------------
direct=$(peer ping "$ECHO_PORT" 20)
in_range "$direct" 0 20 || fail "direct RTT median $direct ms"
relayed=$(peer ping "$RELAY_PORT" 20)
in_range "$relayed" 100 130 || fail "RTT through --delay 50 is $relayed ms, want 100..130"
ok "RTT median of 20: $direct ms direct, $relayed ms through --delay 50"

# ---- data and half-close -----------------------------------------------------------------
out=$(peer halfclose "$RELAY_PORT") || fail "half-close: $out"
ok "half-close: $out"
out=$(peer bulk "$RELAY_PORT" 64) || fail "bulk: $out"
ok "$out"
out=$(peer many "$RELAY_PORT" 1000) || fail "many: $out"
ok "$out"

# ---- control file: delay -----------------------------------------------------------------
relay_control "delay = 10"
fast=$(peer ping "$RELAY_PORT" 20)
in_range "$fast" 20 40 || fail "RTT after delay = 10 is $fast ms, want 20..40"
ok "delay = 10 on SIGHUP: RTT $relayed -> $fast ms"

# ---- control file: down ------------------------------------------------------------------
peer hold "$RELAY_PORT" >"$WORK/hold.out" 2>&1 &
HOLD_PID=$!
wait_for 5 "held connection" grep -q held "$WORK/hold.out"
relay_control "delay = 10" "down = 1"
wait "$HOLD_PID" || { cat "$WORK/hold.out" >&2; fail "held connection was not reset"; }
expect_in "$WORK/hold.out" reset
out=$(peer refused "$RELAY_PORT") || fail "connection while down: $out"
[ "$out" = refused ] || fail "connection while down was $out, not refused"
ok "down = 1: open connection reset, new one refused"
relay_control "down = 0"
up=$(peer ping "$RELAY_PORT" 5)
in_range "$up" 20 40 || fail "RTT after down = 0 is $up ms"
ok "down = 0: accepting again, RTT $up ms"

# ---- --to refuses ------------------------------------------------------------------------
DEAD_PORT=$(free_port)
NOWHERE_PORT=$(free_port)
"$LATRELAY" --listen "127.0.0.1:$NOWHERE_PORT" --to "127.0.0.1:$DEAD_PORT" --delay 0 \
    2>"$WORK/nowhere.log" &
PIDS+=("$!")
wait_for 5 "second relay ready" grep -q "^latrelay: listening" "$WORK/nowhere.log"
out=$(peer refused "$NOWHERE_PORT") || fail "relay to a dead port: $out"
expect_in "$WORK/nowhere.log" "cannot connect to 127.0.0.1:$DEAD_PORT"
ok "--to refusing: client $out"

# ---- SIGTERM -----------------------------------------------------------------------------
kill -TERM "$RELAY_PID"
for _ in $(seq 1 50); do
    kill -0 "$RELAY_PID" 2>/dev/null || break
    sleep 0.1
done
kill -0 "$RELAY_PID" 2>/dev/null && fail "latrelay did not stop within 5 s of SIGTERM"
rc=0
wait "$RELAY_PID" || rc=$?
[ "$rc" -eq 0 ] || fail "latrelay exited $rc on SIGTERM"
ok "SIGTERM: exit 0 ($(tail -n 1 "$WORK/relay.log" | sed 's/^latrelay: //'))"
done_testing
