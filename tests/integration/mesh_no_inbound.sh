#!/usr/bin/env bash
# A PoP that can only dial out: two cloud PoPs (pop-1, pop-2) and an on-prem PoP (pop-3), each
# in its own network namespace. pop-3's firewall drops every inbound TCP SYN on its network
# interface (replies to its own connections pass, as on most corporate networks), and it runs
# with --no-inbound. It must be a full member anyway:
#   1. alive everywhere, and its peers show it reachable one way only (members LINK reverse);
#   2. writes replicate both ways;
#   3. a user entering at pop-3 reaches a site attached to the cloud PoPs;
#   4. a site attached only to pop-3 (its dials to the cloud are rejected) is reachable from a
#      cloud PoP's ingress;
#   5. no false deaths over the run (no member declared dead in any log), every round trip ok.
# Without the back channels (node/membership/meshnet.h) every PoP declares the others dead.
#
# With LEARNED=1 (mesh_no_inbound_learned.sh) pop-3 is NOT started with --no-inbound: the
# others must learn that it cannot be dialled (their mesh sends go back on its connections),
# show LINK "reverse (learned)", stop dialling its tunnel port and use the tunnels it dials.
# Without the learning, the cloud PoPs keep dialling pop-3's tunnel and 4 fails.
LEARNED=${LEARNED:-0}
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

SITE_GID=4243 # the on-prem connector runs with this gid, so iptables can tell it apart
RES_C=7101    # the cloud site's resource, on every PoP's ingress
RES_O=7102    # the on-prem site's resource
BACK_C=7201   # backends, each on 127.0.0.1 in its site's namespace
BACK_O=7202

popd_args() { # popd_args I: mesh, tunnel and ingress options of PoP I, on its own address
    echo --mesh-listen "$(netns_ip "$1"):7946" --tunnel-listen "$(netns_ip "$1"):7947" \
        --ingress-address "$(netns_ip "$1")"
}
start_pop() { # start_pop I
    ip netns exec "${NETNS_TAG}n$1" "$POPD" run --data "$WORK/n$1" --log-level debug \
        >>"$WORK/n$1.log" 2>&1 &
    NODE_PID[$1]=$!
    PIDS+=("$!")
    wait_ready "$WORK/n$1" "${NODE_PID[$1]}"
}

netns_setup 3
# pop-3's firewall: no inbound connection on its network interface (loopback stays open for
# its own LAN: the on-prem connector and users run in its namespace).
netns_exec 3 iptables -A INPUT -i "${NETNS_TAG}a3" -p tcp --syn -j DROP

# shellcheck disable=SC2046
"$POPD" init --data "$WORK/n1" --name pop-1 $(popd_args 1) >/dev/null
start_pop 1
TOKEN=$(mctl "$WORK/n1" token create --uses 2 --ttl 10m 2>/dev/null)
# shellcheck disable=SC2046
netns_exec 2 "$POPD" join --data "$WORK/n2" --name pop-2 $(popd_args 2) "$TOKEN" >/dev/null
start_pop 2
NO_INBOUND=--no-inbound
[ "$LEARNED" = 1 ] && NO_INBOUND=""
# shellcheck disable=SC2046
netns_exec 3 "$POPD" join --data "$WORK/n3" --name pop-3 $(popd_args 3) $NO_INBOUND \
    "$TOKEN" >/dev/null
if [ "$LEARNED" = 1 ]; then
    if grep -q "no-inbound" "$WORK/n3/popd.conf"; then fail "pop-3 was set up with no-inbound"; fi
else
    expect_in "$WORK/n3/popd.conf" "no-inbound = yes"
fi
start_pop 3
N=("$WORK/n1" "$WORK/n2" "$WORK/n3")
ALL3="pop-1=alive pop-2=alive pop-3=alive"

# The firewall really drops: a connection from the cloud to pop-3's mesh port times out.
if netns_exec 1 timeout 5 "$PY" -c '
import socket, sys
socket.create_connection((sys.argv[1], 7946), timeout=1.5)' "$(netns_ip 3)" 2>/dev/null; then
    fail "pop-1 could connect to pop-3: the firewall does not drop inbound connections"
