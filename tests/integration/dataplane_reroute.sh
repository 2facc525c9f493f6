#!/usr/bin/env bash
# Data-plane rerouting through a relay PoP. Four PoPs A..D, each in its own network namespace;
# the site connector and an echo backend run in C's namespace and the site is attached to C
# only (--pops 1, and its dials to the other PoPs are rejected). All traffic between A and C
# is dropped, so A has no link to C and its route to the site goes A > X > C with X in {B, D};
# a connection entering at A is relayed through X. X is then SIGKILLed: within a bounded time
# A routes through the other relay and new connections entering at A work again.
if [ "$(id -u)" -ne 0 ]; then # before lib.sh: its EXIT trap would turn 77 into 1 under set -e
    echo "SKIP: network namespaces need root" >&2
    exit 77
fi
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/netns.sh"
: "${POPSITE:?POPSITE must point to the popsite binary}"
netns_require
# shellcheck disable=SC2154 # rc is assigned in the trap itself
trap 'rc=$?; cleanup $rc || true; netns_cleanup; exit $rc' EXIT
T_START=$(date +%s)

NAME=(x pop-a pop-b pop-c pop-d) # PoP i runs in namespace i
SITE_GID=4242                    # popsite runs with this gid, so iptables can tell it apart
RES_PORT=7100                    # the resource's port on every PoP's ingress address
BACK_PORT=7200                   # the echo backend, on C's address

popd_args() { # popd_args I: mesh, tunnel and ingress options of PoP I, all on its own address
    echo --mesh-listen "$(netns_ip "$1"):7946" --tunnel-listen "$(netns_ip "$1"):7947" \
        --ingress-address "$(netns_ip "$1")"
}
start_pop() { # start_pop I: runs PoP I's popd in namespace I
    # ip netns exec execs its command: $! is popd itself (a backgrounded netns_exec would be a
    # subshell, and killing it would leave popd running).
    ip netns exec "${NETNS_TAG}n$1" "$POPD" run --data "$WORK/n$1" >>"$WORK/n$1.log" 2>&1 &
    NODE_PID[$1]=$!
    PIDS+=("$!")
    wait_ready "$WORK/n$1" "${NODE_PID[$1]}"
}

netns_setup 4
# shellcheck disable=SC2046
"$POPD" init --data "$WORK/n1" --name pop-a $(popd_args 1) >/dev/null
start_pop 1
join_pop() { # join_pop I TOKEN
    # shellcheck disable=SC2046
    netns_exec "$1" "$POPD" join --data "$WORK/n$1" --name "${NAME[$1]}" $(popd_args "$1") \
        "$2" >/dev/null
    start_pop "$1"
}
TOKEN=$(mctl "$WORK/n1" token create --uses 2 --ttl 10m 2>/dev/null)
join_pop 2 "$TOKEN"
join_pop 4 "$TOKEN"
# A and C never talk directly: the cut comes before C joins (through B). Cutting a running
# link does not remove it from link state: SWIM keeps the last direct RTT of a member that
# indirect probes keep alive, and A would go on advertising a link to C (see the report).
netns_block 1 3
wait_certified "$WORK/n2"
TOKEN=$(mctl "$WORK/n2" token create --uses 1 --ttl 10m 2>/dev/null)
join_pop 3 "$TOKEN"
N=("$WORK/n1" "$WORK/n2" "$WORK/n3" "$WORK/n4")
ALL4="pop-a=alive pop-b=alive pop-c=alive pop-d=alive"
wait_for 20 "4 alive members everywhere" all_see "${N[@]}" "$ALL4"
ok "4 PoPs in 4 network namespaces, all alive"

# The echo backend, in C's namespace.
ip netns exec "${NETNS_TAG}n3" "$PY" -c '
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(128)
def echo(c):
    with c:
        while True:
            d = c.recv(65536)
            if not d: return
            c.sendall(d)
while True:
    c, _ = s.accept(); threading.Thread(target=echo, args=(c,), daemon=True).start()
' "$(netns_ip 3)" "$BACK_PORT" >"$WORK/backend.log" 2>&1 &
PIDS+=("$!")

# The site may reach C only: its dials to the other PoPs (any port) are rejected at once.
for i in 1 2 4; do
    netns_exec 3 iptables -A OUTPUT -m owner --gid-owner "$SITE_GID" -d "$(netns_ip "$i")" \
        -p tcp -j REJECT --reject-with tcp-reset
    netns_exec 3 iptables -A OUTPUT -m owner --gid-owner "$SITE_GID" -d "$(netns_ip "$i")" -j DROP
done
wait_certified "$WORK/n3"
SITE_TOKEN=$(mctl "$WORK/n3" site add branch | grep -o 'pmt1\.[A-Za-z0-9_-]*' | head -1)
[ -n "$SITE_TOKEN" ] || fail "site add printed no token"
wait_for 10 "the site record on pop-a" sh -c "'$MESHCTL' -d '$WORK/n1' site list | grep -q branch"
mctl "$WORK/n3" resource add echo --site branch --target "$(netns_ip 3):$BACK_PORT" \
    --tcp-port "$RES_PORT" --health tcp >/dev/null
