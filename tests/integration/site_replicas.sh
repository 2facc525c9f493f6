#!/usr/bin/env bash
# Connector replicas: one site served by two popsite processes, each with its own key and data
# directory, enrolled with one token of 2 uses (site add --replicas 2). Three PoPs; a TCP echo
# resource answers through every PoP's ingress. SIGKILL one replica while new connections keep
# coming (50 connections spread over the kill, through all three PoPs): the failures are
# counted and bounded, the gap from the kill to the first success after it is reported; the
# killed replica restarts from its data directory (no token) and rejoins; then the other one is
# killed, the same. Bad input: a third enrollment with the 2-use token, a site token used with
# another site's name, site token for one more replica (once), site rm --replica, a replica
# removed with node rm (its tunnels refused, the other serves).
source "$(dirname "$0")/lib.sh"
: "${POPSITE:?POPSITE must point to the popsite binary}"

MAX_FAILED=${MAX_FAILED:-0} # failed new connections allowed per kill


# ---- three PoPs, each with its own ingress address ----
declare -a T
for i in 1 2 3; do T[$i]=$(free_port); done
ING=("" 127.0.0.61 127.0.0.62 127.0.0.63)
N=("" "$WORK/n1" "$WORK/n2" "$WORK/n3")
"$POPD" init --data "${N[1]}" --name pop-1 --mesh-listen "127.0.0.1:$(free_port)" \
    --tunnel-listen "127.0.0.1:${T[1]}" --ingress-address "${ING[1]}" >/dev/null
start_popd "${N[1]}" --log-level debug
POPTOKEN=$(mctl "${N[1]}" token create --uses 2 --ttl 10m 2>/dev/null)
for i in 2 3; do
    "$POPD" join --data "${N[$i]}" --name "pop-$i" --mesh-listen "127.0.0.1:$(free_port)" \
        --tunnel-listen "127.0.0.1:${T[$i]}" --ingress-address "${ING[$i]}" "$POPTOKEN" >/dev/null
    start_popd "${N[$i]}" --log-level debug
done
wait_for 20 "3 alive members on every node" all_see "${N[1]}" "${N[2]}" "${N[3]}" "pop-1=alive pop-2=alive pop-3=alive"

BPORT=$(free_port)
"$PY" "$(dirname "$0")/echo_server.py" "$BPORT" >"$WORK/backend.log" 2>&1 &
PIDS+=("$!")
wait_for 5 "the echo backend" "$PY" -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' "$BPORT"

# ---- enrollment: one token, two uses ----
expect_rc 0 mctl "${N[1]}" site add branch --replicas 2
TOKEN=$(cat "$WORK/out")
expect_in "$WORK/err" "2 uses (one per connector replica)"
TOKEN_ID=$(sed -n 's/.*token \([0-9a-f]\{16\}\),.*/\1/p' "$WORK/err")
[ "$(jq_ 'j["value"]["uses_max"]' "${N[1]}" config get "token/$TOKEN_ID")" = 2 ] ||
    fail "site add --replicas 2 did not mint a 2-use token"
expect_rc 2 mctl "${N[1]}" site add other --replicas 0
expect_rc 2 mctl "${N[1]}" site add other --replicas 65
RPORT=$(free_port)
expect_rc 0 mctl "${N[1]}" resource add echo --site branch --target "127.0.0.1:$BPORT" --tcp-port "$RPORT"
ok "site add --replicas 2 mints a 2-use site token (0 and 65 refused)"

declare -A SPID
start_replica() { # start_replica A|B [ARGS...]: popsite on $WORK/site-A or -B (log site-X.log)
    local r=$1
    shift
    "$POPSITE" run --data "$WORK/site-$r" --log-level debug "$@" >>"$WORK/site-$r.log" 2>&1 &
    SPID[$r]=$!
    PIDS+=("$!")
}
start_replica A --token "$TOKEN"
wait_for 20 "replica A enrolled" grep -q "enrolled as site branch" "$WORK/site-A.log"
start_replica B --token "$TOKEN"
wait_for 20 "replica B enrolled" grep -q "enrolled as branch-2, a replica of site branch" "$WORK/site-B.log"
grep -q '^name = branch$' "$WORK/site-A/site.conf" || fail "replica A is not named branch"
grep -q '^name = branch-2$' "$WORK/site-B/site.conf" || fail "replica B is not named branch-2"
grep -q '^site = branch$' "$WORK/site-B/site.conf" || fail "replica B's settings do not name its site"
ok "two popsite processes enroll with the one token: branch and branch-2 (site = branch), each with its own key"

