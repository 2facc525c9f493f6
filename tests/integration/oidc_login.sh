#!/usr/bin/env bash
# OpenID Connect sign-in end to end (node/oidc, docs/http.md "Sign-in with an identity
# provider"): a real provider, oidc-provider 8 from npm (oidc_provider.js, issuer plain http on
# 127.0.0.1: `idp add --insecure-http-loopback`), two PoPs, a site and the echoing application
# (http_backend.py) behind `--auth login --allow-group admins`.
#   1. Headless Chromium (oidc_browser.js, puppeteer-core) opens the app at pop-1, clicks "Sign in
#      with corp" on popmesh's login page, fills the provider's login and consent pages; the
#      provider's redirect to pop-1's callback is sent on to pop-2 (the browser moved PoP). pop-2
#      opens the state cookie pop-1 sealed, exchanges the code, checks the ID token, and the app
#      sees Remote-User corp:alice and her groups from the provider. Screenshots are kept.
#   2. mallory@evil.test is refused: corp allows only example.com (--allowed-domains).
#   3. A state cookie with one byte changed, a state that is not the cookie's, and a callback
#      without the cookie are refused (403) before any request to the provider.
# Skipped when chromium or node is not installed (tools/setup.sh installs both).
source "$(dirname "$0")/lib.sh"
: "${POPSITE:?POPSITE must point to the popsite binary}"
HERE=$(cd "$(dirname "$0")" && pwd)
# skip WHY: exit 77 (CTest's skip) without the failure report of lib.sh's exit trap
skip() { trap - EXIT; rm -rf "$WORK"; echo "SKIP: $*"; exit 77; }
command -v chromium >/dev/null || skip "chromium is not installed (tools/setup.sh)"
command -v node >/dev/null || skip "node is not installed (tools/setup.sh)"
[ -d "$HERE/../../tools/node/node_modules/oidc-provider" ] ||
    skip "tools/node/node_modules is not installed (tools/setup.sh)"
ART=${ARTEFACT_DIR:-$(dirname "$MESHCTL")/../../oidc-artefacts}
mkdir -p "$ART"
ART=$(cd "$ART" && pwd)

# ---- the provider ----
OP=$(free_port)
declare -a H
for i in 1 2; do H[$i]=$(free_port); done
SECRET=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
URIS="http://app.test:${H[1]}/.popmesh/oidc/callback,http://app.test:${H[2]}/.popmesh/oidc/callback"
node "$HERE/oidc_provider.js" "$OP" "$SECRET" "$URIS" >"$WORK/provider.log" 2>&1 &
PIDS+=("$!")
PROVIDER_PID=$!
wait_for 20 "the provider listening" grep -q listening "$WORK/provider.log"
curl -sf "http://127.0.0.1:$OP/.well-known/openid-configuration" >"$WORK/discovery.json" ||
    fail "the provider's discovery document"
ok "oidc-provider $(node -p "require('$HERE/../../tools/node/node_modules/oidc-provider/package.json').version") on 127.0.0.1:$OP"

# ---- two PoPs, a site, the application ----
init_node "$WORK/n1" pop-1 --http-listen "127.0.0.1:${H[1]}"
start_popd "$WORK/n1"
TOKEN=$(mctl "$WORK/n1" token create --uses 1 --ttl 10m 2>/dev/null)
"$POPD" join --data "$WORK/n2" --name pop-2 --mesh-listen "127.0.0.1:$(free_port)" \
    --tunnel-listen "127.0.0.1:$(free_port)" --http-listen "127.0.0.1:${H[2]}" "$TOKEN" >/dev/null
start_popd "$WORK/n2"
BPORT=$(free_port)
"$PY" "$HERE/http_backend.py" "$BPORT" >"$WORK/backend.log" 2>&1 &
PIDS+=("$!")
SITE_TOKEN=$(mctl "$WORK/n1" site add branch | grep -o 'pmt1\.[A-Za-z0-9_-]*' | head -1)
"$POPSITE" run --data "$WORK/site" --token "$SITE_TOKEN" >>"$WORK/site.log" 2>&1 &
PIDS+=("$!")
mctl "$WORK/n1" resource add app --site branch --target "127.0.0.1:$BPORT" --host app.test \
    --auth login --allow-group admins >/dev/null

# the secret only on stdin; a plain http issuer only with the explicit flag
expect_rc 2 mctl "$WORK/n1" idp add corp --issuer "http://127.0.0.1:$OP" --client-id popmesh </dev/null
printf '%s\n' "$SECRET" | expect_rc 2 mctl "$WORK/n1" idp add corp --issuer "http://127.0.0.1:$OP" \
    --client-id popmesh
expect_in "$WORK/err" "insecure-http-loopback"
printf '%s\n' "$SECRET" | expect_rc 0 mctl "$WORK/n1" idp add corp --issuer "http://127.0.0.1:$OP" \
    --client-id popmesh --scopes "openid email profile groups" --groups-claim groups \
    --allowed-domains example.com --insecure-http-loopback
