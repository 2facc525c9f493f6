#!/usr/bin/env bash
# How fast configuration takes effect (docs/operations.md), on real processes:
#   1. POPS (default 5) PoPs, one popsite, an echo backend. TRIALS (default 20) times: a TCP
#      resource is added at pop-1; the time from meshctl's return until it serves through
#      every PoP's ingress (polled every 10 ms), then the same for `resource rm` until every
#      PoP refuses the port. Prints median and p99 (= max below 100 trials).
#   2. One PoP holding NRES (default 10000) HTTP resources (no TCP port: 10,000 ports cannot
#      be bound), idle: its CPU over IDLE_S (default 10) seconds and dataplane.store_scans
#      (full listings of the store) before and after.
# BUILD=DIR runs the binaries of another build (e.g. one of an older commit, for a before /
# after comparison); by default the script makes a Release build in build-bench.
set -euo pipefail
cd "$(dirname "$0")/../.."
POPS=${POPS:-5}
TRIALS=${TRIALS:-20}
NRES=${NRES:-10000}
IDLE_S=${IDLE_S:-10}
PY=/usr/bin/python3
if [ -z "${BUILD:-}" ]; then
    BUILD=$PWD/build-bench
    cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DPOPMESH_TESTS=OFF >/dev/null
    cmake --build "$BUILD" -j2 --target popd meshctl popsite >/dev/null
fi
POPD=$BUILD/node/popd
MESHCTL=$BUILD/tools/meshctl/meshctl
POPSITE=$BUILD/node/site/popsite
. tools/bench/lib.sh
bench_workdir config

cat >"$W/cfg.py" <<'EOF'
import os, socket, sys, time


def serves(addr):
    host, port = addr.rsplit(":", 1)
    try:
        s = socket.create_connection((host, int(port)), timeout=0.3)
        s.settimeout(0.3)
        s.sendall(b"ping")
        ok = s.recv(4) == b"ping"
        s.close()
        return ok
    except OSError:
        return False

def refused(addr):
    host, port = addr.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=0.3).close()
        return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False

# until T0_NS KIND ADDR...: seconds from t0 until every ADDR serves (or refuses); "nan" after 5 s
def until(t0, kind, addrs):
    f = serves if kind == "serves" else refused
    left = list(addrs)
    while left:
        left = [a for a in left if not f(a)]
        if not left:
            break
        if time.time_ns() - t0 > 5e9:
            print("nan"); return
        time.sleep(0.01)
    print("%.4f" % ((time.time_ns() - t0) / 1e9))

def add_http(sock, n, target):
    sys.path.insert(0, os.path.join(os.getcwd(), "tests", "integration"))
    from ctlclient import Ctl
    c = Ctl(sock, timeout=600)
    for i in range(n):
        st, body = c.call("resource.add", {"name": "h%d" % i, "site": "branch",
                                           "targets": [target], "host": "h%d.example" % i})
        if st != 0:
            print("resource.add h%d: %s %r" % (i, st, body)); sys.exit(1)

