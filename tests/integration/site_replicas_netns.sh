#!/usr/bin/env bash
# Connector replicas on two machines: network namespaces as hosts (tests/integration/netns.sh).
# Three PoPs in namespaces 1-3, replica A (site branch) in 4, replica B (branch-2) in 5, and in
# 6 the rest of the world: the echo backend both replicas reach over the bridge, and the users.
# The backend greets each connection with the address it came from, so every connection says
# which replica carried it (tests/integration/replica_load.py). In each phase, new connections
# go through every PoP (one every 40 ms over the three ingress addresses) while one replica is
# lost, in one of two ways:
#   kill  SIGKILL of its popsite; it restarts from its data directory (no token);
#   cut   its machine is cut off the network (its veth on the bridge down): no FIN, no reset
#         reaches any PoP, which can only notice the silence; then it is plugged back in.
# Phases: cut A, SIGKILL A, SIGKILL B, cut B, SIGKILL A: each replica is killed and restarted,
# and each replica's restart is then seen serving alone. For each: failed new connections
# (bounded), the gap from the loss to the first success after it, who served before and after,
# and streams held open across it: only the lost replica's may die (12 held within the phase,
# wherever the PoPs sent them, and 6 held since the phase before on a known replica: on the
# other replica in phases 2 and 4, which must all live, on the lost one in 3 and 5, which must
# all die). After each, the lost replica is offline at every PoP and the other serves alone;
# after its return both are online at every PoP again.
#
# Why MAX_FAILED=0 holds here as on loopback (site_replicas.sh): namespaces share the kernel, so
# a SIGKILLed popsite's sockets are still closed by it and the reset crosses the veth and the
# bridge at once; the ingress's attempt on the dead replica fails immediately and the next goes
# to the other one. When the machine is cut off, nothing is reset: an OPEN into the silent
# tunnel fails when the PoP declares the tunnel dead (nothing heard for 1 s,
# tun_config_t.dead_after_ms) and is retried on the other replica, so connections are delayed
# by up to about a second but not lost: MAX_FAILED_CUT=0 too, and their slowest is bounded.
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

MAX_FAILED=${MAX_FAILED:-0}         # failed new connections allowed per SIGKILL
MAX_FAILED_CUT=${MAX_FAILED_CUT:-0} # ... when the machine is cut off instead
MAX_GAP_MS=${MAX_GAP_MS:-500}       # SIGKILL to the first success: under the 1 s a silent death
                                    # takes to notice, so a reset not acted upon shows
MAX_CUT_MS=${MAX_CUT_MS:-3500}      # slowest connection while the machine is cut off
LOAD="$(dirname "$0")/replica_load.py"

netns_setup 6
MESH_PORT=$(free_port) TUN_PORT=$(free_port) RES_PORT=$(free_port) BACK_PORT=$(free_port)
IP_A=$(netns_ip 4) IP_B=$(netns_ip 5) IP_WORLD=$(netns_ip 6)
popd_args() { # popd_args I: mesh, tunnel and ingress options of PoP I, all on its own address
    echo --mesh-listen "$(netns_ip "$1"):$MESH_PORT" --tunnel-listen "$(netns_ip "$1"):$TUN_PORT" \
        --ingress-address "$(netns_ip "$1")"
}
declare -a N
for i in 1 2 3; do N[i]="$WORK/n$i"; done
# shellcheck disable=SC2046
"$POPD" init --data "${N[1]}" --name pop-1 $(popd_args 1) >/dev/null
netns_spawn 1 "$POPD" run --data "${N[1]}" --log-level debug >>"${N[1]}.log" 2>&1
wait_ready "${N[1]}" "$LAST_PID"
POPTOKEN=$(mctl "${N[1]}" token create --uses 2 --ttl 10m 2>/dev/null)
for i in 2 3; do
    # shellcheck disable=SC2046
    netns_exec "$i" "$POPD" join --data "${N[$i]}" --name "pop-$i" $(popd_args "$i") \
        "$POPTOKEN" >/dev/null
    netns_spawn "$i" "$POPD" run --data "${N[$i]}" --log-level debug >>"${N[$i]}.log" 2>&1
    wait_ready "${N[$i]}" "$LAST_PID"
done
wait_for 20 "3 alive members on every PoP" all_see "${N[1]}" "${N[2]}" "${N[3]}" \
    "pop-1=alive pop-2=alive pop-3=alive"

