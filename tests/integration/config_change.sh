#!/usr/bin/env bash
# Configuration takes effect on change, not on a poll: three PoPs, one popsite, two backends.
# 1. a resource added at pop-1 serves through pop-3's ingress within its propagation time
#    (polled every 10 ms from the moment meshctl returns, for at most 1 s; < 500 ms asserted);
# 2. a changed target takes effect at pop-3 as fast;
# 3. resource rm closes the port at every PoP as fast;
# 4. an idle PoP reads no record on a timer: dataplane.store_scans stays at its start value
#    (the two listings at start) after 100 HTTP resources were added.
source "$(dirname "$0")/lib.sh"
: "${POPSITE:?POPSITE must point to the popsite binary}"

cat >"$WORK/cc.py" <<'PY'
import os, socket, sys, time


def exchange(host, port, expect_greeting):
    s = socket.create_connection((host, port), timeout=0.3)
    try:
        s.settimeout(0.3)
        msg = os.urandom(64)
        s.sendall(msg)
        want = expect_greeting.encode() + msg
        got = b""
        while len(got) < len(want):
            b = s.recv(len(want) - len(got))
            if not b:
                raise EOFError("EOF")
            got += b
        if got != want:
            raise ValueError("got %r" % got[:20])
    finally:
        s.close()

def refused(host, port):
    try:
        socket.create_connection((host, port), timeout=0.3).close()
        return False
    except ConnectionRefusedError:
        return True

# until T0_NS MAX_S KIND ARGS: polls every 10 ms from t0 (the moment the change was made)
# until the condition holds; prints the seconds it took, or "none" (exit 1) after MAX_S.
def until(t0_ns, max_s, kind, args):
    while True:
        try:
            if kind == "serves":
                exchange(args[0], int(args[1]), args[2] if len(args) > 2 else "")
                ok = True
            else:
                ok = all(refused(a.split(":")[0], int(a.split(":")[1])) for a in args)
        except Exception:
            ok = False
        dt = (time.time_ns() - t0_ns) / 1e9
        if ok:
            print("%.3f" % dt)
            return 0
        if dt > max_s:
            print("none")
            return 1
        time.sleep(0.01)

def add_http(sock, n, target):
    sys.path.insert(0, os.environ["INTEGRATION_DIR"])
    from ctlclient import Ctl
    c = Ctl(sock, timeout=60)
    for i in range(n):
        st, body = c.call("resource.add", {"name": "h%d" % i, "site": "branch",
                                           "targets": [target], "host": "h%d.example" % i})
        if st != 0:
            print("resource.add h%d: %s %r" % (i, st, body)); return 1
    return 0

cmd, a = sys.argv[1], sys.argv[2:]
if cmd == "until": sys.exit(until(int(a[0]), float(a[1]), a[2], a[3:]))
elif cmd == "add_http": sys.exit(add_http(a[0], int(a[1]), a[2]))
PY
cc() { INTEGRATION_DIR=$(dirname "$0") "$PY" "$WORK/cc.py" "$@"; }
now_ns() { date +%s%N; }
LIMIT=0.5 # s: what "within the write's propagation time" is asserted as on loopback
below() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a != "none" && a + 0 < b + 0) }'; }

# ---- three PoPs, each with its own ingress address (the resource port is the same on all) ----
ING=("" 127.0.0.11 127.0.0.12 127.0.0.13)
N=("" "$WORK/n1" "$WORK/n2" "$WORK/n3")
init_node "${N[1]}" pop-1 --ingress-address "${ING[1]}"
start_popd "${N[1]}"
POPTOKEN=$(mctl "${N[1]}" token create --uses 2 --ttl 10m 2>/dev/null)
for i in 2 3; do
    "$POPD" join --data "${N[$i]}" --name "pop-$i" --mesh-listen "127.0.0.1:$(free_port)" \
        --tunnel-listen "127.0.0.1:$(free_port)" --ingress-address "${ING[$i]}" "$POPTOKEN" >/dev/null
    start_popd "${N[$i]}"
done
wait_for 20 "3 alive members on every node" all_see "${N[1]}" "${N[2]}" "${N[3]}" "pop-1=alive pop-2=alive pop-3=alive"

