#!/usr/bin/env bash
# Sites and TCP resources on three real popd nodes: site add prints a one-use token bound to
# the site; site and resource records replicate to every node; every bad request (existing
# site, bad names, unknown site, bad target, used port, bad health) fails with a message that
# says what is wrong and a nonzero exit code, and changes nothing; a site token cannot make a
# PoP; JOIN with role site (sent by a small CURVE client in Python, standing in for popsite)
# is admitted only for the token's own, live site; site rm evicts the enrolled connector
# everywhere and revokes an unused token; the name can then be added again.
source "$(dirname "$0")/lib.sh"

start_mesh 3
N=("$WORK/n1" "$WORK/n2" "$WORK/n3")
wait_for 20 "3 alive members on every node" all_see "${N[@]}" "pop-1=alive pop-2=alive pop-3=alive"
ok "3 nodes up (${WAITED}s)"

# ---- site add ----
expect_rc 0 mctl "$WORK/n1" site add branch-1
TOKEN=$(cat "$WORK/out")
[ "$(wc -l <"$WORK/out")" = 1 ] || fail "site add printed more than the token on stdout"
case "$TOKEN" in pmt1.*) ;; *) fail "site add did not print a token: $TOKEN" ;; esac
expect_in "$WORK/err" "site branch-1 added"
expect_in "$WORK/err" "popsite run --data DIR --token TOKEN"
TOKEN_ID=$(sed -n 's/.*token \([0-9a-f]\{16\}\),.*/\1/p' "$WORK/err")
[ -n "$TOKEN_ID" ] || fail "site add did not name the token id"
ok "site add prints the token alone on stdout and how to use it on stderr"

# site_listed DIR NAME ENROLLED [CREATOR]: DIR's site list holds NAME enrolled as ENROLLED
# ("none" or a node id), added by CREATOR (default: any)
site_listed() {
    mctl "$1" --json site list | "$PY" -c '
import json, sys
name, want, creator = sys.argv[1], sys.argv[2], sys.argv[3]
sites = {s["name"]: s for s in json.load(sys.stdin)["sites"]}
s = sites.get(name)
ok = s is not None and (s["enrolled"] is None if want == "none" else s["enrolled"] == want)
ok = ok and s["created_ms"] > 0 and creator in ("", s["created_by"]) and len(s["token_id"]) == 16
sys.exit(0 if ok else 1)' "$2" "$3" "${4:-}"
}
for d in "${N[@]}"; do wait_for 10 "site branch-1 on $d" site_listed "$d" branch-1 none pop-1; done
mctl "$WORK/n3" site list >"$WORK/sl.txt"
expect_in "$WORK/sl.txt" "branch-1"
expect_in "$WORK/sl.txt" "(not yet)"
token_field() { # token_field DIR ID FIELD: the token record's field, as config get sees it
    mctl "$1" --json config get "token/$2" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["value"].get(sys.argv[1]))' "$3"
}
wait_for 10 "the site token on pop-3" bash -c "'$MESHCTL' -d '$WORK/n3' token list | grep -q $TOKEN_ID"
[ "$(token_field "$WORK/n3" "$TOKEN_ID" site)" = branch-1 ] || fail "the token record does not name its site"
[ "$(token_field "$WORK/n3" "$TOKEN_ID" role)" = site ] || fail "the site token's role is not site"
[ "$(token_field "$WORK/n3" "$TOKEN_ID" uses_max)" = 1 ] || fail "the site token is not one-use"
ok "site/branch-1 and its one-use token (bound to branch-1) replicate to all 3 nodes"

# ---- resource add, replicated ----
expect_rc 0 mctl "$WORK/n2" resource add ssh --site branch-1 --target 10.0.0.5:22 \
    --target "[fd00::1]:22" --tcp-port 2222 --health http:/healthz --sticky
expect_in "$WORK/out" "resource ssh: tcp port 2222"
resources_are() { # resources_are DIR EXPECTED-JSON: DIR's resource list, created_ms aside
    mctl "$1" --json resource list | "$PY" -c '
import json, sys
got = json.load(sys.stdin)["resources"]
for r in got:
    assert r.pop("created_ms") > 0
sys.exit(0 if got == json.loads(sys.argv[1]) else 1)' "$2"
}
SSH='{"name": "ssh", "site": "branch-1", "targets": ["10.0.0.5:22", "[fd00::1]:22"], "tcp_port": 2222, "health": "http:/healthz", "sticky": true}'
for d in "${N[@]}"; do wait_for 10 "resource ssh on $d" resources_are "$d" "[$SSH]"; done
mctl "$WORK/n1" resource list >"$WORK/rl.txt"
expect_in "$WORK/rl.txt" "ssh"
expect_in "$WORK/rl.txt" "10.0.0.5:22, [fd00::1]:22"
expect_in "$WORK/rl.txt" "http:/healthz"
ok "resource add on pop-2 is listed, field for field, on all 3 nodes"

