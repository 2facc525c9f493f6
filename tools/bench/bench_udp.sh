#!/usr/bin/env bash
# UDP resource benchmark: iperf3 -u at fixed rates through a popmesh UDP resource against the
# same rate sent straight to the iperf3 server, in one run, interleaved (direct, via the site's
# PoP, via another PoP that relays; next rate; next run). iperf3 -u needs its TCP control
# connection on the same port number as its UDP data, so the mesh publishes two resources on
# one port: a TCP one and a UDP one. Reports medians of N runs of throughput at the receiver
# and loss %, and the mesh / direct ratios. Usage:
#   tools/bench/bench_udp.sh [--runs N (5)] [--seconds S (5)] [--rates "200M 1G"] [--len L (1200)]
#                            [--build DIR (build-bench)]
# --build: the Release build directory (several people benchmarking in one checkout each use
# their own). MESHCTL=path overrides the meshctl binary (when that target cannot build).
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=5
SECS=5
RATES="200M 1G"
LEN=1200
BUILD=build-bench
while [ $# -gt 0 ]; do
    case $1 in
    --runs) RUNS=$2; shift 2 ;;
    --seconds) SECS=$2; shift 2 ;;
    --rates) RATES=$2; shift 2 ;;
    --len) LEN=$2; shift 2 ;;
    --build) BUILD=$2; shift 2 ;;
    *) echo "usage: $0 [--runs N] [--seconds S] [--rates \"200M 1G\"] [--len L] [--build DIR]" >&2; exit 2 ;;
    esac
