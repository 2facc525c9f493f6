#!/usr/bin/env bash
# A resource with targets in two sites: an on-prem site (priority 1) and a cloud site
# (priority 2), each with its own connector. Two PoPs; a probe opens a connection every 25 ms
# through both PoPs' ingress in turn and records which backend answered.
#   1. All traffic goes on-prem.
#   2. The on-prem target is stopped: traffic moves to the cloud site, no connection fails
#      (the on-prem connector refuses at once, the PoP fails the connection over), and the
#      merged health (meshctl targets) shows the target down. Gap reported.
#   3. It is started again: traffic returns on-prem once its check passes. Gap reported.
#   4. The on-prem connector is SIGKILLed: traffic moves to the cloud, meshctl targets shows
#      the on-prem target unreachable; restarted, traffic returns. Failures and gaps reported.
#   5. Weights: across sites at one priority, and within a site, connections are shared by
#      weight.
#   6. Bad input: a target in a site that does not exist, priorities and weights out of range
#      or without their --target, a bad site name, a target listed twice; and the cloud
#      connector is never told the on-prem site's targets.
source "$(dirname "$0")/lib.sh"
: "${POPSITE:?POPSITE must point to the popsite binary}"

MAX_FAILED=${MAX_FAILED:-0} # failed connections allowed per event

command -v dig >/dev/null || fail "dig is not installed (tools/setup.sh installs bind9-dnsutils)"
DP=$(free_port) # each PoP answers DNS for the zone on its own address
init_node "$WORK/n1" pop-1 --ingress-address 127.0.0.61 --dns-listen "127.0.0.61:$DP" \
    --public-address 127.0.0.61
start_popd "$WORK/n1"
TOKEN=$(mctl "$WORK/n1" token create --uses 1 --ttl 10m 2>/dev/null)
"$POPD" join --data "$WORK/n2" --name pop-2 --mesh-listen "127.0.0.1:$(free_port)" \
    --tunnel-listen "127.0.0.1:$(free_port)" --ingress-address 127.0.0.62 \
    --dns-listen "127.0.0.62:$DP" --public-address 127.0.0.62 "$TOKEN" >/dev/null
start_popd "$WORK/n2"
expect_rc 0 mctl "$WORK/n1" zone add sites.test --ttl 1
# dns_a: the A answer for app.sites.test at pop-1, sorted, one line
dns_a() { dig +short +tries=1 +time=1 -p "$DP" @127.0.0.61 app.sites.test A 2>/dev/null | sed '/^;/d' | sort | tr '\n' ' ' | sed 's/ $//'; }
dns_is() { [ "$(dns_a)" = "$1" ]; }

declare -A SPID
start_site() { # start_site NAME [TOKEN]
    "$POPSITE" run --data "$WORK/site-$1" ${2:+--token "$2"} >>"$WORK/site-$1.log" 2>&1 &
    SPID[$1]=$!
    PIDS+=("$!")
}
for s in onprem cloud; do
    T=$(mctl "$WORK/n1" site add "$s" | grep -o 'pmt1\.[A-Za-z0-9_-]*' | head -1)
    [ -n "$T" ] || fail "site add $s printed no token"
    start_site "$s" "$T"
done

# Backends answer each connection with their name, then close.
cat >"$WORK/backend.py" <<'EOF'
import socket, sys, threading
name, port = sys.argv[1], int(sys.argv[2])
def serve(c):
    with c:
        c.settimeout(2)
        try:
            c.recv(4096)
            c.sendall(name.encode())
        except OSError:
            pass
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port)); s.listen(1024)
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
EOF
declare -A BPORT BPID
start_backend() {
    "$PY" "$WORK/backend.py" "$1" "${BPORT[$1]}" >>"$WORK/backend-$1.log" 2>&1 &
    BPID[$1]=$!
    PIDS+=("$!")
}
for b in onprem onprem2 cloud; do
    BPORT[$b]=$(free_port)
    start_backend "$b"
done

RP=$(free_port)
expect_rc 0 mctl "$WORK/n1" resource add app --target "onprem/127.0.0.1:${BPORT[onprem]}" \
    --priority 1 --target "cloud/127.0.0.1:${BPORT[cloud]}" --priority 2 --tcp-port "$RP" \
    --host app.sites.test