expect_rc 0 mctl "$WORK/n1" idp list
expect_in "$WORK/out" "sealed"
grep -qF "$SECRET" "$WORK/out" && fail "idp list shows the client secret"
ok "idp add (secret from stdin, sealed; plain http only with --insecure-http-loopback), idp list"

page() { curl -s -m 5 --resolve "app.test:$1:127.0.0.1" "http://app.test:$1$2"; }
for i in 1 2; do
    links() { page "${H[$i]}" "/.popmesh/login?rd=/" | grep -q "Sign in with corp"; }
    wait_for 20 "pop-$i's login page offering corp" links
    routed() { [ "$(curl -s -m 5 -o /dev/null -w '%{http_code}' --resolve "app.test:${H[$i]}:127.0.0.1" "http://app.test:${H[$i]}/")" = 302 ]; }
    wait_for 20 "the app routed at pop-$i" routed
done
ok "both PoPs' login pages offer \"Sign in with corp\""

# ---- 1. alice: start at pop-1, the callback at pop-2 ----
T0=$(date +%s%N)
node "$HERE/oidc_browser.js" "http://app.test:${H[1]}/whoami" corp alice any-password \
    "$ART/alice" "${H[1]}" "${H[2]}" >"$WORK/alice.out" 2>&1 ||
    { cat "$WORK/alice.out" >&2; cat "$WORK/provider.log" >&2; fail "the browser sign-in failed"; }
MS=$((($(date +%s%N) - T0) / 1000000))
sed 's/^/  browser: /' "$WORK/alice.out"
expect_in "$WORK/alice.out" "link: Sign in with corp"
expect_in "$WORK/alice.out" "callback moved:"
expect_in "$WORK/alice.out" "final: http://app.test:${H[2]}/whoami"
expect_in "$WORK/alice.out" '"remote_user": ["corp:alice"]'
expect_in "$WORK/alice.out" '"remote_groups": ["staff,admins"]'
expect_in "$WORK/alice.out" '["Remote-Email", "alice@example.com"]'
expect_in "$WORK/alice.out" '["Remote-Name", "Alice Example"]'
for s in 1-login 2-provider 4-final; do [ -s "$ART/alice-$s.png" ] || fail "no screenshot $s"; done
ok "Chromium: sign-in started at pop-1, finished at pop-2; the app saw corp:alice in staff,admins, her email and name from the provider (${MS} ms with the browser's start; screenshots in $ART)"
expect_rc 0 mctl "$WORK/n2" user list
expect_in "$WORK/out" "corp:alice"
expect_rc 0 mctl "$WORK/n2" --json idp list
"$PY" -c 'import json,sys; s=json.load(open(sys.argv[1]))["stats"]; assert s["signed_in"]==1, s' "$WORK/out" ||
    fail "pop-2 did not count the sign-in"
ok "the user record corp:alice exists (written by pop-2); pop-2 counted one sign-in"

# OIDC_LOGIN_RUNS=N (a measurement, not part of the test): N more sign-ins the same way; the
# browser's whole run and the callback-to-app time (token exchange, ID token check, user
# record, session, the app through the site), p50 and p99.
RUNS=${OIDC_LOGIN_RUNS:-0}
if [ "$RUNS" -gt 0 ]; then
    : >"$WORK/lat"
    for r in $(seq 1 "$RUNS"); do
        t0=$(date +%s%N)
        node "$HERE/oidc_browser.js" "http://app.test:${H[1]}/run$r" corp alice any-password \
            "$WORK/run" "${H[1]}" "${H[2]}" >"$WORK/run.out" 2>&1 || { cat "$WORK/run.out" >&2; fail "run $r"; }
        grep -q '"remote_user": \["corp:alice"\]' "$WORK/run.out" || fail "run $r did not reach the app"
        echo "$((($(date +%s%N) - t0) / 1000000)) $(grep -o 'callback to app: [0-9]*' "$WORK/run.out" | grep -o '[0-9]*$')" >>"$WORK/lat"
    done
    "$PY" -c '
import sys
rows = [tuple(map(int, l.split())) for l in open(sys.argv[1])]
def pct(v, p):
    v = sorted(v); return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]
w = [r[0] for r in rows]; c = [r[1] for r in rows]
print("# %d sign-ins: browser run p50 %d ms p99 %d ms; callback to app p50 %d ms p99 %d ms" %
      (len(rows), pct(w, 50), pct(w, 99), pct(c, 50), pct(c, 99)))' "$WORK/lat"
fi

# the same callback replayed, state cookie included: the code was used
read -r RURL RCOOKIE < <(grep '^replay: ' "$WORK/alice.out" | head -1 | cut -d' ' -f2-)
[ -n "$RURL" ] && [ "$RCOOKIE" != - ] || fail "the browser run did not record the callback"
c=$(curl -s -m 10 -o "$WORK/replay.html" -w '%{http_code}' --resolve "app.test:${H[2]}:127.0.0.1" \
    -b "popmesh_oidc=$RCOOKIE" "$RURL")
[ "$c" = 403 ] || fail "a replayed callback gave $c"
expect_in "$WORK/replay.html" "refused the sign-in"
grep -q "token endpoint refused: invalid_grant" "$WORK/n2.log" || fail "pop-2 did not log the provider's invalid_grant"
ok "the callback replayed with its state cookie is refused (403; the provider: invalid_grant)"

# ---- 2. mallory: not in an allowed domain ----
node "$HERE/oidc_browser.js" "http://app.test:${H[1]}/" corp mallory any-password \
    "$ART/mallory" >"$WORK/mallory.out" 2>&1 || { cat "$WORK/mallory.out" >&2; fail "mallory's browser run"; }
sed 's/^/  browser: /' "$WORK/mallory.out"
expect_in "$WORK/mallory.out" "may not sign in here"
grep -q "remote_user" "$WORK/mallory.out" && fail "mallory reached the app"
expect_rc 0 mctl "$WORK/n1" user list
grep -q "corp:mallory" "$WORK/out" && fail "a user record was made for mallory"
grep -q "corp:mallory refused: the user's email domain" "$WORK/n1.log" || fail "pop-1 did not log why"
ok "mallory@evil.test is refused (not in --allowed-domains): no session, no user record"

# ---- 3. the state cookie ----
curl -s -m 10 -o /dev/null -D "$WORK/start.h" --resolve "app.test:${H[1]}:127.0.0.1" \
    "http://app.test:${H[1]}/.popmesh/oidc/start?idp=corp&rd=/"
COOKIE=$(grep -i '^set-cookie: popmesh_oidc=' "$WORK/start.h" | sed 's/^[^=]*=//; s/;.*//')
STATE=$(grep -i '^location:' "$WORK/start.h" | grep -o 'state=[^&]*' | cut -d= -f2 | tr -d '\r')
[ -n "$COOKIE" ] && [ -n "$STATE" ] || { cat "$WORK/start.h" >&2; fail "no state cookie or state"; }
grep -qi "^set-cookie: popmesh_oidc=.*HttpOnly" "$WORK/start.h" || fail "the state cookie is not HttpOnly"
grep -qi '^location:.*code_challenge_method=S256' "$WORK/start.h" || fail "no PKCE S256 in the request"
callback() { # callback COOKIE STATE: status and body of pop-2's callback
    curl -s -m 10 -w '\n%{http_code}' --resolve "app.test:${H[2]}:127.0.0.1" ${1:+-b "popmesh_oidc=$1"} \
        "http://app.test:${H[2]}/.popmesh/oidc/callback?code=x&state=$2"
}
i=$((${#COOKIE} / 2))
c=${COOKIE:$i:1}
[ "$c" = A ] && r=B || r=A
BAD="${COOKIE:0:$i}$r${COOKIE:$((i + 1))}"
callback "$BAD" "$STATE" >"$WORK/cb1"
tail -1 "$WORK/cb1" | grep -q 403 || fail "a tampered state cookie gave $(tail -1 "$WORK/cb1")"
expect_in "$WORK/cb1" "does not open"
OTHER=$(printf '%s' "$STATE" | tr 'A-Za-z' 'B-ZAb-za')
callback "$COOKIE" "$OTHER" >"$WORK/cb2"
tail -1 "$WORK/cb2" | grep -q 403 || fail "a wrong state gave $(tail -1 "$WORK/cb2")"
expect_in "$WORK/cb2" "does not match"
callback "" "$STATE" >"$WORK/cb3"
tail -1 "$WORK/cb3" | grep -q 403 || fail "no state cookie gave $(tail -1 "$WORK/cb3")"
ok "pop-2 refuses a state cookie with one byte changed, a state that is not the cookie's, and no cookie (403)"
# the right cookie and state with a code the provider never issued: refused by the provider
callback "$COOKIE" "$STATE" >"$WORK/cb4"
tail -1 "$WORK/cb4" | grep -q 403 || fail "a forged code gave $(tail -1 "$WORK/cb4")"
ok "the genuine cookie with a code the provider never issued: refused at the token endpoint (403)"

# the provider down: a clear error page at the callback, and password sign-in still works
kill "$PROVIDER_PID" 2>/dev/null || true
wait "$PROVIDER_PID" 2>/dev/null || true
down_gone() { ! curl -s -m 2 -o /dev/null "http://127.0.0.1:$OP/"; }
wait_for 10 "the provider stopped" down_gone
callback "$COOKIE" "$STATE" >"$WORK/cb5"
tail -1 "$WORK/cb5" | grep -q 502 || fail "with the provider down the callback gave $(tail -1 "$WORK/cb5")"
expect_in "$WORK/cb5" "identity provider did not complete"
ok "with the provider down: 502 and a page that says so"

# local sign-in still works next to the provider
echo "a-local-password" | mctl "$WORK/n1" user add bob --group admins >/dev/null 2>&1 ||
    echo "a-local-password" | mctl "$WORK/n1" user add bob >/dev/null
c=$(curl -s -m 10 -o /dev/null -w '%{http_code}' --resolve "app.test:${H[1]}:127.0.0.1" \
    --data "username=bob&password=a-local-password&rd=/" "http://app.test:${H[1]}/.popmesh/login")
[ "$c" = 302 ] || fail "a local password sign-in gave $c"
ok "a password sign-in still works at the same PoP"
done_testing
