#!/usr/bin/env bash
# Request rules per HTTP resource (resource set --set-header, --remove-header, --host-rewrite,
# --strip-prefix, --set-response-header, --remove-response-header, --clear-rules) with a real
# PoP, a site and tests/integration/http_backend.py, which answers with what it received:
#   - before any rule the application sees the client's headers and path as sent;
#   - with rules: X-A set (the client's two copies replaced), X-B removed, Host rewritten,
#     /api stripped (/api/v1?q=1 -> /v1?q=1, /api -> /), X-Frame-Options set and Server removed
#     on the response; a path that only looks like the prefix (/apix) unchanged;
#   - at a second PoP too (the record replicated);
#   - refused, and the resource left as it was: a rule removing or setting Host, a value with
#     CR/LF, Transfer-Encoding and Content-Length rules, Remote-User, a bad strip prefix, rules
#     on a TCP resource;
#   - --clear-rules: back to what the client sent.
source "$(dirname "$0")/lib.sh"
: "${POPSITE:?POPSITE must point to the popsite binary}"
HERE=$(cd "$(dirname "$0")" && pwd)

H1=$(free_port)
H2=$(free_port)
init_node "$WORK/n1" pop-1 --http-listen "127.0.0.1:$H1"
start_popd "$WORK/n1"
TOKEN=$(mctl "$WORK/n1" token create --uses 1 --ttl 10m 2>/dev/null)
"$POPD" join --data "$WORK/n2" --name pop-2 --mesh-listen "127.0.0.1:$(free_port)" \
    --tunnel-listen "127.0.0.1:$(free_port)" --http-listen "127.0.0.1:$H2" "$TOKEN" >/dev/null
start_popd "$WORK/n2"
AP=$(free_port)
"$PY" "$HERE/http_backend.py" "$AP" >"$WORK/app.log" 2>&1 &
PIDS+=("$!")
SITE_TOKEN=$(mctl "$WORK/n1" site add branch | grep -o 'pmt1\.[A-Za-z0-9_-]*' | head -1)
"$POPSITE" run --data "$WORK/site" --token "$SITE_TOKEN" >>"$WORK/site.log" 2>&1 &
PIDS+=("$!")
expect_rc 0 mctl "$WORK/n1" resource add app --site branch --target "127.0.0.1:$AP" --host app.test
TP=$(free_port)
expect_rc 0 mctl "$WORK/n1" resource add raw --site branch --target "127.0.0.1:$AP" --tcp-port "$TP"

# req PORT PATH: the application's view as JSON in $WORK/seen.json, response headers in
# $WORK/resp.h; prints the HTTP status.
req() {
    curl -s -m 5 -D "$WORK/resp.h" -o "$WORK/seen.json" -w '%{http_code}' \
        -H "Host: app.test" -H "X-A: client-1" -H "X-A: client-2" -H "X-B: secret" \
        -H "X-C: kept" "http://127.0.0.1:$1$2" || true
}
seen() { # PYTHON-EXPR over s (the JSON) and h (headers, lower-case names -> [values])
    "$PY" -c '
import json, sys
s = json.load(open(sys.argv[1]))
h = {}
for k, v in s["headers"]:
    h.setdefault(k.lower(), []).append(v)
ok = eval(sys.argv[2])
if not ok:
    print(json.dumps(s, indent=1), file=sys.stderr)
sys.exit(0 if ok else 1)' "$WORK/seen.json" "$1"
}
served() { [ "$(req "$1" /)" = 200 ]; }
wait_for 20 "app served at pop-1" served "$H1"

[ "$(req "$H1" /api/v1?q=1)" = 200 ] || fail "no answer before the rules"
seen 's["path"] == "/api/v1?q=1" and h["x-a"] == ["client-1", "client-2"] and h["x-b"] == ["secret"] and h["host"] == ["app.test"]' ||
    fail "before the rules the application sees what the client sent"
grep -qi '^Server: BaseHTTP' "$WORK/resp.h" || fail "the application's Server header is missing before the rules"
ok "no rules: the application sees the client's headers, Host and path as sent"

