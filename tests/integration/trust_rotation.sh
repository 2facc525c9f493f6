#!/usr/bin/env bash
# Root rotation under traffic (docs/security.md, "Root rotation"): two PoPs (pop-1 holds the
# root), a popsite, an HTTP application behind `--auth login`, and two users signed in, one at
# each PoP. A load client (load_client below) sends requests with both sessions to both PoPs
# without pause while pop-1 runs `meshctl key rotate-root --rollover 3s`; after the rotation
# both users sign in again, at the other PoP, and their new sessions join the load. The load
# runs on past the end of the rollover, when a certificate of the old root is refused. Then:
#   - every request of the load was answered 200 by the application: none refused, none failed;
#   - the sessions issued after the rotation worked at both PoPs, before and after the rollover
#     ended, and so did those issued before it;
#   - both PoPs pinned the new root and hold certificates of it only.
source "$(dirname "$0")/lib.sh"
: "${POPSITE:?POPSITE must point to the popsite binary}"
HERE=$(cd "$(dirname "$0")" && pwd)

declare -a HP=()
for i in 1 2; do HP[$i]=$(free_port); done
init_node "$WORK/n1" pop-1 --http-listen "127.0.0.1:${HP[1]}"
start_popd "$WORK/n1"
"$POPD" join --data "$WORK/n2" --name pop-2 --mesh-listen "127.0.0.1:$(free_port)" \
    --tunnel-listen "127.0.0.1:$(free_port)" --http-listen "127.0.0.1:${HP[2]}" \
    "$(mctl "$WORK/n1" token create --ttl 10m 2>/dev/null)" >/dev/null
start_popd "$WORK/n2"
wait_certified "$WORK/n2"
BPORT=$(free_port)
"$PY" "$HERE/http_backend.py" "$BPORT" >"$WORK/backend.log" 2>&1 &
PIDS+=("$!")
SITE_TOKEN=$(mctl "$WORK/n1" site add branch | grep -o 'pmt1\.[A-Za-z0-9_-]*' | head -1)
"$POPSITE" run --data "$WORK/site" --token "$SITE_TOKEN" >>"$WORK/site.log" 2>&1 &
PIDS+=("$!")
mctl "$WORK/n1" resource add app --site branch --target "127.0.0.1:$BPORT" --host app.test \
    --auth login >/dev/null
echo "correct-horse-battery" | mctl "$WORK/n1" user add alice >/dev/null
echo "another-long-secret" | mctl "$WORK/n1" user add bob >/dev/null

login() { # login POP USER PASSWORD: the session cookie pop-POP set, or nothing
    curl -s -m 10 -o /dev/null -D - -H "Host: app.test" --data "username=$2&password=$3&rd=/" \
        "http://127.0.0.1:${HP[$1]}/.popmesh/login" | tr -d '\r' |
        sed -n 's/^[Ss]et-[Cc]ookie: popmesh_session=\([^;]*\);.*/\1/p' | head -1
}
code() { # code POP COOKIE: the status of GET / at pop-POP with that session
    curl -s -m 5 -o /dev/null -w '%{http_code}' -H "Host: app.test" \
        -H "Cookie: popmesh_session=$2" "http://127.0.0.1:${HP[$1]}/"
}
works_everywhere() { [ "$(code 1 "$1")" = 200 ] && [ "$(code 2 "$1")" = 200 ]; }
A1=$(login 1 alice correct-horse-battery)
B2=$(login 2 bob another-long-secret)
[ -n "$A1" ] && [ -n "$B2" ] || fail "no session from the sign-ins ('$A1', '$B2')"
ready() { works_everywhere "$A1" && works_everywhere "$B2"; }
wait_for 20 "both sessions answered 200 by the app at both PoPs" ready
ok "2 PoPs, a site, an app behind --auth login; alice signed in at pop-1, bob at pop-2"