# ---- refusals: a clear message, a nonzero exit, nothing changed ----
refused() { # refused RC TEXT NODE ARGS...: meshctl exits RC and says TEXT on stderr
    local rc=$1 text=$2 dir=$3
    shift 3
    expect_rc "$rc" mctl "$dir" "$@"
    expect_in "$WORK/err" "$text"
    [ ! -s "$WORK/out" ] || fail "'$*' printed on stdout although it failed"
}
refused 1 "site 'branch-1' already exists" "$WORK/n2" site add branch-1
refused 2 "site name 'Branch_1' is invalid" "$WORK/n1" site add Branch_1
refused 2 "site name '-edge' is invalid" "$WORK/n1" site add -- -edge
refused 2 "is invalid" "$WORK/n1" site add "$(printf 'a%.0s' $(seq 1 64))"
refused 1 "the name 'pop-2' is taken by pop node" "$WORK/n1" site add pop-2
refused 2 "site add takes one NAME" "$WORK/n1" site add
ok "site add: an existing site, bad names and a PoP's name are refused, each saying why"

refused 1 "there is no site 'nowhere'" "$WORK/n1" resource add web --site nowhere --target 10.0.0.7:80 --tcp-port 8080
refused 2 "target '10.0.0.7' is not HOST:PORT" "$WORK/n1" resource add web --site branch-1 --target 10.0.0.7 --tcp-port 8080
refused 2 "target '10.0.0.7:0' is not HOST:PORT" "$WORK/n1" resource add web --site branch-1 --target 10.0.0.7:0 --tcp-port 8080
refused 2 "IPv6 in brackets" "$WORK/n1" resource add web --site branch-1 --target fd00::7:80 --tcp-port 8080
refused 2 "target '10.0.0.7:80' is listed twice" "$WORK/n1" resource add web --site branch-1 --target 10.0.0.7:80 --target 10.0.0.7:80 --tcp-port 8080
TARGETS17=()
for i in $(seq 1 17); do TARGETS17+=(--target "10.0.1.$i:80"); done
refused 2 "1 to 16" "$WORK/n1" resource add web --site branch-1 "${TARGETS17[@]}" --tcp-port 8080
refused 1 "tcp port 2222 is already used by resource 'ssh'" "$WORK/n3" resource add web --site branch-1 --target 10.0.0.7:80 --tcp-port 2222
refused 2 "health must be 'tcp' or 'http:/PATH'" "$WORK/n1" resource add web --site branch-1 --target 10.0.0.7:80 --tcp-port 8080 --health udp
refused 2 "must start with '/'" "$WORK/n1" resource add web --site branch-1 --target 10.0.0.7:80 --tcp-port 8080 --health http:healthz
refused 2 "without spaces" "$WORK/n1" resource add web --site branch-1 --target 10.0.0.7:80 --tcp-port 8080 --health "http:/a b"
refused 2 "resource name 'Web' is invalid" "$WORK/n1" resource add Web --site branch-1 --target 10.0.0.7:80 --tcp-port 8080
refused 2 "--tcp-port '0' is not a port" "$WORK/n1" resource add web --site branch-1 --target 10.0.0.7:80 --tcp-port 0
refused 2 "--site SITE is required" "$WORK/n1" resource add web --target 10.0.0.7:80 --tcp-port 8080
refused 2 "--target HOST:PORT (or SITE/HOST:PORT) is required" "$WORK/n1" resource add web --site branch-1 --tcp-port 8080
refused 1 "resource 'ssh' already exists" "$WORK/n1" resource add ssh --site branch-1 --target 10.0.0.7:80 --tcp-port 8080
refused 1 "no resource 'nothing'" "$WORK/n1" resource rm nothing
for d in "${N[@]}"; do resources_are "$d" "[$SSH]" || fail "a refused resource add changed the list on $d"; done
ok "resource add: unknown site, bad targets, a used port (seen through replication), bad health, bad name: refused, each saying why; nothing changed"

