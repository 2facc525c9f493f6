#!/usr/bin/env bash
# Transit the operator controls: PoPs carry labels (popd --label), and a resource with
# --transit-labels onprem is carried only by PoPs labelled onprem. Four PoPs in network
# namespaces: on-1 and on-2 (--label onprem), cloud-1 and cloud-2 (no label). The site and its
# backend sit in on-2's namespace and attach to on-2 only. Two resources on the same target:
# "open" (no labels) and "onprem" (--transit-labels onprem).
#   1. cloud PoPs do not serve "onprem" (its port is closed there; the HTTP ingress answers
#      421); on-1 and on-2 do; "open" is served everywhere.
#   2. on-1 and on-2 cannot talk (iptables): "open" entering at on-1 is relayed through a cloud
#      PoP; "onprem" entering at on-1 is refused ("no allowed path"), meshctl routes at on-1
#      says so, and no cloud PoP relays a single stream of it.
#   3. the link comes back: "onprem" entering at on-1 works, through on-1 > on-2 only.
#   4. a connector next to a cloud PoP holds its tunnels at the labelled PoPs its resource
#      needs (the INFO says which PoPs to avoid).
#   5. bad input: a bad label, labels on a resource listed twice.
#   6. dns explain says when a resource has no allowed path, and why: a label no PoP has, then
#      "onprem" with on-1 and on-2 killed (no live PoP has the label); never an unexplained
#      empty answer.
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

NAME=(x on-1 on-2 cloud-1 cloud-2) # PoP i runs in namespace i
SITE_GID=4244
P_OPEN=7111
P_ONPREM=7112
HP=7180 # every PoP's HTTP ingress
DP=7153 # every PoP's name server
BACK_PORT=7211

popd_args() { # popd_args I
    local labels=""
    [ "$1" -le 2 ] && labels="--label onprem"
    echo --mesh-listen "$(netns_ip "$1"):7946" --tunnel-listen "$(netns_ip "$1"):7947" \
        --ingress-address "$(netns_ip "$1")" --http-listen "$(netns_ip "$1"):$HP" \
        --dns-listen "$(netns_ip "$1"):$DP" --public-address "$(netns_ip "$1")" $labels
}
start_pop() {
    ip netns exec "${NETNS_TAG}n$1" "$POPD" run --data "$WORK/n$1" >>"$WORK/n$1.log" 2>&1 &
    NODE_PID[$1]=$!
    PIDS+=("$!")
    wait_ready "$WORK/n$1" "${NODE_PID[$1]}"
}
netns_setup 4
# shellcheck disable=SC2046
"$POPD" init --data "$WORK/n1" --name on-1 $(popd_args 1) >/dev/null
expect_in "$WORK/n1/popd.conf" "labels = onprem"
start_pop 1
TOKEN=$(mctl "$WORK/n1" token create --uses 3 --ttl 10m 2>/dev/null)
for i in 2 3 4; do
    # shellcheck disable=SC2046
    netns_exec "$i" "$POPD" join --data "$WORK/n$i" --name "${NAME[$i]}" $(popd_args "$i") \
        "$TOKEN" >/dev/null
    start_pop "$i"
done
N=("$WORK/n1" "$WORK/n2" "$WORK/n3" "$WORK/n4")
wait_for 20 "4 alive members everywhere" all_see "${N[@]}" \
    "cloud-1=alive cloud-2=alive on-1=alive on-2=alive"

# The backend and the site in on-2's namespace; the site may dial on-2 only.
ip netns exec "${NETNS_TAG}n2" "$PY" "$(dirname "$0")/echo_server.py" \
    "$(netns_ip 2):$BACK_PORT" >"$WORK/backend.log" 2>&1 &
PIDS+=("$!")
for i in 1 3 4; do
    netns_exec 2 iptables -A OUTPUT -m owner --gid-owner "$SITE_GID" -d "$(netns_ip "$i")" \
        -p tcp -j REJECT --reject-with tcp-reset
done
wait_certified "$WORK/n2"
SITE_TOKEN=$(mctl "$WORK/n2" site add branch | grep -o 'pmt1\.[A-Za-z0-9_-]*' | head -1)
[ -n "$SITE_TOKEN" ] || fail "site add printed no token"
wait_for 10 "the site record on on-1" sh -c "'$MESHCTL' -d '$WORK/n1' site list | grep -q branch"
expect_rc 0 mctl "$WORK/n1" zone add test --ttl 1 --answers 4
expect_rc 0 mctl "$WORK/n1" resource add open --site branch --target "$(netns_ip 2):$BACK_PORT" \
    --tcp-port "$P_OPEN" --host open.test
