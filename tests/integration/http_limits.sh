#!/usr/bin/env bash
# What one unauthenticated client can hold at a PoP's HTTP ingress: connections (a per-address
# cap and an overall cap, refused at once with a 503 and counted) and time (a request body that
# stops, an application that never answers or stops mid-response). One popd with the test
# knobs of docs/http.md (caps of 8 per address and 20 overall, timeouts scaled by 0.1), a
# popsite and http_backend.py; http_limits.py probes, this script checks the counters in
# `meshctl --json status`, popd's descriptors and memory, and the rate-limited log.
source "$(dirname "$0")/lib.sh"
: "${POPSITE:?POPSITE must point to the popsite binary}"
HERE=$(cd "$(dirname "$0")" && pwd)

H1=$(free_port)
init_node "$WORK/n1" pop-1 --http-listen "127.0.0.1:$H1"
POPMESH_TEST_HTTP_PER_IP=8 POPMESH_TEST_HTTP_MAX_CONNS=20 POPMESH_TEST_HTTP_TIMEOUT_SCALE=0.1 \
    start_popd "$WORK/n1"
POPD_PID=$LAST_PID
BPORT=$(free_port)
"$PY" "$HERE/http_backend.py" "$BPORT" >"$WORK/backend.log" 2>&1 &
PIDS+=("$!")
SITE_TOKEN=$(mctl "$WORK/n1" site add branch | grep -o 'pmt1\.[A-Za-z0-9_-]*' | head -1)
"$POPSITE" run --data "$WORK/site" --token "$SITE_TOKEN" >>"$WORK/site.log" 2>&1 &
PIDS+=("$!")
mctl "$WORK/n1" resource add open --site branch --target "127.0.0.1:$BPORT" --host open.test \
    >/dev/null
code() { curl -s -m 5 -o /dev/null -w '%{http_code}' -H "Host: open.test" "http://127.0.0.1:$H1$1"; }
ready() { [ "$(code /hello)" = 200 ]; }
wait_for 20 "the open app" ready

status() { jq_ "j.get('http', {}).get('$1', -1)" "$WORK/n1" status; } # status FIELD: http.FIELD of pop-1's status

RC=0
"$PY" "$HERE/http_limits.py" "$H1" "$POPD_PID" || RC=1

for f in refused_per_address refused_max_connections timeout_body timeout_response \
    timeout_response_idle; do
    v=$(status "$f")
    if [ "$v" -ge 1 ] 2>/dev/null; then
        echo "ok - counted: http.$f = $v"
    else
        echo "FAIL - http.$f is $v in meshctl --json status (want >= 1)" >&2
        RC=1
    fi
done
# Refusals are logged with the client address, but at most once a second: the flood of 300
# refusals above must not make 300 lines.
NLOG=$(grep -c 'http: refused a connection from 127\.0\.0\.' "$WORK/n1.log" || true)
if [ "$NLOG" -ge 1 ] && [ "$NLOG" -le 30 ]; then
    echo "ok - refusals logged with the address, rate-limited ($NLOG lines)"
else
    echo "FAIL - $NLOG refusal log lines (want 1..30)" >&2
    RC=1
fi
[ "$RC" = 0 ] || fail "some limits did not hold (above)"
kill -0 "$POPD_PID" || fail "popd died"
ok "caps and timeouts hold; popd alive"
done_testing