expect_rc 0 mctl "$WORK/n3" resource add web --site branch-1 --target app.internal:8080 --tcp-port 8080
expect_rc 0 mctl "$WORK/n1" resource add ssh --replace --site branch-1 --target 10.0.0.5:22 --tcp-port 2200
SSH2='{"name": "ssh", "site": "branch-1", "targets": ["10.0.0.5:22"], "tcp_port": 2200, "health": "tcp", "sticky": false}'
WEB='{"name": "web", "site": "branch-1", "targets": ["app.internal:8080"], "tcp_port": 8080, "health": "tcp", "sticky": false}'
for d in "${N[@]}"; do wait_for 10 "ssh replaced and web added on $d" resources_are "$d" "[$SSH2, $WEB]"; done
expect_rc 0 mctl "$WORK/n2" resource add other --site branch-1 --target 10.0.0.9:22 --tcp-port 2222
expect_rc 0 mctl "$WORK/n2" resource rm other
for d in "${N[@]}"; do wait_for 10 "resource other gone on $d" resources_are "$d" "[$SSH2, $WEB]"; done
ok "--replace changes a resource (its old port is free again); resource rm removes one everywhere"

# ---- HTTP resources: host, path prefix, auth; (host, path prefix) unique ----
expect_rc 0 mctl "$WORK/n2" resource add app --site branch-1 --target 10.0.0.7:80 \
    --host App.Example.com --path-prefix /app --auth login --allow-user alice --allow-group ops
expect_in "$WORK/out" "resource app: http app.example.com/app (auth login)"
APP='{"name": "app", "site": "branch-1", "targets": ["10.0.0.7:80"], "tcp_port": 0, "health": "tcp", "sticky": false, "host": "app.example.com", "path_prefix": "/app", "auth": "login", "allow_users": ["alice"], "allow_groups": ["ops"]}'
for d in "${N[@]}"; do wait_for 10 "resource app on $d" resources_are "$d" "[$APP, $SSH2, $WEB]"; done
mctl "$WORK/n1" resource list >"$WORK/rl.txt"
expect_in "$WORK/rl.txt" "HOST"
expect_in "$WORK/rl.txt" "app.example.com"
expect_in "$WORK/rl.txt" "/app"
expect_in "$WORK/rl.txt" "login"
refused 1 "host app.example.com with path prefix /app is already served by resource 'app'" \
    "$WORK/n3" resource add app2 --site branch-1 --target 10.0.0.8:80 --host app.example.com --path-prefix /app
refused 2 "need auth login" "$WORK/n1" resource add app2 --site branch-1 --target 10.0.0.8:80 --host app.example.com --allow-user alice
refused 2 "host 'app_1.example.com' is invalid" "$WORK/n1" resource add app2 --site branch-1 --target 10.0.0.8:80 --host app_1.example.com
refused 2 "path_prefix 'app' must start with '/'" "$WORK/n1" resource add app2 --site branch-1 --target 10.0.0.8:80 --host app.example.com --path-prefix app
refused 2 "auth must be 'none' or 'login'" "$WORK/n1" resource add app2 --site branch-1 --target 10.0.0.8:80 --host app.example.com --auth basic
refused 2 "--tcp-port PORT or --host HOSTNAME" "$WORK/n1" resource add app2 --site branch-1 --target 10.0.0.8:80
refused 2 "need --host" "$WORK/n1" resource add app2 --site branch-1 --target 10.0.0.8:80 --tcp-port 8081 --auth login
for d in "${N[@]}"; do resources_are "$d" "[$APP, $SSH2, $WEB]" || fail "a refused HTTP resource add changed the list on $d"; done
# Another path under the same host is a different resource; --replace of the same name keeps its pair.
expect_rc 0 mctl "$WORK/n3" resource add app2 --site branch-1 --target 10.0.0.8:80 --host app.example.com --path-prefix /app/api
expect_rc 0 mctl "$WORK/n1" resource add app --replace --site branch-1 --target 10.0.0.7:80 --host app.example.com --path-prefix /app
expect_rc 0 mctl "$WORK/n1" resource rm app
expect_rc 0 mctl "$WORK/n1" resource rm app2
for d in "${N[@]}"; do wait_for 10 "resources app, app2 gone on $d" resources_are "$d" "[$SSH2, $WEB]"; done
ok "HTTP resource: add (host lowercased, prefix, auth login, allow lists) listed everywhere; duplicate host+path, allow lists without login, bad host/prefix/auth refused, each saying why; --replace of the same name keeps its pair"