expect_rc 0 mctl "$WORK/n1" resource add onprem --site branch --target "$(netns_ip 2):$BACK_PORT" \
    --tcp-port "$P_ONPREM" --host onprem.test --transit-labels onprem
ip netns exec "${NETNS_TAG}n2" setpriv --regid "$SITE_GID" --clear-groups \
    "$POPSITE" run --data "$WORK/site" --token "$SITE_TOKEN" --pops 1 >>"$WORK/site.log" 2>&1 &
PIDS+=("$!")

# echo_via I PORT: one round trip entering at PoP I, from its namespace; 0 on success.
echo_via() {
    netns_exec "$1" timeout 5 "$PY" -c '
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)
c.settimeout(3)
c.sendall(b"transit-check")
got = b""
while len(got) < 13:
    d = c.recv(100)
    if not d: break
    got += d
sys.exit(0 if got == b"transit-check" else 1)' "$(netns_ip "$1")" "$2" 2>/dev/null
}
all_open() { for i in 1 2 3 4; do echo_via "$i" "$P_OPEN" || return 1; done; }
wait_for 30 "the open resource through every PoP" all_open
ok "labels: on-1 and on-2 carry onprem; the site is attached at on-2 only; 'open' works through all four PoPs"

# ---- 1. where "onprem" is served ----
wait_for 10 "onprem through on-1" echo_via 1 "$P_ONPREM"
echo_via 2 "$P_ONPREM" || fail "onprem does not work through on-2"
for i in 3 4; do
    if echo_via "$i" "$P_ONPREM"; then fail "${NAME[$i]} serves onprem, a PoP without the label"; fi
done
code=$(netns_exec 3 curl -s -o /dev/null -w '%{http_code}' -m 5 -H 'Host: onprem.test' \
    "http://$(netns_ip 3):$HP/")
[ "$code" = 421 ] || fail "the HTTP ingress of cloud-1 answered $code for onprem.test, not 421"
ok "onprem is served at on-1 and on-2 only: its port is closed at the cloud PoPs, whose HTTP ingress answers 421"
# DNS: the name server of a cloud PoP answers onprem.test with the labelled PoPs only.
dns_a() { # dns_a NAME: the A answer at cloud-1's name server, sorted, one line
    netns_exec 3 dig +short +tries=1 +time=1 -p "$DP" "@$(netns_ip 3)" "$1" A 2>/dev/null |
        sed '/^;/d' | sort | tr '\n' ' ' | sed 's/ $//'
}
dns_is() { [ "$(dns_a "$1")" = "$2" ]; }
ALL4=$(for i in 1 2 3 4; do netns_ip "$i"; done | sort | tr '\n' ' ' | sed 's/ $//')
ON2=$(for i in 1 2; do netns_ip "$i"; done | sort | tr '\n' ' ' | sed 's/ $//')
wait_for 10 "open.test answered with all four PoPs" dns_is open.test "$ALL4"
wait_for 10 "onprem.test answered with on-1 and on-2" dns_is onprem.test "$ON2"
ok "DNS (at cloud-1): open.test -> the four PoPs, onprem.test -> on-1 and on-2 only"
# dns explain at cloud-1: the cloud PoPs are left out for the label, not for a missing route;
# the restriction is shown, and there is an allowed path.
mctl "$WORK/n3" dns explain onprem.test >"$WORK/explain.txt"
sed 's/^/#   /' "$WORK/explain.txt"
expect_in "$WORK/explain.txt" "transit: resource onprem may cross PoPs labelled onprem"
grep -Eq '^[0-9]+ +cloud-1 .* no-label ' "$WORK/explain.txt" ||
    fail "dns explain does not say cloud-1 is left out of onprem.test for lacking the label"
if grep -q "no allowed path" "$WORK/explain.txt"; then
    fail "dns explain says onprem.test has no allowed path while on-1 and on-2 carry it"
fi
ok "dns explain onprem.test (at cloud-1): the labels, cloud PoPs 'no-label', an allowed path"

