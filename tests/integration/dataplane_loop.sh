#!/usr/bin/env bash
# Resources that point back into the mesh, or clash with its ports, with real processes:
# resource add refuses a tcp port that is a PoP's mesh or tunnel port, a target that is a PoP's
# own TCP ingress (its host with a resource port, mesh or tunnel port), and a path prefix with
# '.', '..' or '//' segments, each with a message naming the clash (exit 1). A port the
# registry cannot know (the PoP's HTTP ingress port) is accepted, and the PoP that finds the
# clash logs it once and does not bind it. Then loops the registry cannot see (the PoP's
# ingress reached through another address): connections into them are cut within a second,
# the target shows unhealthy ("loops into the mesh"), descriptors stay few and the PoP counts
# the loops.
source "$(dirname "$0")/lib.sh"
: "${POPSITE:?POPSITE must point to the popsite binary}"

MP=$(free_port)
T=$(free_port)
H=$(free_port)
RPORT=$(free_port)
BPORT=$(free_port)
"$POPD" init --data "$WORK/n1" --name pop-1 --mesh-listen "127.0.0.1:$MP" \
    --tunnel-listen "127.0.0.1:$T" --http-listen "127.0.0.1:$H" >/dev/null
start_popd "$WORK/n1"
mctl "$WORK/n1" site add branch >/dev/null

# refuse WANT ARGS...: resource add ARGS exits RC (1: refused; 2: a bad argument) with WANT in
# its message
RC=1
refuse() {
    local want=$1
    shift
    expect_rc "$RC" mctl "$WORK/n1" resource add "$@"
    expect_in "$WORK/err" "$want"
}
refuse "is PoP pop-1's tunnel port (127.0.0.1:$T)" web --site branch --target "10.9.9.9:80" --tcp-port "$T"
refuse "is PoP pop-1's mesh port (127.0.0.1:$MP)" web --site branch --target "10.9.9.9:80" --tcp-port "$MP"
ok "a resource port equal to the PoP's tunnel or mesh port is refused, naming the clash"
refuse "target 127.0.0.1:$RPORT is an ingress of the mesh (PoP pop-1, tcp port of resource 'loop' itself)" \
    loop --site branch --target "127.0.0.1:$RPORT" --tcp-port "$RPORT"
expect_rc 0 mctl "$WORK/n1" resource add echo --site branch --target "127.0.0.1:$BPORT" --tcp-port "$RPORT"
refuse "target 127.0.0.1:$RPORT is an ingress of the mesh (PoP pop-1, tcp port of resource 'echo')" \
    loop --site branch --target "127.0.0.1:$RPORT" --tcp-port "$(free_port)"
refuse "target localhost:$T is an ingress of the mesh (PoP pop-1, tunnel port)" \
    loop --site branch --target "localhost:$T" --tcp-port "$(free_port)"
ok "a target that is the PoP's own TCP ingress (its own port, another resource's, the tunnel port) is refused"
RC=2 # meshctl's exit code for a request it could never make valid
for p in /a/../b /.. /a/. //x /a//b; do
    refuse "never match" web --site branch --target "10.9.9.9:80" --host web.example --path-prefix "$p"
done
ok "path prefixes with '.', '..' or '//' segments are refused (exit 2, a bad argument): they could never match"

# The HTTP ingress port is not in the registry: accepted at add, refused by the PoP itself.
expect_rc 0 mctl "$WORK/n1" resource add clash --site branch --target "10.9.9.9:80" --tcp-port "$H"
wait_for 5 "the PoP to log the clash" grep -q "resource clash: tcp port $H is this PoP's HTTP ingress port" "$WORK/n1.log"
sleep 2.2
N=$(grep -c "resource clash: tcp port $H" "$WORK/n1.log")
[ "$N" = 1 ] || fail "the clash was logged $N times in 2 s (once expected)"
curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$H/" -H 'Host: nothing.example' >"$WORK/code" || true
[ "$(cat "$WORK/code")" != 000 ] || fail "the HTTP ingress stopped answering"
ok "a resource on the PoP's HTTP port: the PoP logs the clash once, does not bind it, and its HTTP ingress still answers"

# ---- loops the registry cannot see, cut at run time by the site ----
# A second mesh whose PoP listens for resources on 127.0.0.11 (--ingress-address) and for HTTP
# on 127.0.0.13, while the registry knows it as 127.0.0.1: a target 127.0.0.11:P (its own
# resource port) or 127.0.0.13:H (its HTTP port) passes resource add, and every connection to
# it would come back into the mesh. The site recognises its own connections coming back (the
# OPEN's client address is one of its sockets towards a target), refuses them, and marks the
# target unhealthy; the health checker's connections are caught the same way.
MP2=$(free_port)
T2=$(free_port)
H2=$(free_port)
P2=$(free_port)
"$POPD" init --data "$WORK/m1" --name pop-a --mesh-listen "127.0.0.1:$MP2" \
    --tunnel-listen "127.0.0.1:$T2" --http-listen "127.0.0.13:$H2" \
    --ingress-address 127.0.0.11 >/dev/null
