#!/usr/bin/env bash
# Real health vectors with real processes: two PoPs, a popsite and a TCP resource.
# 1. streams held open through pop-1 show in pop-1's health as the other PoP sees it, and the
#    PoP the site is attached to reports one tunnel; 2. a TCP resource port that pop-2 cannot
#    bind (another process holds it) shows pop-2's ingress DOWN on pop-1 within seconds, and
#    routes avoid it; 3. once the port is free pop-2 binds it and shows up again.
source "$(dirname "$0")/lib.sh"
: "${POPSITE:?POPSITE must point to the popsite binary}"

cat >"$WORK/h.py" <<'PY'
import socket, sys, time


def hold(host, port, n, ready):
    # n connections, each proven with one round trip, then held open until killed.
    socks = []
    for i in range(n):
        s = socket.create_connection((host, port), timeout=10)
        s.sendall(b"ping %d" % i)
        got = b""
        while len(got) < len(b"ping %d" % i):
            b = s.recv(100)
            if not b:
                raise SystemExit("connection %d closed" % i)
            got += b
        socks.append(s)
    open(ready, "w").write("%d\n" % n)
    time.sleep(120)

def occupy(host, port, ready):
    s = socket.socket()
    s.bind((host, port))
    s.listen(1)
    open(ready, "w").write("bound\n")
    time.sleep(120)

cmd, a = sys.argv[1], sys.argv[2:]
if cmd == "hold": hold(a[0], int(a[1]), int(a[2]), a[3])
elif cmd == "occupy": occupy(a[0], int(a[1]), a[2])
PY

# health DIR NAME FIELD: FIELD of NAME's health vector as DIR's node sees it ("" if none).
health() {
    mctl "$1" --json members | "$PY" -c '
import json, sys
for m in json.load(sys.stdin):
    if m["name"] == sys.argv[1] and m["health"] is not None:
        v = m["health"][sys.argv[2]]
        print(json.dumps(v) if not isinstance(v, str) else v)' "$2" "$3"
}
health_is() { [ "$(health "$1" "$2" "$3")" = "$4" ]; }
health_ge() { local v; v=$(health "$1" "$2" "$3"); [ -n "$v" ] && [ "$v" -ge "$4" ]; }

# ---- two PoPs with their own ingress addresses ----
ING=("" 127.0.0.11 127.0.0.12)
N=("" "$WORK/n1" "$WORK/n2")
"$POPD" init --data "${N[1]}" --name pop-1 --mesh-listen "127.0.0.1:$(free_port)" \
    --tunnel-listen "127.0.0.1:$(free_port)" --ingress-address "${ING[1]}" >/dev/null
start_popd "${N[1]}"
POPTOKEN=$(mctl "${N[1]}" token create --uses 1 --ttl 10m 2>/dev/null)
"$POPD" join --data "${N[2]}" --name pop-2 --mesh-listen "127.0.0.1:$(free_port)" \
    --tunnel-listen "127.0.0.1:$(free_port)" --ingress-address "${ING[2]}" "$POPTOKEN" >/dev/null
start_popd "${N[2]}"
wait_for 20 "both PoPs alive on both" all_see "${N[1]}" "${N[2]}" "pop-1=alive pop-2=alive"

BPORT=$(free_port)
"$PY" "$(dirname "$0")/echo_server.py" "$BPORT" >"$WORK/backend.log" 2>&1 &
PIDS+=("$!")
wait_for 5 "the echo backend" "$PY" -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' "$BPORT"
expect_rc 0 mctl "${N[1]}" site add branch-1
SITETOKEN=$(cat "$WORK/out")
RPORT=$(free_port)
expect_rc 0 mctl "${N[1]}" resource add echo --site branch-1 --target "127.0.0.1:$BPORT" --tcp-port "$RPORT"
"$POPSITE" run --data "$WORK/site" --token "$SITETOKEN" --pops 1 >>"$WORK/site.log" 2>&1 &
PIDS+=("$!")
wait_for 20 "popsite's tunnel up" grep -q "tunnel to PoP .* up" "$WORK/site.log"

# ---- 1. streams and tunnels ----
wait_for 15 "both PoPs' ingress up, as pop-1 sees them" eval 'health_is "${N[1]}" pop-1 ingress_up true && health_is "${N[1]}" pop-2 ingress_up true'
tunnels_sum() { echo $(( $(health "${N[1]}" pop-1 tunnels) + $(health "${N[1]}" pop-2 tunnels) )); }
wait_for 10 "one tunnel in all, at the site's PoP" eval '[ "$(tunnels_sum)" = 1 ]'
ATT=pop-1
[ "$(health "${N[1]}" pop-2 tunnels)" = 1 ] && ATT=pop-2
SITE_POPS=$(mctl "${N[1]}" --json sites | "$PY" -c 'import json,sys; print(",".join(p["name"] for s in json.load(sys.stdin)["sites"] if s["name"] == "branch-1" for p in s["pops"]))')
[ "$SITE_POPS" = "$ATT" ] || fail "tunnels = 1 at $ATT, but the site is attached to '$SITE_POPS'"
ok "1a: tunnels = 1 at $ATT, the PoP branch-1 is attached to; 0 at the other"

