#!/usr/bin/env bash
# UDP resources with real processes: three PoPs, a site of two connector replicas (each on one
# PoP), an unbound behind them on loopback serving a local-data zone (no internet).
# 1. dig through the PoP holding a replica's tunnel (direct) and through one holding none
#    (relayed), answers checked; the relayed PoP counts the relay.
# 2. flows end after the resource's idle timeout (--udp-idle 2): udp_flows back to 0.
# 3. one client address flooding new source ports hits the per-address flow cap (a test knob
#    of 8): the excess is dropped and counted, and another client still gets answers.
# 4. a replica SIGKILLed mid-flow: the flow's next datagrams are answered through the other.
# 5. bad input: datagrams of 0 and of 65,507 bytes (carried, counted, the PoP unharmed);
#    meshctl refusing --udp-port with --tcp-port, out of range, --udp-idle without a port.
source "$(dirname "$0")/lib.sh"
: "${POPSITE:?POPSITE must point to the popsite binary}"


# ---- a DNS client that keeps its source port (dig takes a new one per query) ----
cat >"$WORK/dns.py" <<'PY'
import os, socket, struct, sys, time

def query(name, qid):
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for part in name.rstrip(".").split("."):
        q += bytes([len(part)]) + part.encode()
    return q + b"\x00" + struct.pack(">HH", 1, 1)

def answer_ok(b, qid):
    # the id, a response, one answer whose A record is 192.0.2.7
    return len(b) > 12 and struct.unpack(">H", b[:2])[0] == qid and b[2] & 0x80 and \
        struct.unpack(">H", b[6:8])[0] >= 1 and b[-4:] == bytes([192, 0, 2, 7])

def ask(sock, addr, qid, timeout):
    sock.settimeout(timeout)
    sock.sendto(query("www.example.test", qid), addr)
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            b, _ = sock.recvfrom(65535)
        except socket.timeout:
            return False
        if answer_ok(b, qid):
            return True
    return False

cmd, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
addr = (host, port)
if cmd == "flood":  # flood SRC N: N sockets from SRC, one query each; prints how many answered
    src, n = sys.argv[4], int(sys.argv[5])
    socks = []
    for i in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((src, 0))
        s.sendto(query("www.example.test", i + 1), addr)
        socks.append(s)
    got = 0
    deadline = time.time() + 3
    for i, s in enumerate(socks):
        s.settimeout(max(0.01, deadline - time.time()))
        try:
            b, _ = s.recvfrom(65535)
            got += answer_ok(b, i + 1)
        except socket.timeout:
            pass
    print(got)
elif cmd == "flow":  # flow SECONDS OUT: one socket, a query every 50 ms; logs ok/lost per query
    secs, out = float(sys.argv[4]), sys.argv[5]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    with open(out + ".port", "w") as f:
        f.write(str(s.getsockname()[1]))
    t0 = time.time()
    qid = 0
    with open(out, "w", buffering=1) as f:
        while time.time() - t0 < secs:
            qid = qid % 65535 + 1
            sent = time.time_ns()
            ok = ask(s, addr, qid, 0.3)
            f.write("%d %d\n" % (sent, ok))
            time.sleep(0.05)
elif cmd == "size":  # size N: one datagram of N bytes (not DNS), then a query from the same port
    n = int(sys.argv[4])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(os.urandom(n) if n else b"", addr)
    time.sleep(0.2)
    print("answered" if ask(s, addr, 77, 2.0) else "unanswered")
PY
dns() { "$PY" "$WORK/dns.py" "$@"; }

# ---- unbound on loopback with a local zone ----
UPORT=$(free_port)
cat >"$WORK/unbound.conf" <<EOT
server:
    interface: 127.0.0.1
    port: $UPORT
    do-daemonize: no
    use-syslog: no
    logfile: ""
    username: ""
    chroot: ""
    directory: "$WORK"
    pidfile: ""
    do-ip6: no
    do-tcp: no
    access-control: 127.0.0.0/8 allow
    module-config: "iterator"
    local-zone: "example.test." static
    local-data: "www.example.test. 60 IN A 192.0.2.7"
remote-control:
    control-enable: no