relayed() { # relayed: streams the cloud PoPs relayed, summed
    local sum=0 i
    for i in 3 4; do
        sum=$((sum + $(mctl "$WORK/n$i" --json status | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["dataplane"]["relayed"])')))
    done
    echo "$sum"
}
path_at_1() { # path_at_1 RESOURCE: the path of its replica at on-1 ("" when none)
    mctl "$WORK/n1" --json routes 2>/dev/null | "$PY" -c '
import json, sys
for r in json.load(sys.stdin).get("resources", []):
    if r["name"] == sys.argv[1]:
        for p in r["replicas"]:
            print(">".join(p.get("path", [])) if p["reachable"] else "none")' "$1"
}

# ---- 2. on-1 and on-2 cut apart ----
netns_block 1 2
route_via_cloud() {
    mctl "$WORK/n1" --json routes | "$PY" -c '
import json, sys
for s in json.load(sys.stdin)["sites"]:
    if s["site"] == "branch":
        p = s.get("path") or []
        sys.exit(0 if len(p) == 3 and p[1] in ("cloud-1", "cloud-2") else 1)
sys.exit(1)'
}
wait_for 30 "on-1's route to the site through a cloud PoP" route_via_cloud
wait_for 15 "open through on-1 (relayed)" echo_via 1 "$P_OPEN"
no_path() { [ "$(path_at_1 onprem)" = none ]; }
wait_for 15 "no allowed path for onprem at on-1" no_path
R0=$(relayed)
fails=0
for _ in 1 2 3 4 5; do
    if echo_via 1 "$P_ONPREM"; then fails=$((fails + 1)); fi
done
[ "$fails" = 0 ] || fail "onprem went through on-1 $fails times with on-1 cut off from on-2: it can only have crossed a cloud PoP"
grep -q "no allowed path" "$WORK/n1.log" || fail "on-1 did not log why it refused onprem"
mctl "$WORK/n1" routes >"$WORK/routes.txt"
sed 's/^/#   /' "$WORK/routes.txt"
grep -Eq '^onprem +onprem +branch +no allowed path' "$WORK/routes.txt" ||
    fail "meshctl routes at on-1 does not say onprem has no allowed path"
for _ in 1 2 3; do echo_via 1 "$P_OPEN" || fail "open through on-1 failed"; done
R1=$(relayed)
[ "$R1" -gt "$R0" ] || fail "the cloud PoPs relayed no stream for 3 'open' connections entering at on-1"
wait_for 10 "onprem.test answered with on-2 alone (on-1 has no allowed path)" dns_is onprem.test "$(netns_ip 2)"
ok "on-1 cut off from on-2: 'open' is relayed through a cloud PoP; 'onprem' is refused with 'no allowed path' (meshctl routes says so), never carried by a cloud PoP; DNS answers onprem.test with on-2 alone"

# ---- 3. the link back ----
netns_heal 1
netns_heal 2
# the site's own rules in on-2's namespace went with the flush: put them back
for i in 1 3 4; do
    netns_exec 2 iptables -A OUTPUT -m owner --gid-owner "$SITE_GID" -d "$(netns_ip "$i")" \
        -p tcp -j REJECT --reject-with tcp-reset
done
direct() { [ "$(path_at_1 onprem)" = "on-1>on-2" ]; }
wait_for 30 "onprem's path at on-1 is on-1>on-2" direct
R0=$(relayed)
for _ in 1 2 3; do echo_via 1 "$P_ONPREM" || fail "onprem through on-1 failed after the heal"; done
[ "$(relayed)" = "$R0" ] || fail "a cloud PoP relayed onprem's streams"
wait_for 10 "onprem.test answered with on-1 and on-2 again" dns_is onprem.test "$ON2"
ok "link back: onprem through on-1 works again, path on-1>on-2, no cloud PoP relays it; DNS answers both again"

# ---- 4. a connector holds its tunnels at PoPs that may carry its resources ----
# branch2 runs in cloud-1's namespace, so by RTT alone cloud-1 is its nearest PoP; its only
# resource may cross onprem PoPs only, so it must attach at on-1 and on-2 (popsite's two).
ip netns exec "${NETNS_TAG}n3" "$PY" "$(dirname "$0")/echo_server.py" \
    "$(netns_ip 3):$((BACK_PORT + 1))" >"$WORK/backend2.log" 2>&1 &
PIDS+=("$!")
T2=$(mctl "$WORK/n1" site add branch2 | grep -o 'pmt1\.[A-Za-z0-9_-]*' | head -1)
expect_rc 0 mctl "$WORK/n1" resource add onprem2 --site branch2 \
    --target "$(netns_ip 3):$((BACK_PORT + 1))" --tcp-port "$((P_ONPREM + 1))" --transit-labels onprem
ip netns exec "${NETNS_TAG}n3" "$POPSITE" run --data "$WORK/site2" --token "$T2" \
    >>"$WORK/site2.log" 2>&1 &
PIDS+=("$!")
pops_of() { # pops_of SITE: the PoPs holding its tunnels, as on-1 sees it
    mctl "$WORK/n1" --json sites | "$PY" -c '
import json, sys
for s in json.load(sys.stdin)["sites"]:
    if s["name"] == sys.argv[1]:
        print(" ".join(sorted(p["name"] for p in s["pops"])))' "$1"
}
at_onprem() { [ "$(pops_of branch2)" = "on-1 on-2" ]; }
wait_for 30 "branch2 attached at on-1 and on-2" at_onprem
wait_for 10 "onprem2 through on-1" echo_via 1 "$((P_ONPREM + 1))"
grep -q "may not carry some of this site's resources" "$WORK/site2.log" ||
    fail "popsite did not say why it avoids the cloud PoPs"
ok "a connector next to cloud-1 holds its tunnels at on-1 and on-2, the PoPs that may carry its resource"

# ---- 5. bad input ----
expect_rc 2 mctl "$WORK/n1" resource add bad --site branch --target 10.0.0.1:80 \
    --tcp-port 7199 --transit-labels Bad_Label 2>"$WORK/err"
expect_in "$WORK/err" "label 'Bad_Label' is invalid"
expect_rc 2 mctl "$WORK/n1" resource add bad --site branch --target 10.0.0.1:80 \
    --tcp-port 7199 --transit-labels onprem,onprem 2>"$WORK/err"
expect_in "$WORK/err" "label 'onprem' is listed twice"
if "$POPD" init --data "$WORK/bad" --name x --label Nope 2>"$WORK/err"; then fail "popd init took a bad label"; fi
expect_in "$WORK/err" "label 'Nope' must be"
ok "bad labels are refused with their reasons (resource add, popd init)"

# ---- 6. dns explain: no allowed path, and why ----
# explain_at I NAME: dns explain at PoP I, as text, also shown in the log
explain_at() { mctl "$WORK/n$1" dns explain "$2" >"$WORK/explain.txt" 2>&1; }
expect_rc 0 mctl "$WORK/n1" resource add nowhere --site branch --target "$(netns_ip 2):$BACK_PORT" \
    --tcp-port "$((P_ONPREM + 2))" --host nowhere.test --transit-labels nosuch
nowhere_explained() {
    explain_at 3 nowhere.test &&
        grep -q "no allowed path: no PoP in the mesh with the label nosuch" "$WORK/explain.txt"
}
wait_for 10 "dns explain nowhere.test says no PoP has the label" nowhere_explained
sed 's/^/#   /' "$WORK/explain.txt"
expect_in "$WORK/explain.txt" "answer: none (NODATA: no allowed path)"
[ -z "$(dns_a nowhere.test)" ] || fail "nowhere.test has an answer: $(dns_a nowhere.test)"
ok "dns explain nowhere.test: no allowed path, no PoP has the label nosuch (the answer is empty)"
# The on-prem PoPs die: onprem.test has no allowed path at cloud-1, and explain names them.
for i in 1 2; do kill -9 "${NODE_PID[$i]}" 2>/dev/null || true; done
onprem_explained() {
    explain_at 3 onprem.test &&
        grep -Eq "no allowed path: no live PoP with the label onprem \((on-1 dead, on-2 dead|on-2 dead, on-1 dead)\)" \
            "$WORK/explain.txt"
}
wait_for 20 "dns explain onprem.test at cloud-1 says no live PoP has the label" onprem_explained
sed 's/^/#   /' "$WORK/explain.txt"
[ -z "$(dns_a onprem.test)" ] || fail "onprem.test still has an answer: $(dns_a onprem.test)"
mctl "$WORK/n3" --json dns explain onprem.test | "$PY" -c '
import json, sys
t = json.load(sys.stdin)["transit"]
sys.exit(0 if t["no_allowed_path"] and t["transit_labels"] == ["onprem"] and t["carriers"] == 2
         and t["carriers_alive"] == 0 else 1)' || fail "dns explain --json: transit is not as expected"
ok "on-1 and on-2 killed: dns explain onprem.test at cloud-1 says no allowed path, no live PoP has the label onprem (both dead)"
done_testing
