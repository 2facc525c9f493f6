#!/usr/bin/env bash
# The admin listener (--admin-listen) under bad input and /readyz: a scrape from an address
# outside metrics-allow gets 403; a huge request line and a huge header are refused; a client
# that sends nothing is closed after the timeout (ADMIN_TIMEOUT_S, 5 s); connections past the
# cap (ADMIN_MAX_CONNS, 16) are refused; popd stays up through all of it. /readyz is 503 while
# a TCP resource's port is taken and 200 once popd binds it; an admin address equal to the HTTP
# ingress is refused, and an HTTP port already taken stops popd with the reason.
source "$(dirname "$0")/lib.sh"

A=$(free_port)
H=$(free_port)
init_node "$WORK/n1" pop-1 --http-listen "127.0.0.1:$H" --admin-listen "127.0.0.1:$A" \
    --metrics-allow 127.0.0.1/32
start_popd "$WORK/n1"
PID=$LAST_PID
expect_in "$WORK/n1/popd.conf" "admin-listen = 127.0.0.1:$A"
expect_in "$WORK/n1/popd.conf" "metrics-allow = 127.0.0.1/32"

# ---- refused configurations ----
expect_rc 2 "$POPD" init --data "$WORK/bad" --name bad --mesh-listen "127.0.0.1:$(free_port)" \
    --http-listen "0.0.0.0:$H" --admin-listen "127.0.0.1:$H"
expect_in "$WORK/err" "admin-listen 127.0.0.1:$H is the same address as http-listen"
expect_rc 2 "$POPD" init --data "$WORK/bad" --name bad --metrics-allow 10.0.0.1/8
expect_in "$WORK/err" "metrics-allow '10.0.0.1/8' is not a network"
ok "an admin address equal to the HTTP ingress, and a network with host bits set, are refused"