# A third enrollment with the 2-use token: refused, and nothing stays behind.
rc=0
timeout 20 "$POPSITE" run --data "$WORK/site-C" --token "$TOKEN" >"$WORK/out" 2>"$WORK/err" || rc=$?
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || fail "a third enrollment with a 2-use token was not refused (rc $rc)"
expect_in "$WORK/err" "used up (2 of 2 uses)"
ok "a third enrollment with the 2-use token is refused: used up (2 of 2 uses)"

# replicas_state DIR: "replica=state:pops ..." of site branch as DIR sees it, sorted
replicas_state() {
    jq_ '" ".join(sorted("%s=%s:%s" % (s["replica"], s["state"], ",".join(sorted(p["name"] for p in s["pops"]))) for s in j["sites"] if s["name"] == "branch"))' "$1" sites
}
both_online() { # both_online DIR: both replicas online, each at 2 PoPs
    replicas_state "$1" | grep -Eq '^branch-2=online:pop-[123],pop-[123] branch=online:pop-[123],pop-[123]$'
}
for i in 1 2 3; do wait_for 20 "both replicas online at 2 PoPs each, seen by pop-$i" both_online "${N[$i]}"; done
echo "# pop-1: $(replicas_state "${N[1]}")"
mctl "${N[1]}" sites >"$WORK/sites.txt"
sed 's/^/#   /' "$WORK/sites.txt"
expect_in "$WORK/sites.txt" "REPLICA"
# one line per replica with the machine it runs on (its host name, sent in its STATUS)
grep -Eq "^branch +branch-2 +$(hostname) +online" "$WORK/sites.txt" ||
    fail "meshctl sites does not show branch-2 under branch with its host $(hostname)"
grep -Eq "^branch +branch +$(hostname) +online" "$WORK/sites.txt" || fail "meshctl sites does not show branch under branch"
[ "$(jq_ '[len(s["replicas"]) for s in j["sites"] if s["name"] == "branch"][0]' "${N[2]}" site list)" = 2 ] ||
    fail "site list does not count 2 replicas"
ok "meshctl sites shows each replica (name, state, PoPs) under its site on every PoP; site list counts 2"

# ---- traffic ----
cat >"$WORK/load.py" <<'PY'
# load.py PORT N INTERVAL KILL_AT PID HOSTS...: N echo connections, one every INTERVAL s, over
# HOSTS in turn; before connection KILL_AT, SIGKILL PID. Prints "failed F gap_ms G": failures
# after the kill, and ms from the kill to the first success after it.
import os, signal, socket, sys, time
port, n, interval, kill_at, pid = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
hosts = sys.argv[6:]
failed, killed_at, gap, errors = 0, None, None, []
for i in range(n):
    if i == kill_at and pid > 0:
        os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
    t0 = time.monotonic()
    try:
        s = socket.create_connection((hosts[i % len(hosts)], port), timeout=5)
        s.settimeout(5)
        msg = os.urandom(512)
        s.sendall(msg)
        got = b""
        while len(got) < len(msg):
            b = s.recv(4096)
            if not b:
                raise EOFError("closed after %d bytes" % len(got))
            got += b
        s.close()
        if got != msg:
            raise ValueError("echo differs")
        if killed_at is not None and gap is None:
            gap = (time.monotonic() - killed_at) * 1000
    except Exception as e:
        failed += 1
        errors.append("%d via %s: %s" % (i, hosts[i % len(hosts)], e))
    left = interval - (time.monotonic() - t0)
    if left > 0:
        time.sleep(left)
print("failed %d gap_ms %.1f" % (failed, gap if gap is not None else -1))
for e in errors[:10]:
    print("# " + e)
PY
load() { "$PY" "$WORK/load.py" "$RPORT" "$@" "${ING[1]}" "${ING[2]}" "${ING[3]}"; }
load 15 0.02 -1 0 >"$WORK/load.txt"
read -r _ F _ _ <"$WORK/load.txt"
[ "$F" = 0 ] || { cat "$WORK/load.txt"; fail "connections failed with both replicas up"; }
ok "15 echo round trips through all three PoPs with both replicas up"