netns_spawn 6 "$PY" "$LOAD" serve "$IP_WORLD" "$BACK_PORT" >"$WORK/backend.log" 2>&1
wait_for 5 "the backend" netns_exec 6 "$PY" -c 'import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 1)' "$IP_WORLD" "$BACK_PORT"
expect_rc 0 mctl "${N[1]}" site add branch --replicas 2
TOKEN=$(cat "$WORK/out")
wait_for 10 "the site record on pop-3" sh -c "'$MESHCTL' -d '${N[3]}' site list | grep -q branch"
expect_rc 0 mctl "${N[1]}" resource add echo --site branch --target "$IP_WORLD:$BACK_PORT" \
    --tcp-port "$RES_PORT" --health tcp
ok "3 PoPs in namespaces 1-3; site branch with 2 replica uses; echo resource to the backend in namespace 6"

declare -A SPID SNS=([A]=4 [B]=5) WHO=([A]=$IP_A [B]=$IP_B) REPL=([A]=branch [B]=branch-2)
start_replica() { # start_replica A|B [ARGS...]: popsite in its namespace, data $WORK/site-X
    local r=$1
    shift
    netns_spawn "${SNS[$r]}" "$POPSITE" run --data "$WORK/site-$r" --log-level debug "$@" \
        >>"$WORK/site-$r.log" 2>&1
    SPID[$r]=$LAST_PID
}
start_replica A --token "$TOKEN"
wait_for 20 "replica A enrolled" grep -q "enrolled as site branch" "$WORK/site-A.log"
start_replica B --token "$TOKEN"
wait_for 20 "replica B enrolled" grep -q "enrolled as branch-2, a replica of site branch" "$WORK/site-B.log"

replicas_state() { # replicas_state DIR: "replica=state:pops ..." of site branch, sorted
    jq_ '" ".join(sorted("%s=%s:%s" % (s["replica"], s["state"], ",".join(sorted(p["name"] for p in s["pops"]))) for s in j["sites"] if s["name"] == "branch"))' "$1" sites
}
both_online() { # both_online DIR: both replicas online, each at 2 PoPs (popsite's default)
    replicas_state "$1" | grep -Eq '^branch-2=online:pop-[123],pop-[123] branch=online:pop-[123],pop-[123]$'
}
only_online() { # only_online DIR REPLICA: REPLICA online, the other offline, as DIR sees it
    replicas_state "$1" | "$PY" -c '
import sys
st = dict(x.split("=", 1) for x in sys.stdin.read().split())
want = sys.argv[1]
sys.exit(0 if len(st) == 2 and all(v.startswith("online:" if k == want else "offline:") for k, v in st.items()) else 1)' "$2"
}
# routed DIR: DIR's route table reaches both replicas. meshctl sites shows a replica online as
# soon as its tunnels are reported; the routes follow with the next link-state publication,
# and until then a PoP without a tunnel refuses the site as offline.
routed() {
    [ "$(jq_ '" ".join(sorted(s["site"] for s in j["sites"] if s["reachable"]))' "$1" routes)" = "branch branch-2" ]
}
ready() { both_online "$1" && routed "$1"; } # ready DIR: both replicas online and routed at DIR
for i in 1 2 3; do wait_for 20 "both replicas online at 2 PoPs each and routed, seen by pop-$i" ready "${N[$i]}"; done
echo "# pop-1 sees: $(replicas_state "${N[1]}")"
ok "replicas A (branch, namespace 4) and B (branch-2, namespace 5) enrolled with the one token, both online at two PoPs each, on every PoP"

HOSTS="$(netns_ip 1),$(netns_ip 2),$(netns_ip 3)"
load() { # load ARGS...: replica_load.py load from the world's namespace, JSON in $WORK/load.json
    netns_exec 6 "$PY" "$LOAD" load --port "$RES_PORT" --hosts "$HOSTS" "$@" >"$WORK/load.json"
}
field() { # field EXPR [ARG]: eval(EXPR) with r = the last load's result (ARG is sys.argv[3])
    "$PY" -c 'import json,sys; r=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$WORK/load.json" "$@"
}
name_of() { # replace the replicas' addresses by A and B
    sed -e "s/$IP_A/A/g" -e "s/$IP_B/B/g"
}
load --n 30 --interval 0.02
[ "$(field 'r["failed"]')" = 0 ] || { cat "$WORK/load.json"; fail "connections failed with both replicas up"; }
SERVED=$(field 'r["served_before"]' | name_of)
[ "$(field 'sum(r["served_before"].values())')" = 30 ] || fail "30 connections, not all served: $SERVED"
[ "$(field 'all(w in sys.argv[3].split() for w in r["served_before"])' "$IP_A $IP_B")" = True ] ||
    fail "connections served by neither replica: $SERVED"