start_popd "$WORK/m1"
POPA_PID=$LAST_PID
expect_rc 0 mctl "$WORK/m1" site add loopy
STOKEN=$(grep -o 'pmt1\.[A-Za-z0-9_-]*' "$WORK/out" | head -1)
"$POPSITE" run --data "$WORK/site" --token "$STOKEN" >>"$WORK/site.log" 2>&1 &
SITE_PID=$!
PIDS+=("$SITE_PID")
wait_for 20 "popsite's tunnel up" grep -q "tunnel to PoP .* up" "$WORK/site.log"
expect_rc 0 mctl "$WORK/m1" resource add tloop --site loopy --target "127.0.0.11:$P2" --tcp-port "$P2"
expect_rc 0 mctl "$WORK/m1" resource add hloop --site loopy --target "127.0.0.13:$H2" --host loop.test
ok "resources whose targets are the PoP's own TCP and HTTP ingress through other addresses are accepted"

cat >"$WORK/cut.py" <<'PY'
import socket, sys, time
# prints the seconds until the connection through the loop is closed or reset (or "hung")
host, port, http = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "http"
t0 = time.time()
try:
    s = socket.create_connection((host, port), timeout=5)
    s.sendall(b"GET / HTTP/1.1\r\nHost: loop.test\r\n\r\n" if http else b"ping")
    s.settimeout(3)
    while True:
        b = s.recv(65536)
        if not b:
            break
        sys.stderr.buffer.write(b)
    print("%.3f" % (time.time() - t0))
except (ConnectionResetError, BrokenPipeError):
    print("%.3f" % (time.time() - t0))
except socket.timeout:
    print("hung")
PY
fds() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }
# why_of TARGET: the health reason meshctl sites shows for TARGET of site loopy ("" if none)
why_of() {
    mctl "$WORK/m1" --json sites 2>/dev/null | "$PY" -c '
import json, sys
j = json.load(sys.stdin)
for s in j["sites"]:
    if s["name"] == "loopy":
        for t in s.get("targets", []):
            if t.get("addr") == sys.argv[1] and not t.get("healthy", True):
                print(t.get("why", ""))
' "$1"
}
loop_shown() { why_of "$1" | grep -q "loops into the mesh"; }
wait_for 15 "the site online with resource tloop" bash -c "'$MESHCTL' -d '$WORK/m1' --json sites | grep -q '127.0.0.11:$P2'"
CUT=$("$PY" "$WORK/cut.py" 127.0.0.11 "$P2" tcp)
echo "# a connection into the TCP loop was cut after ${CUT} s"
[ "$CUT" != hung ] && awk "BEGIN{exit !($CUT < 1.0)}" || fail "a connection into the TCP loop was not cut within 1 s ($CUT)"
ok "a connection to the TCP resource that loops is cut within 1 s (${CUT} s)"
wait_for 10 "target 127.0.0.11:$P2 unhealthy, looping" loop_shown "127.0.0.11:$P2"
ok "the looping TCP target shows unhealthy in meshctl sites: $(why_of "127.0.0.11:$P2")"
CUT=$("$PY" "$WORK/cut.py" 127.0.0.13 "$H2" http 2>"$WORK/resp")
echo "# a request into the HTTP loop ended after ${CUT} s"
[ "$CUT" != hung ] && awk "BEGIN{exit !($CUT < 1.0)}" || fail "a request into the HTTP loop did not end within 1 s ($CUT)"
ok "a request to the HTTP resource that loops ends within 1 s (${CUT} s) with 502 naming the loop"
expect_in "$WORK/resp" "502 Bad Gateway"
expect_in "$WORK/resp" "loop: the target 127.0.0.13:$H2 leads back into the mesh"
# A TCP check of an HTTP port opens no stream: requests are what come back. A target is
# marked at its second loop within 10 s (one could be a port collision), so keep asking.
http_loop_shown() {
    "$PY" "$WORK/cut.py" 127.0.0.13 "$H2" http >/dev/null 2>&1
    loop_shown "127.0.0.13:$H2"
}
wait_for 10 "target 127.0.0.13:$H2 unhealthy, looping" http_loop_shown
ok "the looping HTTP target shows unhealthy in meshctl sites: $(why_of "127.0.0.13:$H2")"

# 5 s of health checks and a connection into each loop every 0.25 s: descriptors stay few.
MAXP=0
MAXS=0
END=$(($(date +%s) + 5))
while [ "$(date +%s)" -lt "$END" ]; do
    "$PY" "$WORK/cut.py" 127.0.0.11 "$P2" tcp >/dev/null 2>&1 || true
    "$PY" "$WORK/cut.py" 127.0.0.13 "$H2" http >/dev/null 2>&1 || true
    kill -0 "$POPA_PID" 2>/dev/null || fail "popd died"
    kill -0 "$SITE_PID" 2>/dev/null || fail "popsite died"
    P=$(fds "$POPA_PID")
    S=$(fds "$SITE_PID")
    [ "$P" -gt "$MAXP" ] && MAXP=$P
    [ "$S" -gt "$MAXS" ] && MAXS=$S
    sleep 0.25
done
echo "# descriptors over 5 s: popd at most $MAXP, popsite at most $MAXS"
[ "$MAXP" -lt 100 ] && [ "$MAXS" -lt 100 ] || fail "descriptors grew: popd $MAXP, popsite $MAXS"
ok "for 5 s of health checks and connections into both loops, popd held at most $MAXP descriptors and popsite $MAXS; both live"
LOOPS=$(mctl "$WORK/m1" --json status | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["dataplane"]["ingress_loops"])')
[ "$LOOPS" -gt 0 ] || fail "ingress_loops is $LOOPS"
N=$(grep -c "popsite: loop: " "$WORK/site.log")
[ "$N" -le 8 ] || fail "popsite logged $N loop lines in ~7 s (at most one a second expected)"
ok "the PoP counts the loops (ingress_loops $LOOPS); popsite logged $N loop lines in ~7 s (at most one a second)"
done_testing
