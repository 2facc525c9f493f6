#!/usr/bin/env bash
# The access log (common/accesslog.h) on three real popd, a popsite, an HTTP application and a
# TCP echo server:
#   1. HTTP requests allowed (open resource, password sign-in, session, API key) and refused
#      (no session, wrong password, a wrong API key, a user not allowed) each give one line
#      that json.loads takes, with the user, the decision (and why, refused) and the route
#      (ingress, relays, egress PoP, site replica) as expected; no secret reaches the log (the
#      password, the cookie, the API key, query strings).
#   2. A TCP connection's line has bytes in and out equal to what the client sent and got.
#   3. Bytes of every value in the request line and Host still give lines that parse.
#   4. logrotate: the file renamed, SIGHUP, and the next line goes to a new file.
#   5. sample:4 logs about one connection in four (a loose bound over 200); off logs none
#      (set with meshctl resource set); a PoP run with --access-log off writes nothing.
source "$(dirname "$0")/lib.sh"
: "${POPSITE:?POPSITE must point to the popsite binary}"
HERE=$(cd "$(dirname "$0")" && pwd)

H=("" "$(free_port)" "$(free_port)" "$(free_port)")
LOG=("" "$WORK/n1-access.log" "$WORK/n2-access.log" "$WORK/n3-access.log")
# each PoP binds the TCP resources' ports on its own address (127.0.0.I)
init_node "$WORK/n1" pop-1 --http-listen "127.0.0.1:${H[1]}" --ingress-address 127.0.0.1
echo "access-log = ${LOG[1]}" >>"$WORK/n1/popd.conf" # popd.conf's setting
start_popd "$WORK/n1"
N1_PID=$LAST_PID
TOKEN=$(mctl "$WORK/n1" token create --uses 2 --ttl 10m 2>/dev/null)
for i in 2 3; do
    "$POPD" join --data "$WORK/n$i" --name "pop-$i" --mesh-listen "127.0.0.1:$(free_port)" \
        --tunnel-listen "127.0.0.1:$(free_port)" --http-listen "127.0.0.1:${H[$i]}" \
        --ingress-address "127.0.0.$i" "$TOKEN" >/dev/null
done
start_popd "$WORK/n2" --access-log "${LOG[2]}" # the command line's
echo "access-log = ${LOG[3]}" >>"$WORK/n3/popd.conf"
start_popd "$WORK/n3" --access-log off # overrides popd.conf: no log at all
expect_in "$WORK/n1.log" "access log: ${LOG[1]}"
[ -f "${LOG[3]}" ] && fail "pop-3 runs with --access-log off but created ${LOG[3]}"
[ "$(stat -c %a "${LOG[1]}")" = 640 ] || fail "the access log's mode is $(stat -c %a "${LOG[1]}"), not 640"
ok "access-log from popd.conf and from --access-log; --access-log off wins over popd.conf; the file is mode 0640"

BPORT=$(free_port)
EPORT=$(free_port)
"$PY" "$HERE/http_backend.py" "$BPORT" >"$WORK/backend.log" 2>&1 &
PIDS+=("$!")
"$PY" "$HERE/echo_server.py" "$EPORT" >"$WORK/echo.log" 2>&1 &
PIDS+=("$!")
SITE_TOKEN=$(mctl "$WORK/n1" site add branch | grep -o 'pmt1\.[A-Za-z0-9_-]*' | head -1)
"$POPSITE" run --data "$WORK/site" --token "$SITE_TOKEN" >>"$WORK/site.log" 2>&1 &
PIDS+=("$!")
TP=$(free_port)
SP=$(free_port)
QP=$(free_port)
mctl "$WORK/n1" resource add open --site branch --target "127.0.0.1:$BPORT" --host open.test >/dev/null
mctl "$WORK/n1" resource add app --site branch --target "127.0.0.1:$BPORT" --host app.test \
    --auth login --allow-group staff >/dev/null
mctl "$WORK/n1" resource add echo --site branch --target "127.0.0.1:$EPORT" --tcp-port "$TP" >/dev/null
mctl "$WORK/n1" resource add sampled --site branch --target "127.0.0.1:$EPORT" --tcp-port "$SP" \
    --access-log sample:4 >/dev/null
