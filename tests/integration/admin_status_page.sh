#!/usr/bin/env bash
# The admin listener's status page with real processes: 3 PoPs (two regions), a site, an HTTP
# resource; an admin user and a user who is not one, and their API keys.
# 1. /api/* without credentials is 401; with an admin API key 200, and each answer has the
#    shape (every key path) of `meshctl --json` for the same command; a key that is not admin,
#    or whose... is 403; a malformed or unknown key is 401.
# 2. Sign-in: a wrong password is 401, an oversized form 413, a form posted from another site
#    403, the right password of a user who is not an admin 403 without a cookie; an admin gets
#    the session cookie (HttpOnly, SameSite=Strict) and the page, under a CSP whose nonce is
#    the inline script's.
# 3. Headless Chromium: the admin signs in, sees the 3 PoPs alive and the site with its
#    tunnels; pop-3 is killed (SIGKILL) and turns dead on the page without a reload; a user
#    who is not an admin is refused. Screenshots are kept in the build's artefacts.
source "$(dirname "$0")/lib.sh"
: "${POPSITE:?POPSITE must point to the popsite binary}"
HERE=$(cd "$(dirname "$0")" && pwd)
NODE_BIN=$(command -v node || true)
[ -n "$NODE_BIN" ] && [ -x /usr/bin/chromium ] && [ -d "$HERE/../../tools/node/node_modules/puppeteer-core" ] || {
    trap - EXIT # lib.sh's cleanup would report the skip as a failure
    rm -rf "$WORK"
    echo "SKIP: node, /usr/bin/chromium or puppeteer-core missing (tools/setup.sh installs them)"
    exit 77
}
ART=${ARTEFACT_DIR:-/tmp/popmesh-artefacts}
mkdir -p "$ART"

declare -a ADM HP
for i in 1 2 3; do ADM[$i]=$(free_port); HP[$i]=$(free_port); done
REG=(x eu eu us)
init_node "$WORK/n1" pop-1 --region eu --http-listen "127.0.0.1:${HP[1]}" --admin-listen "127.0.0.1:${ADM[1]}"
start_popd "$WORK/n1"
NODE_PID[1]=$LAST_PID
TOKEN=$(mctl "$WORK/n1" token create --uses 2 --ttl 10m 2>/dev/null)
for i in 2 3; do
    "$POPD" join --data "$WORK/n$i" --name "pop-$i" --region "${REG[$i]}" \
        --mesh-listen "127.0.0.1:$(free_port)" --tunnel-listen "127.0.0.1:$(free_port)" \
        --http-listen "127.0.0.1:${HP[$i]}" --admin-listen "127.0.0.1:${ADM[$i]}" "$TOKEN" >/dev/null
    start_popd "$WORK/n$i"
    NODE_PID[$i]=$LAST_PID
done
wait_for 20 "3 alive members everywhere" all_see "$WORK/n1" "$WORK/n2" "$WORK/n3" \
    "pop-1=alive pop-2=alive pop-3=alive"