BA=$(free_port)
BB=$(free_port)
"$PY" "$(dirname "$0")/echo_server.py" "$BA" >"$WORK/backend-a.log" 2>&1 &
PIDS+=("$!")
"$PY" "$(dirname "$0")/echo_server.py" "$BB" "B:" >"$WORK/backend-b.log" 2>&1 &
PIDS+=("$!")
expect_rc 0 mctl "${N[1]}" site add branch
"$POPSITE" run --data "$WORK/site" --token "$(cat "$WORK/out")" >>"$WORK/site.log" 2>&1 &
PIDS+=("$!")
site_online() { [ "$(jq_ '[s["state"] for s in j["sites"] if s["name"] == "branch"][0]' "$1" sites)" = online ]; }
# routed: the PoP has a path to the site (its link state may lag the site's online state)
has_route() { [ "$(jq_ 'len([s for s in j["sites"] if s["site"] == "branch" and s.get("reachable", True) and s.get("egress")])' "$1" routes)" = 1 ]; }
for i in 1 2 3; do
    wait_for 20 "branch online on pop-$i" site_online "${N[$i]}"
    wait_for 20 "a route to branch on pop-$i" has_route "${N[$i]}"
done
SCANS0=$(jq_ 'j["dataplane"]["store_scans"]' "${N[3]}" status)
[ "$SCANS0" = 3 ] || fail "pop-3 listed the store $SCANS0 times at start (3 expected: nodes, resources, site health)"

# ---- 1. added at pop-1, served at pop-3 ----
RPORT=$(free_port)
expect_rc 0 mctl "${N[1]}" resource add echo --site branch --target "127.0.0.1:$BA" --tcp-port "$RPORT"
T0=$(now_ns)
DT=$(cc until "$T0" 1 serves "${ING[3]}" "$RPORT") || {
    mctl "${N[3]}" --json routes >&2
    mctl "${N[3]}" --json sites >&2
    fail "pop-3 did not serve the new resource within 1 s"
}
below "$DT" "$LIMIT" || fail "pop-3 served the new resource after $DT s (< $LIMIT s expected)"
ok "1: a resource added at pop-1 serves through pop-3's ingress $DT s after meshctl returned (polled every 10 ms)"

# ---- 2. a changed target ----
expect_rc 0 mctl "${N[1]}" resource add echo --replace --site branch --target "127.0.0.1:$BB" --tcp-port "$RPORT"
T0=$(now_ns)
DT=$(cc until "$T0" 1 serves "${ING[3]}" "$RPORT" "B:") || fail "pop-3 did not use the new target within 1 s"
below "$DT" "$LIMIT" || fail "pop-3 used the new target after $DT s (< $LIMIT s expected)"
ok "2: a target changed at pop-1 is used by pop-3 $DT s later"

# ---- 3. removed: the port closes at every PoP ----
expect_rc 0 mctl "${N[1]}" resource rm echo
T0=$(now_ns)
DT=$(cc until "$T0" 1 closed "${ING[1]}:$RPORT" "${ING[2]}:$RPORT" "${ING[3]}:$RPORT") ||
    fail "the resource port was still open somewhere 1 s after resource rm"
below "$DT" "$LIMIT" || fail "the port closed at every PoP after $DT s (< $LIMIT s expected)"
ok "3: resource rm at pop-1 closes the port at all 3 PoPs within $DT s"

# ---- 4. no timer reads the store ----
cc add_http "${N[1]}/control.sock" 100 "127.0.0.1:$BA" || fail "adding 100 HTTP resources"
wait_for 10 "pop-3 to hold the 100 resources" \
    test "$(jq_ 'len(j["resources"])' "${N[3]}" resource list)" = 100
sleep 3
SCANS1=$(jq_ 'j["dataplane"]["store_scans"]' "${N[3]}" status)
[ "$SCANS1" = "$SCANS0" ] ||
    fail "pop-3 listed the store $((SCANS1 - SCANS0)) more times after start (it must only apply changes)"
ok "4: with 100 resources added and 3 s idle, pop-3 listed the store only at start (store_scans $SCANS1)"

done_testing