fi
ok "pop-3 takes no inbound connection (a connect from pop-1 times out)"

wait_for 30 "3 alive members everywhere" all_see "${N[@]}" "$ALL3"
ok "pop-3, which only dials out, is alive at every PoP (${WAITED}s)"

link_of() { # link_of DIR NAME: the members LINK of NAME as DIR sees it, "link[-learned]/no_inbound"
    mctl "$1" --json members | "$PY" -c '
import json, sys
m = [x for x in json.load(sys.stdin) if x["name"] == sys.argv[1]][0]
print("%s%s/%s" % (m["link"], "-learned" if m.get("one_way_learned") else "", m["no_inbound"]))' "$2"
}
link_is() { [ "$(link_of "$1" "$2")" = "$3" ]; }
if [ "$LEARNED" = 1 ]; then
    # learned, not declared: the record says nothing, the link says one way (learned)
    R3=reverse-learned/False WHY=learned
else
    R3=reverse/True WHY=no-inbound
fi
wait_for 15 "pop-1 reaches pop-3 the reverse way" link_is "$WORK/n1" pop-3 "$R3"
wait_for 15 "pop-2 reaches pop-3 the reverse way" link_is "$WORK/n2" pop-3 "$R3"
wait_for 10 "pop-3 reaches pop-1 directly" link_is "$WORK/n3" pop-1 "direct/False"
link_is "$WORK/n1" pop-2 "direct/False" || fail "pop-1 does not reach pop-2 directly: $(link_of "$WORK/n1" pop-2)"
mctl "$WORK/n1" members >"$WORK/members.txt"
grep -Eq "^pop-3 .* reverse \($WHY\) " "$WORK/members.txt" ||
    { cat "$WORK/members.txt"; fail "meshctl members at pop-1 does not show pop-3 reachable one way"; }
ok "meshctl members: pop-1 and pop-2 reach pop-3 only on its own connections (LINK reverse ($WHY))"

mctl "$WORK/n3" config set cfg/from-onprem yes >/dev/null
mctl "$WORK/n1" config set cfg/from-cloud yes >/dev/null
got() { [ "$(mctl "$1" config get "$2" 2>/dev/null)" = yes ]; }
wait_for 10 "pop-3's write at pop-1" got "$WORK/n1" cfg/from-onprem
wait_for 10 "pop-3's write at pop-2" got "$WORK/n2" cfg/from-onprem
wait_for 10 "pop-1's write at pop-3" got "$WORK/n3" cfg/from-cloud
ok "writes replicate both ways (on-prem to cloud and cloud to on-prem)"

# ---- sites ----
backend() { # backend I PORT GREETING: an echo server on 127.0.0.1:PORT in namespace I
    ip netns exec "${NETNS_TAG}n$1" "$PY" "$(dirname "$0")/echo_server.py" "127.0.0.1:$2" "$3" \
        >>"$WORK/backend-$1.log" 2>&1 &
    PIDS+=("$!")
}
backend 1 "$BACK_C" cloud
backend 3 "$BACK_O" onprem
TC=$(mctl "$WORK/n1" site add cloudsite | grep -o 'pmt1\.[A-Za-z0-9_-]*' | head -1)
TO=$(mctl "$WORK/n1" site add onpremsite | grep -o 'pmt1\.[A-Za-z0-9_-]*' | head -1)
[ -n "$TC" ] && [ -n "$TO" ] || fail "site add printed no token"
ip netns exec "${NETNS_TAG}n1" "$POPSITE" run --data "$WORK/site-c" --token "$TC" \
    >>"$WORK/site-c.log" 2>&1 &
PIDS+=("$!")
# The on-prem connector may reach pop-3 only: its dials to the cloud are rejected at once. Its
# enrollment goes through pop-3 too (the token names every PoP as a seed).
for i in 1 2; do
    netns_exec 3 iptables -A OUTPUT -m owner --gid-owner "$SITE_GID" -d "$(netns_ip "$i")" \
        -p tcp -j REJECT --reject-with tcp-reset