wait_for 15 "an echo through pop-1's ingress" "$PY" -c '
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), 2); s.sendall(b"x"); assert s.recv(1) == b"x"' "${ING[1]}" "$RPORT"
[ "$(health "${N[2]}" pop-1 streams)" = 0 ] || wait_for 10 "pop-1 idle" health_is "${N[2]}" pop-1 streams 0
HOLD=8
"$PY" "$WORK/h.py" hold "${ING[1]}" "$RPORT" "$HOLD" "$WORK/held" >"$WORK/hold.log" 2>&1 &
HOLDPID=$!
PIDS+=("$HOLDPID")
wait_for 15 "$HOLD connections held through pop-1" test -s "$WORK/held"
T0=$(date +%s.%N)
wait_for 10 "pop-2 to see pop-1's streams >= $HOLD" health_ge "${N[2]}" pop-1 streams "$HOLD"
T1=$(date +%s.%N)
S1=$(health "${N[2]}" pop-1 streams)
expect_rc 0 mctl "${N[2]}" members
expect_in "$WORK/out" "STREAMS"
expect_in "$WORK/out" "TUNNELS"
expect_in "$WORK/out" "LOAD"
grep "^pop-1 " "$WORK/out" | grep -q " up [0-9]*/[0-9]* *$S1 " ||
    { sed -n 1,3p "$WORK/out" >&2; fail "meshctl members on pop-2 does not show pop-1 up with $S1 streams"; }
ok "1b: $HOLD connections held via pop-1: pop-2 sees pop-1 with streams = $S1 after $(printf %.1f "$(echo "$T1 - $T0" | bc)") s; members table: $(grep '^pop-1 ' "$WORK/out" | awk '{$1=$1; print}')"
kill "$HOLDPID" 2>/dev/null; wait "$HOLDPID" 2>/dev/null || true
wait_for 10 "pop-1's streams back to 0 (seen from pop-2)" health_is "${N[2]}" pop-1 streams 0
ok "1c: connections closed: pop-1's streams back to 0"

# ---- 2. a resource port pop-2 cannot bind: its ingress is DOWN ----
L1=$(health "${N[1]}" pop-2 listeners)
RPORT2=$(free_port)
"$PY" "$WORK/h.py" occupy "${ING[2]}" "$RPORT2" "$WORK/occupied" >"$WORK/occupy.log" 2>&1 &
OCCPID=$!
PIDS+=("$OCCPID")
wait_for 5 "another process holding ${ING[2]}:$RPORT2" test -s "$WORK/occupied"
T0=$(date +%s.%N)
expect_rc 0 mctl "${N[1]}" resource add echo2 --site branch-1 --target "127.0.0.1:$BPORT" --tcp-port "$RPORT2"
wait_for 10 "pop-1 to see pop-2's ingress DOWN" health_is "${N[1]}" pop-2 ingress_up false
T1=$(date +%s.%N)
L2=$(health "${N[1]}" pop-2 listeners) U2=$(health "${N[1]}" pop-2 listeners_up)
[ "$L2" = $((L1 + 1)) ] && [ "$U2" = "$L1" ] || fail "pop-2 listeners $U2/$L2, want $L1/$((L1 + 1))"
expect_rc 0 mctl "${N[1]}" members
grep "^pop-2 " "$WORK/out" | grep -q " DOWN $U2/$L2 " || { cat "$WORK/out" >&2; fail "members on pop-1 does not show pop-2 DOWN $U2/$L2"; }
health_is "${N[1]}" pop-1 ingress_up true || fail "pop-1's ingress went down too"
ok "2a: pop-2 cannot bind $RPORT2: pop-1 shows it DOWN $U2/$L2 after $(printf %.1f "$(echo "$T1 - $T0" | bc)") s (pop-1 itself up): $(grep '^pop-2 ' "$WORK/out" | awk '{$1=$1; print}')"
grep -q "this PoP's ingress is DOWN" "${N[2]}.log" || fail "pop-2 did not log its ingress DOWN"
ok "2b: pop-2 logged: $(grep -m1 "ingress is DOWN" "${N[2]}.log" | cut -d' ' -f4-)"

# ---- 3. the port freed: pop-2 binds it and is up again ----
T0=$(date +%s.%N)
kill "$OCCPID" 2>/dev/null; wait "$OCCPID" 2>/dev/null || true
wait_for 10 "pop-1 to see pop-2's ingress up again" health_is "${N[1]}" pop-2 ingress_up true
T1=$(date +%s.%N)
[ "$(health "${N[1]}" pop-2 listeners_up)" = "$L2" ] || fail "pop-2 up but listeners_up $(health "${N[1]}" pop-2 listeners_up) != $L2"
"$PY" -c '
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), 5); s.sendall(b"y"); assert s.recv(1) == b"y"' "${ING[2]}" "$RPORT2" ||
    fail "no echo through pop-2's $RPORT2 after it bound it"
ok "3: port freed: pop-2 up again ($L2/$L2) on pop-1 after $(printf %.1f "$(echo "$T1 - $T0" | bc)") s, and echo2 answers through it"
done_testing