# ---- metrics-allow ----
curl -sf -m 5 "http://127.0.0.1:$A/metrics" >"$WORK/m.txt" || fail "scrape from 127.0.0.1"
expect_in "$WORK/m.txt" 'popmesh_members{state="alive"} 1'
R=$(curl -s -m 5 --interface 127.0.0.2 -w '\n%{http_code}' "http://127.0.0.1:$A/metrics")
[ "$(echo "$R" | tail -1)" = 403 ] || fail "a scrape from 127.0.0.2 got: $R"
echo "$R" | grep -q "127.0.0.2 is not in metrics-allow" || fail "403 without its reason: $R"
ok "metrics-allow 127.0.0.1/32: a scrape from 127.0.0.2 gets 403 with the reason"
[ "$(curl -s -m 5 --interface 127.0.0.2 "http://127.0.0.1:$A/healthz")" = ok ] ||
    fail "/healthz from 127.0.0.2"
[ "$(curl -s -m 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$A/nope")" = 404 ] ||
    fail "unknown path"
[ "$(curl -s -m 5 -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$A/metrics")" = 405 ] ||
    fail "POST /metrics"
ok "/healthz answers any client; an unknown path gets 404, a POST 405"

# ---- huge requests, a silent client, too many connections ----
OUT=$("$PY" - "$A" <<'PY'
import socket, sys, time
port = int(sys.argv[1])
def ask(data):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        s.sendall(data)
    except OSError:
        pass
    got = b""
    try:
        while True:
            b = s.recv(4096)
            if not b: break
            got += b
    except OSError:
        pass
    s.close()
    return got.split(b"\r\n", 1)[0].decode(errors="replace")
out = []
out.append(ask(b"GET /" + b"a" * 100000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"))
out.append(ask(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 20000 + b"\r\n\r\n"))
# a client that sends nothing: closed after the timeout (5 s), not before
s = socket.create_connection(("127.0.0.1", port), timeout=10)
t0 = time.monotonic()
closed = s.recv(10) == b""
out.append("silent closed=%s after %.1f s" % (closed, time.monotonic() - t0))
s.close()
# 16 idle connections hold the cap; the 17th is refused (503 and closed)
idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(16)]
time.sleep(0.3)
out.append("17th: " + ask(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"))
for s in idle: s.close()
time.sleep(0.3)
out.append("after: " + ask(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"))
print("\n".join(out))
PY
)
echo "$OUT"
L() { echo "$OUT" | sed -n "$1p"; }
case "$(L 1)" in "HTTP/1.1 431"* | "HTTP/1.1 414"*) ;; *) fail "a 100 kB request line: $(L 1)" ;; esac
case "$(L 2)" in "HTTP/1.1 431"*) ;; *) fail "a 20 kB header: $(L 2)" ;; esac
ok "a 100 kB request line and a 20 kB header are refused ($(L 1 | cut -c10-12), $(L 2 | cut -c10-12))"
SECS=$(L 3 | sed 's/.*after \([0-9.]*\) s/\1/')
echo "$(L 3)" | grep -q "closed=True" || fail "the silent client: $(L 3)"
awk "BEGIN{exit !($SECS >= 4.5 && $SECS <= 7)}" || fail "the silent client closed after $SECS s"
ok "a client that sends nothing is closed after ${SECS} s (timeout 5 s)"
[ "$(L 4)" = "17th: HTTP/1.1 503 Service Unavailable" ] || fail "past the cap: $(L 4)"
[ "$(L 5)" = "after: HTTP/1.1 200 OK" ] || fail "after the cap: $(L 5)"
ok "16 open admin connections: the 17th gets 503; once they close, requests are answered"
kill -0 "$PID" || fail "popd died"
curl -sf -m 5 "http://127.0.0.1:$A/metrics" >"$WORK/m.txt" || fail "scrape after the bad input"
expect_in "$WORK/m.txt" "popmesh_admin_forbidden_total 1"
expect_in "$WORK/m.txt" "popmesh_admin_refused_total 1"
expect_in "$WORK/m.txt" "popmesh_admin_timeouts_total 1"
ok "popd is up and counts what it refused (forbidden 1, refused 1, timeouts 1)"

# ---- /readyz ----
[ "$(curl -s -m 5 "http://127.0.0.1:$A/readyz")" = ready ] || fail "/readyz before"
# A TCP resource whose port is taken: its listener retries every second; not ready meanwhile.
RP=$(free_port)
"$PY" -c 'import socket,sys,time
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(1); time.sleep(float(sys.argv[2]))' "$RP" 4 &
HOLDER=$!
PIDS+=("$HOLDER")
sleep 0.3
mctl "$WORK/n1" site add branch >/dev/null
mctl "$WORK/n1" resource add held --site branch --target 127.0.0.1:9 --tcp-port "$RP" >/dev/null
not_ready() { [ "$(curl -s -m 2 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$A/readyz")" = 503 ]; }
wait_for 5 "/readyz 503 while port $RP is taken" not_ready
curl -s -m 2 "http://127.0.0.1:$A/readyz" >"$WORK/readyz"
expect_in "$WORK/readyz" "listeners: 1 of 3 ingress listeners"
ok "/readyz is 503 while a TCP resource's port is taken (tunnel, HTTP, resource: 1 of 3 not bound)"
ready() { [ "$(curl -s -m 2 "http://127.0.0.1:$A/readyz")" = ready ]; }
wait_for 10 "/readyz 200 once the port is free and bound" ready
ok "/readyz is 200 again ${WAITED} s later, once the port was freed and bound"

# An HTTP port already taken: popd does not start, and says why (so /readyz cannot lie).
A2=$(free_port)
init_node "$WORK/n2" pop-2 --http-listen "127.0.0.1:$H" --admin-listen "127.0.0.1:$A2"
expect_rc 1 "$POPD" run --data "$WORK/n2"
grep -q "127.0.0.1:$H" "$WORK/err" || fail "no reason naming the taken port: $(cat "$WORK/err")"
ok "http-listen on a taken port: popd exits 1 naming it ($(grep -o 'cannot [^:]*' "$WORK/err" | head -1))"
kill -0 "$PID" || fail "popd died"
done_testing
