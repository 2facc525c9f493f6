#!/usr/bin/env bash
# HTTP configuration takes effect on change: a resource added, a rule added and a resource
# removed at pop-1 are served (or refused) by pop-2's HTTP ingress within the mesh's
# propagation time, with no poll of the store in between. Each change is followed at once (no
# sleep) by requests through pop-2 every 10 ms for at most 1 s; the time from the meshctl
# command to the first right answer is printed and must stay under 500 ms.
source "$(dirname "$0")/lib.sh"
: "${POPSITE:?POPSITE must point to the popsite binary}"
HERE=$(cd "$(dirname "$0")" && pwd)
LIMIT_MS=500

H1=$(free_port)
H2=$(free_port)
init_node "$WORK/n1" pop-1 --http-listen "127.0.0.1:$H1"
start_popd "$WORK/n1"
TOKEN=$(mctl "$WORK/n1" token create --ttl 10m 2>/dev/null)
"$POPD" join --data "$WORK/n2" --name pop-2 --mesh-listen "127.0.0.1:$(free_port)" \
    --tunnel-listen "127.0.0.1:$(free_port)" --http-listen "127.0.0.1:$H2" "$TOKEN" >/dev/null
start_popd "$WORK/n2"
BPORT=$(free_port)
"$PY" "$HERE/http_backend.py" "$BPORT" >"$WORK/backend.log" 2>&1 &
PIDS+=("$!")
SITE_TOKEN=$(mctl "$WORK/n1" site add branch | grep -o 'pmt1\.[A-Za-z0-9_-]*' | head -1)
"$POPSITE" run --data "$WORK/site" --token "$SITE_TOKEN" >>"$WORK/site.log" 2>&1 &
PIDS+=("$!")

# code PORT HOST PATH: the status code of one GET (000 if none).
code() {
    curl -s -m 5 -o /dev/null -w '%{http_code}' -H "Host: $2" "http://127.0.0.1:$1$3"
}

# A first resource makes sure the site's tunnel and its route are up at both PoPs, so the
# timed steps below measure only how fast a change reaches pop-2's HTTP routes.
mctl "$WORK/n1" resource add warm --site branch --target "127.0.0.1:$BPORT" --host warm.test \
    >/dev/null
warm() { [ "$(code "$H2" warm.test /)" = 200 ]; }
wait_for 20 "the first resource through pop-2" warm
ok "setup: two PoPs, a site and an application; warm.test served through pop-2"

# timed WANT HOST PATH -- CMD...: runs CMD, then at once asks pop-2 for HOST PATH every 10 ms
# (for at most 1 s) until the answer is WANT; prints the ms from CMD's start to that answer
# in ELAPSED_MS, or fails with the last answer seen.
timed() {
    local want=$1 host=$2 path=$3
    shift 4
    local t0
    t0=$(date +%s%N)
    "$@" >/dev/null
    ELAPSED_MS=$("$PY" - "$H2" "$host" "$path" "$want" "$t0" <<'PY'
import socket, sys, time
port, host, path, want, t0 = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
deadline = time.monotonic() + 1.0
last = "none"
while True:
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=1)
        s.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (path, host)).encode())
        line = s.makefile("rb").readline().split()
        last = line[1].decode() if len(line) > 1 else "EOF"
        s.close()
    except OSError as e:
        last = str(e)
    if last == want:
        print((time.time_ns() - t0) // 1000000)
        sys.exit(0)
    if time.monotonic() > deadline:
        print("still %s after 1 s" % last)
        sys.exit(1)
    time.sleep(0.01)
PY
) || fail "pop-2 did not answer $want for $host$path: $ELAPSED_MS"
    [ "$ELAPSED_MS" -lt "$LIMIT_MS" ] ||
        fail "pop-2 answered $want for $host$path only after $ELAPSED_MS ms (limit $LIMIT_MS ms)"
}

[ "$(code "$H2" app.test /)" = 404 ] || fail "app.test answered before it was added"
timed 200 app.test / -- mctl "$WORK/n1" resource add app --site branch \
    --target "127.0.0.1:$BPORT" --host app.test
ok "resource add at pop-1: app.test served through pop-2 after $ELAPSED_MS ms"

[ "$(code "$H2" app.test /secret/x)" = 200 ] || fail "/secret/x refused before the rule"
timed 403 app.test /secret/x -- mctl "$WORK/n1" rule add app deny --path '/secret/*'
[ "$(code "$H2" app.test /open)" = 200 ] || fail "the deny rule on /secret/* also refused /open"
ok "rule add (deny /secret/*) at pop-1: enforced at pop-2 after $ELAPSED_MS ms; other paths still served"

timed 404 app.test / -- mctl "$WORK/n1" resource rm app
[ "$(code "$H2" warm.test /)" = 200 ] || fail "removing app also removed warm.test"
ok "resource rm at pop-1: app.test gets 404 at pop-2 after $ELAPSED_MS ms; warm.test still served"

# Back again: the removed resource's rules come back with it (they are records of their own).
timed 403 app.test /secret/x -- mctl "$WORK/n1" resource add app --site branch \
    --target "127.0.0.1:$BPORT" --host app.test
ok "resource added again: its deny rule applies at pop-2 at once ($ELAPSED_MS ms)"
done_testing
