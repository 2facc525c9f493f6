#!/usr/bin/env bash
# IPv6 and dual stack with real processes.
# A. Three PoPs on ::1 (mesh, tunnel and HTTP ingress listeners, joined with a token whose
#    seed is "[::1]:PORT"): all alive everywhere; a write on one replicates to the others;
#    a popsite attaches over [::1] tunnels; a TCP resource and an HTTP resource, both with
#    targets on [::1] (health-checked there), answer through pop-1's [::1] ingress and the
#    HTTP ingress of every PoP; SIGKILL of a PoP is seen as dead by the other two.
# B. Dual stack: a PoP whose mesh (and HTTP ingress) listens on [::]:PORT, advertised as
#    127.0.0.1:PORT, joined by a PoP on [::1] that dials it over IPv4; both alive on both;
#    the HTTP ingress on [::] answers IPv4 and IPv6 clients.
# Only pop-1 takes ::1 as its ingress address: a resource's TCP port is the same on every
# PoP, and three PoPs on one machine cannot all bind [::1]:PORT (pop-2 and pop-3 use IPv4
# loopback addresses; IPv6 has one loopback address).
source "$(dirname "$0")/lib.sh"
: "${POPSITE:?POPSITE must point to the popsite binary}"
HERE=$(cd "$(dirname "$0")" && pwd)

if ! "$PY" -c 'import socket; socket.socket(socket.AF_INET6).bind(("::1", 0))' 2>/dev/null; then
    echo "SKIP: this machine has no ::1 (IPv6 disabled)"
    trap - EXIT
    rm -rf "$WORK"
    exit 77
fi

# free_port6: a port free on ::1 as well as on 127.0.0.1 (free_port checks only IPv4).
free_port6() {
    local p
    for _ in $(seq 1 20); do
        p=$(free_port)
        if "$PY" -c 'import socket,sys; socket.socket(socket.AF_INET6).bind(("::1", int(sys.argv[1])))' "$p" 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    echo "free_port6: no port free on both 127.0.0.1 and ::1" >&2
    return 1
}

# tcp_echo HOST PORT: one round trip of 4 KiB of random bytes through HOST:PORT, checked.
tcp_echo() {
    "$PY" - "$1" "$2" <<'PY'
import os, socket, sys
msg = os.urandom(4096)
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
s.sendall(msg)
got = b""
while len(got) < len(msg):
    b = s.recv(65536)
    if not b:
        break
    got += b
sys.exit(0 if got == msg else 1)
PY
}

# http_get HOST PORT VHOST: prints "CODE BODY" of GET / with Host: VHOST.
http_get() {
    local host=$1
    case "$host" in *:*) host="[$host]" ;; esac
    curl -s -m 5 -H "Host: $3" -w '\n%{http_code}' "http://$host:$2/" |
        "$PY" -c 'import sys; d=sys.stdin.read().rsplit("\n",1); print(d[1], d[0].replace("\n"," "))'
}
http_is() { [ "$(http_get "$1" "$2" "$3")" = "$4" ]; }
http_code_is() { [ "$(http_get "$1" "$2" "$3" | cut -d' ' -f1)" = "$4" ]; }

# ============ A. three PoPs on ::1 ============
N=("" "$WORK/n1" "$WORK/n2" "$WORK/n3")
ING=("" ::1 127.0.0.12 127.0.0.13)
declare -a M T H POPPID
for i in 1 2 3; do M[$i]=$(free_port6) T[$i]=$(free_port6) H[$i]=$(free_port6); done
"$POPD" init --data "${N[1]}" --name pop-1 --mesh-listen "[::1]:${M[1]}" \
    --tunnel-listen "[::1]:${T[1]}" --http-listen "[::1]:${H[1]}" --ingress-address "${ING[1]}" >/dev/null
start_popd "${N[1]}" --log-level debug
POPPID[1]=$LAST_PID
TOKEN=$(mctl "${N[1]}" token create --uses 2 --ttl 10m 2>/dev/null)
for i in 2 3; do
    "$POPD" join --data "${N[$i]}" --name "pop-$i" --mesh-listen "[::1]:${M[$i]}" \
        --tunnel-listen "[::1]:${T[$i]}" --http-listen "[::1]:${H[$i]}" \
        --ingress-address "${ING[$i]}" "$TOKEN" >"$WORK/out" 2>"$WORK/err" ||
        { cat "$WORK/err" >&2; fail "popd join of pop-$i through seed [::1]:${M[1]}"; }
    start_popd "${N[$i]}" --log-level debug
    POPPID[$i]=$LAST_PID
done
ALIVE="pop-1=alive pop-2=alive pop-3=alive"
wait_for 20 "3 alive members on every node" all_see "${N[1]}" "${N[2]}" "${N[3]}" "$ALIVE"
ok "A1: 3 PoPs with mesh, tunnel and HTTP ingress on [::1], joined through a [::1] seed: all alive on all (${WAITED}s)"