EOT
unbound -d -c "$WORK/unbound.conf" >"$WORK/unbound.log" 2>&1 &
PIDS+=("$!")
wait_for 10 "unbound answering" sh -c "dig @127.0.0.1 -p $UPORT +short +tries=1 +time=1 www.example.test | grep -qx 192.0.2.7"

# ---- three PoPs with their own ingress addresses ----
ING=("" 127.0.0.31 127.0.0.32 127.0.0.33)
N=("" "$WORK/n1" "$WORK/n2" "$WORK/n3")
export POPMESH_TEST_UDP_PER_IP=8
"$POPD" init --data "${N[1]}" --name pop-1 --mesh-listen "127.0.0.1:$(free_port)" \
    --tunnel-listen "127.0.0.1:$(free_port)" --ingress-address "${ING[1]}" >/dev/null
start_popd "${N[1]}"
POPTOKEN=$(mctl "${N[1]}" token create --uses 2 --ttl 10m 2>/dev/null)
for i in 2 3; do
    "$POPD" join --data "${N[$i]}" --name "pop-$i" --mesh-listen "127.0.0.1:$(free_port)" \
        --tunnel-listen "127.0.0.1:$(free_port)" --ingress-address "${ING[$i]}" "$POPTOKEN" >/dev/null
    start_popd "${N[$i]}"
done
wait_for 20 "3 alive members" all_see "${N[1]}" "${N[2]}" "${N[3]}" "pop-1=alive pop-2=alive pop-3=alive"

# ---- bad input at meshctl first (exit 2: usage) ----
expect_rc 0 mctl "${N[1]}" site add dns --replicas 2
TOKEN=$(cat "$WORK/out")
P=$(free_port)
expect_rc 2 mctl "${N[1]}" resource add bad --site dns --target "127.0.0.1:$UPORT" --udp-port "$P" --tcp-port "$P"
expect_in "$WORK/err" "--udp-port makes a UDP resource"
for bad in 0 65536 -1 x; do
    expect_rc 2 mctl "${N[1]}" resource add bad --site dns --target "127.0.0.1:$UPORT" --udp-port "$bad"
done
expect_rc 2 mctl "${N[1]}" resource add bad --site dns --target "127.0.0.1:$UPORT" --tcp-port "$P" --udp-idle 5
expect_rc 2 mctl "${N[1]}" resource add bad --site dns --target "127.0.0.1:$UPORT" --udp-port "$P" --udp-idle 0
ok "meshctl refuses --udp-port with --tcp-port, ports 0/65536/-1/x, --udp-idle without --udp-port or 0"

RP=$(free_port)
expect_rc 0 mctl "${N[1]}" resource add dns --site dns --target "127.0.0.1:$UPORT" --udp-port "$RP" --udp-idle 2
expect_in "$WORK/out" "udp port $RP"
expect_rc 0 mctl "${N[1]}" resource list
expect_in "$WORK/out" "$RP/udp"
P2=$(free_port)
expect_rc 1 mctl "${N[1]}" resource add dns2 --site dns --target "127.0.0.1:$UPORT" --udp-port "$RP"
expect_in "$WORK/err" "udp port $RP is already used by resource 'dns'"
ok "resource add --udp-port $RP --udp-idle 2 stored and listed as $RP/udp; the same udp port twice refused"

declare -A SPID
start_replica() { # start_replica A|B [ARGS...]
    local r=$1
    shift
    "$POPSITE" run --data "$WORK/site-$r" --log-level debug --pops 1 "$@" >>"$WORK/site-$r.log" 2>&1 &
    SPID[$r]=$!
    PIDS+=("$!")
}
start_replica A --token "$TOKEN"
wait_for 20 "replica A enrolled" grep -q "enrolled as site dns" "$WORK/site-A.log"
start_replica B --token "$TOKEN"
wait_for 20 "replica B enrolled" grep -q "enrolled as dns-2" "$WORK/site-B.log"
# replicas_pops: the PoPs holding a replica's tunnel, as pop-1 sees it ("pop-1,pop-3")
replicas_pops() {
    jq_ '",".join(sorted(set(p["name"] for s in j["sites"] if s["name"] == "dns" and s["state"] == "online" for p in s["pops"])))' "${N[1]}" sites
}
both_online() {
    [ "$(jq_ 'sum(1 for s in j["sites"] if s["name"] == "dns" and s["state"] == "online")' "${N[1]}" sites)" = 2 ]
}
wait_for 20 "both replicas online" both_online
# digq IP: the A record of www.example.test through IP:$RP, from an address of 127.0.1.0/24 of
# its own, drawn at random (every dig is a new flow, and one address holds at most 8: the
# test knob; digq runs in a subshell, so no counter survives it)
digq() {
    dig @"$1" -p "$RP" -b "127.0.1.$((RANDOM % 250 + 1))" +short +tries=1 +time=2 www.example.test 2>&1
}
for i in 1 2 3; do
    wait_for 20 "dig through pop-$i answered" sh -c "dig @${ING[$i]} -p $RP -b 127.0.2.$i +short +tries=1 +time=1 www.example.test | grep -qx 192.0.2.7"
