#!/usr/bin/env bash
# Per-resource health-check settings, end to end on a real popd and popsite and one HTTP
# backend that answers 503 at first:
#  - a resource with --health http:/ --hc-status 200,503 --hc-interval 200 --hc-rise 1 is
#    healthy and serves; a second resource on the same backend with the default statuses is
#    unhealthy, and meshctl sites says why (HTTP 503);
#  - --hc-host is the Host the backend sees (before it, the target);
#  - changing a resource's settings (resource add --replace) or removing it takes effect
#    without restarting popd or popsite;
#  - bad flags are refused with messages that name them.
source "$(dirname "$0")/lib.sh"
: "${POPSITE:?POPSITE must point to the popsite binary}"

init_node "$WORK/n1" pop-1 --ingress-address 127.0.0.67
start_popd "$WORK/n1"
POPD_PID=$LAST_PID
SITE_TOKEN=$(mctl "$WORK/n1" site add branch | grep -o 'pmt1\.[A-Za-z0-9_-]*' | head -1)
"$POPSITE" run --data "$WORK/site" --token "$SITE_TOKEN" >>"$WORK/site.log" 2>&1 &
SITE_PID=$!
PIDS+=("$SITE_PID")

# The backend: every GET answers the status in $WORK/status with a body naming it, and
# appends "PATH HOST" to $WORK/requests.log; anything else is closed.
echo 503 >"$WORK/status"
cat >"$WORK/backend.py" <<'EOF'
import os, socket, sys, threading
port, work = int(sys.argv[1]), sys.argv[2]
def serve(c):
    with c:
        c.settimeout(2)
        data = b""
        try:
            while b"\r\n\r\n" not in data and len(data) < 8192:
                d = c.recv(4096)
                if not d:
                    return
                data += d
        except OSError:
            return
        lines = data.split(b"\r\n")
        parts = lines[0].split(b" ")
        host = b"-"
        for l in lines[1:]:
            if l.lower().startswith(b"host:"):
                host = l[5:].strip()
        with open(os.path.join(work, "requests.log"), "ab") as f:
            f.write(parts[1] + b" " + host + b"\n")
        with open(os.path.join(work, "status")) as f:
            status = f.read().strip()
        body = b"backend says " + status.encode()
        c.sendall(b"HTTP/1.1 " + status.encode() + b" X\r\nContent-Length: " +
                  str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port)); s.listen(256)
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
EOF
BP=$(free_port)
"$PY" "$WORK/backend.py" "$BP" "$WORK" >>"$WORK/backend.log" 2>&1 &
PIDS+=("$!")
RP1=$(free_port)
RP2=$(free_port)
T="127.0.0.1:$BP"

expect_rc 0 mctl "$WORK/n1" resource add listed --site branch --target "$T" --tcp-port "$RP1" \
    --health http:/ --hc-status 200,503 --hc-interval 200 --hc-rise 1
expect_in "$WORK/out" "health http:/ (status 200,503, every 200ms, rise 1)"
expect_rc 0 mctl "$WORK/n1" resource add plain --site branch --target "$T" --tcp-port "$RP2" \
    --health http:/ --hc-interval 200
ok "resources with health-check settings added: $(cat "$WORK/out")"

# resource list shows the settings when set, --json the record's fields.
expect_rc 0 mctl "$WORK/n1" resource list
grep -E '^listed .* http:/ \(status 200,503, every 200ms, rise 1\) ' "$WORK/out" >/dev/null ||
    { cat "$WORK/out" >&2; fail "resource list does not show listed's settings"; }
grep -E '^plain .* http:/ \(every 200ms\) ' "$WORK/out" >/dev/null ||
    { cat "$WORK/out" >&2; fail "resource list does not show plain's settings"; }
expect_rc 0 mctl "$WORK/n1" --json resource list
"$PY" - "$WORK/out" <<'EOF' || fail "resource list --json: wrong hc_ fields"
import json, sys
r = {x["name"]: x for x in json.load(open(sys.argv[1]))["resources"]}
assert r["listed"]["hc_status"] == "200,503" and r["listed"]["hc_interval_ms"] == 200, r
assert r["listed"]["hc_rise"] == 1 and "hc_fall" not in r["listed"], r
assert "hc_status" not in r["plain"] and "hc_host" not in r["plain"], r
EOF
ok "resource list shows the settings (human and --json), and only those set"

# check_state PATTERN: "True"/"False" for the site's check whose spec matches PATTERN (a
# Python regex over meshctl sites' "check"), then its "why".
check_state() {
    mctl "$WORK/n1" --json sites | "$PY" -c '
import json, re, sys
s = json.load(sys.stdin)["sites"][0]
m = [t for t in s["targets"] if re.fullmatch(sys.argv[1], t["check"])]
print("%s %s" % (m[0]["healthy"], m[0]["why"]) if len(m) == 1 else "none %d" % len(m))' "$1"
}
is_state() { [ "$(check_state "$1")" = "$2" ]; }
# stays PATTERN STATE: a new check counts as healthy until its first verdict, so "healthy"
# means something only when it still holds after several 200 ms intervals.
stays() {
    sleep 0.8
    is_state "$1" "$2" || fail "check '$1' did not stay '$2': $(check_state "$1")"
}
n_checks() {
    [ "$(mctl "$WORK/n1" --json sites | "$PY" -c '
import json, sys; print(len(json.load(sys.stdin)["sites"][0]["targets"]))')" = "$1" ]
}

LISTED='http:/ status 200,503 every 200ms rise 1'
PLAIN='http:/ every 200ms'
wait_for 15 "the default-status check unhealthy (HTTP 503)" is_state "$PLAIN" "False HTTP 503"
wait_for 5 "the 200,503 check healthy" is_state "$LISTED" "True "
stays "$LISTED" "True "
ok "one backend answering 503: the resource listing 503 is healthy, the default one is not ($(check_state "$PLAIN"))"
expect_rc 0 mctl "$WORK/n1" sites
expect_in "$WORK/out" "$T DOWN (HTTP 503)"
expect_in "$WORK/out" "$T up"
ok "meshctl sites says why: $(grep -o "$T DOWN ([^)]*)" "$WORK/out")"

