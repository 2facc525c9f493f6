#!/usr/bin/env bash
# DNS steering against a static authoritative server, same run, same machine:
#   1. Throughput: dnsperf (Debian) -c 4 for LEN s (default 8) against one PoP of a 3-PoP mesh
#      (every answer computed from the live view: health, routes, geo rules) and against NSD
#      (Debian) serving the same names from a static zone file, RUNS (default 3) runs each,
#      alternated. Two query mixes: plain A queries for resource hosts, and the same with an
#      EDNS Client Subnet option. Both servers with response rate limiting off (NSD's
#      rrl-ratelimit: 0, popd's --dns-rrl 0), one server process each.
#   2. Latency at a fixed load (QPS, default 20000 q/s, below both servers' capacity): dnsperf
#      -v records each response's latency; p50 and p99 per server.
#   3. Failover: KILLS (default 10) times, SIGKILL a PoP and poll every other PoP (every 10 ms)
#      until none answers its address any more; p50/p99 of that time; then restart it and wait
#      until it is back in the answers.
# Prints medians of the runs and the popd/NSD ratios. BUILD=DIR uses another build.
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${RUNS:-3}
LEN=${LEN:-8}
QPS=${QPS:-20000}
KILLS=${KILLS:-10}
PY=/usr/bin/python3
for t in dnsperf nsd dig; do command -v "$t" >/dev/null || { echo "bench_dns: $t missing (tools/setup.sh)" >&2; exit 1; }; done
if [ -z "${BUILD:-}" ]; then
    BUILD=$PWD/build-bench
    cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DPOPMESH_TESTS=OFF >/dev/null
    cmake --build "$BUILD" -j2 --target popd meshctl popsite >/dev/null
fi
POPD=$BUILD/node/popd
MESHCTL=$BUILD/tools/meshctl/meshctl
POPSITE=$BUILD/node/site/popsite
. tools/bench/lib.sh
bench_workdir dns

ZONE=bench.test
NHOSTS=10
DP=$(port)
HP=$(port)
ING=("" 127.0.0.21 127.0.0.22 127.0.0.23)
REG=("" eu eu us)
LOC=("" "50.1,8.7" "48.9,2.4" "40.7,-74.0")
pop_args() {
    echo --region "${REG[$1]}" --ingress-address "${ING[$1]}" --http-listen "${ING[$1]}:$HP" \
        --dns-listen "${ING[$1]}:$DP" --public-address "${ING[$1]}" --location "${LOC[$1]}" \
        --dns-rrl 0
}
declare -a MESH TUN
start_pop() { # start_pop I
    "$POPD" run --data "$W/n$1" >>"$W/n$1.log" 2>&1 &
    PID[n$1]=$!
    for _ in $(seq 1 100); do ctl "n$1" status >/dev/null 2>&1 && return 0; sleep 0.05; done
    fail "pop-$1 did not start"
}
MESH[1]=$(port); TUN[1]=$(port)
# shellcheck disable=SC2046
"$POPD" init --data "$W/n1" --name pop-1 --mesh-listen "127.0.0.1:${MESH[1]}" \
    --tunnel-listen "127.0.0.1:${TUN[1]}" $(pop_args 1) >/dev/null
start_pop 1
TOKEN=$(ctl n1 token create --uses 2 --ttl 10m 2>/dev/null)
for i in 2 3; do
    MESH[$i]=$(port); TUN[$i]=$(port)
    # shellcheck disable=SC2046
    "$POPD" join --data "$W/n$i" --name "pop-$i" --mesh-listen "127.0.0.1:${MESH[$i]}" \
        --tunnel-listen "127.0.0.1:${TUN[$i]}" $(pop_args "$i") "$TOKEN" >/dev/null
    start_pop "$i"
done
BP=$(port)
$PY tests/integration/echo_server.py "$BP" >"$W/backend.log" 2>&1 &
PID[backend]=$!
STOK=$(ctl n1 site add branch 2>/dev/null)
"$POPSITE" run --data "$W/site" --token "$STOK" >>"$W/site.log" 2>&1 &
PID[site]=$!
ctl n1 zone add "$ZONE" --ttl 20 --answers 3 >/dev/null # every PoP in every answer: the failover poll sees each
ctl n1 geo add 10.1.0.0/16 eu >/dev/null
ctl n1 geo add 10.2.0.0/16 us >/dev/null
for h in $(seq 0 $((NHOSTS - 1))); do
    ctl n1 resource add "h$h" --site branch --target "127.0.0.1:$BP" --host "h$h.$ZONE" >/dev/null
