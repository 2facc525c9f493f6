#!/usr/bin/env bash
# Tunnel rekeying under load (docs/tunnel.md, "Rekeying"; issue: throughput within 5% of
# without rekeying, no stream broken). Two meshes side by side in one run, on loopback, the
# same but for the rekey limits:
#   A: a PoP and a popsite with the channel's defaults (a key lives for 64 GiB or an hour, so
#      no rekey happens in a run);
#   B: the same with POPMESH_TEST_REKEY_BYTES / POPMESH_TEST_REKEY_MS (default 16 MiB and 1 s,
#      thousands of times more often than the defaults: tens of rekeys a second per direction).
# Both PoPs take TCP resources to one iperf3 server through their site; by default their
# streams are not sealed end to end (seal-streams = no), so the tunnel's keys carry every
# payload byte, the case where rekeying costs most (with sealed streams the tunnel keys carry
# only records' heads). iperf3 runs alternate A, B (order swapped every run), both
# directions; every iperf3 run must complete (a broken stream fails it). Prints medians, B/A,
# and B's rekeys per run (tunnel counters at both ends: meshctl --json tunnels).
#   tools/bench/bench_rekey.sh [--runs N (5)] [--seconds S (8)] [--sealed] [--build DIR]
#   REKEY_BYTES=16777216 REKEY_MS=1000 override B's limits; AA=1 REKEY_BYTES=68719476736
#   REKEY_MS=3600000 is the control (two meshes alike: what B/A is with no difference at all).
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=5
SECS=8
SEALED=no
BUILD=build-bench
while [ $# -gt 0 ]; do
    case $1 in
    --runs) RUNS=$2; shift 2 ;;
    --seconds) SECS=$2; shift 2 ;;
    --sealed) SEALED=yes; shift ;;
    --build) BUILD=$2; shift 2 ;;
    *) echo "usage: $0 [--runs N] [--seconds S] [--sealed] [--build DIR]" >&2; exit 2 ;;
    esac
