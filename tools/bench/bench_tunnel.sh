#!/usr/bin/env bash
# Tunnel benchmark: popmesh's data path against ssh -L (PEERS.md), side by side in one run, on
# loopback. Everything lives in a temp dir; sshd runs as the current user with its own config
# (in a private mount namespace when root, for its privilege-separation dir).
#   1. throughput: iperf3 through a popmesh resource vs through ssh -L, both directions;
#   2. latency: 64-byte round trips (2000 sequential, one connection) to an echo server;
#   3. relay vs direct: entering at the site's PoP vs at another PoP (site on one PoP), the
#      stream sealed end to end for the site (the egress PoP forwards records it cannot open)
#      and, in the same run, as before sealing (an ingress with seal-streams = no: the egress
#      opens and seals every byte); CPU per GiB at the ingress and at the egress PoP;
#   4. failover: 3 PoPs, site on 2; SIGKILL the primary 10 times while a client makes a new
#      connection + round trip every 20 ms through a non-primary PoP; kill -> first success.
# Medians of N interleaved runs (popmesh, ssh, popmesh, ...). Usage:
#   tools/bench/bench_tunnel.sh [--runs N (5)] [--seconds S (5)] [--kills K (10)] [--build DIR]
# --build: the Release build directory to use (default build-bench), so that several people
# benchmarking in one checkout do not rebuild each other's binaries.
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=5
SECS=5
KILLS=10
BUILD=build-bench
while [ $# -gt 0 ]; do
    case $1 in
    --runs) RUNS=$2; shift 2 ;;
    --seconds) SECS=$2; shift 2 ;;
    --kills) KILLS=$2; shift 2 ;;
    --build) BUILD=$2; shift 2 ;;
    *) echo "usage: $0 [--runs N] [--seconds S] [--kills K] [--build DIR]" >&2; exit 2 ;;
    esac
done
PY=/usr/bin/python3
PROBE=$PWD/tools/bench/tunnel_probe.py