mctl "$WORK/n1" resource list >"$WORK/list.txt"
expect_in "$WORK/list.txt" "onprem/127.0.0.1:${BPORT[onprem]}, cloud/127.0.0.1:${BPORT[cloud]} [p2 w1]"
ok "resource add with targets in two sites"

# targets_json DIR: meshctl targets --json app as "site/port=state ..." sorted.
states() {
    mctl "$1" --json targets app | "$PY" -c '
import json, sys
t = json.load(sys.stdin)["resources"][0]["targets"]
print(" ".join(sorted("%s/%s=%s" % (x["site"], x["addr"].rsplit(":", 1)[1], x["state"]) for x in t)))'
}
state_is() { [ "$(states "$1")" = "$2" ]; }
UP="cloud/${BPORT[cloud]}=up onprem/${BPORT[onprem]}=up"
for n in n1 n2; do wait_for 20 "both targets up at $n" state_is "$WORK/$n" "$UP"; done
ok "meshctl targets at both PoPs: $UP"

# The probe: one connection every 25 ms, alternating PoPs, for at most $1 s or until the file
# $WORK/stop exists; one line per connection: "ms answer" (ERR when it failed).
cat >"$WORK/probe.py" <<'EOF'
import os, socket, sys, time
port, secs, out, stop = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4]
end = time.time() + secs
pops = ["127.0.0.61", "127.0.0.62"]
i = 0
with open(out, "w", buffering=1) as f:
    while time.time() < end and not os.path.exists(stop):
        t0 = time.time()
        try:
            c = socket.create_connection((pops[i % 2], port), timeout=3)
            c.settimeout(3)
            c.sendall(b"hi")
            d = c.recv(64).decode() or "EOF"
            c.close()
        except OSError as e:
            d = "ERR"
        f.write("%d %s %s\n" % (int(t0 * 1000), pops[i % 2], d))
        i += 1
        time.sleep(max(0, 0.025 - (time.time() - t0)))
EOF
start_probe() {
    rm -f "$WORK/stop"
    "$PY" "$WORK/probe.py" "$RP" 60 "$WORK/probe-$1.txt" "$WORK/stop" &
    PROBE=$!
    PIDS+=("$!")
}
stop_probe() {
    touch "$WORK/stop"
    wait "$PROBE" 2>/dev/null || true
}
now_ms() { echo $(($(date +%s%N) / 1000000)); }
# last_answers FILE N: the last N answers, as a sorted set.
last_answers() { tail -n "$2" "$1" | awk '{print $3}' | sort -u | tr '\n' ' ' | sed 's/ $//'; }
answers_now() { [ "$(last_answers "$1" 8)" = "$2" ]; }
# report FILE T0 T1 FROM TO: failures from T0 to T1 (ms), and the gap from T0 to the first
# answer TO after the last answer FROM (every answer from then on to T1 is TO).
report() {
    "$PY" - "$@" <<'EOF'
import sys
f, t0, t1, frm, to = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
rows = [l.split() for l in open(f) if l.strip()]
rows = [(int(t), p, a) for t, p, a in rows if t0 <= int(t) < t1]
failed = sum(1 for r in rows if r[2] not in (frm, to))
last_from = max((i for i, r in enumerate(rows) if r[2] == frm), default=-1)
first_to = next((r for r in rows[last_from + 1:] if r[2] == to), None)
gap = first_to[0] - t0 if first_to else -1
print("%d %d %d" % (failed, gap, len(rows)))
EOF
}
check_event() { # check_event WHAT FILE T0 T1 FROM TO
    read -r FAILED GAP N < <(report "$2" "$3" "$4" "$5" "$6")
    [ "$GAP" -ge 0 ] || fail "$1: traffic did not move from $5 to $6"
    [ "$FAILED" -le "$MAX_FAILED" ] ||
        fail "$1: $FAILED of $N connections failed (at most $MAX_FAILED allowed); see $2"
    ok "$1: $FAILED of $N connections failed, traffic on $6 ${GAP} ms after the event"
}