mctl "$WORK/n1" resource add quiet --site branch --target "127.0.0.1:$EPORT" --tcp-port "$QP" >/dev/null
OUT=$(mctl "$WORK/n1" resource set quiet --access-log off)
# (the line goes on with the resource's other settings, which other options set)
case $OUT in "resource quiet: access log off"*) ;; *) fail "resource set: $OUT" ;; esac
expect_rc 2 mctl "$WORK/n1" resource set quiet --access-log sometimes
expect_rc 2 mctl "$WORK/n1" resource set quiet
mctl "$WORK/n1" resource set quiet --access-log sample:0 2>"$WORK/err" && fail "sample:0 accepted"
expect_in "$WORK/err" "access_log must be on, off or sample:N"
echo "correct-horse-battery" | mctl "$WORK/n1" user add alice --group staff >/dev/null
echo "another-long-secret" | mctl "$WORK/n1" user add bob >/dev/null
KEY=$(mctl "$WORK/n1" apikey create --user alice | grep -o 'pmk1\.[A-Za-z0-9_.-]*' | head -1)
[ -n "$KEY" ] || fail "apikey create printed no key"
ok "resource add --access-log sample:4, resource set --access-log off; bad values refused"

code() { # code PORT HOST PATH [curl args]
    local port=$1 host=$2 path=$3
    shift 3
    curl -s -m 5 -o /dev/null -w '%{http_code}' -H "Host: $host" "$@" "http://127.0.0.1:$port$path"
}
# popd holds lines up to 200 ms (ACCESSLOG_BATCH_MS) before it writes them: a count taken as a
# baseline waits that out, so lines of earlier requests do not land after it.
settle() { sleep 0.4; }
ready() { for i in 1 2 3; do [ "$(code "${H[$i]}" open.test /)" = 200 ] || return 1; done; }
wait_for 20 "the open app through every PoP" ready
# the quiet resource's sampling must have reached pop-2 before its connections below
wait_for 10 "pop-2 sees quiet's access_log off" \
    sh -c "'$MESHCTL' -d '$WORK/n2' --json resource list | grep -q '\"access_log\": *\"off\"'"

# ---- 1. HTTP requests at pop-1, allowed and refused ----
: >"${LOG[1]}.mark" # lines before this point are the readiness probes
settle
BEFORE=$(wc -l <"${LOG[1]}")
[ "$(code "${H[1]}" open.test "/hello?token=QSECRET1")" = 200 ] || fail "open GET"
[ "$(code "${H[1]}" app.test "/private?x=QSECRET2")" = 302 ] || fail "no session: not 302"
[ "$(code "${H[1]}" app.test /.popmesh/login --data "username=alice&password=WRONGPW1&rd=/")" = 401 ] ||
    fail "wrong password: not 401"