ok "30 connections through the three PoPs with both replicas up, none failed (served by $SERVED)"

retries() { # the PoPs' ingress retries, summed
    local sum=0 i
    for i in 1 2 3; do sum=$((sum + $(jq_ 'j["dataplane"]["ingress_retries"]' "${N[$i]}" status))); done
    echo "$sum"
}

# Held streams across phases: hold_open X opens 6 streams (over the three PoPs) while replica X
# alone is up, and checks that X carries all of them; hold_check KEEP ends them with one round
# trip each: all must work when KEEP is 1, none when 0.
HOLD_N=0
lines_ge() { [ "$(wc -l <"$1")" -ge "$2" ]; } # lines_ge FILE N: FILE has N lines or more
hold_open() {
    local x=$1
    HOLD_N=$((HOLD_N + 1))
    HOLD_X=$x HOLD_OUT="$WORK/hold-$HOLD_N.out" HOLD_FLAG="$WORK/hold-$HOLD_N.end"
    netns_spawn 6 "$PY" "$LOAD" hold --port "$RES_PORT" --hosts "$HOSTS" --n 6 \
        --until "$HOLD_FLAG" >"$HOLD_OUT" 2>&1
    HOLD_PID=$LAST_PID
    wait_for 20 "6 held streams opened" lines_ge "$HOLD_OUT" 1
    local who
    who=$(head -1 "$HOLD_OUT" | name_of)
    [ "$(head -1 "$HOLD_OUT" | "$PY" -c 'import json,sys; print(sum(1 for h, w in json.load(sys.stdin) if w == sys.argv[1]))' "${WHO[$x]}")" = 6 ] ||
        fail "6 streams opened while replica $x alone was up, not all carried by it: $who"
}
hold_check() {
    local keep=$1 got
    touch "$HOLD_FLAG"
    wait_for 30 "the held streams' last round trips" lines_ge "$HOLD_OUT" 2
    got=$(sed -n 2p "$HOLD_OUT" | "$PY" -c 'import json,sys; print(sum(1 for h, w, k in json.load(sys.stdin) if k))')
    HELD="6 streams on replica $HOLD_X held from before: $got kept"
    if [ "$keep" = 1 ]; then
        [ "$got" = 6 ] || fail "streams on replica $HOLD_X were lost: $(sed -n 2p "$HOLD_OUT" | name_of)"
    else
        [ "$got" = 0 ] || fail "streams on the lost replica $HOLD_X still work: $(sed -n 2p "$HOLD_OUT" | name_of)"
    fi
    { wait "$HOLD_PID"; } 2>/dev/null || true
}