mctl "${N[1]}" --json members | "$PY" -c '
import json, sys
want = {"pop-%d" % i: "[::1]:%s" % p for i, p in zip((1, 2, 3), sys.argv[1:])}
got = {m["name"]: m.get("addr") for m in json.load(sys.stdin)}
sys.exit(0 if got == want else "members addresses %r, expected %r" % (got, want))' "${M[1]}" "${M[2]}" "${M[3]}" ||
    fail "pop-1's member list does not show the [::1] mesh addresses"
ok "A2: meshctl members shows every PoP at its [::1]:PORT mesh address"

echo "a-long-enough-secret" | mctl "${N[3]}" user add ipv6-writer >/dev/null
has_user() { mctl "$1" user list | grep -q ipv6-writer; }
for i in 1 2; do wait_for 10 "pop-3's write on pop-$i" has_user "${N[$i]}"; done
ok "A3: a write on pop-3 (user add) replicates to pop-1 and pop-2 over the [::1] mesh (${WAITED}s for the last)"

# ---- a site on ::1 and two resources with [::1] targets ----
BPORT=$(free_port6)
"$PY" "$HERE/echo_server.py" "[::1]:$BPORT" >"$WORK/backend.log" 2>&1 &
ECHO_PID=$!
PIDS+=("$ECHO_PID")
HBPORT=$(free_port6)
"$PY" - "$HBPORT" >"$WORK/httpbackend.log" 2>&1 <<'PY' &
import socket, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class App(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self):
        body = b"v6-app xff=" + self.headers.get("X-Forwarded-For", "-").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
class Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True
Server(("::1", int(sys.argv[1])), App).serve_forever()
PY
PIDS+=("$!")
up6() { "$PY" -c 'import socket,sys; socket.create_connection(("::1", int(sys.argv[1])), 1)' "$1"; }
wait_for 5 "the echo backend on [::1]:$BPORT" up6 "$BPORT"
wait_for 5 "the HTTP backend on [::1]:$HBPORT" up6 "$HBPORT"

SITE_TOKEN=$(mctl "${N[1]}" site add branch-6 2>"$WORK/err" | grep -o 'pmt1\.[A-Za-z0-9_-]*' | head -1)
[ -n "$SITE_TOKEN" ] || fail "site add printed no token"
RPORT=$(free_port6)
expect_rc 0 mctl "${N[1]}" resource add echo6 --site branch-6 --target "[::1]:$BPORT" --tcp-port "$RPORT"
expect_rc 0 mctl "${N[1]}" resource add web6 --site branch-6 --target "[::1]:$HBPORT" \
    --host web6.test --health http:/
"$POPSITE" run --data "$WORK/site" --token "$SITE_TOKEN" --log-level debug >>"$WORK/site.log" 2>&1 &
SITE_PID=$!
PIDS+=("$SITE_PID")
wait_for 20 "popsite's tunnel up" grep -q "tunnel to PoP .* up" "$WORK/site.log"
grep -q "dialling PoP pop-[123] at \[::1\]:" "$WORK/site.log" ||
    fail "popsite did not dial a PoP at a [::1] address: $(grep 'dialling PoP' "$WORK/site.log" | head -3)"
site_online() {
    mctl "$1" --json sites | "$PY" -c 'import json,sys; sys.exit(0 if any(s["name"]=="branch-6" and s["state"]=="online" for s in json.load(sys.stdin)["sites"]) else 1)'
}
for i in 1 2 3; do wait_for 15 "branch-6 online on pop-$i" site_online "${N[$i]}"; done
ok "A4: a popsite attaches to the PoPs' [::1] tunnel ports; branch-6 online on every PoP"

wait_for 15 "an echo round trip via [::1]:$RPORT (pop-1's ingress)" tcp_echo ::1 "$RPORT"
for i in 2 3; do wait_for 15 "an echo round trip via ${ING[$i]}:$RPORT" tcp_echo "${ING[$i]}" "$RPORT"; done
ok "A5: the TCP resource (target [::1]:$BPORT) answers through pop-1's [::1]:$RPORT ingress (and pop-2's, pop-3's)"

for i in 1 2 3; do
    wait_for 15 "web6.test through pop-$i's HTTP ingress [::1]:${H[$i]}" http_is ::1 "${H[$i]}" web6.test "200 v6-app xff=::1"
done
ok "A6: the HTTP resource (target [::1]:$HBPORT, health http:/) answers through every PoP's [::1] HTTP ingress; the app sees X-Forwarded-For ::1"

# The health checks: each target is checked every second, and a failure (fall 1) makes it
# unhealthy, which is logged. Stop the echo backend: its tcp check over [::1] must notice, then
# see it come back; the http:/ check must have stayed happy throughout.
grep -q "is unhealthy" "$WORK/site.log" && fail "a target was found unhealthy: $(grep 'is unhealthy' "$WORK/site.log" | head -3)"
kill "$ECHO_PID"
wait "$ECHO_PID" 2>/dev/null || true
wait_for 10 "the tcp check finding [::1]:$BPORT unhealthy" grep -qF "healthcheck: tcp [::1]:$BPORT is unhealthy" "$WORK/site.log"
"$PY" "$HERE/echo_server.py" "[::1]:$BPORT" >>"$WORK/backend.log" 2>&1 &
ECHO_PID=$!
PIDS+=("$ECHO_PID")
wait_for 10 "the tcp check finding [::1]:$BPORT healthy again" grep -qF "healthcheck: tcp [::1]:$BPORT is healthy" "$WORK/site.log"
grep -qF "[::1]:$HBPORT/ is unhealthy" "$WORK/site.log" &&
    fail "the http:/ check failed on a working [::1] target: $(grep -F "[::1]:$HBPORT" "$WORK/site.log" | head -3)"
