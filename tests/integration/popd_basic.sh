#!/usr/bin/env bash
# popd and meshctl basics with real processes: init, run, config round trips, JSON output,
# exit codes, the single-instance lock, clean shutdown, restart with data intact, file modes,
# and clear errors for bad data directories.
source "$(dirname "$0")/lib.sh"

D="$WORK/n1"

# ---- init ----
expect_rc 0 "$POPD" init --data "$D" --name pop-a --region eu-west --mesh-listen "127.0.0.1:$(free_port)" --tunnel-listen "127.0.0.1:$(free_port)"
expect_in "$WORK/out" "initialised node pop-a"
[ "$(stat -c %a "$D/node.key")" = 600 ] || fail "node.key is not mode 0600"
[ "$(stat -c %a "$D")" = 700 ] || fail "data dir is not mode 0700"
ok "init creates keys (0600), settings and store"

expect_rc 1 "$POPD" init --data "$D" --name pop-a
expect_in "$WORK/err" "already a popd data directory"
mkdir -p "$WORK/full" && touch "$WORK/full/something"
expect_rc 1 "$POPD" init --data "$WORK/full" --name pop-b
expect_in "$WORK/err" "not empty"
expect_rc 2 "$POPD" init --data "$WORK/x" --name "Bad_Name"
expect_in "$WORK/err" "must be 1-63"
expect_rc 2 "$POPD" init --name pop-c
expect_in "$WORK/err" "--data DIR is required"
expect_rc 1 "$POPD" init --data "$WORK/no/such/parent" --name pop-c
expect_in "$WORK/err" "cannot create"
ok "init refuses an existing node, a non-empty dir, a bad name, a missing parent"

# ---- tunnel and ingress settings: stored by init, overridable on run, checked ----
grep -q "^tunnel-listen = 127.0.0.1:" "$D/popd.conf" || fail "popd.conf lacks tunnel-listen"
expect_rc 2 "$POPD" init --data "$WORK/t1" --name pop-t --ingress-address not-an-ip
expect_in "$WORK/err" "--ingress-address 'not-an-ip' must be an IP address"
expect_rc 2 "$POPD" init --data "$WORK/t1" --name pop-t --tunnel-listen nowhere
expect_in "$WORK/err" "--tunnel-listen 'nowhere' must be HOST:PORT"
expect_rc 2 "$POPD" run --data "$D" --ingress-address 300.1.2.3
expect_in "$WORK/err" "must be an IP address"
cp -r "$D" "$WORK/badtun" && echo "tunnel-listen = 127.0.0.1" >>"$WORK/badtun/popd.conf"
expect_rc 1 "$POPD" run --data "$WORK/badtun"
expect_in "$WORK/err" "tunnel-listen must be HOST:PORT"
ok "tunnel-listen is stored by init; bad tunnel and ingress addresses are refused with the reason"

# ---- bad data directories for run ----
expect_rc 1 "$POPD" run --data "$WORK/missing"
expect_in "$WORK/err" "No such file or directory"
mkdir -p "$WORK/foreign"
expect_rc 1 "$POPD" run --data "$WORK/foreign"
expect_in "$WORK/err" "is not a popd data directory"
touch "$WORK/afile"
expect_rc 1 "$POPD" run --data "$WORK/afile"
expect_in "$WORK/err" "is not a directory"
cp -r "$D" "$WORK/badconf" && echo "colour = blue" >>"$WORK/badconf/popd.conf"
expect_rc 1 "$POPD" run --data "$WORK/badconf"
expect_in "$WORK/err" "unknown setting 'colour'"
cp -r "$D" "$WORK/openkey" && chmod 644 "$WORK/openkey/node.key"
expect_rc 1 "$POPD" run --data "$WORK/openkey"
expect_in "$WORK/err" "chmod 600"
if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null; then
    # As root every directory is writable, so drop to nobody to see the unwritable case.
    cp -r "$D" "$WORK/rootonly" && chmod 755 "$WORK" && chmod 755 "$WORK/rootonly"
    expect_rc 1 setpriv --reuid=65534 --regid=65534 --clear-groups "$POPD" run --data "$WORK/rootonly"
    expect_in "$WORK/err" "is not writable"
    chmod 700 "$WORK"
