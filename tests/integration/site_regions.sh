#!/usr/bin/env bash
# A site spreads its two tunnels over two regions, and survives the loss of a whole region.
# Four PoPs, two per region (popd init/join --region), each reached through a latrelay adding
# a different delay so the choice does not rest on ties between equal loopback RTTs:
#   pop-a1 ~4 ms, pop-a2 ~16 ms (region eu-west), pop-b1 ~40 ms, pop-b2 ~90 ms (us-east).
# By RTT alone the site would hold pop-a1 and pop-a2, both in eu-west (a popsite that ignores
# regions fails the first check below); with regions it holds pop-a1 (primary, the best) and
# pop-b1 (the best of the other region). Then both eu-west PoPs are SIGKILLed: the resource
# must stay reachable through us-east within a bounded time, and the site ends with both its
# tunnels in us-east. The mesh is started from a us-east PoP and the PoPs join out of RTT
# order, so neither the registry's nor the PoP list's order favours the expected choice.
source "$(dirname "$0")/lib.sh"
: "${POPSITE:?POPSITE must point to the popsite binary}"
: "${LATRELAY:?LATRELAY must point to the latrelay binary}"

NAMES=(pop-b2 pop-a2 pop-b1 pop-a1) # join order; the first inits the mesh
declare -A REGION=([pop-a1]=eu-west [pop-a2]=eu-west [pop-b1]=us-east [pop-b2]=us-east)
declare -A DELAY=([pop-a1]=2 [pop-a2]=8 [pop-b1]=20 [pop-b2]=45) # ms each way
declare -A INGRESS=([pop-a1]=127.0.0.61 [pop-a2]=127.0.0.62 [pop-b1]=127.0.0.63 [pop-b2]=127.0.0.64)
declare -A TPORT RPORT PID
for n in "${NAMES[@]}"; do
    TPORT[$n]=$(free_port)
    RPORT[$n]=$(free_port)
    "$LATRELAY" --listen "127.0.0.1:${RPORT[$n]}" --to "127.0.0.1:${TPORT[$n]}" \
        --delay "${DELAY[$n]}" >"$WORK/relay-$n.log" 2>&1 &
    PIDS+=("$!")
done
popd_args() { # popd_args NAME: region, tunnel and ingress options of PoP NAME
    echo --region "${REGION[$1]}" --mesh-listen "127.0.0.1:$(free_port)" \
        --tunnel-listen "127.0.0.1:${TPORT[$1]}" --tunnel-advertise "127.0.0.1:${RPORT[$1]}" \
        --ingress-address "${INGRESS[$1]}"
}
FIRST=${NAMES[0]}
# shellcheck disable=SC2046
"$POPD" init --data "$WORK/$FIRST" --name "$FIRST" $(popd_args "$FIRST") >/dev/null
start_popd "$WORK/$FIRST"
PID[$FIRST]=$LAST_PID
TOKEN=$(mctl "$WORK/$FIRST" token create --uses 3 --ttl 10m)
for n in "${NAMES[@]:1}"; do
    # shellcheck disable=SC2046
    "$POPD" join --data "$WORK/$n" --name "$n" $(popd_args "$n") "$TOKEN" >/dev/null
    start_popd "$WORK/$n"
    PID[$n]=$LAST_PID
done

BPORT=$(free_port)
"$PY" "$(dirname "$0")/echo_server.py" "$BPORT" >"$WORK/backend.log" 2>&1 &
PIDS+=("$!")
SITE_TOKEN=$(mctl "$WORK/pop-b2" site add branch | grep -o 'pmt1\.[A-Za-z0-9_-]*' | head -1)
[ -n "$SITE_TOKEN" ] || fail "site add printed no token"
RES_PORT=$(free_port)
wait_for 10 "the site record on pop-a1" sh -c "'$MESHCTL' -d '$WORK/pop-a1' site list | grep -q branch"
mctl "$WORK/pop-b2" resource add echo --site branch --target "127.0.0.1:$BPORT" \
    --tcp-port "$RES_PORT" --health tcp >/dev/null
"$POPSITE" run --data "$WORK/site" --token "$SITE_TOKEN" --pops 2 --log-level debug \
    >>"$WORK/site.log" 2>&1 &
SITE_PID=$!
PIDS+=("$SITE_PID")

# tunnels AT: the site's tunnels as PoP AT sees them, "name:region:role ..." sorted by name.
tunnels() {
    mctl "$WORK/$1" --json sites 2>/dev/null | "$PY" -c '
import json, sys
for s in json.load(sys.stdin)["sites"]:
    if s["name"] == "branch":
        print(" ".join(sorted("%s:%s:%s" % (p["name"], p.get("region", "?"), p["role"])
                              for p in s["pops"])))' || true
}
is_tunnels() { [ "$(tunnels "$1")" = "$2" ]; }
echo_through() { # echo_through IP: one round trip through that ingress address
    "$PY" -c '
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)
c.sendall(b"ping-regions"); got = b""
while len(got) < 12:
    d = c.recv(100)
    if not d: break
    got += d
