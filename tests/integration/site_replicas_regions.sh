#!/usr/bin/env bash
# Connector replicas on different networks, each near one region. Four PoPs in two regions,
# each region a network namespace (tests/integration/netns.sh): pop-a1 and pop-a2 (eu-west)
# in namespace 1, pop-b1 and pop-b2 (us-east) in 2. Replica R1 (site branch) runs in 3, near
# eu-west; R2 (branch-2) in 4, near us-east. Each replica's machine runs its own copy of the
# application (the resource's target 127.0.0.1:PORT is local to each), answering every
# connection with the replica's name first, so every connection says which replica carried it.
#
# Distances come from latrelay (user-space delay; there is no tc netem here). Every PoP
# advertises its mesh and tunnel addresses on a virtual address V(p), 10.232.S.x; each
# namespace holds all four V(p) on its loopback, so whoever dials V(p) reaches either the PoP
# itself (same region) or a latrelay of its own namespace, which forwards to the PoP's real
# address over the bridge with that namespace's delay to p (ms one way):
#                 pop-a1  pop-a2  pop-b1  pop-b2
#   eu-west PoPs    -       -       20      20
#   us-east PoPs   20      20       -       -
#   R1 (near A)     2       4       25      30
#   R2 (near B)    25      30       2       4
# The replicas' tunnels are delayed per replica, and the mesh links and PoP-to-PoP tunnels
# between regions are 40 ms: so each region's PoPs reach the nearer replica cheapest, directly
# or through the other PoP of the region, not through the far region.
#
# Checks: users in eu-west (clients in namespace 1, through pop-a1 and pop-a2) are served by
# R1, users in us-east by R2. SIGKILL R1 while both regions' users keep connecting: eu-west's
# traffic moves to R2 (failed connections bounded, the gap reported), us-east's is untouched;
# R1 restarts from its data directory and eu-west's traffic returns to it (bounded, time
# reported). The same for R2 and us-east. The streams held on the killed replica are lost
# (reported).
#
# Bounds: MAX_FAILED=0 as in site_replicas.sh: the SIGKILL resets the replica's tunnels at
# once, so the attempt that went to it fails at once and the next goes to the other replica.
# The first success after the kill is then one connection over the far path (its OPEN and the
# echo cross a 40-50 ms round trip two or three times: about 100-150 ms measured);
# MAX_GAP_MS=1500 leaves room for a loaded host without hiding a wait for a timeout (the open
# timeout is 3 s, the tunnel's dead_after 1 s).
if [ "$(id -u)" -ne 0 ]; then # before lib.sh: its EXIT trap would turn 77 into 1 under set -e
    echo "SKIP: network namespaces need root" >&2
    exit 77
fi
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/netns.sh"
: "${POPSITE:?POPSITE must point to the popsite binary}"
: "${LATRELAY:?LATRELAY must point to the latrelay binary}"
netns_require
# shellcheck disable=SC2154 # rc is assigned in the trap itself
trap 'rc=$?; cleanup $rc || true; netns_cleanup; exit $rc' EXIT
T_START=$(date +%s)

MAX_FAILED=${MAX_FAILED:-0}       # failed new connections allowed per SIGKILL, in the region
MAX_GAP_MS=${MAX_GAP_MS:-1500}    # SIGKILL to the region's first success through the other
MAX_RETURN_S=${MAX_RETURN_S:-30}  # restart to the region's traffic back on its replica
LOAD="$(dirname "$0")/replica_load.py"

netns_setup 4
PN=(pop-a1 pop-a2 pop-b1 pop-b2)
declare -A NS=([pop-a1]=1 [pop-a2]=1 [pop-b1]=2 [pop-b2]=2 [R1]=3 [R2]=4)
declare -A REGION=([pop-a1]=eu-west [pop-a2]=eu-west [pop-b1]=us-east [pop-b2]=us-east)
declare -A VIP=([pop-a1]=11 [pop-a2]=12 [pop-b1]=21 [pop-b2]=22)
declare -A INGRESS=([pop-a1]=127.0.0.11 [pop-a2]=127.0.0.12 [pop-b1]=127.0.0.21 [pop-b2]=127.0.0.22)
declare -A MPORT TPORT
for p in "${PN[@]}"; do
    MPORT[$p]=$(free_port)
    TPORT[$p]=$(free_port)
    VIP[$p]="10.232.$NETNS_SUBNET.${VIP[$p]}"