ip netns exec "${NETNS_TAG}n3" setpriv --regid "$SITE_GID" --clear-groups \
    "$POPSITE" run --data "$WORK/site" --token "$SITE_TOKEN" --pops 1 --log-level debug \
    >>"$WORK/site.log" 2>&1 &
PIDS+=("$!")

# site_pops DIR: "name=role ..." of the PoPs holding a tunnel to the site, as DIR sees it.
site_pops() {
    mctl "$1" --json sites 2>/dev/null | "$PY" -c '
import json, sys
for s in json.load(sys.stdin)["sites"]:
    if s["name"] == "branch":
        print(" ".join(sorted("%s=%s" % (p["name"], p["role"]) for p in s["pops"]
                              if p["role"] != "none")))' 
}
only_at_c() {
    for d in "${N[@]}"; do
        [ "$(site_pops "$d")" = "pop-c=primary" ] || return 1
    done
}
wait_for 20 "the site attached at pop-c only" only_at_c
ok "the site is attached at pop-c only (every PoP agrees)"

# route_at_a: the site's path at pop-a, e.g. "pop-a>pop-b>pop-c"; "" when there is none.
route_at_a() {
    mctl "$WORK/n1" --json routes 2>/dev/null | "$PY" -c '
import json, sys
for s in json.load(sys.stdin)["sites"]:
    if s["site"] == "branch":
        print(">".join(s.get("path") or []))'
}
relayed_at_a() { # the path is A > X > C, X in {B, D}; sets RELAY
    local p
    p=$(route_at_a) || return 1
    case "$p" in
    pop-a\>pop-b\>pop-c) RELAY=pop-b ;;
    pop-a\>pop-d\>pop-c) RELAY=pop-d ;;
    *) return 1 ;;
    esac
}
wait_for 30 "pop-a routes to the site through B or D (now: $(route_at_a))" relayed_at_a
relayed_at_a
ok "A and C cut off from each other: pop-a's route is $(route_at_a) (after ${WAITED}s)"
mctl "$WORK/n1" routes || true

echo_at_a() { # one round trip through pop-a's ingress, from inside A's namespace
    netns_exec 1 timeout 5 "$PY" -c '
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)
c.settimeout(2)
c.sendall(b"ping-popmesh"); got = b""
while len(got) < 12:
    d = c.recv(100)
    if not d: break
    got += d
sys.exit(0 if got == b"ping-popmesh" else 1)' "$(netns_ip 1)" "$RES_PORT"
}
wait_for 15 "echo through pop-a" echo_at_a
ok "a connection entering at pop-a gets its echo, relayed through $RELAY"

if [ "$RELAY" = pop-b ]; then X=2 OTHER=pop-d; else X=4 OTHER=pop-b; fi
kill -9 "${NODE_PID[$X]}"
T0=$(date +%s%N)
echo "killed $RELAY (pid ${NODE_PID[$X]}), expecting the route through $OTHER"
ECHO_MS="" ROUTE_MS=""
while :; do
    now=$(date +%s%N)
    el=$(( (now - T0) / 1000000 ))
    [ "$el" -lt 15000 ] || break
    if [ -z "$ROUTE_MS" ] && [ "$(route_at_a)" = "pop-a>$OTHER>pop-c" ]; then
        ROUTE_MS=$(( ($(date +%s%N) - T0) / 1000000 ))
        echo "route at pop-a changed to pop-a>$OTHER>pop-c after $ROUTE_MS ms"
    fi
    if [ -z "$ECHO_MS" ] && echo_at_a 2>/dev/null; then
        ECHO_MS=$(( ($(date +%s%N) - T0) / 1000000 ))
        echo "first successful connection through pop-a after $ECHO_MS ms"
    fi
    [ -n "$ROUTE_MS" ] && [ -n "$ECHO_MS" ] && break
    sleep 0.1
done
[ -n "$ECHO_MS" ] || { mctl "$WORK/n1" routes || true; fail "no echo through pop-a within 15 s of killing $RELAY"; }
[ -n "$ROUTE_MS" ] || { mctl "$WORK/n1" routes || true; fail "pop-a's route did not move to $OTHER within 15 s (now: '$(route_at_a)')"; }
[ "$ECHO_MS" -lt 10000 ] || fail "connections through pop-a resumed only after $ECHO_MS ms"
[ "$ROUTE_MS" -lt 10000 ] || fail "pop-a's route changed only after $ROUTE_MS ms"
ok "$RELAY SIGKILLed: connections entering at pop-a work again after $ECHO_MS ms, route via $OTHER after $ROUTE_MS ms"
mctl "$WORK/n1" routes || true
for _ in 1 2 3; do echo_at_a || fail "echo through pop-a after the reroute"; done
ok "further connections through pop-a keep working (via $OTHER)"

ELAPSED=$(( $(date +%s) - T_START ))
[ "$ELAPSED" -lt 120 ] || fail "the test took $ELAPSED s"
echo "whole test: ${ELAPSED}s"
done_testing