# kill_replica X: SIGKILL replica X in the middle of 50 connections (one every 40 ms over the
# three PoPs); the failures must stay within MAX_FAILED. Reports the gap.
retries() { # the PoPs' ingress retries, summed
    local sum=0 i
    for i in 1 2 3; do sum=$((sum + $(jq_ 'j["dataplane"]["ingress_retries"]' "${N[$i]}" status))); done
    echo "$sum"
}
kill_replica() {
    local r=$1 r0
    r0=$(retries)
    load 50 0.04 15 "${SPID[$r]}" >"$WORK/load.txt"
    { wait "${SPID[$r]}"; } 2>/dev/null || true
    read -r _ F _ GAP <"$WORK/load.txt"
    RETRIED=$(($(retries) - r0))
    echo "# SIGKILL replica $r: $F of 35 connections after the kill failed; first success ${GAP} ms after it; $RETRIED ingress retries (connections sent to the killed replica first)"
    grep '^#' "$WORK/load.txt" || true
    [ "$F" -le "$MAX_FAILED" ] || fail "$F new connections failed after SIGKILL of replica $r (at most $MAX_FAILED allowed)"
    [ "${GAP%.*}" -ge 0 ] || fail "no connection succeeded after SIGKILL of replica $r"
}
only_online() { # only_online DIR REPLICA: REPLICA online, the other offline, as DIR sees it
    replicas_state "$1" | "$PY" -c '
import sys
st = dict(x.split("=", 1) for x in sys.stdin.read().split())
want = sys.argv[1]
sys.exit(0 if all(v.startswith("online:" if k == want else "offline:") for k, v in st.items()) and len(st) == 2 else 1)' "$2"
}

kill_replica A
GAP_A=$GAP F_A=$F RET_A=$RETRIED
for i in 1 2 3; do wait_for 10 "branch (killed) offline, branch-2 online, at pop-$i" only_online "${N[$i]}" branch-2; done
load 15 0.02 -1 0 >"$WORK/load.txt"
read -r _ F _ _ <"$WORK/load.txt"
[ "$F" = 0 ] || { cat "$WORK/load.txt"; fail "connections failed with replica B alone"; }
ok "SIGKILL of replica A: $F_A new connections failed, first success ${GAP_A} ms after the kill; A shows offline everywhere; B alone serves every PoP"

start_replica A # no token: it rejoins with its data directory
for i in 1 2 3; do wait_for 20 "both replicas online again, seen by pop-$i" both_online "${N[$i]}"; done
grep -q "popsite branch ready (site branch)" "$WORK/site-A.log" || fail "replica A did not restart as branch"
ok "replica A restarts from its data directory (no token) and is online again at every PoP"

kill_replica B
GAP_B=$GAP F_B=$F RET_B=$RETRIED
for i in 1 2 3; do wait_for 10 "branch-2 (killed) offline, branch online, at pop-$i" only_online "${N[$i]}" branch; done
load 15 0.02 -1 0 >"$WORK/load.txt"
read -r _ F _ _ <"$WORK/load.txt"
[ "$F" = 0 ] || { cat "$WORK/load.txt"; fail "connections failed with replica A alone"; }
ok "SIGKILL of replica B: $F_B new connections failed, first success ${GAP_B} ms after the kill; A alone serves every PoP"

start_replica B
for i in 1 2 3; do wait_for 20 "both replicas online again (B back), seen by pop-$i" both_online "${N[$i]}"; done
ok "replica B restarts from its data directory and is online again"

# ---- bad input ----
# sitejoin TOKEN NAME [SEED]: a JOIN with role site as popsite sends it (tests/integration/
# site_admin.sh has the same client), with a new key, or the key made from SEED (a byte);
# prints "OK" or "ERR code: message".
sitejoin() {
    "$PY" - "$@" <<'PY'
import base64, os, sys
import msgpack, nacl.bindings, nacl.encoding, nacl.hash, nacl.public, zmq, zmq.utils.z85
tok, name = sys.argv[1:3]
seed = int(sys.argv[3]) if len(sys.argv) > 3 else None
body = base64.urlsafe_b64decode(tok[5:] + "=" * (-len(tok[5:]) % 4))
payload = msgpack.unpackb(body[:-64], raw=False)
secret, seeds = payload[4], payload[5]
sk = nacl.hash.blake2b(secret, digest_size=32, key=b"popmesh join key v1",
                       encoder=nacl.encoding.RawEncoder)
pk = nacl.bindings.crypto_scalarmult_base(sk)
ctx = zmq.Context()
s = ctx.socket(zmq.DEALER)
s.curve_secretkey, s.curve_publickey = zmq.utils.z85.encode(sk), zmq.utils.z85.encode(pk)
s.curve_serverkey = zmq.utils.z85.encode(seeds[0][1])
s.linger = 0
s.connect("tcp://" + seeds[0][0])
me = nacl.public.PrivateKey(bytes([seed]) * 32) if seed is not None else nacl.public.PrivateKey.generate()
s.send(msgpack.packb([1, 48, name, "", "", bytes(me.public_key), os.urandom(32), "site"],
                     use_bin_type=True))
if not s.poll(5000):
    print("TIMEOUT")
    sys.exit(0)
rep = msgpack.unpackb(s.recv(), raw=False)
print("OK" if rep[1] == 49 else "ERR %s: %s" % (rep[2], rep[3]))
s.close()
ctx.term()
PY
}
wait_certified "${N[2]}"
expect_rc 0 mctl "${N[2]}" site add other
OTHER_TOKEN=$(cat "$WORK/out")
expect_rc 0 mctl "${N[1]}" site token branch
REPL_TOKEN=$(cat "$WORK/out")
expect_in "$WORK/err" "one more replica for site branch: token"
expect_rc 1 mctl "${N[1]}" site token ghost
expect_in "$WORK/err" "no site 'ghost'"
got=$(sitejoin "$REPL_TOKEN" other)
case "$got" in *"ERR site: this token enrolls site 'branch' only; it cannot enroll site 'other'"*) ;;
*) fail "branch's replica token used with site name other: $got" ;; esac
got=$(sitejoin "$OTHER_TOKEN" branch)
case "$got" in *"ERR site: this token enrolls site 'other' only; it cannot enroll site 'branch'"*) ;;
*) fail "other's token used with site name branch: $got" ;; esac
ok "a site's token (site add or site token) used with another site's name is refused; site token of an unknown site is refused"