done

cat >"$W/dq.py" <<'EOF'
# dq.py: tiny DNS client for polling (the adversary-free kind: a fixed A query).
import socket, struct, sys, time
def query(server, port, qname, timeout=0.2):
    q = struct.pack(">HHHHHH", 7, 0x0100, 1, 0, 0, 0)
    for l in qname.split("."):
        q += bytes([len(l)]) + l.encode()
    q += b"\0" + struct.pack(">HH", 1, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(timeout)
    try:
        s.sendto(q, (server, port)); r = s.recv(4096)
    except OSError:
        return None
    finally:
        s.close()
    an = struct.unpack(">H", r[6:8])[0]
    i = 12
    while r[i]: i += r[i] + 1
    i += 5
    out = []
    for _ in range(an):
        if r[i] & 0xC0 == 0xC0: i += 2
        else:
            while r[i]: i += r[i] + 1
            i += 1
        t, _, _, rl = struct.unpack(">HHIH", r[i:i + 10]); i += 10
        if t == 1: out.append(socket.inet_ntoa(r[i:i + 4]))
        i += rl
    return out
cmd = sys.argv[1]
if cmd == "gone":  # gone T0_NS PORT QNAME ADDR SERVER...: s until no server answers ADDR
    t0, port, qname, addr, servers = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6:]
    while True:
        seen = False
        for sv in servers:
            a = query(sv, port, qname)
            if a is None or addr in a: seen = True
        if not seen:
            print("%.3f" % ((time.time_ns() - t0) / 1e9)); break
        if time.time_ns() - t0 > 20e9:
            print("nan"); break
        time.sleep(0.01)
elif cmd == "back":  # back PORT QNAME ADDR SERVER...: waits (20 s) until every server answers ADDR
    port, qname, addr, servers = int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5:]
    end = time.time() + 20
    while time.time() < end:
        if all(addr in (query(sv, port, qname) or []) for sv in servers): sys.exit(0)
        time.sleep(0.05)
    sys.exit(1)
EOF
ready() { [ "$(dig +short -p "$DP" "@${ING[1]}" "h0.$ZONE" A | sed "/^;/d" | wc -l)" = 3 ]; }
for _ in $(seq 1 200); do ready && break; sleep 0.1; done
ready || fail "pop-1 does not answer h0.$ZONE with three PoPs"

# ---- NSD with the same names ----
NP=$(port)
mkdir -p "$W/nsd"
{
    echo "\$ORIGIN $ZONE."
    echo "\$TTL 20"
    echo "@ IN SOA pop-1.pop.$ZONE. hostmaster.$ZONE. 1 3600 600 86400 20"
    for i in 1 2 3; do echo "@ IN NS pop-$i.pop"; echo "pop-$i.pop IN A ${ING[$i]}"; done
    for h in $(seq 0 $((NHOSTS - 1))); do
        for i in 1 2 3; do echo "h$h IN A ${ING[$i]}"; done
    done
} >"$W/nsd/zone"
cat >"$W/nsd/nsd.conf" <<EOF
server:
    ip-address: 127.0.0.1@$NP
    server-count: 1
    username: ""
    chroot: ""
    zonesdir: "$W/nsd"
    database: ""
    zonelistfile: "$W/nsd/zone.list"
    xfrdfile: "$W/nsd/xfrd.state"
    pidfile: "$W/nsd/nsd.pid"
    logfile: "$W/nsd/nsd.log"
    rrl-ratelimit: 0
    verbosity: 0
remote-control:
    control-enable: no
zone:
    name: "$ZONE"
    zonefile: "zone"
EOF
nsd -d -c "$W/nsd/nsd.conf" >"$W/nsd.log" 2>&1 &
PID[nsd]=$!
for _ in $(seq 1 100); do [ -n "$(dig +short -p "$NP" @127.0.0.1 "h0.$ZONE" A | sed "/^;/d")" ] && break; sleep 0.1; done
[ -n "$(dig +short -p "$NP" @127.0.0.1 "h0.$ZONE" A | sed "/^;/d")" ] || fail "NSD does not answer"

# query files: plain, and with ECS (option 8: family 1, source /24, scope 0, 10.1.7)
for h in $(seq 0 $((NHOSTS - 1))); do echo "h$h.$ZONE A"; done >"$W/q-plain"
ECS_HEX=00011800$(printf '%02x%02x%02x' 10 1 7) # family 1, source /24, scope 0, 10.1.7

