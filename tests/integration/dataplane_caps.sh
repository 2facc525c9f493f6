#!/usr/bin/env bash
# Connection caps on a PoP's open ports, with real processes and the test knobs
# POPMESH_TEST_TUNNEL_PENDING_PER_IP=4 and POPMESH_TEST_TCP_PER_IP=8 (tests only:
# docs/dataplane.md):
# 1. idle connections to the tunnel port from one address (127.0.0.2) past 4 are closed at
#    once and counted (tunnel_refused_cap), while a real site attaches from 127.0.0.1;
# 2. TCP resource connections from 127.0.0.1 past 8 are reset at once and counted
#    (ingress_refused_cap), while 127.0.0.2 is still served;
# 3. 200 more connections past the cap leave popd's descriptors where they were.
source "$(dirname "$0")/lib.sh"
: "${POPSITE:?POPSITE must point to the popsite binary}"

cat >"$WORK/caps.py" <<'PY'
import os, socket, sys, time


def connect(src, port):
    s = socket.socket()
    s.bind((src, 0))
    s.settimeout(2)
    s.connect(("127.0.0.1", port))
    return s

def state(s, wait):
    """'open' if nothing happened within wait s, else 'closed' (EOF) or 'reset'."""
    s.settimeout(wait)
    try:
        b = s.recv(1)
        return "closed" if not b else "data"
    except socket.timeout:
        return "open"
    except ConnectionResetError:
        return "reset"

def echo(s):
    msg = os.urandom(100)
    s.sendall(msg)
    got = b""
    while len(got) < len(msg):
        b = s.recv(len(msg) - len(got))
        if not b:
            raise EOFError("EOF")
        got += b
    return got == msg

cmd, a = sys.argv[1], sys.argv[2:]
if cmd == "tunnel_idle":
    # tunnel_idle SRC PORT N HOLD_S FLAGFILE: N idle connections; prints how many were closed
    # by the PoP within 0.5 s; keeps the others open (idle) until FLAGFILE exists or HOLD_S
    src, port, n, hold, flag = a[0], int(a[1]), int(a[2]), float(a[3]), a[4]
    socks = [connect(src, port) for _ in range(n)]
    t0 = time.time()
    states = [state(s, max(0.01, 0.5 - (time.time() - t0))) for s in socks]
    print("closed=%d open=%d" % (sum(x in ("closed", "reset") for x in states), states.count("open")), flush=True)
    end = time.time() + hold
    while time.time() < end and not os.path.exists(flag):
        time.sleep(0.05)
elif cmd == "tcp":
    # tcp SRC PORT N EXTRA: N connections, each echoes; then EXTRA more, each must be reset at
    # once; then one more from 127.0.0.2 must echo. Prints what happened.
    src, port, n, extra = a[0], int(a[1]), int(a[2]), int(a[3])
    held = []
    for i in range(n):
        s = connect(src, port)
        if not echo(s):
            print("connection %d under the cap did not echo" % i); sys.exit(1)
        held.append(s)
    refused, t0 = 0, time.time()
    for i in range(extra):
        try:
            s = connect(src, port)
        except ConnectionResetError:  # the RST came before connect() returned
            refused += 1
            continue
        st = state(s, 0.5)
        refused += st in ("reset", "closed")
        if st == "open":
            print("connection %d past the cap is still open after 0.5 s" % i); sys.exit(1)
        s.close()
    dt = time.time() - t0
    other = connect("127.0.0.2", port)
    ok = echo(other)
    print("under=%d refused=%d in %.2f s other_address_echo=%s" % (n, refused, dt, ok))
    sys.exit(0 if ok and refused == extra else 1)
PY
caps() { "$PY" "$WORK/caps.py" "$@"; }
nfd() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 | wc -l; }

T=$(free_port)
RPORT=$(free_port)
BPORT=$(free_port)
"$POPD" init --data "$WORK/n1" --name pop-1 --mesh-listen "127.0.0.1:$(free_port)" \
    --tunnel-listen "127.0.0.1:$T" >/dev/null
POPMESH_TEST_TUNNEL_PENDING_PER_IP=4 POPMESH_TEST_TCP_PER_IP=8 start_popd "$WORK/n1"
POP=$LAST_PID
"$PY" "$(dirname "$0")/echo_server.py" "$BPORT" >"$WORK/backend.log" 2>&1 &
PIDS+=("$!")
expect_rc 0 mctl "$WORK/n1" site add branch
STOKEN=$(cat "$WORK/out")
expect_rc 0 mctl "$WORK/n1" resource add echo --site branch --target "127.0.0.1:$BPORT" --tcp-port "$RPORT"

# ---- 1. the tunnel port: pending handshakes capped per address ----
caps tunnel_idle 127.0.0.2 "$T" 10 8 "$WORK/site-up" >"$WORK/idle.txt" 2>&1 &
IDLE=$!
PIDS+=("$IDLE")
wait_for 5 "the idle connections" grep -q closed= "$WORK/idle.txt"
[ "$(cat "$WORK/idle.txt")" = "closed=6 open=4" ] ||
    fail "10 idle tunnel connections from 127.0.0.2 with a cap of 4: $(cat "$WORK/idle.txt") (closed=6 open=4 expected)"
"$POPSITE" run --data "$WORK/site" --token "$STOKEN" >>"$WORK/site.log" 2>&1 &
PIDS+=("$!")
site_up() { [ "$(jq_ 'j["dataplane"]["sites_attached"]' "$WORK/n1" status)" = 1 ]; }
wait_for 4 "the site to attach while 127.0.0.2 holds its 4 pending slots" site_up
kill -0 "$IDLE" 2>/dev/null || fail "the idle connections' holder ended before the site attached"
touch "$WORK/site-up"
N=$(jq_ 'j["dataplane"]["tunnel_refused_cap"]' "$WORK/n1" status)
[ "$N" = 6 ] || fail "tunnel_refused_cap is $N (6 expected)"
grep -q "refused a tunnel connection (handshake pending) from 127.0.0.2" "$WORK/n1.log" ||
    fail "no log line about the refused tunnel connections"
ok "1: 10 idle tunnel connections from 127.0.0.2 (pending cap 4 per address): 6 closed at once and counted; a site attached from 127.0.0.1 meanwhile"

# ---- 2. TCP resource ports: per address cap, RST past it ----
wait_for 10 "an echo through the resource" caps tcp 127.0.0.1 "$RPORT" 1 0
sleep 0.5 # the probe's connection is released once its splice ends
FD0=$(nfd "$POP")
caps tcp 127.0.0.1 "$RPORT" 8 4 >"$WORK/tcp.txt" 2>&1 || { cat "$WORK/tcp.txt" >&2; fail "TCP cap check"; }
N=$(jq_ 'j["dataplane"]["ingress_refused_cap"]' "$WORK/n1" status)
[ "$N" = 4 ] || fail "ingress_refused_cap is $N (4 expected)"
ok "2: TCP resource (cap 8 per address): $(cat "$WORK/tcp.txt"); ingress_refused_cap $N"

# ---- 3. descriptors stay bounded past the cap ----
caps tcp 127.0.0.1 "$RPORT" 8 200 >"$WORK/tcp2.txt" 2>&1 || { cat "$WORK/tcp2.txt" >&2; fail "200 past the cap"; }
sleep 0.5
FD1=$(nfd "$POP")
[ "$FD1" -le $((FD0 + 4)) ] || fail "popd holds $FD1 descriptors after 200 refused connections ($FD0 before)"
ok "3: 200 connections past the cap: all reset at once ($(cat "$WORK/tcp2.txt")); popd descriptors $FD0 -> $FD1"

done_testing
