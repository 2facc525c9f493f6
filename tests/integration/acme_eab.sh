#!/usr/bin/env bash
# ACME with external account binding (RFC 8555 section 7.3.4) against Pebble configured to
# require it, as commercial CAs do: without --eab the order fails with a message saying what
# to run; with a wrong HMAC key it fails with the CA's refusal; with the right KID:HMAC the
# account is created and the host gets its certificate. Each `acme set` takes effect at once,
# not after the failed order's backoff. The HMAC key is never stored in clear nor shown.
# Pebble resolves the host through the PoP's own DNS listener (authoritative for the zone).
source "$(dirname "$0")/lib.sh"

: "${POPSITE:?POPSITE must point to the popsite binary}"
for t in pebble openssl curl; do
    command -v "$t" >/dev/null || fail "$t is not installed (tools/setup.sh installs it)"
done

DP=$(free_port) # DNS
HP=$(free_port) # HTTP ingress (Pebble's httpPort: HTTP-01 goes there)
SP=$(free_port) # HTTPS ingress
PP=$(free_port) # Pebble's ACME API
PM=$(free_port) # Pebble's management API (roots)
ZONE=eab.test
ING=127.0.0.41
export POPMESH_TEST_ACME_TICK_MS=500
init_node "$WORK/n1" pop-1 --ingress-address "$ING" --http-listen "$ING:$HP" \
    --https-listen "$ING:$SP" --dns-listen "$ING:$DP" --public-address "$ING"
start_popd "$WORK/n1"
BP=$(free_port)
"$PY" "$(dirname "$0")/http_backend.py" "$BP" >"$WORK/backend.log" 2>&1 &
PIDS+=("$!")
expect_rc 0 mctl "$WORK/n1" site add branch
SITE_TOKEN=$(cat "$WORK/out")
"$POPSITE" run --data "$WORK/site" --token "$SITE_TOKEN" >>"$WORK/site.log" 2>&1 &
PIDS+=("$!")
expect_rc 0 mctl "$WORK/n1" zone add "$ZONE" --ttl 1
expect_rc 0 mctl "$WORK/n1" resource add app --site branch --target "127.0.0.1:$BP" --host "app.$ZONE"
wait_for 20 "app.$ZONE to resolve at the PoP" \
    bash -c "dig +short +tries=1 +time=1 -p $DP @$ING app.$ZONE A | grep -qx $ING"
ok "a PoP answering DNS for $ZONE, with HTTP and HTTPS; resource app.$ZONE"

# ---- Pebble, requiring external account binding ----
KID=kid-popmesh
MAC=$("$PY" -c 'import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("="))')
BADMAC=$("$PY" -c 'import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("="))')
start_pebble "$PP" "$PM" "$HP" "$ING:$DP" "$KID:$MAC"
curl -sf --cacert "$WORK/pebble.pem" "https://127.0.0.1:$PP/dir" | grep -q '"externalAccountRequired": *true' ||
    fail "Pebble's directory does not say externalAccountRequired"
ok "Pebble up, requiring external account binding (directory meta.externalAccountRequired)"

# cert_is ID PYEXPR: cert list --json has ID, and c (the entry) satisfies PYEXPR
cert_is() {
    mctl "$WORK/n1" --json cert list | "$PY" -c '
import json, sys
cs = [c for c in json.load(sys.stdin)["certs"] if c["id"] == sys.argv[1]]
sys.exit(0 if cs and eval(sys.argv[2], {"c": cs[0]}) else 1)' "$1" "$2"
}
ACME=(acme set --directory "https://127.0.0.1:$PP/dir" --email "ops@$ZONE" --ca-bundle "$WORK/pebble.pem")

# ---- bad input to acme set ----
expect_rc 2 mctl "$WORK/n1" "${ACME[@]}" --eab "$KID"
expect_in "$WORK/err" "KID:HMAC"
expect_rc 2 mctl "$WORK/n1" "${ACME[@]}" --eab ":$MAC"
expect_in "$WORK/err" "KID:HMAC"
expect_rc 2 mctl "$WORK/n1" "${ACME[@]}" --eab "$KID:not*base64url"
expect_in "$WORK/err" "base64url"
expect_rc 2 mctl "$WORK/n1" "${ACME[@]}" --eab "$KID:c2hvcnQ"
expect_in "$WORK/err" "16..256 bytes"
ok "acme set refuses --eab without a KID or an HMAC, an HMAC that is not base64url or too short"

# ---- 1. no EAB: fails, saying what to run ----
expect_rc 0 mctl "$WORK/n1" "${ACME[@]}"
wait_for 60 "app.$ZONE failed for want of EAB" cert_is "app.$ZONE" \
    "c['state'] == 'failed' and 'external account binding' in c['error'] and '--eab' in c['error']"
ok "without --eab: app.$ZONE failed: $(mctl "$WORK/n1" --json cert list | "$PY" -c 'import json,sys; print([c["error"] for c in json.load(sys.stdin)["certs"] if c["id"]==sys.argv[1]][0])' "app.$ZONE")"

# ---- 2. a wrong HMAC key: the CA refuses, at once (no waiting out the backoff) ----
T1=$(date +%s)
expect_rc 0 mctl "$WORK/n1" "${ACME[@]}" --eab "$KID:$BADMAC"
wait_for 30 "app.$ZONE failed with the CA's refusal" cert_is "app.$ZONE" \
    "c['state'] == 'failed' and 'unauthorized' in c['error'] and '--eab' not in c['error']"
ok "a wrong HMAC key: retried $(($(date +%s) - T1))s after acme set (the backoff is 60 s), refused: $(mctl "$WORK/n1" --json cert list | "$PY" -c 'import json,sys; print([c["error"] for c in json.load(sys.stdin)["certs"] if c["id"]==sys.argv[1]][0][:120])' "app.$ZONE")"
grep -q "the ACME settings changed since it failed; trying again now" "$WORK/n1.log" ||
    fail "no log line for the retry after acme set"

# ---- 3. the right KID:HMAC: the account is bound, the certificate issued ----
T2=$(date +%s)
expect_rc 0 mctl "$WORK/n1" "${ACME[@]}" --eab "$KID:$MAC"
wait_for 60 "app.$ZONE valid" cert_is "app.$ZONE" "c['state'] == 'valid' and c['source'] == 'acme'"
ok "with --eab $KID:<key>: app.$ZONE valid $(($(date +%s) - T2))s after acme set"
curl -sf --cacert "$WORK/pebble.pem" "https://127.0.0.1:$PM/roots/0" >"$WORK/root.pem"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 --cacert "$WORK/root.pem" \
    --resolve "app.$ZONE:$SP:$ING" "https://app.$ZONE:$SP/")
[ "$code" = 200 ] || fail "GET https://app.$ZONE/ with Pebble's root: $code"
ok "curl --cacert Pebble's root: https://app.$ZONE/ answers 200"

# ---- the key stays secret ----
mctl "$WORK/n1" acme show >"$WORK/show.txt"
expect_in "$WORK/show.txt" "$KID"
for f in "$WORK/show.txt" "$WORK/n1.log"; do
    grep -q -- "$MAC" "$f" && fail "the EAB HMAC key appears in $f"
    grep -q -- "$BADMAC" "$f" && fail "the wrong EAB HMAC key appears in $f"
done
mctl "$WORK/n1" --json config get acme/config >"$WORK/cfg.json"
grep -q -- "$MAC" "$WORK/cfg.json" && fail "the EAB HMAC key is stored in clear"
ok "acme show names the KID, never the key; the key is sealed in acme/config and absent from the log"
done_testing
