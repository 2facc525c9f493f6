#!/usr/bin/env bash
# The HTTP ingress against an adversarial client and a misbehaving application: one popd, a
# popsite and http_backend.py, probed by http_hardening.py (Upgrade other than WebSocket, bad
# 101 answers, extra responses, API keys and look-alike identity headers reaching the app,
# open redirects and cross-site login forms, cookies set by the app, log injection, parsing
# leniencies). Every probe runs and reports; the test fails if any did.
source "$(dirname "$0")/lib.sh"
: "${POPSITE:?POPSITE must point to the popsite binary}"
HERE=$(cd "$(dirname "$0")" && pwd)

H1=$(free_port)
init_node "$WORK/n1" pop-1 --http-listen "127.0.0.1:$H1"
start_popd "$WORK/n1" --log-level debug
BPORT=$(free_port)
"$PY" "$HERE/http_backend.py" "$BPORT" >"$WORK/backend.log" 2>&1 &
PIDS+=("$!")
SITE_TOKEN=$(mctl "$WORK/n1" site add branch | grep -o 'pmt1\.[A-Za-z0-9_-]*' | head -1)
"$POPSITE" run --data "$WORK/site" --token "$SITE_TOKEN" >>"$WORK/site.log" 2>&1 &
PIDS+=("$!")
mctl "$WORK/n1" resource add open --site branch --target "127.0.0.1:$BPORT" --host open.test \
    >/dev/null
mctl "$WORK/n1" resource add app --site branch --target "127.0.0.1:$BPORT" --host app.test \
    --auth login >/dev/null
mctl "$WORK/n1" rule add open deny --path '/admin/*' --priority 1 >/dev/null
echo "correct-horse-battery" | mctl "$WORK/n1" user add alice >/dev/null
echo "another-long-secret" | mctl "$WORK/n1" user add bob >/dev/null
for i in $(seq 0 19); do
    echo "a-long-test-password" | mctl "$WORK/n1" user add "u$i" >/dev/null
done
KEY=$(mctl "$WORK/n1" apikey create --user alice | grep -o 'pmk1\.[A-Za-z0-9_.-]*' | head -1)
[ -n "$KEY" ] || fail "apikey create printed no key"

code() { curl -s -m 5 -o /dev/null -w '%{http_code}' -H "Host: $1" "http://127.0.0.1:$H1$2"; }
ready() { [ "$(code open.test /)" = 200 ] && [ "$(code open.test /admin/x)" = 403 ]; }
wait_for 20 "the open app and its deny rule" ready

RC=0
"$PY" "$HERE/http_hardening.py" "$H1" "$KEY" || RC=1

# A user name with a newline must not forge a log line (the probe tried "FORGED\nFORGED-LINE").
sleep 0.5
if grep -q '^FORGED-LINE' "$WORK/n1.log"; then
    echo "FAIL - a newline in a login user name forged a log line:" >&2
    grep -n 'FORGED' "$WORK/n1.log" >&2
    RC=1
else
    grep -q 'FORGED\\x0aFORGED-LINE' "$WORK/n1.log" ||
        { echo "FAIL - the failed login of 'FORGED\\nFORGED-LINE...' was not logged escaped" >&2; RC=1; }
    echo "ok - a newline in a login user name is logged escaped (\\x0a), on one line"
fi
[ "$RC" = 0 ] || fail "some probes got through (above)"
kill -0 "$LAST_PID" || fail "popd died"
ok "every probe refused; popd alive"
done_testing