done
# DELAY[<namespace>,<pop>]: ms one way from that namespace to the PoP; 0 = the PoP is local.
declare -A DELAY=(
    [1,pop-a1]=0 [1,pop-a2]=0 [1,pop-b1]=20 [1,pop-b2]=20
    [2,pop-a1]=20 [2,pop-a2]=20 [2,pop-b1]=0 [2,pop-b2]=0
    [3,pop-a1]=2 [3,pop-a2]=4 [3,pop-b1]=25 [3,pop-b2]=30
    [4,pop-a1]=25 [4,pop-a2]=30 [4,pop-b1]=2 [4,pop-b2]=4)

# relay NS ADDR TO DELAY: a latrelay in namespace NS from ADDR to TO, waited for.
RELAYS=0
relay() {
    RELAYS=$((RELAYS + 1))
    local log="$WORK/relay-$RELAYS.log"
    netns_spawn "$1" "$LATRELAY" --listen "$2" --to "$3" --delay "$4" >"$log" 2>&1
    wait_for 5 "latrelay $2 -> $3 in namespace $1" grep -q "listening on" "$log"
}
for ns in 1 2 3 4; do
    for p in "${PN[@]}"; do
        netns_exec "$ns" ip addr add "${VIP[$p]}/32" dev lo
        d=${DELAY[$ns,$p]}
        [ "$d" = 0 ] && continue # the PoP listens on every address of its namespace
        real=$(netns_ip "${NS[$p]}")
        relay "$ns" "${VIP[$p]}:${TPORT[$p]}" "$real:${TPORT[$p]}" "$d"
        # Mesh traffic between the regions; the replicas need only the seed's, to enroll.
        if [ "$ns" -le 2 ] || [ "$p" = pop-a1 ]; then
            [ "$ns" -le 2 ] || d=0
            relay "$ns" "${VIP[$p]}:${MPORT[$p]}" "$real:${MPORT[$p]}" "$d"
        fi
    done
done
ok "4 namespaces (eu-west, us-east, R1's and R2's machines), $RELAYS latrelays"

popd_args() { # popd_args POP: region, listeners on every address, advertised on V(POP)
    echo --region "${REGION[$1]}" --mesh-listen "0.0.0.0:${MPORT[$1]}" \
        --advertise "${VIP[$1]}:${MPORT[$1]}" --tunnel-listen "0.0.0.0:${TPORT[$1]}" \
        --tunnel-advertise "${VIP[$1]}:${TPORT[$1]}" --ingress-address "${INGRESS[$1]}"
}
start_pop() { # start_pop POP
    netns_spawn "${NS[$1]}" "$POPD" run --data "$WORK/$1" --log-level debug >>"$WORK/$1.log" 2>&1
    wait_ready "$WORK/$1" "$LAST_PID"
}
# shellcheck disable=SC2046
"$POPD" init --data "$WORK/pop-a1" --name pop-a1 $(popd_args pop-a1) >/dev/null
start_pop pop-a1
POPTOKEN=$(mctl "$WORK/pop-a1" token create --uses 3 --ttl 10m 2>/dev/null)
for p in pop-b1 pop-a2 pop-b2; do
    # shellcheck disable=SC2046
    netns_exec "${NS[$p]}" "$POPD" join --data "$WORK/$p" --name "$p" $(popd_args "$p") \
        "$POPTOKEN" >/dev/null
    start_pop "$p"
done
ALL="pop-a1=alive pop-a2=alive pop-b1=alive pop-b2=alive"
wait_for 30 "4 alive members on every PoP" all_see "$WORK/pop-a1" "$WORK/pop-a2" "$WORK/pop-b1" "$WORK/pop-b2" "$ALL"
ok "4 PoPs, two per region, all alive"

BPORT=$(free_port) RES_PORT=$(free_port)
for r in R1 R2; do
    netns_spawn "${NS[$r]}" "$PY" "$LOAD" serve 127.0.0.1 "$BPORT" "$r" >"$WORK/backend-$r.log" 2>&1
done
expect_rc 0 mctl "$WORK/pop-a1" site add branch --replicas 2
TOKEN=$(cat "$WORK/out")
wait_for 10 "the site record on pop-b2" sh -c "'$MESHCTL' -d '$WORK/pop-b2' site list | grep -q branch"
expect_rc 0 mctl "$WORK/pop-a1" resource add echo --site branch --target "127.0.0.1:$BPORT" \
    --tcp-port "$RES_PORT" --health tcp

declare -A SPID REPL=([R1]=branch [R2]=branch-2)
start_replica() { # start_replica R1|R2 [ARGS...]: popsite on its machine, data $WORK/site-R
    local r=$1
    shift
    netns_spawn "${NS[$r]}" "$POPSITE" run --data "$WORK/site-$r" --log-level debug "$@" \
        >>"$WORK/site-$r.log" 2>&1
    SPID[$r]=$LAST_PID
}
start_replica R1 --token "$TOKEN"
wait_for 20 "R1 enrolled" grep -q "enrolled as site branch" "$WORK/site-R1.log"
start_replica R2 --token "$TOKEN"
wait_for 20 "R2 enrolled" grep -q "enrolled as branch-2, a replica of site branch" "$WORK/site-R2.log"
ok "R1 (branch) and R2 (branch-2) enrolled with the one 2-use token, each on its own machine"