# The load: keep-alive connections, one per PoP, cycling through the sessions in
# $WORK/sessions (re-read every 50 requests, so sessions made later join), until
# $WORK/stop appears or 60 s pass. Prints "requests non200 errors" and logs the failures.
cat >"$WORK/load.py" <<'PY'
import http.client, os, sys, time
ports, sessions_file, stop, log = sys.argv[1].split(","), sys.argv[2], sys.argv[3], sys.argv[4]
conns = {p: None for p in ports}
n = bad = errs = 0
sessions = []
t_end = time.time() + 60
with open(log, "w") as lf:
    while not os.path.exists(stop) and time.time() < t_end:
        if n % 50 == 0:
            sessions = [s for s in open(sessions_file).read().split() if s]
        for p in ports:
            s = sessions[n % len(sessions)]
            try:
                if conns[p] is None:
                    conns[p] = http.client.HTTPConnection("127.0.0.1", int(p), timeout=5)
                conns[p].request("GET", "/", headers={"Host": "app.test", "Cookie": "popmesh_session=" + s})
                r = conns[p].getresponse()
                r.read()
                if r.status != 200:
                    bad += 1
                    lf.write("%.3f port %s status %d session %s\n" % (time.time(), p, r.status, s[:24]))
                if r.getheader("Connection", "").lower() == "close":
                    conns[p].close()
                    conns[p] = None
            except Exception as e:
                errs += 1
                lf.write("%.3f port %s error %r\n" % (time.time(), p, e))
                conns[p] = None
            n += 1
print(n, bad, errs)
PY
printf '%s\n%s\n' "$A1" "$B2" >"$WORK/sessions"
"$PY" "$WORK/load.py" "${HP[1]},${HP[2]}" "$WORK/sessions" "$WORK/stop" "$WORK/load.log" \
    >"$WORK/load.out" 2>&1 &
LOAD=$!
PIDS+=("$LOAD")
sleep 1

OLDROOT=$(jq_ 'j["root"]' "$WORK/n1" key status)
expect_rc 0 mctl "$WORK/n1" key rotate-root --rollover 3s
T_ROT=$(date +%s%N)
NEWROOT=$(jq_ 'j["root"]' "$WORK/n1" key status)
[ "$NEWROOT" != "$OLDROOT" ] || fail "the root did not change"
# Sign-ins right after the rotation, each at the other PoP than before.
A2=$(login 2 alice correct-horse-battery)
B1=$(login 1 bob another-long-secret)
[ -n "$A2" ] && [ -n "$B1" ] || fail "a sign-in right after the rotation set no session ('$A2', '$B1')"
printf '%s\n%s\n%s\n%s\n' "$A1" "$B2" "$A2" "$B1" >"$WORK/sessions.new"
mv "$WORK/sessions.new" "$WORK/sessions"
works_everywhere "$A2" && works_everywhere "$B1" ||
    fail "a session issued right after the rotation was refused ($(code 1 "$A2") $(code 2 "$A2") $(code 1 "$B1") $(code 2 "$B1"))"
# Past the rollover (3 s from the rotation) by 3 s: the old root is refused from then on.
left=$((6000000000 - ($(date +%s%N) - T_ROT)))
[ "$left" -gt 0 ] && sleep "$(awk -v n="$left" 'BEGIN { printf "%.3f", n / 1e9 }')"
for s in "$A1" "$B2" "$A2" "$B1"; do
    works_everywhere "$s" || fail "a session was refused after the rollover ended"
done
touch "$WORK/stop"
wait "$LOAD" || true
read -r REQS NON200 ERRS <"$WORK/load.out" || fail "the load client printed nothing: $(cat "$WORK/load.out")"
[ "$NON200" = 0 ] && [ "$ERRS" = 0 ] || { cat "$WORK/load.log" >&2; fail "$NON200 of $REQS requests not answered 200, $ERRS failed"; }
[ "$REQS" -ge 200 ] || fail "the load made only $REQS requests"
for i in 1 2; do
    mctl "$WORK/n$i" --json key status | "$PY" -c 'import json,sys; j=json.load(sys.stdin); sys.exit(not (j["root"]==sys.argv[1] and j["cert"]=="valid"))' "$NEWROOT" ||
        fail "pop-$i did not pin root $NEWROOT with a valid certificate"
    mctl "$WORK/n$i" --json key list | "$PY" -c 'import json,sys; sys.exit(not all(c["issuer"]==sys.argv[1] and c["valid"] for c in json.load(sys.stdin)))' "$NEWROOT" ||
        fail "pop-$i holds a certificate not of root $NEWROOT"
done
ok "rotate-root under load ($REQS requests over both PoPs, 4 sessions, through the rollover's end): every one answered 200; sessions made before and after the rotation work at both PoPs; both PoPs on root $NEWROOT"
done_testing