# ---- tokens and JOIN ----
expect_rc 1 "$POPD" join --data "$WORK/site-as-pop" --name sneaky --mesh-listen "127.0.0.1:$(free_port)" "$TOKEN"
expect_in "$WORK/err" "this is a site token; a PoP needs a pop token"
[ ! -e "$WORK/site-as-pop" ] || fail "a refused join created its data directory"
ok "a site token given to popd join is refused: it cannot make a PoP"

# sitejoin TOKEN NAME ROLE: sends JOIN as popsite will (a CURVE client with the token's join
# key, to the token's first seed); prints "OK <mesh_sk given: True|False>" or "ERR <code>: <msg>".
sitejoin() {
    "$PY" - "$@" <<'PY'
import base64, os, sys
import msgpack, nacl.bindings, nacl.encoding, nacl.hash, nacl.public, zmq, zmq.utils.z85
tok, name, role = sys.argv[1:4]
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
me = nacl.public.PrivateKey.generate()
s.send(msgpack.packb([1, 48, name, "", "127.0.0.1:9", bytes(me.public_key), os.urandom(32), role],
                     use_bin_type=True))
if not s.poll(5000):
    print("TIMEOUT")
    sys.exit(0)
rep = msgpack.unpackb(s.recv(), raw=False)
if rep[1] == 49:
    print("OK", rep[3] is not None)
else:
    print("ERR %s: %s" % (rep[2], rep[3]))
s.close()
ctx.term()
PY
}
join_says() { # join_says EXPECTED TOKEN NAME ROLE
    local got
    got=$(sitejoin "$2" "$3" "$4")
    case "$got" in *"$1"*) ;; *) fail "JOIN $3 as $4: expected '$1', got '$got'" ;; esac
}
POPTOKEN=$(mctl "$WORK/n1" token create 2>/dev/null)
ANYSITE=$(mctl "$WORK/n1" token create --role site --uses 0 2>/dev/null)
join_says "ERR site: this token enrolls site 'branch-1' only; it cannot enroll site 'branch-2'" "$TOKEN" branch-2 site
join_says "ERR role: this is a site token; it cannot join a pop" "$TOKEN" branch-1 pop
join_says "ERR role: this is a pop token; it cannot join a site" "$POPTOKEN" branch-1 site
join_says "ERR no-site: there is no site 'ghost' in this mesh" "$ANYSITE" ghost site
ok "JOIN: a site token admits only its own site's name, roles must match, an unknown site is refused"

join_says "OK False" "$TOKEN" branch-1 site
SITE_ID=$(mctl "$WORK/n1" --json site list | "$PY" -c 'import json,sys; print([s["enrolled"] for s in json.load(sys.stdin)["sites"] if s["name"] == "branch-1"][0])')
[ "${#SITE_ID}" = 16 ] || fail "branch-1 is not enrolled after its JOIN: $SITE_ID"
for d in "${N[@]}"; do wait_for 10 "branch-1 enrolled on $d" site_listed "$d" branch-1 "$SITE_ID"; done
join_says "ERR name-taken: the name 'branch-1' is already taken by node $SITE_ID" "$ANYSITE" branch-1 site
ok "the site enrolls with its token (no mesh key given) and shows as enrolled on all 3 nodes; a second connector for the same site is refused"

# ---- site rm ----
node_removed() { mctl "$1" --json config get "node/$2" | "$PY" -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["value"]["removed"] else 1)'; }
not_listed() { ! mctl "$1" --json site list | grep -q "\"$2\""; }
expect_rc 0 mctl "$WORK/n2" --json site rm branch-1
"$PY" -c 'import json,sys; j=json.load(open(sys.argv[1])); assert j["nodes_removed"] == [sys.argv[2]] and j["token_revoked"] is False, j' "$WORK/out" "$SITE_ID"
for d in "${N[@]}"; do
    wait_for 10 "branch-1's node removed on $d" node_removed "$d" "$SITE_ID"
    wait_for 10 "branch-1 gone from site list on $d" not_listed "$d" branch-1
done
for d in "${N[@]}"; do resources_are "$d" "[$SSH2, $WEB]" || fail "resource list on $d changed by site rm"; done
refused 1 "no site 'branch-1'" "$WORK/n1" site rm branch-1
refused 1 "no site 'nowhere'" "$WORK/n1" site rm nowhere
refused 1 "site 'branch-1' was removed" "$WORK/n1" resource add db --site branch-1 --target 10.0.0.8:5432 --tcp-port 5432
join_says "ERR no-site: site 'branch-1' was removed from this mesh" "$ANYSITE" branch-1 site
ok "site rm evicts the enrolled node everywhere (its key refused from now on); resource list still works; the removed site takes no JOIN and no new resource"