BPORT=$(free_port)
"$PY" "$HERE/http_backend.py" "$BPORT" >"$WORK/backend.log" 2>&1 &
PIDS+=("$!")
SITE_TOKEN=$(mctl "$WORK/n1" site add branch | grep -o 'pmt1\.[A-Za-z0-9_-]*' | head -1)
"$POPSITE" run --data "$WORK/site" --token "$SITE_TOKEN" >>"$WORK/site.log" 2>&1 &
PIDS+=("$!")
mctl "$WORK/n1" resource add web --site branch --target "127.0.0.1:$BPORT" --host web.test >/dev/null
app_up() { [ "$(curl -s -m 5 -o /dev/null -w '%{http_code}' -H 'Host: web.test' "http://127.0.0.1:${HP[1]}/up")" = 200 ]; }
wait_for 20 "the app through pop-1" app_up

echo "an-admin-password" | mctl "$WORK/n1" user add alice --admin >/dev/null
echo "a-user-password" | mctl "$WORK/n1" user add bob >/dev/null
AKEY=$(mctl "$WORK/n1" apikey create --user alice --admin 2>/dev/null)
UKEY=$(mctl "$WORK/n1" apikey create --user bob 2>/dev/null)
PKEY=$(mctl "$WORK/n1" apikey create --user alice 2>/dev/null) # alice's, not an admin key
expect_rc 1 mctl "$WORK/n1" apikey create --user bob --admin
expect_in "$WORK/err" "not an admin"
mctl "$WORK/n1" user list >"$WORK/ul.txt"
grep -Eq '^alice +yes ' "$WORK/ul.txt" && grep -Eq '^bob +no ' "$WORK/ul.txt" ||
    { cat "$WORK/ul.txt" >&2; fail "user list does not show the admin flag"; }
mctl "$WORK/n1" --json apikey list | "$PY" -c '
import json, sys
ks = json.load(sys.stdin)["apikeys"]
assert sorted(k["admin"] for k in ks) == [False, False, True], ks' || fail "apikey list: admin flags"
ok "user add --admin, apikey create --admin (refused for a user who is not an admin); user list and apikey list show the flags"

A="http://127.0.0.1:${ADM[1]}"
code() { curl -s -m 10 -o "$WORK/body" -D "$WORK/head" -w '%{http_code}' "$@"; }
for ep in status members sites routes resources targets certs httpstats tunnels; do
    [ "$(code "$A/api/$ep")" = 401 ] || fail "/api/$ep without credentials: not 401"
done
expect_in "$WORK/head" "WWW-Authenticate: Bearer"
[ "$(code -H "Authorization: Bearer $UKEY" "$A/api/members")" = 403 ] || fail "a user's key: not 403"
[ "$(code -H "Authorization: Bearer $PKEY" "$A/api/members")" = 403 ] || fail "an admin's key that is not an admin key: not 403"
[ "$(code -H "Authorization: Bearer pmk1.0000000000000000.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" "$A/api/members")" = 401 ] ||
    fail "an unknown key: not 401"
[ "$(code -H "Authorization: Basic YWxpY2U6eA==" "$A/api/members")" = 401 ] || fail "Basic: not 401"
[ "$(code -H "Authorization: Bearer $AKEY" -H "Authorization: Bearer $AKEY" "$A/api/members")" = 401 ] ||
    fail "two Authorization headers: not 401"
[ "$(code -H "Authorization: Bearer $AKEY" "$A/api/nothing")" = 404 ] || fail "an unknown endpoint: not 404"
ok "/api/ without credentials 401 (WWW-Authenticate: Bearer); keys of a non-admin user or without --admin 403; unknown, Basic, doubled 401"

# The same JSON as meshctl --json, in shape: every key path (values such as RTTs move).
cat >"$WORK/shape.py" <<'PY'
import json, sys
def paths(v, p=""):
    out = {p + ":" + type(v).__name__ if not isinstance(v, (int, float)) or isinstance(v, bool) else p + ":num"}
    if isinstance(v, dict):
        for k, x in v.items():
            out |= paths(x, p + "." + k)
    elif isinstance(v, list):
        for x in v:
            out |= paths(x, p + "[]")
    return out
a, b = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
# null and a number are the same shape (an RTT not measured yet)
norm = lambda s: {x.replace(":NoneType", ":num") for x in s}
pa, pb = norm(paths(a)), norm(paths(b))
if pa != pb:
    print("only in /api:", sorted(pa - pb)[:8], "only in meshctl:", sorted(pb - pa)[:8])
    sys.exit(1)
print(len(pa), "key paths")
PY
declare -A CMD=([status]="status" [members]="members" [sites]="sites" [routes]="routes"
    [resources]="resource list" [targets]="targets" [certs]="cert list" [tunnels]="tunnels"
    [httpstats]="http-stats")
SHAPES=""
for ep in "${!CMD[@]}"; do
    # shellcheck disable=SC2086
    mctl "$WORK/n1" --json ${CMD[$ep]} >"$WORK/cli-$ep.json" || fail "meshctl --json ${CMD[$ep]}"
    [ "$(code -H "Authorization: Bearer $AKEY" "$A/api/$ep")" = 200 ] || { cat "$WORK/body" >&2; fail "/api/$ep with the admin key: not 200"; }
    expect_in "$WORK/head" "Content-Type: application/json"
    cp "$WORK/body" "$WORK/api-$ep.json"
    n=$("$PY" "$WORK/shape.py" "$WORK/api-$ep.json" "$WORK/cli-$ep.json") ||
        fail "/api/$ep and meshctl --json ${CMD[$ep]} differ in shape: $n"
    SHAPES="$SHAPES $ep(${n% key paths})"
done
# Byte for byte where nothing moves between two calls: the resources.
cmp -s "$WORK/api-resources.json" "$WORK/cli-resources.json" || fail "/api/resources differs from meshctl --json resource list"
ok "/api/* with the admin key: 200, the shape of meshctl --json for every endpoint (key paths:$SHAPES); /api/resources byte for byte"

# Sign-in by curl: bad input first.
[ "$(code -d 'username=alice&password=wrong-password' "$A/login")" = 401 ] || fail "a wrong password: not 401"
grep -q "Set-Cookie" "$WORK/head" && fail "a wrong password set a cookie"
[ "$(code -d 'username=nobody&password=whatever-pass' "$A/login")" = 401 ] || fail "an unknown user: not 401"
BIG=$(head -c 3000 /dev/zero | tr '\0' a)
[ "$(code -d "username=alice&password=$BIG" "$A/login")" = 413 ] || fail "an oversized form: not 413"
[ "$(code -d 'username=alice&password=%zz' "$A/login")" = 400 ] || fail "a bad escape: not 400"
[ "$(code -H 'Origin: http://evil.example' -d 'username=alice&password=an-admin-password' "$A/login")" = 403 ] ||
    fail "a cross-site form: not 403"
[ "$(code -X PUT "$A/login")" = 405 ] || fail "PUT /login: not 405"
[ "$(code -d 'username=bob&password=a-user-password' "$A/login")" = 403 ] || fail "bob (not an admin): not 403"
grep -qi "Set-Cookie" "$WORK/head" && fail "bob got a cookie"
expect_in "$WORK/body" "not an admin"
[ "$(code -d 'username=alice&password=an-admin-password' "$A/login")" = 303 ] || fail "alice: not 303"
COOKIE=$(grep -i '^Set-Cookie: popmesh_admin=' "$WORK/head" | tr -d '\r')
case "$COOKIE" in *HttpOnly*SameSite=Strict*) ;; *) fail "the cookie lacks HttpOnly or SameSite=Strict: $COOKIE" ;; esac
CV=$(echo "$COOKIE" | sed 's/^Set-Cookie: popmesh_admin=\([^;]*\).*/\1/')
[ "$(code -b "popmesh_admin=$CV" "$A/")" = 200 ] || fail "the page with the cookie: not 200"
NONCE=$(grep -i '^Content-Security-Policy:' "$WORK/head" | sed "s/.*script-src 'nonce-\([^']*\)'.*/\1/" | tr -d '\r')
[ -n "$NONCE" ] && grep -q "<script nonce=\"$NONCE\">" "$WORK/body" || fail "the script's nonce is not the CSP's"
grep -i '^Content-Security-Policy:' "$WORK/head" | grep -q "default-src 'none'" || fail "CSP without default-src 'none'"
[ "$(code -b "popmesh_admin=$CV" "$A/api/members")" = 200 ] || fail "/api/ with the cookie: not 200"
[ "$(code -b "popmesh_admin=x$CV" "$A/")" = 200 ] && grep -q 'name="password"' "$WORK/body" || fail "a forged cookie did not get the sign-in form"
[ "$(code -b "popmesh_admin=x$CV" "$A/api/status")" = 401 ] || fail "a forged cookie on /api/: not 401"
ok "sign-in: wrong password and unknown user 401, oversized form 413, bad escape 400, cross-site 403, bob 403 without a cookie; alice gets popmesh_admin (HttpOnly, SameSite=Strict), the page under a CSP whose nonce is the script's; a forged cookie gets the form"