wait_for 15 "an echo round trip via [::1]:$RPORT after the backend's restart" tcp_echo ::1 "$RPORT"
ok "A7: popsite's health checks over [::1]: the tcp check sees the echo backend stop and come back; the http:/ check stays healthy"

kill -9 "${POPPID[3]}"
wait "${POPPID[3]}" 2>/dev/null || true
DEAD3="pop-1=alive pop-2=alive pop-3=dead"
wait_for 20 "pop-3 dead on pop-1 and pop-2" all_see "${N[1]}" "${N[2]}" "$DEAD3"
ok "A8: SIGKILL of pop-3: pop-1 and pop-2 declare it dead over the [::1] mesh within ${WAITED}s"
kill -9 "$SITE_PID" "${POPPID[1]}" "${POPPID[2]}"
wait "$SITE_PID" "${POPPID[1]}" "${POPPID[2]}" 2>/dev/null || true

# ============ B. dual stack: [::] reached over IPv4 ============
DM=$(free_port6) DT=$(free_port6) DH=$(free_port6)
# (no --tunnel-advertise: the wildcard tunnel listener is published with the advertised host)
"$POPD" init --data "$WORK/d1" --name dual-1 --mesh-listen "[::]:$DM" --advertise "127.0.0.1:$DM" \
    --tunnel-listen "[::]:$DT" --http-listen "[::]:$DH" --ingress-address :: >/dev/null
start_popd "$WORK/d1" --log-level debug
DTOKEN=$(mctl "$WORK/d1" token create --ttl 10m 2>/dev/null)
"$POPD" join --data "$WORK/d2" --name dual-2 --mesh-listen "[::1]:$(free_port6)" \
    --tunnel-listen "[::1]:$(free_port6)" "$DTOKEN" >"$WORK/out" 2>"$WORK/err" ||
    { cat "$WORK/err" >&2; fail "popd join through the IPv4 seed 127.0.0.1:$DM of a [::] mesh listener"; }
start_popd "$WORK/d2" --log-level debug
D2_PID=$LAST_PID
wait_for 20 "dual-1 and dual-2 alive on both" all_see "$WORK/d1" "$WORK/d2" "dual-1=alive dual-2=alive"
ok "B1: a PoP with its mesh on [::]:$DM, advertised as 127.0.0.1:$DM, is joined and reached over IPv4 by a PoP on [::1]; both alive on both (${WAITED}s)"

# An unknown Host gets 404: proof enough that the listener took the connection.
for h in 127.0.0.1 ::1; do
    wait_for 5 "dual-1's HTTP ingress [::]:$DH from $h" http_code_is "$h" "$DH" nowhere.test 404
done
ok "B2: the HTTP ingress on [::]:$DH answers clients on 127.0.0.1 and ::1 (dual stack)"

TADDR=$(mctl "$WORK/d1" --json status | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["dataplane"]["tunnel_addr"])')
[ "$TADDR" = "127.0.0.1:$DT" ] || fail "dual-1 publishes its tunnel endpoint as '$TADDR', not 127.0.0.1:$DT"
# A site and a resource on dual-1 alone (dual-2 leaves first: with ingress "::" the resource
# port is taken on every address, and a second PoP here could not bind it).
stop_popd "$D2_PID"
SITE2_TOKEN=$(mctl "$WORK/d1" site add branch-46 2>"$WORK/err" | grep -o 'pmt1\.[A-Za-z0-9_-]*' | head -1)
R2=$(free_port6)
expect_rc 0 mctl "$WORK/d1" resource add echo46 --site branch-46 --target "[::1]:$BPORT" --tcp-port "$R2"
"$POPSITE" run --data "$WORK/site2" --token "$SITE2_TOKEN" --log-level debug >>"$WORK/site2.log" 2>&1 &
PIDS+=("$!")
wait_for 20 "the site's tunnel to dual-1 over 127.0.0.1:$DT" grep -q "tunnel to PoP dual-1.* up" "$WORK/site2.log"
grep -qF "dialling PoP dual-1 at 127.0.0.1:$DT" "$WORK/site2.log" ||
    fail "popsite did not dial dual-1 at 127.0.0.1:$DT: $(grep 'dialling PoP' "$WORK/site2.log" | head -3)"
for h in 127.0.0.1 ::1; do
    wait_for 15 "an echo round trip via dual-1's ingress [::] from $h" tcp_echo "$h" "$R2"
done
ok "B3: dual-1's tunnel endpoint on [::]:$DT is published as $TADDR and a site attaches over IPv4; a TCP resource on ingress address :: answers clients on 127.0.0.1 and ::1"

done_testing