# It serves (a PoP's tcp port -> the site -> the backend).
serve() {
    "$PY" -c '
import socket, sys
c = socket.create_connection(("127.0.0.67", int(sys.argv[1])), timeout=3)
c.sendall(b"GET /data HTTP/1.1\r\nHost: x\r\n\r\n")
d = b""
while True:
    x = c.recv(4096)
    if not x: break
    d += x
print(d.decode(errors="replace").split("\r\n\r\n", 1)[-1])' "$1"
}
serves() { [ "$(serve "$1")" = "backend says $2" ]; }
wait_for 10 "resource listed serves" serves "$RP1" 503
ok "resource listed serves through the mesh"

# The Host header: the target by default, --hc-host when set (a changed setting: the site
# replaces the check at once).
grep -q "^/ $T\$" "$WORK/requests.log" || fail "checks did not send Host: $T by default"
expect_rc 0 mctl "$WORK/n1" resource add listed --site branch --target "$T" --tcp-port "$RP1" \
    --health http:/ --hc-status 200,503 --hc-interval 200 --hc-rise 1 \
    --hc-host App.Internal:8443 --replace
expect_in "$WORK/out" "host app.internal:8443)"
wait_for 5 "the backend to see Host: app.internal:8443" grep -q "^/ app.internal:8443\$" \
    "$WORK/requests.log"
ok "--hc-host is the Host the backend sees (${WAITED}s after the change; lowercased)"
wait_for 5 "the check with its host healthy" is_state "$LISTED host app.internal:8443" "True "
stays "$LISTED host app.internal:8443" "True "

# Changing the other resource's statuses: healthy without a restart.
expect_rc 0 mctl "$WORK/n1" resource add plain --site branch --target "$T" --tcp-port "$RP2" \
    --health http:/ --hc-interval 200 --hc-status 5xx --replace
wait_for 5 "plain healthy with --hc-status 5xx" is_state "http:/ status 5xx every 200ms" "True "
stays "http:/ status 5xx every 200ms" "True "
ok "a changed --hc-status takes effect without a restart (${WAITED}s)"

# Dropping listed's statuses (a replace without them): back to 200..399, so 503 fails.
expect_rc 0 mctl "$WORK/n1" resource add listed --site branch --target "$T" --tcp-port "$RP1" \
    --health http:/ --hc-interval 200 --hc-rise 1 --replace
wait_for 5 "listed unhealthy without its statuses" is_state "http:/ every 200ms rise 1" \
    "False HTTP 503"
ok "removing a setting takes effect too (${WAITED}s)"

# The backend recovers: both healthy (rise 1 for listed, the default 2 for plain).
echo 200 >"$WORK/status"
wait_for 5 "listed healthy again" is_state "http:/ every 200ms rise 1" "True "
stays "http:/ every 200ms rise 1" "True "
wait_for 5 "plain unhealthy on 200 (5xx only)" is_state "http:/ status 5xx every 200ms" "False HTTP 200"
ok "statuses are matched exactly: 200 is down for a 5xx-only resource"

# Removing a resource removes its check.
wait_for 5 "two checks" n_checks 2
expect_rc 0 mctl "$WORK/n1" resource rm plain
wait_for 5 "one check left" n_checks 1
ok "removing a resource removes its check (${WAITED}s)"
kill -0 "$POPD_PID" && kill -0 "$SITE_PID" || fail "popd or popsite is gone"
ok "no restart: popd and popsite ran throughout"

# Bad flags: refused, naming the flag or field.
bad() { # bad WANT_TEXT FLAGS...
    local want=$1
    shift
    local rc=0
    mctl "$WORK/n1" resource add bad --site branch --target "$T" --tcp-port "$(free_port)" \
        "$@" >"$WORK/out" 2>"$WORK/err" || rc=$?
    [ "$rc" -ne 0 ] || fail "resource add $* was accepted"
    expect_in "$WORK/err" "$want"
}
bad "--hc-interval '50' is not a number of milliseconds from 100 to 86400000" --hc-interval 50
bad "--hc-interval 'soon'" --hc-interval soon
bad "--hc-timeout '600001'" --hc-timeout 600001
bad "--hc-rise '0' is not a number of checks from 1 to 1000" --hc-rise 0
bad "--hc-fall '-1'" --hc-fall -1
bad "--hc-status and --hc-host need --health http:/PATH" --hc-status 200
bad "--hc-status and --hc-host need --health http:/PATH" --health tcp --hc-host example.com
bad "hc_status item '6xx' is not an HTTP status code" --health http:/ --hc-status 200,6xx
bad "hc_status item '' is not" --health http:/ --hc-status 200,,204
bad "hc_host 'bad host' is not a lowercase host name" --health http:/ --hc-host "bad host"
bad "hc_host 'x:99999'" --health http:/ --hc-host x:99999
expect_rc 0 mctl "$WORK/n1" resource list
if grep -q '^bad ' "$WORK/out"; then fail "a refused resource was stored"; fi
ok "bad --hc-* flags are refused with messages naming them"
done_testing