# phase kill|cut X: SIGKILL replica X (or cut its machine off: its veth on the bridge down, so
# no FIN and no reset reaches anyone) before connection 15 of 50 (one every 40 ms over the
# three PoPs, 12 more held open across it). Checks the failures, the gap, that X served
# nothing after it and that of the streams held across it only X's were lost; then that X is
# offline at every PoP and the other replica alone serves 15 of 15. Sets PHASE (every number)
# and OKSUM (the bounded ones).
declare -a SUMMARY=()
phase() {
    local kind=$1 x=$2 r0 f gap slow other=A
    [ "$x" = A ] && other=B
    r0=$(retries)
    if [ "$kind" = kill ]; then
        load --n 50 --interval 0.04 --kill-at 15 --pid "${SPID[$x]}" --hold 12
        { wait "${SPID[$x]}"; } 2>/dev/null || true
    else
        load --n 50 --interval 0.04 --kill-at 15 --hold 12 \
            --cmd "ip -n ${NETNS_TAG}h link set ${NETNS_TAG}b${SNS[$x]} down"
    fi
    local retried=$(($(retries) - r0))
    f=$(field 'r["failed"]')
    gap=$(field 'r["gap_ms"]')
    slow=$(field 'r["slowest_ms"]')
    PHASE="$kind $x: $f of 35 failed; first success ${gap} ms after it, slowest ${slow} ms; served before $(field 'r["served_before"]' | name_of), after $(field 'r["served_after"]' | name_of); held $(field '" ".join("%s:%s x%d" % (w, "kept" if k else "lost", n) for (w, k), n in sorted(__import__("collections").Counter((w, k) for h, w, k in r["held"]).items()))' | name_of); $retried ingress retries"
    OKSUM="$f of 35 failed, first success ${gap} ms after it, slowest ${slow} ms"
    echo "# $PHASE"
    field '"\n".join("#   " + e for e in r["errors"])' | name_of
    SUMMARY+=("$PHASE")
    if [ "$kind" = kill ]; then
        [ "$f" -le "$MAX_FAILED" ] || fail "$f new connections failed after SIGKILL of replica $x (at most $MAX_FAILED allowed)"
        [ "${gap%.*}" -ge 0 ] && [ "${gap%.*}" -le "$MAX_GAP_MS" ] ||
            fail "first success ${gap} ms after SIGKILL of replica $x (bound $MAX_GAP_MS ms; -1: none)"
    else
        [ "$f" -le "$MAX_FAILED_CUT" ] || fail "$f new connections failed after replica $x was cut off (at most $MAX_FAILED_CUT allowed)"
        [ "${gap%.*}" -ge 0 ] || fail "no connection succeeded after replica $x was cut off"
        [ "${slow%.*}" -le "$MAX_CUT_MS" ] || fail "a connection took $slow ms while replica $x was cut off (bound $MAX_CUT_MS ms)"
    fi
    [ "$(field 'r["served_after"].get(sys.argv[3], 0)' "${WHO[$x]}")" = 0 ] ||
        fail "replica $x served connections after the $kind"
    [ "$(field 'sum(1 for h, w, k in r["held"] if not k and w != sys.argv[3])' "${WHO[$x]}")" = 0 ] ||
        fail "held streams not on replica $x were lost: $(field 'r["held"]' | name_of)"
    for i in 1 2 3; do
        wait_for 10 "${REPL[$x]} offline, ${REPL[$other]} online, at pop-$i" only_online "${N[$i]}" "${REPL[$other]}"
    done
    load --n 15 --interval 0.02
    [ "$(field 'r["failed"]')" = 0 ] && [ "$(field 'r["served_before"].get(sys.argv[3], 0)' "${WHO[$other]}")" = 15 ] ||
        { cat "$WORK/load.json"; fail "replica $other alone did not serve 15 of 15 after the $kind of $x"; }
}
recover() { # recover kill|cut X: restart X from its data directory (no token), or plug it back in
    local kind=$1 x=$2 t0
    t0=$(date +%s%N)
    if [ "$kind" = kill ]; then
        start_replica "$x"
    else
        ip -n "${NETNS_TAG}h" link set "${NETNS_TAG}b${SNS[$x]}" up
    fi
    for i in 1 2 3; do wait_for 30 "both replicas online and routed again ($x back), seen by pop-$i" ready "${N[$i]}"; done
    BACK_MS=$((($(date +%s%N) - t0) / 1000000))
    # A replica back from a cut reports the target down until its checks pass again, and an
    # ingress tries a replica that cannot reach the target only after those that can (even a
    # dead one its routes still list): the next phase starts from two healthy replicas, or
    # its kill measures the health checks' rise, not the failover (seen: 720 ms).
    for i in 1 2 3; do wait_for 30 "both replicas report the target up, seen by pop-$i" both_up "${N[$i]}"; done
}
both_up() { # both_up DIR: the echo target up at both replicas, as DIR merges their reports
    [ "$(jq_ '"%s/%s" % (j["resources"][0]["targets"][0]["replicas_up"], j["resources"][0]["targets"][0]["replicas_live"])' "$1" targets echo)" = 2/2 ]
}

# Each hold_open is checked (and ended) by the next phase's hold_check.
# 1. A's machine cut off; while it is, 6 streams are held on B.
phase cut A
ok "replica A cut off (no reset): $OKSUM (bounds: $MAX_FAILED_CUT failed, $MAX_CUT_MS ms); A offline at every PoP, B alone serves all three"
hold_open B
recover cut A
ok "replica A plugged back in: online and routed at every PoP again after $BACK_MS ms"