case $BUILD in /*) ;; *) BUILD=$PWD/$BUILD ;; esac
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j2 --target popd popsite meshctl >/dev/null
POPD=$BUILD/node/popd
POPSITE=$BUILD/node/site/popsite
MESHCTL=$BUILD/tools/meshctl/meshctl

source tools/bench/lib.sh
bench_workdir tunnel
declare -A ADDR=([p1]=127.0.0.2 [p2]=127.0.0.3 [p3]=127.0.0.4 [p4]=127.0.0.5)
CONF_EXTRA= # a popd.conf line init_pop adds before starting the PoP
start_pop() { # start_pop NAME
    "$POPD" run --data "$W/$1" >>"$W/$1.log" 2>&1 &
    PID[$1]=$!
    for _ in $(seq 1 200); do ctl "$1" status >/dev/null 2>&1 && return; sleep 0.05; done
    echo "PoP $1 did not start" >&2; exit 1
}
init_pop() { # init_pop NAME [TOKEN]
    local args=(--data "$W/$1" --name "$1" --mesh-listen "127.0.0.1:$(port)"
        --tunnel-listen "127.0.0.1:$(port)" --ingress-address "${ADDR[$1]}")
    if [ $# -eq 1 ]; then
        "$POPD" init "${args[@]}" >>"$W/$1.log" 2>&1
    else
        "$POPD" join "${args[@]}" "$2" >>"$W/$1.log" 2>&1
    fi
    [ -z "$CONF_EXTRA" ] || echo "$CONF_EXTRA" >>"$W/$1/popd.conf"
    start_pop "$1"
}
wait_site_pops() { # wait_site_pops SITE N POP...: until a PoP sees SITE on N PoPs with one
    # primary (60 s max); prints "primary standby,..."
    local site=$1 n=$2 p
    shift 2
    for _ in $(seq 1 600); do
        for p in "$@"; do
            ctl "$p" --json sites 2>/dev/null | $PY "$PROBE" npops "$site" "$n" 2>/dev/null && return 0
        done
        sleep 0.1
    done
    echo "site $site did not get $n PoPs within 60 s: $(ctl "$1" sites 2>&1)" >&2
    return 1
}
iperf() { # iperf HOST PORT [-R]: Gbit/s (receiver side), or "nan"
    local out
    if out=$(timeout $((SECS + 20)) iperf3 -c "$1" -p "$2" -t "$SECS" -J ${3:-} 2>>"$W/iperf-client.log"); then
        echo "$out" | $PY -c 'import json,sys; print("%.3f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))'
    else
        echo "$out" | tail -n 3 >>"$W/iperf-client.log"
        echo "iperf3 -c $1 -p $2 ${3:-} failed" >&2
        touch "$W/failed"
        echo nan
    fi
}
lat() { # lat HOST PORT: "p50 p99" in us, or "nan nan"
    timeout 60 $PY "$PROBE" lat "$1" "$2" 2000 2>>"$W/probe.log" || { echo "lat $1:$2 failed" >&2; touch "$W/failed"; echo "nan nan"; }
}
row() { printf '| %-44s | %12s | %12s | %6s |\n' "$@"; }

# ---- backends: iperf3 server, echo server
IPERF_PORT=$(port)
ECHO_PORT=$(port)
iperf3 -s -B 127.0.0.1 -p "$IPERF_PORT" >"$W/iperf-server.log" 2>&1 &
PID[iperf3]=$!
$PY "$PROBE" echo "$ECHO_PORT" >"$W/echo.log" 2>&1 &
PID[echo]=$!

# ---- peer: user sshd with a throwaway host key and an authorized key, ssh -L
echo "== sshd + ssh -L"
SSH_IPERF=$(port)
SSH_ECHO=$(port)
start_ssh_forward "$SSH_ECHO:$ECHO_PORT" "$SSH_IPERF:$IPERF_PORT"

# ---- popmesh: 2 PoPs, a site on one PoP, two resources
echo "== popmesh: 2 PoPs, site s1 (--pops 1)"
init_pop p1
TOK=$(ctl p1 token create --role pop --uses 4 --ttl 1h 2>&1 | grep -o 'pmt1\.[A-Za-z0-9_-]*' | head -1)
init_pop p2 "$TOK"
CONF_EXTRA="seal-streams = no" init_pop p4 "$TOK" # the relaying before sealed streams
STOK=$(ctl p1 site add s1 2>&1 | grep -o 'pmt1\.[A-Za-z0-9_-]*' | head -1)
"$POPSITE" run --data "$W/s1" --token "$STOK" --pops 1 >>"$W/s1.log" 2>&1 &
PID[s1]=$!
R_IPERF=$(port)
R_ECHO=$(port)
ctl p1 resource add iperf --site s1 --target "127.0.0.1:$IPERF_PORT" --tcp-port "$R_IPERF" --health tcp >>"$W/meshctl.log" 2>&1
ctl p1 resource add echo --site s1 --target "127.0.0.1:$ECHO_PORT" --tcp-port "$R_ECHO" --health tcp >>"$W/meshctl.log" 2>&1
read -r PRIM _ < <(wait_site_pops s1 1 p1)
case $PRIM in p1) OTHER=p2 ;; p2) OTHER=p1 ;; *) echo "site s1 has no primary: $PRIM" >&2; exit 1 ;; esac
DIRECT=${ADDR[$PRIM]}
RELAY=${ADDR[$OTHER]}
$PY "$PROBE" wait "$DIRECT" "$R_ECHO" 30
$PY "$PROBE" wait "$RELAY" "$R_ECHO" 30
OLD=${ADDR[p4]}
$PY "$PROBE" wait "$OLD" "$R_ECHO" 30
S1PRIM=$PRIM
echo "   s1 is on $PRIM: direct ingress $DIRECT (via $PRIM), relay ingress $RELAY (via $OTHER)"

# cpu_s PID: user + system CPU seconds of a process so far (/proc/PID/stat fields 14 and 15).
TCK=$(getconf CLK_TCK)
cpu_s() { awk -v t="$TCK" '{ printf "%.3f", ($14 + $15) / t }' "/proc/$1/stat"; }
# The relayed runs' CPU at the ingress PoP and at the egress PoP (the site's), and the bytes
# they carried: CPU seconds per GiB for each, sealed (ingress $OTHER) and as before (p4).
declare -A ICPU=([s]=0 [u]=0) ECPU=([s]=0 [u]=0) GIB=([s]=0 [u]=0)
relayed_iperf() { # relayed_iperf s|u ARGS...: iperf through the sealed (s) or old (u) ingress
    local m=$1 ing r0 e0 g
    shift
    if [ "$m" = s ]; then ing=$OTHER; else ing=p4; fi
    r0=$(cpu_s "${PID[$ing]}") e0=$(cpu_s "${PID[$PRIM]}")
    g=$(iperf "${ADDR[$ing]}" "$R_IPERF" "$@")
    ICPU[$m]=$(awk -v a="${ICPU[$m]}" -v b="$(cpu_s "${PID[$ing]}")" -v c="$r0" 'BEGIN { printf "%.3f", a + b - c }')
    ECPU[$m]=$(awk -v a="${ECPU[$m]}" -v b="$(cpu_s "${PID[$PRIM]}")" -v c="$e0" 'BEGIN { printf "%.3f", a + b - c }')
    GIB[$m]=$(awk -v a="${GIB[$m]}" -v g="$g" -v s="$SECS" 'BEGIN { printf "%.4f", a + g * s / 8 * 1e9 / 1073741824 }')
    echo "$g"
}
echo "== throughput: $RUNS x ${SECS}s each, interleaved popmesh-direct / ssh -L / popmesh-relay (sealed) / relay as before"
declare -a TD=() TS=() TR=() TU=() RD=() RS=() RR=() RU=()
for r in $(seq 1 "$RUNS"); do
    TD+=("$(iperf "$DIRECT" "$R_IPERF")")
    TS+=("$(iperf 127.0.0.1 "$SSH_IPERF")")
    relayed_iperf s >"$W/relayed.out"
    TR+=("$(cat "$W/relayed.out")")
    relayed_iperf u >"$W/relayed.out"
    TU+=("$(cat "$W/relayed.out")")
    RD+=("$(iperf "$DIRECT" "$R_IPERF" -R)")
    RS+=("$(iperf 127.0.0.1 "$SSH_IPERF" -R)")
    relayed_iperf s -R >"$W/relayed.out"
    RR+=("$(cat "$W/relayed.out")")
    relayed_iperf u -R >"$W/relayed.out"
    RU+=("$(cat "$W/relayed.out")")
    echo "   run $r: fwd direct ${TD[-1]} ssh ${TS[-1]} relay ${TR[-1]} old ${TU[-1]}; -R direct ${RD[-1]} ssh ${RS[-1]} relay ${RR[-1]} old ${RU[-1]} Gbit/s"
done

sleep 1
echo "== latency: $RUNS x 2000 round trips of 64 B, interleaved"
declare -a LD50=() LD99=() LS50=() LS99=() LR50=() LR99=()
for r in $(seq 1 "$RUNS"); do
    read -r a b < <(lat "$DIRECT" "$R_ECHO"); LD50+=("$a"); LD99+=("$b")
    read -r a b < <(lat 127.0.0.1 "$SSH_ECHO"); LS50+=("$a"); LS99+=("$b")
    read -r a b < <(lat "$RELAY" "$R_ECHO"); LR50+=("$a"); LR99+=("$b")
    echo "   run $r: p50/p99 us direct ${LD50[-1]}/${LD99[-1]} ssh ${LS50[-1]}/${LS99[-1]} relay ${LR50[-1]}/${LR99[-1]}"
done

# ---- failover: a third PoP, a site on 2 PoPs (the old-relaying ingress p4 goes first)
stop_pop() { kill "${PID[$1]}" 2>/dev/null || true; wait "${PID[$1]}" 2>/dev/null || true; unset "PID[$1]"; }
stop_pop p4
ctl p1 node rm p4 >>"$W/meshctl.log" 2>&1 || true
echo "== failover: 3 PoPs, site s2 (--pops 2), $KILLS SIGKILLs of its primary"
kill -9 "${PID[s1]}" 2>/dev/null || true
wait "${PID[s1]}" 2>/dev/null || true
unset 'PID[s1]'
init_pop p3 "$TOK"
STOK2=$(ctl p1 site add s2 2>&1 | grep -o 'pmt1\.[A-Za-z0-9_-]*' | head -1)
"$POPSITE" run --data "$W/s2" --token "$STOK2" --pops 2 >>"$W/s2.log" 2>&1 &
PID[s2]=$!
R_ECHO2=$(port)
ctl p1 resource add echo2 --site s2 --target "127.0.0.1:$ECHO_PORT" --tcp-port "$R_ECHO2" --health tcp >>"$W/meshctl.log" 2>&1
declare -a FO=()
for k in $(seq 1 "$KILLS"); do
    # any live PoP can answer; p1..p3 are all up here
    # ask the PoP that was not just restarted first
    if ! info=$(wait_site_pops s2 2 p3 p1 p2); then FAILED=1; break; fi
    read -r PRIM STBY <<<"$info"
    if [ -z "${PID[$PRIM]:-}" ]; then echo "   unknown primary '$PRIM'" >&2; FAILED=1; break; fi
    ENTRY=
    for n in p1 p2 p3; do # prefer the PoP that is neither primary nor standby
        [ "$n" != "$PRIM" ] && [[ ",$STBY," != *",$n,"* ]] && ENTRY=$n
    done
    [ -n "$ENTRY" ] || ENTRY=${STBY%%,*}
    # Steady state: the entry's routes hold a backup path to s2 (a PoP restarted a moment ago
    # learns the other PoPs' link state within about a second; killed before that, its only
    # path is the primary's and the first round trip waits for the routes: up to 0.7 s).
    for _ in $(seq 1 100); do
        ctl "$ENTRY" --json routes 2>/dev/null | $PY -c 'import json,sys; j=json.load(sys.stdin); sys.exit(0 if any(e.get("backup") for e in j["sites"] if "s2" in json.dumps(e["site"])) else 1)' && break
        sleep 0.1
    done
    if ! $PY "$PROBE" wait "${ADDR[$ENTRY]}" "$R_ECHO2" 30 2>>"$W/probe.log"; then
        echo "   kill $k: no round trip via $ENTRY before the kill" >&2; FAILED=1; break
    fi
    if ms=$(timeout 90 $PY "$PROBE" failover "${ADDR[$ENTRY]}" "$R_ECHO2" "${PID[$PRIM]}" 2>>"$W/probe.log"); then
        FO+=("$ms")
    else
        FO+=(nan); FAILED=1
    fi
    { wait "${PID[$PRIM]}"; } 2>/dev/null || true
    echo "   kill $k: primary $PRIM (standby $STBY), entry $ENTRY: ${FO[-1]} ms"
    start_pop "$PRIM"
done

[ ! -e "$W/failed" ] || FAILED=1
echo
echo "Tunnel benchmark, $(nproc) cores, loopback; popmesh Release; medians of $RUNS runs (${SECS}s iperf3 each); ssh -L: $(ssh -V 2>&1 | cut -d, -f1)"
echo
row "metric" "popmesh" "ssh -L" "ratio"
row "--------------------------------------------" "------------" "------------" "------"
a=$(median "${TD[@]}"); b=$(median "${TS[@]}"); row "throughput client->server, Gbit/s" "$a" "$b" "$(ratio "$a" "$b")"
a=$(median "${RD[@]}"); b=$(median "${RS[@]}"); row "throughput server->client (-R), Gbit/s" "$a" "$b" "$(ratio "$a" "$b")"
a=$(median "${LD50[@]}"); b=$(median "${LS50[@]}"); row "64 B round trip p50, us" "$a" "$b" "$(ratio "$a" "$b")"
a=$(median "${LD99[@]}"); b=$(median "${LS99[@]}"); row "64 B round trip p99, us" "$a" "$b" "$(ratio "$a" "$b")"
echo
row "relay vs direct (s1 on $S1PRIM, relay via $OTHER)" "direct" "relay" "r/d"
row "--------------------------------------------" "------------" "------------" "------"
a=$(median "${TD[@]}"); b=$(median "${TR[@]}"); row "throughput client->server, Gbit/s" "$a" "$b" "$(ratio "$b" "$a")"
a=$(median "${RD[@]}"); b=$(median "${RR[@]}"); row "throughput server->client (-R), Gbit/s" "$a" "$b" "$(ratio "$b" "$a")"
a=$(median "${LD50[@]}"); b=$(median "${LR50[@]}"); row "64 B round trip p50, us" "$a" "$b" "$(ratio "$b" "$a")"
a=$(median "${LD99[@]}"); b=$(median "${LR99[@]}"); row "64 B round trip p99, us" "$a" "$b" "$(ratio "$b" "$a")"
echo
row "sealed relay vs relay as before (p4)" "sealed" "before" "s/b"
row "--------------------------------------------" "------------" "------------" "------"
a=$(median "${TR[@]}"); b=$(median "${TU[@]}"); row "throughput client->server, Gbit/s" "$a" "$b" "$(ratio "$a" "$b")"
a=$(median "${RR[@]}"); b=$(median "${RU[@]}"); row "throughput server->client (-R), Gbit/s" "$a" "$b" "$(ratio "$a" "$b")"
a=$(median "${TU[@]}"); b=$(median "${TD[@]}"); row "before: relay/direct client->server" "$a" "$b" "$(ratio "$a" "$b")"
a=$(median "${RU[@]}"); b=$(median "${RD[@]}"); row "before: relay/direct server->client" "$a" "$b" "$(ratio "$a" "$b")"
per_gib() { awk -v c="$1" -v g="$2" 'BEGIN { printf "%.2f", (g > 0 ? c / g : 0) }'; }
a=$(per_gib "${ECPU[s]}" "${GIB[s]}"); b=$(per_gib "${ECPU[u]}" "${GIB[u]}")
row "CPU s/GiB at the egress PoP (the relay)" "$a" "$b" "$(ratio "$a" "$b")"
a=$(per_gib "${ICPU[s]}" "${GIB[s]}"); b=$(per_gib "${ICPU[u]}" "${GIB[u]}")
row "CPU s/GiB at the ingress PoP" "$a" "$b" "$(ratio "$a" "$b")"
echo
row "failover (3 PoPs, site --pops 2)" "median" "p99" "n"
row "--------------------------------------------" "------------" "------------" "------"
row "SIGKILL primary -> first new round trip, ms" "$(median "${FO[@]:-nan}")" "$(p99 "${FO[@]:-nan}")" "${#FO[@]}"
[ "$FAILED" -eq 0 ] || echo "(some measurements failed: see the log tails below)"