done
REKEY_BYTES=${REKEY_BYTES:-16777216}
REKEY_MS=${REKEY_MS:-1000}
PY=/usr/bin/python3
command -v iperf3 >/dev/null || { echo "bench_rekey: iperf3 missing (tools/setup.sh)" >&2; exit 1; }
case $BUILD in /*) ;; *) BUILD=$PWD/$BUILD ;; esac
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j2 --target popd popsite meshctl >/dev/null
POPD=$BUILD/node/popd
POPSITE=$BUILD/node/site/popsite
MESHCTL=$BUILD/tools/meshctl/meshctl
source tools/bench/lib.sh
bench_workdir rekey
declare -A ADDR=([a]=127.0.0.2 [b]=127.0.0.3) RES=()

IPERF_PORT=$(port)
iperf3 -s -B 127.0.0.1 -p "$IPERF_PORT" >"$W/iperf-server.log" 2>&1 &
PID[iperf3]=$!

# mesh M [ENV...]: PoP pM and site sM (both started with ENV), resource iperfM on RES[M].
mesh() {
    local m=$1 tok
    shift
    "$POPD" init --data "$W/p$m" --name "p$m" --mesh-listen "127.0.0.1:$(port)" \
        --tunnel-listen "127.0.0.1:$(port)" --ingress-address "${ADDR[$m]}" >>"$W/p$m.log" 2>&1
    echo "seal-streams = $SEALED" >>"$W/p$m/popd.conf"
    env "$@" "$POPD" run --data "$W/p$m" >>"$W/p$m.log" 2>&1 &
    PID[p$m]=$!
    for _ in $(seq 1 200); do ctl "p$m" status >/dev/null 2>&1 && break; sleep 0.05; done
    tok=$(ctl "p$m" site add "s$m" 2>&1 | grep -o 'pmt1\.[A-Za-z0-9_-]*' | head -1)
    env "$@" "$POPSITE" run --data "$W/s$m" --token "$tok" --pops 1 >>"$W/s$m.log" 2>&1 &
    PID[s$m]=$!
    RES[$m]=$(port)
    ctl "p$m" resource add "iperf$m" --site "s$m" --target "127.0.0.1:$IPERF_PORT" \
        --tcp-port "${RES[$m]}" --health tcp >>"$W/meshctl.log" 2>&1
    for _ in $(seq 1 30); do # until a 1 s iperf3 run goes through (30 tries)
        timeout 10 iperf3 -c "${ADDR[$m]}" -p "${RES[$m]}" -t 1 >>"$W/iperf-client.log" 2>&1 && return
        sleep 0.5
    done
    fail "mesh $m does not carry iperf3"
}
echo "== two meshes: A (default rekey limits), B (rekey every $REKEY_BYTES bytes or $REKEY_MS ms); seal-streams = $SEALED"
mesh a
mesh b POPMESH_TEST_REKEY_BYTES="$REKEY_BYTES" POPMESH_TEST_REKEY_MS="$REKEY_MS"
grep -q "TEST KNOB: POPMESH_TEST_REKEY_BYTES=$REKEY_BYTES" "$W/pb.log" || fail "pb did not take the rekey knob"

rekeys() { # rekeys M: rekeys sent + received over pM's tunnels so far
    ctl "p$1" --json tunnels | $PY -c 'import json,sys; print(sum(t.get("rekeys_sent",0)+t.get("rekeys_received",0) for t in json.load(sys.stdin)["tunnels"]))'
}
iperf() { # iperf M [-R]: Gbit/s received; fails the benchmark if iperf3 does not complete
    local out
    out=$(timeout $((SECS + 20)) iperf3 -c "${ADDR[$1]}" -p "${RES[$1]}" -t "$SECS" -J ${2:-} 2>>"$W/iperf-client.log") ||
        { echo "$out" | tail -n 5 >>"$W/iperf-client.log"; fail "iperf3 through mesh $1 ${2:-} did not complete (a broken stream?)"; }
    echo "$out" | $PY -c 'import json,sys; print("%.3f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))'
}
TCK=$(getconf CLK_TCK)
cpu() { # cpu M: CPU seconds of pM and sM so far (user + system)
    awk -v t="$TCK" '{ s += $14 + $15 } END { printf "%.3f", s / t }' "/proc/${PID[p$1]}/stat" "/proc/${PID[s$1]}/stat"
}
declare -a AU=() BU=() AD=() BD=() RK=() CA=() CB=()
echo "== $RUNS x ${SECS}s per side and direction, alternated"
for r in $(seq 1 "$RUNS"); do
    if [ $((r % 2)) = 1 ]; then order="a b"; else order="b a"; fi
    for m in $order; do
        k0=$(rekeys "$m") c0=$(cpu "$m")
        up=$(iperf "$m")
        down=$(iperf "$m" -R)
        k=$(($(rekeys "$m") - k0))
        # CPU seconds per GiB carried, PoP and site together: the cost, which the shared
        # cores' scheduling moves less than throughput.
        cg=$(awk -v c1="$(cpu "$m")" -v c0="$c0" -v u="$up" -v d="$down" -v s="$SECS" \
            'BEGIN { printf "%.3f", (c1 - c0) / ((u + d) * s / 8 * 1e9 / 1073741824) }')
        if [ "$m" = a ]; then
            AU+=("$up") AD+=("$down") CA+=("$cg")
            [ "$k" = 0 ] || fail "mesh A rekeyed ($k): its limits are not the defaults"
        else
            BU+=("$up") BD+=("$down") RK+=("$k") CB+=("$cg")
        fi
        echo "   run $r mesh $m: up $up, down $down Gbit/s, rekeys $k, CPU $cg s/GiB"
    done
done
# AA=1 (a control run: B given limits as long as the defaults) shows the noise floor.
[ -n "${AA:-}" ] || [ "$(median "${RK[@]}")" != 0 ] || fail "mesh B did not rekey"
row() { printf '| %-36s | %12s | %14s | %6s |\n' "$@"; }
echo
row "iperf3 through a TCP resource" "no rekey (A)" "rekeying (B)" "B/A"
row "---" "---" "---" "---"
mu_a=$(median "${AU[@]}") mu_b=$(median "${BU[@]}") md_a=$(median "${AD[@]}") md_b=$(median "${BD[@]}")
row "client -> server, Gbit/s" "$mu_a" "$mu_b" "$(ratio "$mu_b" "$mu_a")"
row "server -> client, Gbit/s" "$md_a" "$md_b" "$(ratio "$md_b" "$md_a")"
row "CPU s/GiB, PoP + site" "$(median "${CA[@]}")" "$(median "${CB[@]}")" "$(ratio "$(median "${CB[@]}")" "$(median "${CA[@]}")")"
row "rekeys per run (both directions)" "0" "$(median "${RK[@]}")" ""
# The same round's B/A, whose noise the two sides share (they ran a few seconds apart).
pair() { local -n a=$1 b=$2; local i out=(); for i in "${!a[@]}"; do out+=("$(ratio "${b[$i]}" "${a[$i]}")"); done; median "${out[@]}"; }
echo
echo "median of each round's B/A: client -> server $(pair AU BU), server -> client $(pair AD BD), CPU s/GiB $(pair CA CB)"
echo
echo "(medians of $RUNS; each run ${SECS}s up then ${SECS}s down; B rekeys every $REKEY_BYTES bytes or $REKEY_MS ms; seal-streams = $SEALED; every iperf3 run completed)"