# 2. SIGKILL A: B's held streams live on; 6 more are held on B while A is down; A restarts.
phase kill A
hold_check 1
ok "SIGKILL of replica A: $OKSUM (bounds: $MAX_FAILED failed, $MAX_GAP_MS ms); $HELD"
hold_open B
recover kill A
ok "replica A restarted from its data directory (no token): online and routed at every PoP after $BACK_MS ms"

# 3. SIGKILL B: its held streams are lost, the restarted A alone serves; 6 streams are held on A.
phase kill B
hold_check 0
ok "SIGKILL of replica B: $OKSUM (bounds: $MAX_FAILED failed, $MAX_GAP_MS ms); $HELD; the restarted A alone serves all three PoPs"
hold_open A
recover kill B
ok "replica B restarted from its data directory: online and routed at every PoP after $BACK_MS ms"

# 4. B's machine cut off: A's held streams live on; 6 more are held on A.
phase cut B
hold_check 1
ok "replica B cut off (no reset): $OKSUM (bounds: $MAX_FAILED_CUT failed, $MAX_CUT_MS ms); $HELD"
hold_open A
recover cut B
ok "replica B plugged back in: online and routed at every PoP again after $BACK_MS ms"

# 5. SIGKILL A once more: A's held streams are lost; the restarted, cut and reconnected B
# alone serves.
phase kill A
hold_check 0
ok "SIGKILL of replica A again: $OKSUM; $HELD; B (restarted, then cut off and plugged back) alone serves"
recover kill A
load --n 30 --interval 0.02
[ "$(field 'r["failed"]')" = 0 ] || { cat "$WORK/load.json"; fail "connections failed at the end, both replicas up"; }
ok "both replicas up at the end: 30 connections, none failed (served by $(field 'r["served_before"]' | name_of))"

# 6. The network of the replica the PoPs prefer (the cheaper routes: B in every run so far)
# loses the backend (its machine's firewall rejects it): its checks say down, the other's up;
# the target counts up (a replica that reaches it says so) and new connections go to the
# other replica first, so none needs a retry. Without that preference, every connection would
# try the preferred replica first and be refused.
load --n 30 --interval 0.02
PREF=$(field 'max(r["served_before"], key=r["served_before"].get)')
if [ "$PREF" = "$IP_A" ]; then BAD=A OTHER=B; else BAD=B OTHER=A; fi
netns_exec "${SNS[$BAD]}" iptables -A OUTPUT -d "$IP_WORLD" -p tcp --dport "$BACK_PORT" -j REJECT --reject-with tcp-reset
merged() { # merged DIR: "state up/live" of the echo target, as DIR sees it
    jq_ '"%s %s/%s" % (j["resources"][0]["targets"][0]["state"], j["resources"][0]["targets"][0]["replicas_up"], j["resources"][0]["targets"][0]["replicas_live"])' "$1" targets echo
}
merged_is() { [ "$(merged "$1")" = "up 1/2" ]; }
for i in 1 2 3; do wait_for 10 "pop-$i: the target up, by $OTHER alone (1 of 2 replicas)" merged_is "${N[$i]}"; done
r0=$(retries)
load --n 30 --interval 0.02
RET=$(($(retries) - r0))
[ "$(field 'r["failed"]')" = 0 ] || { cat "$WORK/load.json"; fail "connections failed with $BAD unable to reach the target"; }
[ "$(field 'r["served_before"].get(sys.argv[3], 0)' "${WHO[$OTHER]}")" = 30 ] ||
    fail "not all 30 connections served by $OTHER: $(field 'r["served_before"]' | name_of)"
[ "$RET" -le 1 ] || fail "$RET ingress retries: connections still went first to $BAD, which cannot reach the target"
ok "$BAD (preferred by the routes) cannot reach the target: meshctl targets says up (1 of 2 replicas) at every PoP; 30 connections all served by $OTHER with $RET retries"
netns_exec "${SNS[$BAD]}" iptables -F OUTPUT

for s in "${SUMMARY[@]}"; do echo "# $s"; done
ELAPSED=$(($(date +%s) - T_START))
echo "# whole test: ${ELAPSED}s"
done_testing