[ "$(curl -s -m 5 -c "$WORK/jar" -o /dev/null -w '%{http_code}' -H "Host: app.test" \
    --data "username=alice&password=correct-horse-battery&rd=/after" \
    "http://127.0.0.1:${H[1]}/.popmesh/login")" = 302 ] || fail "sign-in: not 302"
COOKIE=$(awk '$6 == "popmesh_session" {print $7}' "$WORK/jar")
[ -n "$COOKIE" ] || fail "no session cookie"
[ "$(code "${H[1]}" app.test /me -b "$WORK/jar")" = 200 ] || fail "session GET"
[ "$(code "${H[1]}" app.test /api -H "Authorization: Bearer $KEY")" = 200 ] || fail "API key GET"
[ "$(code "${H[1]}" app.test /api -H "Authorization: Bearer ${KEY%?}x")" = 401 ] || fail "wrong key: not 401"
[ "$(curl -s -m 5 -c "$WORK/jar2" -o /dev/null -w '%{http_code}' -H "Host: app.test" \
    --data "username=bob&password=another-long-secret&rd=/" \
    "http://127.0.0.1:${H[1]}/.popmesh/login")" = 302 ] || fail "bob's sign-in"
[ "$(code "${H[1]}" app.test /me -b "$WORK/jar2")" = 403 ] || fail "bob (not staff) was not refused"

# check_lines FILE SKIP PYTHON-CHECKS: every line of FILE parses; the lines after the first
# SKIP are checked by the Python snippet (L: the list of dicts).
check_lines() {
    "$PY" - "$1" "$2" "$3" <<'PY'
import json, sys
path, skip, code = sys.argv[1], int(sys.argv[2]), sys.argv[3]
raw = open(path, "rb").read()
assert raw.endswith(b"\n") or not raw, "the file does not end with a newline"
lines = raw.split(b"\n")[:-1]
L = []
for i, l in enumerate(lines):
    try:
        L.append(json.loads(l))   # bytes: strict UTF-8 then JSON
    except Exception as e:
        sys.exit("line %d does not parse (%s): %r" % (i + 1, e, l))
L = L[skip:]
def one(**kw):
    m = [d for d in L if all(d.get(k) == v for k, v in kw.items())]
    assert len(m) == 1, "%d lines with %s in %s" % (len(m), kw, json.dumps(L, indent=1))
    return m[0]
exec(code)
PY
}
wait_for 5 "the lines of 9 requests" sh -c "[ \$(wc -l <'${LOG[1]}') -ge $((BEFORE + 9)) ]"
check_lines "${LOG[1]}" "$BEFORE" '
assert len(L) == 9, "%d lines for 9 requests" % len(L)
for d in L:
    assert d["kind"] == "http" and d["pop"] == "pop-1" and d["client"].startswith("127.0.0.1:"), d
    assert d["route"]["ingress"] == "pop-1", d
    assert d["time"].endswith("Z") and d["duration_ms"] >= 0 and d["bytes_in"] > 0 and d["bytes_out"] > 0, d
d = one(path="/hello"); assert d["status"] == 200 and d["decision"] == "open" and d["allowed"] and d["resource"] == "open" and "user" not in d, d
r = d["route"]; assert r["egress"] in ("pop-1", "pop-2", "pop-3") and r["site"].startswith("branch") and isinstance(r["relays"], list), d
d = one(path="/private"); assert d["status"] == 302 and d["decision"] == "denied" and not d["allowed"] and d["reason"] == "no session" and d["resource"] == "app", d
assert "egress" not in d["route"], d  # answered at the ingress
d = one(path="/.popmesh/login", status=401); assert d["user"] == "alice" and d["decision"] == "denied" and d["reason"] == "wrong user name or password" and d["method"] == "POST", d
d = one(path="/.popmesh/login", status=302, user="alice"); assert d["decision"] == "password", d
d = one(path="/me", user="alice"); assert d["status"] == 200 and d["decision"] == "session" and d["route"]["site"].startswith("branch"), d
d = one(path="/api", status=200); assert d["user"] == "alice" and d["decision"] == "api_key", d
d = one(path="/api", status=401); assert d["decision"] == "denied" and "user" not in d, d
d = one(path="/me", user="bob"); assert d["status"] == 403 and d["reason"] == "the user may not use this resource", d
'
for secret in QSECRET1 QSECRET2 WRONGPW1 correct-horse-battery another-long-secret "$KEY" "${KEY%?}x" "$COOKIE" \
    "popmesh_session" "Bearer" "token="; do
    grep -qF -- "$secret" "${LOG[1]}" && fail "the access log holds a secret or a query string: $secret"
done
ok "9 requests at pop-1, 9 lines that parse: open, no session (302), wrong password (401), sign-in, session, API key, a wrong key (401), a user not allowed (403), each with its user, decision, reason and route; no password, cookie, key or query string in the log"

# ---- the route through the mesh: each PoP's line names the PoP that holds the site's tunnel
ATTACHED=$(mctl "$WORK/n1" --json sites | "$PY" -c '
import json, sys
j = json.load(sys.stdin)
rows = j if isinstance(j, list) else j.get("sites", [])
pops = set()
def walk(o):
    if isinstance(o, dict):
        for k, v in o.items():
            if k in ("primary", "standby", "pops", "attached") :
                for x in (v if isinstance(v, list) else [v]):
                    if isinstance(x, str): pops.add(x)
                    elif isinstance(x, dict) and "name" in x: pops.add(x["name"])
            walk(v)
    elif isinstance(o, list):
        for x in o: walk(x)
walk(rows)
print(" ".join(sorted(pops)))')
settle
B2=$(wc -l <"${LOG[2]}")
for i in 1 2 3; do
    [ "$(code "${H[$i]}" open.test /route$i)" = 200 ] || fail "GET /route$i at pop-$i"
done
wait_for 5 "pop-2's line" sh -c "grep -q /route2 '${LOG[2]}'"
check_lines "${LOG[2]}" "$B2" '
d = one(path="/route2"); r = d["route"]
assert r["ingress"] == "pop-2" and r["site"].startswith("branch"), d
attached = "'"$ATTACHED"'".split()
assert not attached or r["egress"] in attached, ("egress %s not among the PoPs with the site tunnel %s" % (r["egress"], attached), d)
assert all(x in ("pop-1", "pop-2", "pop-3") for x in r["relays"]), d
'
grep -q /route3 "${LOG[1]}" "${LOG[2]}" && fail "pop-3's request was logged by another PoP"
ok "pop-2's line names its route: ingress pop-2, egress a PoP holding the site's tunnel ($ATTACHED), site replica; pop-3 (log off) writes nothing"

# ---- 2. a TCP connection: bytes both ways ----
settle
B2=$(wc -l <"${LOG[2]}")
SENT=$("$PY" - "$TP" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.2", int(sys.argv[1])), timeout=5)
data = bytes(range(256)) * 391 + b"end"  # 100099 bytes
s.sendall(data)
got = b""
while len(got) < len(data):
    b = s.recv(65536)
    if not b: break
    got += b
s.shutdown(socket.SHUT_WR)
while s.recv(65536): pass
s.close()
assert got == data, (len(got), len(data))
print(len(data))
PY
)
wait_for 5 "the TCP connection's line" sh -c "grep -q '\"kind\":\"tcp\"' '${LOG[2]}'"
check_lines "${LOG[2]}" "$B2" '
d = one(kind="tcp", resource="echo")
assert d["bytes_in"] == '"$SENT"' and d["bytes_out"] == '"$SENT"', d
assert d["pop"] == "pop-2" and d["decision"] == "open" and "reason" not in d and "status" not in d, d
assert d["route"]["ingress"] == "pop-2" and d["route"]["site"].startswith("branch"), d
'
ok "a TCP connection of $SENT bytes each way: its line says bytes_in = bytes_out = $SENT, with its route"

# ---- 3. every byte value in the request line and Host ----
"$PY" - "${H[1]}" <<'PY'
import socket, sys
port = int(sys.argv[1])
for b in range(256):
    for target, host in ((b"/x" + bytes([b]) + b"y", b"open.test"), (b"/h", b"a" + bytes([b]) + b".test")):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n")
        while s.recv(65536): pass
        s.close()
PY
settle
check_lines "${LOG[1]}" 0 'assert len(L) > 500, len(L)'
ok "512 requests with every byte value in the path or the Host: every line of the log parses"

# ---- 4. logrotate: rename, SIGHUP, a new file ----
mv "${LOG[1]}" "${LOG[1]}.1"
settle
OLD=$(wc -l <"${LOG[1]}.1")
kill -HUP "$N1_PID"
wait_for 5 "pop-1 reopens its access log" grep -q "access log ${LOG[1]} reopened" "$WORK/n1.log"
[ "$(code "${H[1]}" open.test /after-rotate)" = 200 ] || fail "GET after the rotation"
wait_for 5 "a line in the new file" grep -q /after-rotate "${LOG[1]}"
[ "$(wc -l <"${LOG[1]}.1")" = "$OLD" ] || fail "the rotated file still grows"
check_lines "${LOG[1]}" 0 'assert len(L) == 1 and L[0]["path"] == "/after-rotate", L'
kill -0 "$N1_PID" || fail "SIGHUP stopped popd"
ok "after mv and SIGHUP, popd writes to a new file (mode $(stat -c %a "${LOG[1]}")); the old one stops growing"

# ---- 5. sampling and off ----
conns() { # conns PORT N: N short connections, each one byte each way
    "$PY" - "$1" "$2" <<'PY'
import socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
for _ in range(n):
    s = socket.create_connection(("127.0.0.2", port), timeout=5)
    s.sendall(b"x")
    assert s.recv(1) == b"x"
    s.close()
PY
}
conns "$SP" 200
conns "$QP" 40
conns "$TP" 1 # a marker: logged after the others (lines are written as connections close)
sleep 0.5
wait_for 5 "the marker connection's line" sh -c "[ \$(grep -c '\"resource\":\"echo\"' '${LOG[2]}') -ge 2 ]"
NS=$(grep -c '"resource":"sampled"' "${LOG[2]}" || true)
NQ=$(grep -c '"resource":"quiet"' "${LOG[2]}" || true)
# one in 4 of 200: mean 50, sd ~6.1; 20..90 fails by chance with probability < 1e-6
[ "$NS" -ge 20 ] && [ "$NS" -le 90 ] || fail "sample:4 logged $NS of 200 connections"
[ "$NQ" = 0 ] || fail "access_log off logged $NQ connections"
check_lines "${LOG[2]}" 0 'pass'
ok "sample:4 logged $NS of 200 connections (expected about 50); off logged none of 40"

done_testing
