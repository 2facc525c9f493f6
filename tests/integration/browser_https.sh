#!/usr/bin/env bash
# A login over HTTPS in a real browser: headless Chromium (browser_login.py, over the DevTools
# protocol) against two PoPs with --https-listen and a certificate for app.test made here by
# the openssl CLI and imported at pop-1. The browser trusts exactly that certificate's key
# (--ignore-certificate-errors-spki-list with its SPKI hash; every other certificate would
# still fail) and resolves app.test to 127.0.0.1 (--host-resolver-rules). It opens the app at
# pop-1, lands on the login page, signs in, and the session cookie is Secure and HttpOnly
# (Network.getCookies); then it opens the app at pop-2 with the same cookie (sessions are
# mesh-wide) and gets the app without a login. Skipped when chromium is not installed
# (tools/setup.sh installs it).
source "$(dirname "$0")/lib.sh"
: "${POPSITE:?POPSITE must point to the popsite binary}"
HERE=$(cd "$(dirname "$0")" && pwd)
command -v chromium >/dev/null || { echo "SKIP: chromium is not installed (tools/setup.sh)"; exit 77; }
command -v openssl >/dev/null || { echo "SKIP: no openssl CLI"; exit 77; }

# ---- a CA and a certificate for app.test; the leaf's SPKI hash ----
C="$WORK/pki"
mkdir -p "$C"
ossl() { openssl "$@" >>"$C/openssl.log" 2>&1 || { cat "$C/openssl.log" >&2; fail "openssl $1"; }; }
ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$C/ca.key" \
    -out "$C/ca.pem" -days 2 -subj "/CN=popmesh test CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
ossl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$C/app.key" \
    -out "$C/app.csr" -subj "/CN=app.test"
printf 'subjectAltName=DNS:app.test\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' \
    >"$C/app.ext"
ossl x509 -req -in "$C/app.csr" -CA "$C/ca.pem" -CAkey "$C/ca.key" -CAcreateserial \
    -out "$C/app.pem" -days 1 -extfile "$C/app.ext"
SPKI=$(openssl x509 -in "$C/app.pem" -pubkey -noout | openssl pkey -pubin -outform der |
    openssl dgst -sha256 -binary | base64)
[ -n "$SPKI" ] || fail "no SPKI hash"

# ---- two PoPs with HTTP and HTTPS listeners, a site, the application ----
declare -a H S
for i in 1 2; do H[$i]=$(free_port); S[$i]=$(free_port); done
init_node "$WORK/n1" pop-1 --http-listen "127.0.0.1:${H[1]}" --https-listen "127.0.0.1:${S[1]}"
start_popd "$WORK/n1"
TOKEN=$(mctl "$WORK/n1" token create --uses 1 --ttl 10m 2>/dev/null)
"$POPD" join --data "$WORK/n2" --name pop-2 --mesh-listen "127.0.0.1:$(free_port)" \
    --tunnel-listen "127.0.0.1:$(free_port)" --http-listen "127.0.0.1:${H[2]}" \
    --https-listen "127.0.0.1:${S[2]}" "$TOKEN" >/dev/null
start_popd "$WORK/n2"
BPORT=$(free_port)
"$PY" "$HERE/http_backend.py" "$BPORT" >"$WORK/backend.log" 2>&1 &
PIDS+=("$!")
SITE_TOKEN=$(mctl "$WORK/n1" site add branch | grep -o 'pmt1\.[A-Za-z0-9_-]*' | head -1)
"$POPSITE" run --data "$WORK/site" --token "$SITE_TOKEN" >>"$WORK/site.log" 2>&1 &
PIDS+=("$!")
mctl "$WORK/n1" resource add app --site branch --target "127.0.0.1:$BPORT" --host app.test \
    --auth login >/dev/null
echo "a-browser-password" | mctl "$WORK/n1" user add carol >/dev/null
expect_rc 0 mctl "$WORK/n1" cert import --cert "$C/app.pem" --key "$C/app.key"

https_code() { # https_code PORT PATH: the status curl gets over TLS (CA-verified) as app.test
    curl -s -m 5 --cacert "$C/ca.pem" --resolve "app.test:$1:127.0.0.1" -o /dev/null \
        -w '%{http_code}' "https://app.test:$1$2"
}
for i in 1 2; do
    served() { [ "$(https_code "${S[$i]}" /.popmesh/login)" = 200 ] &&
        [ "$(https_code "${S[$i]}" /)" = 302 ]; }
    wait_for 20 "app.test over HTTPS at pop-$i (the certificate and the resource)" served
done
# The user record reaches pop-2 before the browser gets there.
user_at_2() { mctl "$WORK/n2" user list | grep -q '^carol '; }
wait_for 10 "the user at pop-2" user_at_2
ok "2 PoPs serve app.test over HTTPS (certificate imported at pop-1)"

ART=${ARTEFACT_DIR:-/tmp/popmesh-artefacts}
mkdir -p "$ART"
"$PY" "$HERE/browser_login.py" chromium "https://app.test:${S[1]}/" carol a-browser-password \
    '"remote_user": ["carol"]' "$ART/https_login.png" \
    --spki-hash "$SPKI" --resolve app.test=127.0.0.1 --cookie popmesh_session \
    --then "https://app.test:${S[2]}/at-pop-2" '"path": "/at-pop-2"' >"$WORK/browser.out" 2>&1 ||
    { cat "$WORK/browser.out" >&2; fail "headless Chromium could not log in over HTTPS"; }
cat "$WORK/browser.out"
grep -q "secure True httpOnly True" "$WORK/browser.out" || fail "the cookie check did not run"
grep -q "^then: https://app.test:${S[2]}/at-pop-2" "$WORK/browser.out" ||
    fail "the app at pop-2 was not reached"
[ -s "$ART/https_login.png" ] || fail "no screenshot"
ok "headless Chromium over HTTPS: login at pop-1, the session cookie Secure and HttpOnly, the app at pop-2 with the same cookie (screenshot $ART/https_login.png)"

# The same browser without the key's hash refuses the certificate: the trust is that narrow.
"$PY" "$HERE/browser_login.py" chromium "https://app.test:${S[1]}/" carol a-browser-password \
    '"remote_user": ["carol"]' "$WORK/untrusted.png" --resolve app.test=127.0.0.1 \
    >"$WORK/untrusted.out" 2>&1 && { cat "$WORK/untrusted.out" >&2; fail "Chromium accepted the test certificate without its SPKI hash"; }
sed 's/^/  untrusted: /' "$WORK/untrusted.out"
grep -q "landed on the login page" "$WORK/untrusted.out" && fail "the login page was reached without the SPKI hash"
grep -q "ERR_CERT_AUTHORITY_INVALID" "$WORK/untrusted.out" ||
    fail "the untrusted run failed for another reason than the certificate"
ok "without the SPKI hash Chromium stops at NET::ERR_CERT_AUTHORITY_INVALID (the test CA is not trusted)"
done_testing