done
PY=/usr/bin/python3
PROBE=$PWD/tools/bench/tunnel_probe.py
case $BUILD in /*) ;; *) BUILD=$PWD/$BUILD ;; esac
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j2 --target popd popsite >/dev/null
if [ -z "${MESHCTL:-}" ]; then
    cmake --build "$BUILD" -j2 --target meshctl >/dev/null
    MESHCTL=$BUILD/tools/meshctl/meshctl
fi
POPD=$BUILD/node/popd
POPSITE=$BUILD/node/site/popsite

source tools/bench/lib.sh
bench_workdir udp
declare -A ADDR=([p1]=127.0.0.42 [p2]=127.0.0.43)
start_pop() { # start_pop NAME
    "$POPD" run --data "$W/$1" >>"$W/$1.log" 2>&1 &
    PID[$1]=$!
    for _ in $(seq 1 200); do ctl "$1" status >/dev/null 2>&1 && return; sleep 0.05; done
    fail "PoP $1 did not start"
}
init_pop() { # init_pop NAME [TOKEN]
    local args=(--data "$W/$1" --name "$1" --mesh-listen "127.0.0.1:$(port)"
        --tunnel-listen "127.0.0.1:$(port)" --ingress-address "${ADDR[$1]}")
    if [ $# -eq 1 ]; then
        "$POPD" init "${args[@]}" >>"$W/$1.log" 2>&1
    else
        "$POPD" join "${args[@]}" "$2" >>"$W/$1.log" 2>&1
    fi
    start_pop "$1"
}
# udp HOST PORT RATE: "Mbit/s loss%" as the receiver counted them, or "nan nan"
udp() {
    local out
    if out=$(timeout $((SECS + 20)) iperf3 -c "$1" -p "$2" -u -b "$3" -l "$LEN" -t "$SECS" -J 2>>"$W/iperf-client.log"); then
        echo "$out" | $PY -c 'import json,sys
e = json.load(sys.stdin)["end"]
e = e.get("sum_received", e["sum"])  # the receiver side (iperf3 3.11 on reports both)
print("%.1f %.3f" % (e["bits_per_second"] / 1e6, e["lost_percent"]))'
    else
        echo "$out" | tail -n 3 >>"$W/iperf-client.log"
        echo "iperf3 -u -c $1 -p $2 -b $3 failed" >&2
        echo "nan nan"
    fi
}

IPERF_PORT=$(port)
iperf3 -s -B 127.0.0.1 -p "$IPERF_PORT" >"$W/iperf-server.log" 2>&1 &
PID[iperf3]=$!
wait_port "$IPERF_PORT" 10 || fail "iperf3 server"

echo "== popmesh: 2 PoPs, site s1 (--pops 1), a TCP and a UDP resource on one port"
init_pop p1
TOK=$(ctl p1 token create --role pop --uses 1 --ttl 1h 2>&1 | grep -o 'pmt1\.[A-Za-z0-9_-]*' | head -1)
init_pop p2 "$TOK"
STOK=$(ctl p1 site add s1 2>&1 | grep -o 'pmt1\.[A-Za-z0-9_-]*' | head -1)
"$POPSITE" run --data "$W/s1" --token "$STOK" --pops 1 >>"$W/s1.log" 2>&1 &
PID[s1]=$!
RP=$(port)
ctl p1 resource add iperf-ctl --site s1 --target "127.0.0.1:$IPERF_PORT" --tcp-port "$RP" >>"$W/meshctl.log" 2>&1
ctl p1 resource add iperf-udp --site s1 --target "127.0.0.1:$IPERF_PORT" --udp-port "$RP" >>"$W/meshctl.log" 2>&1
PRIM=
for _ in $(seq 1 600); do
    for p in p1 p2; do
        PRIM=$(ctl "$p" --json sites 2>/dev/null | $PY "$PROBE" npops s1 1 2>/dev/null | awk '{print $1}') && [ -n "$PRIM" ] && break 2
    done
    sleep 0.1
done
case $PRIM in p1) OTHER=p2 ;; p2) OTHER=p1 ;; *) fail "site s1 has no primary: '$PRIM'" ;; esac
ready() { # ready HOST: a short iperf3 -u through HOST:$RP completes (30 s max)
    for _ in $(seq 1 30); do
        timeout 10 iperf3 -c "$1" -p "$RP" -u -b 1M -t 1 >/dev/null 2>&1 && return 0
        sleep 1
    done
    fail "iperf3 -u through $1:$RP never completed"
}
ready "${ADDR[$PRIM]}"
ready "${ADDR[$OTHER]}"
echo "   s1 is on $PRIM: direct ingress ${ADDR[$PRIM]}, relay ingress ${ADDR[$OTHER]}"

declare -A T L
for run in $(seq 1 "$RUNS"); do
    for rate in $RATES; do
        for path in direct mesh relay; do
            case $path in
            direct) h=127.0.0.1 p=$IPERF_PORT ;;
            mesh) h=${ADDR[$PRIM]} p=$RP ;;
            relay) h=${ADDR[$OTHER]} p=$RP ;;
            esac
            read -r mbit loss < <(udp "$h" "$p" "$rate")
            T[$rate,$path]="${T[$rate,$path]:-} $mbit"
            L[$rate,$path]="${L[$rate,$path]:-} $loss"
            echo "   run $run $rate $path: $mbit Mbit/s, loss $loss %"
        done
    done
done

echo
echo "iperf3 -u -l $LEN, $SECS s per run, medians of $RUNS runs (receiver side), $(nproc) cores, loopback"
printf '| %-6s | %-24s | %12s | %8s | %14s |\n' rate path "Mbit/s" "loss %" "ratio to direct"
printf '|%s|%s|%s|%s|%s|\n' -------- -------------------------- -------------- ---------- ----------------
for rate in $RATES; do
    # shellcheck disable=SC2086
    dt=$(median ${T[$rate,direct]})
    for path in direct mesh relay; do
        # shellcheck disable=SC2086
        t=$(median ${T[$rate,$path]}) l=$(median ${L[$rate,$path]})
        case $path in
        direct) name="direct to iperf3" ;;
        mesh) name="resource via site's PoP" ;;
        relay) name="resource via relay PoP" ;;
        esac
        printf '| %-6s | %-24s | %12s | %8s | %14s |\n' "$rate" "$name" "$t" "$l" "$(ratio "$t" "$dt")"
    done
done
echo
echo "dataplane counters at $PRIM and $OTHER:"
for p in "$PRIM" "$OTHER"; do ctl "$p" status | grep '^udp' | sed "s/^/   $p: /"; done