done
ip netns exec "${NETNS_TAG}n3" setpriv --regid "$SITE_GID" --clear-groups \
    "$POPSITE" run --data "$WORK/site-o" --token "$TO" >>"$WORK/site-o.log" 2>&1 &
PIDS+=("$!")
mctl "$WORK/n1" resource add app-c --site cloudsite --target "127.0.0.1:$BACK_C" \
    --tcp-port "$RES_C" >/dev/null
mctl "$WORK/n1" resource add app-o --site onpremsite --target "127.0.0.1:$BACK_O" \
    --tcp-port "$RES_O" >/dev/null

site_pops() { # site_pops DIR SITE: the PoPs holding the site's tunnels, sorted
    mctl "$1" --json sites 2>/dev/null | "$PY" -c '
import json, sys
for s in json.load(sys.stdin)["sites"]:
    if s["name"] == sys.argv[1]:
        print(" ".join(sorted(p["name"] for p in s["pops"])))' "$2"
}
pops_are() { [ "$(site_pops "$1" "$2")" = "$3" ]; }
wait_for 30 "onpremsite attached at pop-3 only" pops_are "$WORK/n1" onpremsite pop-3
wait_for 30 "cloudsite attached" bash -c "[ -n \"\$('$MESHCTL' -d '$WORK/n1' --json sites | grep -o cloudsite)\" ]"
ok "onpremsite is attached at pop-3 only; cloudsite at $(site_pops "$WORK/n1" cloudsite)"

# hello I ADDR PORT: one round trip from namespace I; prints the backend's greeting.
hello() {
    netns_exec "$1" timeout 5 "$PY" -c '
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
c.settimeout(3)
c.sendall(b"x")
got = b""
while not got.endswith(b"x"):
    d = c.recv(100)
    if not d:
        break
    got += d
print(got[:-1].decode())' "$2" "$3" 2>/dev/null
}
greets() { [ "$(hello "$1" "$2" "$3")" = "$4" ]; }
wait_for 20 "a user at pop-3 reaches the cloud site" greets 3 "$(netns_ip 3)" "$RES_C" cloud
ok "a user entering at the on-prem PoP reaches the site attached to the cloud PoPs"
for i in 1 2; do
    wait_for 20 "a user at pop-$i reaches the on-prem site" greets "$i" "$(netns_ip "$i")" "$RES_O" onprem
done
ok "users entering at both cloud PoPs reach the site attached only to the on-prem PoP"

# Steady traffic for SOAK_S seconds (default 8; SOAK_S=600 is the 10-minute run of the
# issue): round trips both ways, alternating cloud PoPs, every one must succeed, and nobody may
# be suspected. Bounded by time and by count.
SOAK_S=${SOAK_S:-8}
fails=0
trips=0
end=$(($(date +%s) + SOAK_S))
while [ "$(date +%s)" -lt "$end" ] && [ "$trips" -lt 200000 ]; do
    greets 3 "$(netns_ip 3)" "$RES_C" cloud || fails=$((fails + 1))
    k=$((trips % 2 + 1))
    greets "$k" "$(netns_ip "$k")" "$RES_O" onprem || fails=$((fails + 1))
    trips=$((trips + 2))
done
[ "$fails" = 0 ] || fail "$fails of $trips round trips failed"
all_see "${N[@]}" "$ALL3" || fail "a member is not alive after the traffic"
# Suspicions may happen on a loaded machine (that is what they are for) and must be refuted;
# a death must not.
if grep -E -- '-> dead|is dead' "$WORK"/n[123].log >"$WORK/deaths.txt"; then
    cat "$WORK/deaths.txt"
    fail "a member was declared dead during the run"
fi
SUSP=$(cat "$WORK"/n[123].log | grep -c -- '-> suspect' || true)
ok "$trips round trips both ways over ${SOAK_S}s, 0 failed; no member declared dead ($SUSP suspicions, refuted)"
done_testing
