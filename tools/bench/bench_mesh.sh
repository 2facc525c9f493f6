#!/usr/bin/env bash
# Mesh benchmark: NODES (default 32) real popd processes on this machine (127.0.0.1, one port
# each). Measures, over TRIALS (default 10) trials each:
#   - failure detection: SIGKILL a random node; time until every other node lists it dead;
#   - write propagation: config set on one node; time until every other node returns it;
# and, with the mesh idle, CPU and RSS per node. Prints median and p99 (= max for < 100 trials).
# Targets: detection p99 <= 3 s, propagation p99 <= 1 s, idle RSS <= 16 MiB,
# idle CPU <= 1% of a core per node.
set -euo pipefail
cd "$(dirname "$0")/../.."
NODES=${NODES:-32}
TRIALS=${TRIALS:-10}
IDLE_SECONDS=${IDLE_SECONDS:-20}
PY=/usr/bin/python3
PROBE=tools/bench/mesh_probe.py

cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DPOPMESH_TESTS=OFF >/dev/null
cmake --build build-bench -j"$(nproc)" --target popd meshctl >/dev/null
POPD=$PWD/build-bench/node/popd
MESHCTL=$PWD/build-bench/tools/meshctl/meshctl

W=$(mktemp -d /tmp/popmesh-bench-mesh-XXXXXX)
declare -a PID=()
cleanup() {
    for p in "${PID[@]:-}"; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$W"
}
trap cleanup EXIT

# Ports below the ephemeral range, mesh and tunnel both explicit (tools/ports.sh says why).
PORT_STATE="$W/.port"
. tools/ports.sh
port() { free_port || exit 1; }
start() { # start I
    "$POPD" run --data "$W/n$1" >>"$W/n$1.log" 2>&1 &
    PID[$1]=$!
    for _ in $(seq 1 200); do "$MESHCTL" -d "$W/n$1" status >/dev/null 2>&1 && return; sleep 0.05; done
    echo "node $1 did not start" >&2; exit 1
}

echo "== starting $NODES nodes"
"$POPD" init --data "$W/n1" --name pop-1 --mesh-listen "127.0.0.1:$(port)" \
    --tunnel-listen "127.0.0.1:$(port)" >/dev/null
start 1
TOKEN=$("$MESHCTL" -d "$W/n1" token create --uses $((NODES - 1)) --ttl 1h 2>/dev/null)
for i in $(seq 2 "$NODES"); do
    "$POPD" join --data "$W/n$i" --name "pop-$i" --mesh-listen "127.0.0.1:$(port)" \
        --tunnel-listen "127.0.0.1:$(port)" "$TOKEN" >/dev/null
    start "$i"
done
DIRS=()
for i in $(seq 1 "$NODES"); do DIRS+=("$W/n$i"); done
$PY $PROBE alive "$NODES" "${DIRS[@]}"
echo "   all $NODES nodes see $NODES alive members"

echo "== idle for ${IDLE_SECONDS}s: CPU and RSS per node"
sleep 3
declare -A T0
hz=$(getconf CLK_TCK)
for i in $(seq 1 "$NODES"); do T0[$i]=$(awk '{print $14+$15}' "/proc/${PID[$i]}/stat"); done
sleep "$IDLE_SECONDS"
cpu=()
rss=()
for i in $(seq 1 "$NODES"); do
    t1=$(awk '{print $14+$15}' "/proc/${PID[$i]}/stat")
    cpu+=("$(awk "BEGIN{printf \"%.3f\", 100*($t1-${T0[$i]})/$hz/$IDLE_SECONDS}")")
    rss+=("$(awk '/VmRSS/{printf "%.1f", $2/1024}' "/proc/${PID[$i]}/status")")
done

echo "== write propagation: $TRIALS trials"
prop=()
for t in $(seq 1 "$TRIALS"); do
    src=$(( (RANDOM % NODES) + 1 ))
    order=("$W/n$src")
    for i in $(seq 1 "$NODES"); do [ "$i" -ne "$src" ] && order+=("$W/n$i"); done
    prop+=("$($PY $PROBE write "${order[@]}")")
    sleep 0.3
done

echo "== failure detection: $TRIALS SIGKILLs"
det=()
for t in $(seq 1 "$TRIALS"); do
    v=$(( (RANDOM % (NODES - 1)) + 2 ))
    others=()
    for i in $(seq 1 "$NODES"); do [ "$i" -ne "$v" ] && others+=("$W/n$i"); done
    tk=$(date +%s.%N)
    kill -9 "${PID[$v]}"
    wait "${PID[$v]}" 2>/dev/null || true
    det+=("$($PY $PROBE detect "pop-$v" "$tk" "${others[@]}")")
    start "$v"
    $PY $PROBE alive "$NODES" "${DIRS[@]}"
done

stats() { # stats NAME UNIT VALUES...: median and p99 (nearest rank)
    local name=$1 unit=$2
    shift 2
    printf '%s\n' "$@" | sort -g | awk -v n="$name" -v u="$unit" '
        {v[NR]=$1} END {
            m = (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2
            r = int(0.99 * NR + 0.999); if (r < 1) r = 1; if (r > NR) r = NR
            printf "| %-28s | %10.3f | %10.3f | %-4s | %3d |\n", n, m, v[r], u, NR }'
}
echo
echo "| metric ($NODES nodes)              |     median |        p99 | unit |   n |"
echo "|------------------------------|------------|------------|------|-----|"
stats "failure detection (all see)" s "${det[@]}"
stats "write propagation (all have)" s "${prop[@]}"
stats "idle CPU per node" "%" "${cpu[@]}"
stats "idle RSS per node" MiB "${rss[@]}"