# ---- refused rules leave the resource as it was ----
refuse() { # WANT ARGS...
    local want=$1
    shift
    expect_rc 2 mctl "$WORK/n1" resource set "$@"
    expect_in "$WORK/err" "$want"
}
refuse "Host cannot be removed" app --remove-header Host
refuse "use host_rewrite" app --set-header 'host: evil.test'
refuse "control byte" app --set-header $'X-A: a\r\nX-Evil: 1'
refuse "control byte" app --set-response-header $'X-A: a\nb'
refuse "hop-by-hop or framing" app --set-header 'Transfer-Encoding: chunked'
refuse "hop-by-hop or framing" app --remove-header Content-Length
refuse "hop-by-hop or framing" app --set-response-header 'Connection: close'
refuse "said by the proxy alone" app --set-header 'Remote-User: admin'
refuse "said by the proxy alone" app --set-header 'Remote_User: admin'
refuse "strip_prefix" app --strip-prefix api
refuse "host_rewrite" app --host-rewrite 'a b'
refuse "a header rule is 'Name: value'" app --set-header novalue
refuse "need a host" raw --set-header 'X-A: b'
[ "$(req "$H1" /x)" = 200 ] && seen 'h["x-a"] == ["client-1", "client-2"] and h["host"] == ["app.test"]' ||
    fail "a refused rule changed the resource"
ok "refused: removing or setting Host, CR/LF in values, Transfer-Encoding/Content-Length/Connection rules, Remote-User (either spelling), a bad prefix or host, rules on a TCP resource; the resource unchanged"

# ---- the rules ----
expect_rc 0 mctl "$WORK/n1" resource set app --set-header 'X-A: from-rule' --remove-header X-B \
    --host-rewrite internal.lan:8080 --strip-prefix /api \
    --set-response-header 'X-Frame-Options: DENY' --remove-response-header Server
mctl "$WORK/n1" resource list | grep -q "^app .*(rules)" || fail "resource list does not mark the rules"
mctl "$WORK/n1" --json resource list | "$PY" -c '
import json, sys
r = {x["name"]: x for x in json.load(sys.stdin)["resources"]}["app"]
want = {"req_set": ["X-A: from-rule"], "req_remove": ["X-B"], "host_rewrite": "internal.lan:8080",
        "strip_prefix": "/api", "resp_set": ["X-Frame-Options: DENY"], "resp_remove": ["Server"]}
sys.exit(0 if all(r.get(k) == v for k, v in want.items()) else 1)' || fail "resource list --json: the rules"
applied() { [ "$(req "$1" /api/v1?q=1)" = 200 ] && seen 's["path"] == "/v1?q=1"'; }
for H in "$H1" "$H2"; do
    wait_for 10 "rules applied at port $H" applied "$H"
    seen 'h["x-a"] == ["from-rule"] and "x-b" not in h and h["host"] == ["internal.lan:8080"] and h["x-c"] == ["kept"] and s["xfh"] == "app.test"' ||
        fail "request rules at port $H"
    grep -qi '^X-Frame-Options: DENY' "$WORK/resp.h" && ! grep -qi '^Server:' "$WORK/resp.h" ||
        { cat "$WORK/resp.h" >&2; fail "response rules at port $H"; }
done
[ "$(req "$H1" /api)" = 200 ] && seen 's["path"] == "/"' || fail "/api stripped to /"
[ "$(req "$H1" '/api?x=1')" = 200 ] && seen 's["path"] == "/?x=1"' || fail "/api?x=1 stripped to /?x=1"
[ "$(req "$H1" /apix/y)" = 200 ] && seen 's["path"] == "/apix/y"' || fail "/apix/y must stay"
ok "rules at both PoPs: X-A set (both client copies replaced), X-B removed, Host internal.lan:8080 (X-Forwarded-Host keeps app.test), /api/v1?q=1 -> /v1?q=1, /api -> /, /apix unchanged; X-Frame-Options set, Server removed"

# ---- clear ----
expect_rc 0 mctl "$WORK/n1" resource set app --clear-rules
cleared() { [ "$(req "$H1" /api/v1)" = 200 ] && seen 's["path"] == "/api/v1" and h["x-b"] == ["secret"] and h["host"] == ["app.test"]'; }
wait_for 10 "rules cleared" cleared
grep -qi '^Server: BaseHTTP' "$WORK/resp.h" || fail "Server header back after --clear-rules"
ok "--clear-rules: the client's headers and path reach the application again"

for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null || fail "a process exited (pid $pid)"; done
done_testing