done
ok "dig www.example.test through each of the 3 PoPs' UDP port answers 192.0.2.7"
expect_rc 0 mctl "${N[1]}" --json targets dns
[ "$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["resources"][0]["targets"][0]["state"])' "$WORK/out")" = unknown ] ||
    fail "meshctl targets dns: $(cat "$WORK/out")"

# ---- 1. direct and relayed ----
HELD=$(replicas_pops)
D= R=
for i in 1 2 3; do
    case ",$HELD," in *",pop-$i,"*) D=${D:-$i} ;; *) R=${R:-$i} ;; esac
done
[ -n "$D" ] && [ -n "$R" ] || fail "replicas' PoPs: '$HELD' (want one PoP with a tunnel and one without)"
REL0=$(jq_ 'j["dataplane"]["relayed"]' "${N[$D]}" status)
GOOD=0
for _ in $(seq 1 10); do
    [ "$(digq "${ING[$D]}")" = 192.0.2.7 ] || fail "dig via pop-$D (holds a replica): $(digq "${ING[$D]}")"
    [ "$(digq "${ING[$R]}")" = 192.0.2.7 ] && GOOD=$((GOOD + 1))
done
[ "$GOOD" = 10 ] || fail "dig via pop-$R (relayed): $GOOD of 10 answered"
OUT_R=$(jq_ 'j["dataplane"]["udp_datagrams_out"]' "${N[$R]}" status)
[ "$OUT_R" -ge 10 ] || fail "pop-$R counted $OUT_R datagrams out"
RELAYED=0
for i in 1 2 3; do [ "$i" = "$R" ] || RELAYED=$((RELAYED + $(jq_ 'j["dataplane"]["relayed"]' "${N[$i]}" status))); done
[ "$RELAYED" -ge 10 ] || fail "only $RELAYED streams relayed for pop-$R's 10 flows"
ok "10 of 10 digs through pop-$D (a replica's tunnel) and 10 of 10 through pop-$R (no tunnel, relayed: $RELAYED streams relayed)"

# ---- 2. idle timeout ----
flows() { jq_ 'j["dataplane"]["udp_flows"]' "$1" status; }
[ "$(flows "${N[$R]}")" -ge 1 ] || fail "no flow open on pop-$R right after the digs"
wait_for 6 "pop-$R's flows expired (udp-idle 2)" sh -c "[ \"\$(\"$MESHCTL\" -d \"${N[$R]}\" --json status | \"$PY\" -c 'import json,sys; print(json.load(sys.stdin)[\"dataplane\"][\"udp_flows\"])')\" = 0 ]"
ok "flows end after the idle timeout: pop-$R back to 0 flows ${WAITED} s after the last datagram (udp-idle 2)"

# ---- 3. a flooding client does not starve another ----
CAP0=$(jq_ 'j["dataplane"]["udp_dropped"]["flow_cap"]' "${N[$D]}" status)
GOT=$(dns flood "${ING[$D]}" "$RP" 127.0.0.2 40)
CAP1=$(jq_ 'j["dataplane"]["udp_dropped"]["flow_cap"]' "${N[$D]}" status)
[ "$GOT" -le 8 ] || fail "the flooding client got $GOT answers past a per-address cap of 8"
[ "$((CAP1 - CAP0))" -ge 32 ] || fail "flow_cap drops counted: $((CAP1 - CAP0)), want >= 32"
[ "$(digq "${ING[$D]}")" = 192.0.2.7 ] || fail "another client got no answer during the flood"
grep -q "UDP datagram from 127.0.0.2:.* dropped: this address's connection cap" "$WORK/n$D.log" ||
    fail "no log line for the capped flows"