# The name is free again: removed node records do not hold it.
wait_certified "$WORK/n3"
expect_rc 0 mctl "$WORK/n3" site add branch-1
TOKEN2=$(cat "$WORK/out")
TOKEN2_ID=$(mctl "$WORK/n3" --json site list | "$PY" -c 'import json,sys; print([s["token_id"] for s in json.load(sys.stdin)["sites"] if s["name"] == "branch-1"][0])')
wait_for 10 "the new site record on pop-1" site_listed "$WORK/n1" branch-1 none pop-3
join_says "ERR site: site 'branch-1' was added again with another token" "$TOKEN" branch-1 site
join_says "OK False" "$TOKEN2" branch-1 site
wait_for 10 "branch-1's second token used up, seen on pop-1" bash -c "'$MESHCTL' -d '$WORK/n1' token list | grep $TOKEN2_ID | grep -q used-up"
ok "a removed site can be added again (its removed node does not hold the name) and enrolls a new connector with its new token only"

# An unused site token is revoked by site rm.
expect_rc 0 mctl "$WORK/n1" site add branch-3
expect_rc 0 mctl "$WORK/n1" --json site list
B3_TOKEN=$("$PY" -c 'import json,sys; print([s["token_id"] for s in json.load(open(sys.argv[1]))["sites"] if s["name"] == "branch-3"][0])' "$WORK/out")
expect_rc 0 mctl "$WORK/n1" site rm branch-3
expect_in "$WORK/out" "its unused token revoked"
for d in "${N[@]}"; do
    wait_for 10 "branch-3's token revoked on $d" bash -c "'$MESHCTL' -d '$d' token list | grep $B3_TOKEN | grep -q revoked"
done
ok "site rm of a site that never enrolled revokes its token everywhere"

# ---- sites: popd's live view. A stand-in control socket gives the answer's documented shape,
# so the table and --json are checked whatever the daemon side is doing. ----
FAKE="$WORK/fake.sock"
"$PY" - "$FAKE" <<'PY' &
import os, socket, struct, sys
import msgpack
answer = {"sites": [
    {"name": "branch-1", "state": "online",
     "pops": [{"name": "pop-1", "rtt_ms": 2.4, "role": "primary"},
              {"name": "pop-2", "rtt_ms": 8.5, "role": "standby"},
              {"name": "pop-3", "rtt_ms": 11.0, "role": "standby"}],
     "targets": [{"addr": "10.0.0.5:22", "healthy": True},
                 {"addr": "[fd00::1]:22", "healthy": False}]},
    {"name": "branch-2", "state": "offline", "pops": [], "targets": []}]}
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(sys.argv[1])
srv.listen(4)
srv.settimeout(30)
for _ in range(2):
    c, _a = srv.accept()
    n = struct.unpack(">I", c.recv(4, socket.MSG_WAITALL))[0]
    req = msgpack.unpackb(c.recv(n, socket.MSG_WAITALL), raw=False)
    body = msgpack.packb([1, 0, answer] if req[1] == "sites" else
                         [1, 2, {"error": "unexpected command %s" % req[1]}], use_bin_type=True)
    c.sendall(struct.pack(">I", len(body)) + body)
    c.close()
PY
FAKE_PID=$!
PIDS+=("$FAKE_PID")
wait_for 5 "the stand-in control socket" test -S "$FAKE"
expect_rc 0 "$MESHCTL" -s "$FAKE" sites
expect_in "$WORK/out" "SITE"
grep -E '^branch-1 +online +pop-1 \(2\.4ms\) +pop-2 \(8\.5ms\), pop-3 \(11\.0ms\) +10\.0\.0\.5:22 up, \[fd00::1\]:22 DOWN$' "$WORK/out" >/dev/null ||
    { cat "$WORK/out" >&2; fail "sites table row for branch-1"; }
grep -E '^branch-2 +offline +- +- +-$' "$WORK/out" >/dev/null ||
    { cat "$WORK/out" >&2; fail "sites table row for branch-2"; }
expect_rc 0 "$MESHCTL" -s "$FAKE" --json sites
"$PY" -c 'import json,sys; j=json.load(open(sys.argv[1])); assert j["sites"][0]["pops"][0]["rtt_ms"] == 2.4 and j["sites"][1]["state"] == "offline", j' "$WORK/out"
ok "meshctl sites: the table (primary, standbys with RTTs, target health) and --json of the documented answer"

done_testing