fi
ok "run refuses missing, foreign, non-directory, unwritable, misconfigured and loosely-keyed dirs"

# ---- run ----
expect_rc 3 "$MESHCTL" -d "$D" status
expect_in "$WORK/err" "cannot reach popd"
start_popd "$D"
PID=$LAST_PID
[ "$(stat -c %a "$D/control.sock")" = 600 ] || fail "control.sock is not mode 0600"
ok "popd starts; control socket is mode 0600; meshctl exits 3 when popd is down"

expect_rc 1 "$POPD" run --data "$D"
expect_in "$WORK/err" "another popd (pid $PID) is already running"
ok "a second popd on the same data directory is refused"

expect_rc 0 "$MESHCTL" -d "$D" status
expect_in "$WORK/out" "pop-a"
expect_in "$WORK/out" "eu-west"
expect_rc 0 "$MESHCTL" -d "$D" --json status
"$PY" -c 'import json,sys; j=json.load(open(sys.argv[1])); assert j["name"]=="pop-a" and len(j["id"])==16 and j["store"]["entries"]>=1 and len(j["mesh_id"])==32 and j["members"]["alive"]==1, j' "$WORK/out"
# What a new PoP writes about itself: its registry record, and (the key hierarchy, the identity
# JWT key) trust/root, its certificate, its jwk/ record. BASE counts them.
BASE=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["store"]["entries"])' "$WORK/out")
OWN='("node/", "trust/", "nodecert/", "jwk/")'
ok "status (table and JSON: mesh id, one alive member, its own records)"

# ---- config ----
expect_rc 0 "$MESHCTL" -d "$D" config set cfg/greeting "hello world"
expect_rc 0 "$MESHCTL" -d "$D" config get cfg/greeting
[ "$(cat "$WORK/out")" = "hello world" ] || fail "config get printed '$(cat "$WORK/out")'"
expect_rc 0 "$MESHCTL" -d "$D" config get --json cfg/greeting
"$PY" - "$WORK/out" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
assert set(j) == {"key", "value", "version", "origin", "signed"}, j
assert j["signed"] is False, j  # cfg/ is no policy record: written unsigned
assert j["key"] == "cfg/greeting" and j["value"] == "hello world", j
assert isinstance(j["version"], int) and j["version"] > (1 << 16), j
assert len(j["origin"]) == 16, j
PY
ok "config set then get, and get --json has key, value, version, origin, signed"

expect_rc 0 "$MESHCTL" -d "$D" config set cfg/greeting "bonjour"
expect_rc 0 "$MESHCTL" -d "$D" config get cfg/greeting
[ "$(cat "$WORK/out")" = "bonjour" ] || fail "overwrite not visible"
printf 'from stdin\n' | "$MESHCTL" -d "$D" config set cfg/piped - >/dev/null
expect_rc 0 "$MESHCTL" -d "$D" config get cfg/piped
[ "$(cat "$WORK/out")" = "from stdin" ] || fail "stdin value wrong"
for i in 1 2 3; do "$MESHCTL" -d "$D" config set "app/k$i" "v$i" >/dev/null; done
expect_rc 0 "$MESHCTL" -d "$D" config list app/
[ "$(grep -c '^app/k' "$WORK/out")" = 3 ] || fail "config list app/ did not show 3 keys"
grep -q cfg/ "$WORK/out" && fail "config list app/ showed other prefixes"
expect_rc 0 "$MESHCTL" -d "$D" --json config list
"$PY" -c 'import json,sys; j=json.load(open(sys.argv[1])); assert [e["key"] for e in j if not e["key"].startswith('"$OWN"')]==["app/k1","app/k2","app/k3","cfg/greeting","cfg/piped"], j' "$WORK/out"
ok "overwrite, value from stdin, list by prefix, list --json in key order"

expect_rc 0 "$MESHCTL" -d "$D" config rm app/k2
expect_rc 1 "$MESHCTL" -d "$D" config get app/k2
expect_in "$WORK/err" "no key 'app/k2'"
expect_rc 1 "$MESHCTL" -d "$D" config del app/k2
expect_rc 0 "$MESHCTL" -d "$D" --json status
"$PY" -c 'import json,sys; j=json.load(open(sys.argv[1])); assert j["store"]["entries"]==int(sys.argv[2])+4 and j["store"]["tombstones"]==1, j' "$WORK/out" "$BASE"
ok "delete leaves a tombstone; get and del of a deleted key exit 1"