perf() { # perf SERVER PORT FILE [ARGS...]: queries/s
    dnsperf -s "$1" -p "$2" -d "$3" -c 4 -l "$LEN" -q 200 "${@:4}" 2>/dev/null |
        awk '/Queries per second/ {print $4}'
}
lat() { # lat SERVER PORT FILE: "p50 p99" in ms at QPS queries/s
    dnsperf -s "$1" -p "$2" -d "$3" -c 4 -l 4 -Q "$QPS" -v 2>/dev/null |
        awk '$1 == ">" && $2 != "T" {print $NF * 1000}' | sort -g | awk '{v[NR]=$1} END {
            if (!NR) { print "nan nan"; exit }
            r = int(0.99 * NR + 0.999); printf "%.3f %.3f\n", v[int((NR + 1) / 2)], v[r] }'
}
declare -a PP PN EP EN
echo "== throughput: dnsperf -c 4 -l $LEN, $RUNS runs each, alternated"
for r in $(seq 1 "$RUNS"); do
    PP+=("$(perf "${ING[1]}" "$DP" "$W/q-plain")")
    PN+=("$(perf 127.0.0.1 "$NP" "$W/q-plain")")
    EP+=("$(perf "${ING[1]}" "$DP" "$W/q-plain" -E "8:$ECS_HEX")")
    EN+=("$(perf 127.0.0.1 "$NP" "$W/q-plain" -E "8:$ECS_HEX")")
    echo "run $r: plain popd ${PP[-1]} nsd ${PN[-1]}; ECS popd ${EP[-1]} nsd ${EN[-1]} (q/s)"
done
# check popd's answers were real: an ECS query for a us client gets the us PoP first
FIRST=$(dig +short -p "$DP" "@${ING[1]}" "h3.$ZONE" A +subnet=10.2.0.0/24 | head -1)
[ "$FIRST" = "${ING[3]}" ] || fail "popd answered $FIRST first for a us client (expected ${ING[3]})"

echo "== latency at $QPS q/s (dnsperf -Q $QPS -v, 4 s each)"
read -r LP50 LP99 < <(lat "${ING[1]}" "$DP" "$W/q-plain")
read -r LN50 LN99 < <(lat 127.0.0.1 "$NP" "$W/q-plain")

echo "== failover: $KILLS SIGKILLs of a PoP, time until no other PoP answers its address"
declare -a GONE
for k in $(seq 1 "$KILLS"); do
    v=$(( (k % 2) + 2 )) # pop-2 and pop-3 in turn; pop-1 stays to be measured against
    others=()
    for i in 1 2 3; do [ "$i" != "$v" ] && others+=("${ING[$i]}"); done
    kill -9 "${PID[n$v]}"
    wait "${PID[n$v]}" 2>/dev/null || true
    T0=$(date +%s%N)
    # the zone answers with up to 3 PoPs: every alive PoP is in every answer until it is not
    G=$($PY "$W/dq.py" gone "$T0" "$DP" "h$((k % NHOSTS)).$ZONE" "${ING[$v]}" "${others[@]}")
    GONE+=("$G")
    echo "kill $k (pop-$v): gone from every survivor's answers after $G s"
    start_pop "$v"
    if ! $PY "$W/dq.py" back "$DP" "h$((k % NHOSTS)).$ZONE" "${ING[$v]}" "${ING[@]:1}"; then
        for i in 1 2 3; do echo "--- pop-$i explains h$((k % NHOSTS)).$ZONE:"; ctl "n$i" dns explain "h$((k % NHOSTS)).$ZONE"; done
        fail "pop-$v did not come back into the answers within 20 s"
    fi
done

echo
echo "== results (medians of $RUNS runs)"
printf '%-34s %12s %12s %8s\n' "" popd NSD ratio
printf '%-34s %12s %12s %8s\n' "A queries, q/s" "$(median "${PP[@]}")" "$(median "${PN[@]}")" "$(ratio "$(median "${PP[@]}")" "$(median "${PN[@]}")")"
printf '%-34s %12s %12s %8s\n' "A queries with ECS, q/s" "$(median "${EP[@]}")" "$(median "${EN[@]}")" "$(ratio "$(median "${EP[@]}")" "$(median "${EN[@]}")")"
printf '%-34s %12s %12s\n' "latency p50 at $QPS q/s, ms" "$LP50" "$LN50"
printf '%-34s %12s %12s\n' "latency p99 at $QPS q/s, ms" "$LP99" "$LN99"
echo "failover: SIGKILL to absence from every survivor's answers over $KILLS kills:" \
    "p50 $(median "${GONE[@]}") s, p99 $(p99 "${GONE[@]}") s"