# ---- 1-3: on-prem target stopped and started -------------------------------------------------
start_probe health
wait_for 10 "probe answered by onprem" answers_now "$WORK/probe-health.txt" onprem
ok "all traffic on the priority-1 site (onprem)"
kill -9 "${BPID[onprem]}"
wait "${BPID[onprem]}" 2>/dev/null || true
T0=$(now_ms) # from here on the target is gone: a connection open on it before is not counted
wait_for 10 "traffic on the cloud site" answers_now "$WORK/probe-health.txt" cloud
for n in n1 n2; do
    wait_for 10 "onprem target down at $n" state_is "$WORK/$n" \
        "cloud/${BPORT[cloud]}=up onprem/${BPORT[onprem]}=down"
done
mctl "$WORK/n1" targets >"$WORK/targets.txt"
sed 's/^/#   /' "$WORK/targets.txt"
grep -Eq "^app +onprem +127\.0\.0\.1:${BPORT[onprem]} +1 +1 +down +0/1 \(" "$WORK/targets.txt" ||
    fail "meshctl targets does not show the on-prem target down with the site's reason"
sleep 0.5
T1=$(now_ms)
start_backend onprem
wait_for 15 "traffic back on onprem" answers_now "$WORK/probe-health.txt" onprem
sleep 0.3
stop_probe
check_event "on-prem target stopped (failover)" "$WORK/probe-health.txt" "$T0" "$T1" onprem cloud
check_event "on-prem target started (fail-back)" "$WORK/probe-health.txt" "$T1" "$(now_ms)" cloud onprem

# ---- 4: the on-prem connector dies ----------------------------------------------------------
for n in n1 n2; do wait_for 10 "both up at $n" state_is "$WORK/$n" "$UP"; done
start_probe connector
wait_for 10 "probe answered by onprem" answers_now "$WORK/probe-connector.txt" onprem
kill -9 "${SPID[onprem]}"
wait "${SPID[onprem]}" 2>/dev/null || true
T0=$(now_ms) # streams open on the killed connector before this are lost with it, not counted
wait_for 10 "traffic on the cloud site" answers_now "$WORK/probe-connector.txt" cloud
for n in n1 n2; do
    wait_for 10 "onprem target unreachable at $n" state_is "$WORK/$n" \
        "cloud/${BPORT[cloud]}=up onprem/${BPORT[onprem]}=unreachable"
done
ok "with its connector dead, the on-prem target is unreachable at both PoPs"
# DNS steering counts a PoP as reaching the resource when it reaches any of its sites.
wait_for 5 "app.sites.test answered with both PoPs" dns_is "127.0.0.61 127.0.0.62"
ok "DNS still answers app.sites.test with both PoPs (they reach the cloud site): $(dns_a)"
sleep 0.5
T1=$(now_ms)
start_site onprem
wait_for 20 "traffic back on onprem" answers_now "$WORK/probe-connector.txt" onprem
sleep 0.3
stop_probe
check_event "on-prem connector SIGKILLed (failover)" "$WORK/probe-connector.txt" "$T0" "$T1" onprem cloud
check_event "on-prem connector restarted (fail-back)" "$WORK/probe-connector.txt" "$T1" "$(now_ms)" cloud onprem

# ---- 5: weights -----------------------------------------------------------------------------
# count PORT N ADDR: N connections to ADDR:PORT; prints "name=count ..." sorted.
count() {
    "$PY" -c '
import collections, socket, sys
n = collections.Counter()
for i in range(int(sys.argv[2])):
    try:
        c = socket.create_connection((sys.argv[3], int(sys.argv[1])), timeout=3)
        c.sendall(b"hi")
        n[c.recv(64).decode() or "EOF"] += 1
        c.close()
    except OSError:
        n["ERR"] += 1
print(" ".join("%s=%d" % kv for kv in sorted(n.items())))' "$@"
}
WP=$(free_port)
expect_rc 0 mctl "$WORK/n1" resource add spread --target "onprem/127.0.0.1:${BPORT[onprem]}" \
    --weight 3 --target "onprem/127.0.0.1:${BPORT[onprem2]}" --weight 1 \
    --target "cloud/127.0.0.1:${BPORT[cloud]}" --weight 4 --tcp-port "$WP"