# ---- many keys: paging through config list ----
"$PY" - "$D/control.sock" <<'PY'
import socket, struct, sys, msgpack
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
def call(cmd, args):
    body = msgpack.packb([1, cmd, args])
    s.sendall(struct.pack(">I", len(body)) + body)
    hdr = b""
    while len(hdr) < 4: hdr += s.recv(4 - len(hdr))
    n = struct.unpack(">I", hdr)[0]; data = b""
    while len(data) < n: data += s.recv(n - len(data))
    return msgpack.unpackb(data, raw=False)
for i in range(2500):
    v, st, body = call("config.set", {"key": "bulk/%05d" % i, "value": i})
    assert st == 0, body
PY
expect_rc 0 "$MESHCTL" -d "$D" --json config list bulk/
"$PY" -c 'import json,sys; j=json.load(open(sys.argv[1])); assert len(j)==2500 and j[-1]["value"]==2499, len(j)' "$WORK/out"
ok "config list pages through 2500 keys"

# ---- usage errors ----
expect_rc 2 "$MESHCTL" -d "$D" config
expect_in "$WORK/err" "needs a subcommand"
expect_rc 2 "$MESHCTL" -d "$D" config get
expect_rc 2 "$MESHCTL" -d "$D" frobnicate
expect_rc 2 "$MESHCTL" -d "$D" config set "bad key" v
expect_in "$WORK/err" "printable ASCII"
expect_rc 0 "$MESHCTL" config get --help
expect_in "$WORK/out" "usage: meshctl config get KEY"
expect_rc 0 "$MESHCTL" --help
expect_in "$WORK/out" "exit codes"
expect_rc 0 "$MESHCTL" help config rm
expect_in "$WORK/out" "usage: meshctl config rm KEY"
# The old spelling still works, unlisted.
expect_rc 0 "$MESHCTL" help config del
expect_in "$WORK/out" "usage: meshctl config rm KEY"
"$MESHCTL" --help >"$WORK/out" 2>&1 || true
if grep -q "config del" "$WORK/out"; then fail "help lists the old spelling 'config del'"; fi
expect_rc 2 "$MESHCTL" help no-such-thing
ok "usage errors exit 2 with a reason; --help everywhere"

# ---- clean stop, restart, data intact ----
stop_popd "$PID"
[ "$STOP_RC" -eq 0 ] || fail "popd exited $STOP_RC on SIGTERM"
[ -e "$D/control.sock" ] && fail "control.sock left behind after a clean stop"
expect_in "$D.log" "stopped cleanly"
start_popd "$D"
PID=$LAST_PID
expect_rc 0 "$MESHCTL" -d "$D" config get cfg/greeting
[ "$(cat "$WORK/out")" = "bonjour" ] || fail "value lost across restart"
expect_rc 1 "$MESHCTL" -d "$D" config get app/k2
kill -INT "$PID"
for _ in $(seq 1 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.05; done
kill -0 "$PID" 2>/dev/null && fail "popd ignored SIGINT"
ok "SIGTERM and SIGINT stop cleanly; data survives a restart"

# ---- run overrides popd.conf's tunnel settings for this run only ----
TP=$(free_port)
start_popd "$D" --tunnel-listen "127.0.0.1:$TP" --ingress-address 127.0.0.9
PID=$LAST_PID
TA=$("$MESHCTL" -d "$D" --json status | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["dataplane"]["tunnel_addr"])')
[ "$TA" = "127.0.0.1:$TP" ] || fail "run --tunnel-listen 127.0.0.1:$TP gave tunnel_addr $TA"
"$PY" -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2).close()' "$TP" ||
    fail "nothing listens on the overridden tunnel port $TP"
grep -q "^tunnel-listen = 127.0.0.1:$TP" "$D/popd.conf" && fail "run's override was written to popd.conf"
stop_popd "$PID"
ok "run --tunnel-listen overrides popd.conf for that run only (listening on $TP)"

done_testing