cmd, a = sys.argv[1], sys.argv[2:]
if cmd == "until": until(int(a[0]), a[1], a[2:])
elif cmd == "add_http": add_http(a[0], int(a[1]), a[2])
EOF
cfg() { "$PY" "$W/cfg.py" "$@"; }
wait_ctl() {
    for _ in $(seq 1 200); do ctl "$1" status >/dev/null 2>&1 && return; sleep 0.05; done
    fail "popd $1 did not start"
}
field() { # field DIR EXPR: eval(EXPR) over DIR's meshctl --json status (j); "n/a" if absent
    ctl "$1" --json status | "$PY" -c 'import json,sys; j=json.load(sys.stdin)
try: print(eval(sys.argv[1]))
except Exception: print("n/a")' "$2"
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# ---- 1. POPS PoPs, a site, TRIALS adds and removes ----
BP=$(port)
"$PY" tests/integration/echo_server.py "$BP" >"$W/backend.log" 2>&1 &
PID[backend]=$!
ING=()
for i in $(seq 1 "$POPS"); do ING[$i]=127.0.0.$((20 + i)); done
"$POPD" init --data "$W/n1" --name pop-1 --mesh-listen "127.0.0.1:$(port)" \
    --tunnel-listen "127.0.0.1:$(port)" --ingress-address "${ING[1]}" >/dev/null
"$POPD" run --data "$W/n1" >>"$W/n1.log" 2>&1 &
PID[n1]=$!
wait_ctl n1
TOKEN=$(ctl n1 token create --uses "$((POPS - 1))" --ttl 10m 2>/dev/null)
for i in $(seq 2 "$POPS"); do
    "$POPD" join --data "$W/n$i" --name "pop-$i" --mesh-listen "127.0.0.1:$(port)" \
        --tunnel-listen "127.0.0.1:$(port)" --ingress-address "${ING[$i]}" "$TOKEN" >/dev/null
    "$POPD" run --data "$W/n$i" >>"$W/n$i.log" 2>&1 &
    PID[n$i]=$!
    wait_ctl "n$i"
done
STOKEN=$(ctl n1 site add branch 2>/dev/null | grep -o 'pmt1\.[A-Za-z0-9_-]*' | head -1)
"$POPSITE" run --data "$W/site" --token "$STOKEN" >>"$W/site.log" 2>&1 &
PID[site]=$!
# warm-up: the site routed from every PoP before anything is timed
WP=$(port)
ctl n1 resource add warm --site branch --target "127.0.0.1:$BP" --tcp-port "$WP" >/dev/null
ADDRS=()
for i in $(seq 1 "$POPS"); do ADDRS+=("${ING[$i]}:$WP"); done
for _ in $(seq 1 60); do
    [ "$(cfg until "$(date +%s%N)" serves "${ADDRS[@]}")" != nan ] && break
done
[ "$(cfg until "$(date +%s%N)" serves "${ADDRS[@]}")" != nan ] || fail "the site never served through all $POPS PoPs"

ADD=() RM=() CALL=()
for t in $(seq 1 "$TRIALS"); do
    P=$(port)
    ADDRS=()
    for i in $(seq 1 "$POPS"); do ADDRS+=("${ING[$i]}:$P"); done
    C0=$(date +%s%N)
    ctl n1 resource add "r$t" --site branch --target "127.0.0.1:$BP" --tcp-port "$P" >/dev/null
    T0=$(date +%s%N)
    ADD+=("$(cfg until "$T0" serves "${ADDRS[@]}")")
    CALL+=("$(awk -v a="$C0" -v b="$T0" 'BEGIN { printf "%.4f", (b - a) / 1e9 }')")
    ctl n1 resource rm "r$t" >/dev/null
    T0=$(date +%s%N)
    RM+=("$(cfg until "$T0" refused "${ADDRS[@]}")")
done
echo "config: $POPS PoPs, $TRIALS trials (seconds after meshctl returned; meshctl itself took median $(median "${CALL[@]}"))"
echo "  resource add -> serves at every PoP:   median $(median "${ADD[@]}")  p99 $(p99 "${ADD[@]}")"
echo "  resource rm  -> refused at every PoP:  median $(median "${RM[@]}")  p99 $(p99 "${RM[@]}")"
{ for k in "${!PID[@]}"; do kill -9 "${PID[$k]}" && wait "${PID[$k]}"; done; } 2>/dev/null || true
PID=()

# ---- 2. one PoP with NRES HTTP resources, idle ----
"$POPD" init --data "$W/s1" --name solo --mesh-listen "127.0.0.1:$(port)" \
    --tunnel-listen "127.0.0.1:$(port)" >/dev/null
"$POPD" run --data "$W/s1" >>"$W/s1.log" 2>&1 &
PID[s1]=$!
wait_ctl s1
ctl s1 site add branch >/dev/null 2>&1
A0=$SECONDS
cfg add_http "$W/s1/control.sock" "$NRES" "127.0.0.1:9" || fail "adding $NRES resources"
A1=$SECONDS
sleep 2 # the last change applied, the loop settled
S0=$(field s1 'j["dataplane"]["store_scans"]')
C0=$(cpu_ticks "${PID[s1]}")
sleep "$IDLE_S"
C1=$(cpu_ticks "${PID[s1]}")
S1=$(field s1 'j["dataplane"]["store_scans"]')
HZ=$(getconf CLK_TCK)
echo "idle PoP with $NRES HTTP resources (added in $((A1 - A0)) s):"
echo "  CPU over ${IDLE_S} s: $(awk -v t=$((C1 - C0)) -v hz="$HZ" -v s="$IDLE_S" 'BEGIN { printf "%.2f s (%.1f%% of a core)", t / hz, 100 * t / hz / s }')"
echo "  dataplane.store_scans: $S0 -> $S1"
echo "  RSS: $(awk '/^VmRSS/ {print $2 " KiB"}' "/proc/${PID[s1]}/status")"