# cost POP REPLICA: the route cost (ms) from POP to REPLICA, or "none"
cost() {
    jq_ "([s['cost_ms'] for s in j['sites'] if s['site'] == '$2' and s['reachable']] or ['none'])[0]" "$WORK/$1" routes 2>/dev/null || echo none
}
# nearer_everywhere: at each eu-west PoP branch (R1) is reachable and cheaper than branch-2
# (R2), and the reverse at each us-east PoP; both reachable everywhere.
nearer_everywhere() {
    local p near far cn cf
    for p in "${PN[@]}"; do
        near=branch far=branch-2
        [ "${REGION[$p]}" = us-east ] && near=branch-2 far=branch
        cn=$(cost "$p" "$near")
        cf=$(cost "$p" "$far")
        [ "$cn" != none ] && [ "$cf" != none ] || return 1
        "$PY" -c 'import sys; sys.exit(0 if float(sys.argv[1]) < float(sys.argv[2]) else 1)' "$cn" "$cf" || return 1
    done
}
path_at() { # path_at POP REPLICA: "path > ... (cost ms)" of POP's route to REPLICA
    jq_ "([' > '.join(s['path']) + ' (%s ms)' % s['cost_ms'] for s in j['sites'] if s['site'] == '$2' and s['reachable']] or ['no route'])[0]" "$WORK/$1" routes 2>/dev/null || echo "no route"
}
routes_line() { # "pop: R1 x ms, R2 y ms; ..." for the report
    local p out=""
    for p in "${PN[@]}"; do out+="$p: R1 $(cost "$p" branch) ms, R2 $(cost "$p" branch-2) ms; "; done
    echo "${out%; }"
}
wait_for 45 "each region's PoPs route to the nearer replica more cheaply (now: $(routes_line))" nearer_everywhere
echo "# routes after ${WAITED}s: $(routes_line)"
mctl "$WORK/pop-a1" sites | sed 's/^/#   /'
ok "every PoP reaches both replicas, eu-west's PoPs R1 more cheaply, us-east's R2: $(routes_line)"

# load_region NS OUT ARGS...: replica_load.py load from namespace NS (a region's users) through
# that region's two PoPs.
load_region() {
    local ns=$1 out=$2 hosts
    shift 2
    if [ "$ns" = 1 ]; then hosts="${INGRESS[pop-a1]},${INGRESS[pop-a2]}"; else hosts="${INGRESS[pop-b1]},${INGRESS[pop-b2]}"; fi
    netns_exec "$ns" "$PY" "$LOAD" load --port "$RES_PORT" --hosts "$hosts" "$@" >"$out"
}
field() { # field FILE EXPR: eval(EXPR) with r = that load's result
    "$PY" -c 'import json,sys; r=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$@"
}
# served_by_nearer: 20 connections per region, all served, eu-west's by R1, us-east's by R2.
served_by_nearer() {
    load_region 1 "$WORK/a.json" --n 20 --interval 0.02 &
    local la=$!
    load_region 2 "$WORK/b.json" --n 20 --interval 0.02
    wait "$la"
    [ "$(field "$WORK/a.json" 'r["failed"], r["served_before"].get("R1", 0)')" = "(0, 20)" ] &&
        [ "$(field "$WORK/b.json" 'r["failed"], r["served_before"].get("R2", 0)')" = "(0, 20)" ]
}
served_by_nearer ||
    fail "users not served by the nearer replica: eu-west $(cat "$WORK/a.json"), us-east $(cat "$WORK/b.json")"
ok "eu-west's users (through pop-a1 and pop-a2) are served by R1, us-east's by R2: 20 of 20 each"