# Taking admin away closes the page at once, without revoking the session.
mctl "$WORK/n1" user set alice --admin off >/dev/null
[ "$(code -b "popmesh_admin=$CV" "$A/")" = 403 ] || fail "alice without admin: not 403"
[ "$(code -H "Authorization: Bearer $AKEY" "$A/api/status")" = 403 ] || fail "alice's admin key without admin: not 403"
mctl "$WORK/n1" user set alice --admin on >/dev/null
[ "$(code -b "popmesh_admin=$CV" "$A/")" = 200 ] || fail "alice admin again: not 200"
ok "user set alice --admin off: her session and admin key get 403 at once; on: 200 again"

# Headless Chromium: live updates, then the refusal.
mkfifo "$WORK/go"
exec 3<>"$WORK/go"
"$NODE_BIN" "$HERE/admin_status_page.js" live "$A/" alice an-admin-password "$ART" pop-3 \
    <"$WORK/go" >"$WORK/browser.out" 2>&1 &
BPID=$!
PIDS+=("$BPID")
ready() { grep -q '^READY' "$WORK/browser.out" || { kill -0 "$BPID" || { cat "$WORK/browser.out" >&2; fail "the browser step failed"; }; false; }; }
wait_for 40 "the page showing the mesh" ready
kill -9 "${NODE_PID[3]}"
echo go >&3
rc=0
for _ in $(seq 1 500); do kill -0 "$BPID" 2>/dev/null || break; sleep 0.1; done
wait "$BPID" || rc=$?
exec 3>&-
cat "$WORK/browser.out"
[ "$rc" = 0 ] || fail "the browser did not see pop-3 turn dead"
grep -q "cookie httpOnly true sameSite Strict" "$WORK/browser.out" || fail "the browser's cookie is not HttpOnly and Strict"
ok "Chromium: alice signs in, sees pop-1..3 alive and the site with its tunnels, then pop-3 dead without a reload ($(grep -o 'after [0-9.]* s' "$WORK/browser.out")); screenshots $ART/admin_status_live.png $ART/admin_status_dead.png"

"$NODE_BIN" "$HERE/admin_status_page.js" refused "$A/" bob a-user-password "$ART" >"$WORK/browser2.out" 2>&1 ||
    { cat "$WORK/browser2.out" >&2; fail "the refusal step failed"; }
cat "$WORK/browser2.out"
ok "Chromium: bob (not an admin) signs in and gets the 403 page, no cookie; screenshot $ART/admin_status_refused.png"

# Nothing secret in the logs.
for f in "$WORK"/n*.log; do
    for s in an-admin-password a-user-password "${AKEY#pmk1.*.}" "$CV"; do
        grep -qF -- "$s" "$f" && fail "a secret in $f"
    done
done
ok "no password, API key secret or session cookie in the logs"
done_testing