sys.exit(0 if got == b"ping-regions" else 1)' "$1" "$RES_PORT"
}

# 1. Spread: pop-a1 (the best) primary, pop-b1 (the best of us-east) standby, nothing else.
#    At enrollment nothing is measured, so other PoPs may come and go first; the probes (every
#    5 s) settle it.
WANT="pop-a1:eu-west:primary pop-b1:us-east:standby"
T_START=$(date +%s)
until is_tunnels pop-b2 "$WANT"; do
    if [ $(($(date +%s) - T_START)) -ge 40 ]; then
        echo "# pop-b2 sees: $(tunnels pop-b2)"
        grep -E "popsite: (tunnel|primary|moving|fewer|PoP|every|learnt)" "$WORK/site.log" |
            tail -25 | sed 's/^/#   /'
        fail "the site's tunnels are not $WANT within 40 s"
    fi
    sleep 0.2
done
# Held, not passing through: still so 6 s later (past a probe period).
sleep 6
[ "$(tunnels pop-b2)" = "$WANT" ] || fail "the spread did not hold: $(tunnels pop-b2)"
ok "the site's two tunnels span both regions: $WANT (held over a probe period)"

expect_rc 0 "$MESHCTL" -d "$WORK/pop-a2" sites
grep -E '^branch +online +pop-a1 \(eu-west, [0-9.]+ms\) +pop-b1 \(us-east, [0-9.]+ms\) ' \
    "$WORK/out" >/dev/null || { cat "$WORK/out" >&2; fail "meshctl sites shows no regions"; }
grep -q "popsite: primary PoP is now pop-a1 (rtt [0-9.]* ms, region eu-west" "$WORK/site.log" ||
    fail "popsite did not log the primary's region"
ok "meshctl sites shows each tunnel's region; popsite logs regions with its decisions"

for n in pop-a2 pop-b2; do
    wait_for 10 "echo through $n" echo_through "${INGRESS[$n]}"
done
ok "the resource answers through pop-a2 and pop-b2 (no tunnel of their own: relayed)"

# 2. eu-west fails whole: SIGKILL pop-a1 (the primary) and pop-a2.
mctl "$WORK/pop-b2" sites | sed 's/^/#   /'
kill -9 "${PID[pop-a1]}" "${PID[pop-a2]}"
T0=$(date +%s%N)
first_ok() { # first_ok: the resource answers through either us-east PoP
    echo_through "${INGRESS[pop-b1]}" || echo_through "${INGRESS[pop-b2]}"
}
wait_for 10 "the resource through us-east after the kill" first_ok
RECOVER_MS=$((($(date +%s%N) - T0) / 1000000))
[ "$RECOVER_MS" -lt 5000 ] || fail "the resource came back only after $RECOVER_MS ms"
# Both us-east ingresses: the one without a tunnel of its own relays, and may first try the
# dead PoPs until the mesh declares them gone.
declare -A BOTH_MS
for n in pop-b1 pop-b2; do
    wait_for 10 "echo through $n after the kill" echo_through "${INGRESS[$n]}"
    BOTH_MS[$n]=$((($(date +%s%N) - T0) / 1000000))
done
ok "eu-west SIGKILLed: the resource answers through us-east after $RECOVER_MS ms (bound 5000 ms; through pop-b1 by ${BOTH_MS[pop-b1]} ms, pop-b2 by ${BOTH_MS[pop-b2]} ms)"

# 3. The site's tunnels move to the surviving region: pop-b1 primary, pop-b2 standby.
WANT="pop-b1:us-east:primary pop-b2:us-east:standby"
wait_for 30 "tunnels $WANT" is_tunnels pop-b2 "$WANT"
MOVED=$(awk "BEGIN{printf \"%.1f\", $((($(date +%s%N) - T0) / 1000000)) / 1000}")
ok "the site's tunnels are in us-east ${MOVED}s after the kill: $WANT"
grep -q "tunnel to PoP pop-a1 down: .* (region eu-west)" "$WORK/site.log" ||
    fail "popsite did not log the lost tunnel with its region"
for n in pop-b1 pop-b2; do
    echo_through "${INGRESS[$n]}" || fail "no echo through $n at the end"
done
ok "the resource answers through both us-east PoPs at the end"
echo "# recovery: resource reachable after ${RECOVER_MS} ms (every us-east ingress by $((BOTH_MS[pop-b1] > BOTH_MS[pop-b2] ? BOTH_MS[pop-b1] : BOTH_MS[pop-b2])) ms), tunnels in us-east after ${MOVED} s"
done_testing