# site token: one more replica (a JOIN as popsite would send), named branch-3.
got=$(sitejoin "$REPL_TOKEN" branch 7)
[ "$got" = OK ] || fail "the replica token did not enroll a third replica: $got"
got=$(sitejoin "$REPL_TOKEN" branch 7) # the same key again (its JOIN_OK lost): answered again
[ "$got" = OK ] || fail "the third replica asking again was refused: $got"
wait_for 10 "branch-3 in pop-3's site list" bash -c "[ \"\$('$MESHCTL' -d '${N[3]}' --json site list | '$PY' -c 'import json,sys; print(sorted(r[\"name\"] for s in json.load(sys.stdin)[\"sites\"] if s[\"name\"] == \"branch\" for r in s[\"replicas\"]))')\" = \"['branch', 'branch-2', 'branch-3']\" ]"
got=$(sitejoin "$REPL_TOKEN" branch)
case "$got" in *"ERR used-up"*) ;; *) fail "the one-use replica token enrolled twice: $got" ;; esac
expect_rc 1 mctl "${N[1]}" site rm other --replica branch-3
expect_in "$WORK/err" "site 'other' has no replica 'branch-3'"
expect_rc 1 mctl "${N[1]}" site rm branch --replica pop-1
expect_rc 0 mctl "${N[1]}" site rm branch --replica branch-3
expect_in "$WORK/out" "replica branch-3 of site branch removed"
wait_for 10 "branch-3 gone from pop-3's site list, branch and branch-2 left" bash -c "[ \"\$('$MESHCTL' -d '${N[3]}' --json site list | '$PY' -c 'import json,sys; print(sorted(r[\"name\"] for s in json.load(sys.stdin)[\"sites\"] if s[\"name\"] == \"branch\" for r in s[\"replicas\"]))')\" = \"['branch', 'branch-2']\" ]"
ok "site token branch enrolls one more replica (branch-3), once (the same key asking again is answered, no new node); site rm --replica removes that replica alone (another site's or a PoP's name refused)"

# A removed replica: its key is refused by every PoP; the other replica keeps serving. The
# removal happens under traffic: until every PoP's routes drop branch-2, OPENs still go to it
# (and are reset: its tunnels are closed, its key refused), and those connections must be
# retried on branch, not lost.
load 40 0.03 -1 0 >"$WORK/load-rm.txt" &
LOADPID=$!
sleep 0.3
expect_rc 0 mctl "${N[1]}" node rm branch-2
wait "$LOADPID" || true
read -r _ F _ _ <"$WORK/load-rm.txt"
[ "$F" = 0 ] || { cat "$WORK/load-rm.txt"; fail "$F connections failed while branch-2 was being removed"; }
ok "40 connections through all PoPs while branch-2 is removed: none failed"
wait_for 15 "branch-2 gone from pop-1's sites" bash -c "! '$MESHCTL' -d '${N[1]}' --json sites | grep -q '\"branch-2\"'"
wait_for 15 "a PoP refused removed branch-2's tunnel" bash -c "cat '${N[1]}.log' '${N[2]}.log' '${N[3]}.log' | grep -q 'site branch-2 was removed from the mesh'"
load 15 0.02 -1 0 >"$WORK/load.txt"
read -r _ F _ _ <"$WORK/load.txt"
[ "$F" = 0 ] || { cat "$WORK/load.txt"; fail "connections failed after replica B was removed"; }
ok "node rm branch-2: its tunnels are refused (removed key) and replica A alone serves every PoP"

echo "# failover gaps: SIGKILL A ${GAP_A} ms ($F_A failed, $RET_A retried), SIGKILL B ${GAP_B} ms ($F_B failed, $RET_B retried)"
done_testing