# kill_phase R: SIGKILL replica R while both regions' users connect (50 each, one every 40 ms
# over the region's two PoPs; R is killed before connection 15 of its region's load). Its
# region's traffic moves to the other replica, the other region's is untouched; R restarts
# and its region's traffic returns to it.
declare -a SUMMARY=()
kill_phase() {
    # home: the namespace of R's region's users; away: the other region's
    local r=$1 o=R2 home=1 away=2 home_pop=pop-a1 region=eu-west other_region=us-east
    if [ "$r" = R2 ]; then
        o=R1 home=2 away=1 home_pop=pop-b1 region=us-east other_region=eu-west
    fi
    load_region "$away" "$WORK/away.json" --n 50 --interval 0.04 &
    local la=$!
    load_region "$home" "$WORK/home.json" --n 50 --interval 0.04 --kill-at 15 --pid "${SPID[$r]}" --hold 8
    wait "$la" || fail "the $other_region load exited $?"
    { wait "${SPID[$r]}"; } 2>/dev/null || true
    local f gap slow
    f=$(field "$WORK/home.json" 'r["failed"]')
    gap=$(field "$WORK/home.json" 'r["gap_ms"]')
    slow=$(field "$WORK/home.json" 'r["slowest_ms"]')
    local line
    line="SIGKILL $r: $region's users: $f of 35 failed, first success ${gap} ms after the kill, slowest ${slow} ms, served before $(field "$WORK/home.json" 'r["served_before"]') after $(field "$WORK/home.json" 'r["served_after"]'), held $(field "$WORK/home.json" '" ".join("%s:%s x%d" % (w, "kept" if k else "lost", n) for (w, k), n in sorted(__import__("collections").Counter((w, k) for h, w, k in r["held"]).items()))'), $(path_at "$home_pop" "${REPL[$o]}") at $home_pop after it; $other_region's users: $(field "$WORK/away.json" 'r["failed"]') of 50 failed, served by $(field "$WORK/away.json" 'r["served_before"]')"
    echo "# $line"
    field "$WORK/home.json" '"\n".join("#   " + e for e in r["errors"])'
    SUMMARY+=("$line")
    [ "$(field "$WORK/home.json" 'r["served_before"].get(sys.argv[3], 0)' "$r")" = 15 ] ||
        fail "$region's users were not served by $r before the kill"
    [ "$f" -le "$MAX_FAILED" ] || fail "$f of $region's new connections failed after SIGKILL of $r (at most $MAX_FAILED)"
    [ "${gap%.*}" -ge 0 ] && [ "${gap%.*}" -le "$MAX_GAP_MS" ] ||
        fail "$region's first success ${gap} ms after SIGKILL of $r (bound $MAX_GAP_MS ms; -1: none)"
    [ "$(field "$WORK/home.json" 'r["served_after"].get(sys.argv[3], 0)' "$o")" = 35 ] ||
        fail "$region's users were not all served by $o after $r died"
    [ "$(field "$WORK/away.json" 'r["failed"], r["served_before"].get(sys.argv[3], 0)' "$o")" = "(0, 50)" ] ||
        fail "$other_region's users were disturbed by the loss of $r: $(cat "$WORK/away.json")"
    ok "SIGKILL of $r: $region's users move to $o: $f failed (bound $MAX_FAILED), first success ${gap} ms after the kill (bound $MAX_GAP_MS), slowest ${slow} ms; $other_region's users stay on $o, none failed"

    # R restarts; its region's users come back to it (popsite measures its PoPs again first).
    start_replica "$r"
    local t0 back=""
    t0=$(date +%s%N)
    for _ in $(seq 1 $((MAX_RETURN_S * 10))); do
        if [ "$(netns_exec "$home" "$PY" -c '
import socket, sys
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)
    s.settimeout(2)
    print(s.recv(10).decode().strip())
except Exception:
    print("error")' "${INGRESS[$home_pop]}" "$RES_PORT")" = "$r" ]; then
            back=$((($(date +%s%N) - t0) / 1000000))
            break
        fi
        [ $((($(date +%s%N) - t0) / 1000000000)) -lt "$MAX_RETURN_S" ] || break
        sleep 0.1
    done
    [ -n "$back" ] || fail "$region's users did not return to $r within $MAX_RETURN_S s of its restart (routes: $(routes_line))"
    wait_for 30 "each region's PoPs route to the nearer replica again" nearer_everywhere
    # Routes may still settle (the restarted replica's tunnel RTTs are measured anew, on a
    # loaded machine a sample can be off by tens of ms): the steady state must come, bounded.
    local tries=0
    until served_by_nearer; do
        tries=$((tries + 1))
        [ "$tries" -lt 10 ] || fail "after $r's restart, users not served by the nearer replica (10 samples over ~10 s): eu-west $(cat "$WORK/a.json"), us-east $(cat "$WORK/b.json")"
        sleep 0.5
    done
    SUMMARY+=("restart $r: $region's users back on it after $back ms")
    ok "$r restarted from its data directory: $region's users back on it $back ms after the restart (bound ${MAX_RETURN_S}s); both regions on their nearer replica again"
}
kill_phase R1
kill_phase R2

for s in "${SUMMARY[@]}"; do echo "# $s"; done
echo "# whole test: $(($(date +%s) - T_START))s"
done_testing