spread_up() {
    [ "$(mctl "$WORK/n1" --json targets spread | "$PY" -c '
import json, sys
print(all(t["state"] == "up" for t in json.load(sys.stdin)["resources"][0]["targets"]))')" = True ]
}
wait_for 20 "the three targets of spread up" spread_up
C=$(count "$WP" 400 127.0.0.61)
echo "# 400 connections through pop-1: $C (weights onprem 3, onprem2 1, cloud 4)"
"$PY" - "$C" <<'EOF' || fail "connections not shared by weight: $C"
import sys
n = dict(kv.split("=") for kv in sys.argv[1].split())
n = {k: int(v) for k, v in n.items()}
assert n.get("ERR", 0) == 0, n
# cloud 4/8 of the connections, onprem 3/8, onprem2 1/8 (a tolerance for the connector's
# counter, which other resources' connections share)
for k, share in (("cloud", 0.5), ("onprem", 0.375), ("onprem2", 0.125)):
    got = n.get(k, 0) / 400
    assert abs(got - share) < 0.07, (k, got, share)
EOF
ok "connections shared by weight across sites and within a site: $C"

# ---- 6: bad input ---------------------------------------------------------------------------
refused() { # refused RC TEXT ARGS...
    local rc=$1 text=$2
    shift 2
    expect_rc "$rc" mctl "$WORK/n1" "$@" 2>"$WORK/err"
    expect_in "$WORK/err" "$text"
}
B=(resource add bad --tcp-port "$(free_port)")
refused 1 "there is no site 'nowhere'" "${B[@]}" --target onprem/10.0.0.1:80 --target nowhere/10.0.0.2:80
refused 2 "--priority '0' (of --target onprem/10.0.0.1:80) is not a number from 1 to 100" "${B[@]}" --target onprem/10.0.0.1:80 --priority 0
refused 2 "is not a number from 1 to 100" "${B[@]}" --target onprem/10.0.0.1:80 --priority 101
refused 2 "--weight '0' (of --target onprem/10.0.0.1:80) is not a number from 1 to 1000" "${B[@]}" --target onprem/10.0.0.1:80 --weight 0
refused 2 "is not a number from 1 to 1000" "${B[@]}" --target onprem/10.0.0.1:80 --weight 1001
refused 2 "--priority goes after the --target it is for" "${B[@]}" --priority 2 --target onprem/10.0.0.1:80
refused 2 "site name 'Bad_Site' is invalid" "${B[@]}" --target Bad_Site/10.0.0.1:80
refused 2 "target 'cloud/10.0.0.1:80' is listed twice" "${B[@]}" --target onprem/10.0.0.1:80 --target cloud/10.0.0.1:80 --target cloud/10.0.0.1:80
refused 2 "--site SITE is required" "${B[@]}" --target 10.0.0.1:80
expect_rc 0 mctl "$WORK/n1" resource list
if grep -q '^bad ' <(mctl "$WORK/n1" resource list); then fail "a refused resource was stored"; fi
ok "bad targets, priorities and weights refused with their reasons; nothing stored"
# The same address in two sites is two targets (two private networks).
expect_rc 0 mctl "$WORK/n1" resource add twin --target onprem/127.0.0.1:9 --target cloud/127.0.0.1:9 \
    --tcp-port "$(free_port)"
ok "one address in two sites is accepted as two targets"
# Each connector is told only its own site's targets.
mctl "$WORK/n1" --json sites >"$WORK/sites.json"
"$PY" - "$WORK/sites.json" "${BPORT[onprem]}" "${BPORT[cloud]}" <<'EOF' || fail "a connector checks another site's targets: $(cat "$WORK/sites.json")"
import json, sys
sites = {s["name"]: {t["addr"] for t in s["targets"]} for s in json.load(open(sys.argv[1]))["sites"]}
assert "127.0.0.1:" + sys.argv[3] not in sites["onprem"], sites
assert "127.0.0.1:" + sys.argv[2] not in sites["cloud"], sites
assert "127.0.0.1:" + sys.argv[3] in sites["cloud"], sites
EOF
ok "each connector checks its own site's targets only"
done_testing