ok "40 source ports from 127.0.0.2: $GOT answered (cap 8), $((CAP1 - CAP0)) datagrams dropped and counted (flow_cap); 127.0.0.1 still answered"

# ---- 4. a replica killed mid-flow ----
dns flow "${ING[$D]}" "$RP" 6 "$WORK/flow.txt" &
FLOWPID=$!
wait_for 5 "the flow's first answers" sh -c "grep -c ' 1$' '$WORK/flow.txt' | grep -qv '^[0-4]$'"
CPORT=$(cat "$WORK/flow.txt.port")
VICTIM=
for r in A B; do grep -q "UDP flow of dns from ${ING[$D]%.*}.*:$CPORT \|UDP flow of dns from 127.0.0.1:$CPORT " "$WORK/site-$r.log" && VICTIM=$r; done
[ -n "$VICTIM" ] || fail "no replica logged the flow from port $CPORT"
OTHER=A; [ "$VICTIM" = A ] && OTHER=B
KILL_NS=$(date +%s%N)
{ kill -9 "${SPID[$VICTIM]}" && wait "${SPID[$VICTIM]}"; } 2>/dev/null || true
wait "$FLOWPID" || fail "the flow client failed"
AFTER_OK=$(awk -v k="$KILL_NS" '$1 > k + 100000000 && $2 == 1' "$WORK/flow.txt" | wc -l)
AFTER=$(awk -v k="$KILL_NS" '$1 > k + 100000000' "$WORK/flow.txt" | wc -l)
FIRST=$(awk -v k="$KILL_NS" '$1 > k && $2 == 1 {printf "%.0f", ($1 - k) / 1e6; exit}' "$WORK/flow.txt")
LOST=$(awk -v k="$KILL_NS" '$1 > k && $2 == 0' "$WORK/flow.txt" | wc -l)
[ "$AFTER" -ge 10 ] && [ "$AFTER_OK" = "$AFTER" ] ||
    fail "after the kill of replica $VICTIM: $AFTER_OK of $AFTER queries answered (from 100 ms on)"
grep -q "UDP flow of dns from 127.0.0.1:$CPORT " "$WORK/site-$OTHER.log" ||
    fail "replica $OTHER never carried the flow from port $CPORT"
ok "replica $VICTIM SIGKILLed mid-flow: the same client port answered through replica $OTHER, first answer ${FIRST} ms after the kill, $LOST queries lost, $AFTER_OK of $AFTER answered from 100 ms on"

# ---- 5. datagrams of 0 and 65,507 bytes ----
IN0=$(jq_ 'j["dataplane"]["udp_datagrams_in"]' "${N[$D]}" status)
[ "$(dns size "${ING[$D]}" "$RP" 0)" = answered ] || fail "after an empty datagram the flow is not answered"
[ "$(dns size "${ING[$D]}" "$RP" 65507)" = answered ] || fail "after a 65,507-byte datagram the flow is not answered"
IN1=$(jq_ 'j["dataplane"]["udp_datagrams_in"]' "${N[$D]}" status)
[ "$((IN1 - IN0))" -ge 4 ] || fail "udp_datagrams_in grew by $((IN1 - IN0)), want 4"
OVERSIZE=$(jq_ 'j["dataplane"]["udp_dropped"]["oversize"]' "${N[$D]}" status)
[ "$OVERSIZE" = 0 ] || fail "a 65,507-byte datagram counted as oversize"
ok "datagrams of 0 and 65,507 bytes carried (udp_datagrams_in +$((IN1 - IN0)), none oversize); the same flows answered after them"

expect_rc 0 mctl "${N[$D]}" status
expect_in "$WORK/out" "udp       "
kill -USR1 "${SPID[$OTHER]}"
wait_for 5 "replica $OTHER's UDP counters on SIGUSR1" grep -q "popsite: UDP flows .* datagrams to targets [1-9]" "$WORK/site-$OTHER.log"
ok "meshctl status shows the udp line; popsite $OTHER logs its UDP counters on SIGUSR1"
done_testing
