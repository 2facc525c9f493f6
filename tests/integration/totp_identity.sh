#!/usr/bin/env bash
# A second factor at sign-in and the identity the application gets (node/auth/totp.h,
# node/auth/idjwt.h; docs/security.md "Second factor", docs/http.md "Identity for the
# application"), on two real popd, a popsite and http_backend.py:
#   - meshctl user totp enable prints the otpauth:// URI, a QR code and 10 recovery codes; the
#     secret is not in data.mdb; bad input (unknown user, twice, no TOTP, bad subcommand) refused
#   - sign-in with codes computed by the test (Python's hmac, and Debian's oathtool): no code,
#     a wrong code, malformed codes refused; the right code once; the same code refused again,
#     at the same PoP and at the other one after replication; a recovery code once
#   - a --require-2fa resource: a user without TOTP refused with a clear message, an API key
#     refused, a TOTP user's session accepted
#   - the application sees Remote-User/Groups/Name and an X-Popmesh-Identity JWT that verifies
#     (python3-jwt and PyNaCl) against /.popmesh/jwks.json fetched from the OTHER PoP; a client's
#     X-Popmesh-Identity and Remote-Name are stripped; a removed PoP's key leaves the key set.
# Login attempts per user are limited mesh-wide (5, then one per 10 s): each user here makes
# at most 5.
source "$(dirname "$0")/lib.sh"
: "${POPSITE:?POPSITE must point to the popsite binary}"
HERE=$(cd "$(dirname "$0")" && pwd)
APP="$PY $HERE/totp_app.py"

H1=$(free_port)
H2=$(free_port)
init_node "$WORK/n1" pop-1 --http-listen "127.0.0.1:$H1"
start_popd "$WORK/n1"
TOKEN=$(mctl "$WORK/n1" token create --uses 2 --ttl 10m 2>/dev/null)
"$POPD" join --data "$WORK/n2" --name pop-2 --mesh-listen "127.0.0.1:$(free_port)" \
    --tunnel-listen "127.0.0.1:$(free_port)" --http-listen "127.0.0.1:$H2" "$TOKEN" >/dev/null
start_popd "$WORK/n2"
BPORT=$(free_port)
"$PY" "$HERE/http_backend.py" "$BPORT" >"$WORK/backend.log" 2>&1 &
PIDS+=("$!")
SITE_TOKEN=$(mctl "$WORK/n1" site add branch | grep -o 'pmt1\.[A-Za-z0-9_-]*' | head -1)
"$POPSITE" run --data "$WORK/site" --token "$SITE_TOKEN" >>"$WORK/site.log" 2>&1 &
PIDS+=("$!")
mctl "$WORK/n1" resource add app --site branch --target "127.0.0.1:$BPORT" --host app.test \
    --auth login >/dev/null
mctl "$WORK/n1" resource add secure --site branch --target "127.0.0.1:$BPORT" \
    --host secure.test --auth login --require-2fa >/dev/null
expect_rc 2 mctl "$WORK/n1" resource add bad --site branch --target "127.0.0.1:$BPORT" \
    --host bad.test --require-2fa
expect_in "$WORK/err" "require_2fa needs auth login"
for u in alice carol bob; do
    echo "correct-horse-battery" | mctl "$WORK/n1" user add "$u" --group staff >/dev/null
done
ok "two PoPs, a site, an app; a --require-2fa resource (refused without --auth login)"

# ---- enrolment ----
mctl "$WORK/n1" user totp enable alice >"$WORK/enable.txt"
expect_in "$WORK/enable.txt" "otpauth://totp/popmesh:alice?secret="
expect_in "$WORK/enable.txt" "█"
[ "$(grep -cE '^  [a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}$' "$WORK/enable.txt")" = 10 ] ||
    fail "enable did not print 10 recovery codes: $(cat "$WORK/enable.txt")"
SECRET=$(grep -o 'secret=[A-Z2-7]*' "$WORK/enable.txt" | head -1 | cut -d= -f2)
[ "${#SECRET}" = 32 ] || fail "the secret is not 32 base32 characters: $SECRET"
mctl "$WORK/n1" --json user totp enable carol >"$WORK/enable2.json" 2>&1 ||
    fail "enable carol: $(cat "$WORK/enable2.json")"
CSECRET=$("$PY" -c 'import json,sys,re; print(re.search("secret=([A-Z2-7]+)", json.load(open(sys.argv[1]))["uri"]).group(1))' "$WORK/enable2.json")
RECOVERY=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["recovery"][3])' "$WORK/enable2.json")
ok "user totp enable: otpauth:// URI, a QR code and 10 recovery codes"
expect_rc 1 mctl "$WORK/n1" user totp enable alice
expect_in "$WORK/err" "already has TOTP"
expect_rc 1 mctl "$WORK/n1" user totp enable nobody
expect_in "$WORK/err" "no user 'nobody'"
expect_rc 1 mctl "$WORK/n1" user totp disable nobody
expect_in "$WORK/err" "no user 'nobody'"
expect_rc 1 mctl "$WORK/n1" user totp disable bob
expect_in "$WORK/err" "has no TOTP"
expect_rc 2 mctl "$WORK/n1" user totp frob alice
expect_rc 2 mctl "$WORK/n1" user totp enable 'Bad_Name'
ok "refused: enable twice, enable/disable an unknown user, disable without TOTP, bad subcommand, bad name"
# The secret is sealed in the store (storeseal): not in LMDB's file in any form.
$APP absent "$WORK/n1/store/data.mdb" "$SECRET" || fail "alice's TOTP secret is in pop-1's data.mdb in clear"
mctl "$WORK/n1" config get totp/alice >"$WORK/rec.txt"
$APP absent "$WORK/rec.txt" "$SECRET" || fail "the totp/ record shows the secret"
ok "the TOTP secret is sealed in the store: not in data.mdb, not in the record"
# cross-check of our code with another implementation (Debian's oathtool), same step
for _ in 1 2 3; do
    a=$($APP code "$SECRET") b=$(oathtool --totp -b "$SECRET") c=$($APP code "$SECRET")
    [ "$a" = "$c" ] && break # not across a step boundary
done
[ "$a" = "$b" ] || fail "Python's code $a and oathtool's $b differ"
ok "the test's TOTP codes agree with oathtool's ($a)"

# login PORT USER CODE: sign-in with the password and a code; prints the status, keeps the
# body in $WORK/body and the cookie in $WORK/jar.USER.
login() {
    rm -f "$WORK/jar.$2"
    curl -s -m 10 -o "$WORK/body" -w '%{http_code}' -H "Host: app.test" -c "$WORK/jar.$2" \
        --data-urlencode "username=$2" --data-urlencode "password=correct-horse-battery" \
        --data-urlencode "code=$3" --data-urlencode "rd=/" "http://127.0.0.1:$1/.popmesh/login"
}
# session USER: the Cookie header of USER's last sign-in (curl's jar keys it to the Host sent,
# and the requests below go to other hosts).
session() { printf 'Cookie: popmesh_session=%s' "$(awk '$6 == "popmesh_session" {print $7}' "$WORK/$1.session")"; }
wait_replicated() { # KEY TEXT: pop-2 holds KEY and its value mentions TEXT
    mctl "$WORK/n2" config get "$1" 2>/dev/null | grep -q "$2"
}
wait_for 20 "totp/alice and totp/carol at pop-2" wait_replicated totp/carol enrolled_ms

# ---- sign-in with TOTP (alice: 5 attempts) ----
[ "$(login "$H1" alice "")" = 401 ] || fail "alice signed in without a code"
expect_in "$WORK/body" "two-factor sign-in"
GOOD=$($APP code "$SECRET")
WRONG=$(printf '%06d' $(((10#$GOOD + 1) % 1000000)))
[ "$(login "$H1" alice "$WRONG")" = 401 ] || fail "a wrong code was accepted"
expect_in "$WORK/body" "Wrong code"
ok "no code and a wrong code refused (401, the form says why)"
GOOD=$($APP code "$SECRET")
c=$(login "$H1" alice "${GOOD:0:3} ${GOOD:3}")
[ "$c" = 302 ] || fail "alice's right code ($GOOD) gave $c: $(cat "$WORK/body")"
grep -q popmesh_session "$WORK/jar.alice" || fail "no session cookie for alice"
cp "$WORK/jar.alice" "$WORK/alice.session"
ok "the right code (typed as '123 456') signs alice in at pop-1"
[ "$(login "$H1" alice "$GOOD")" = 401 ] || fail "the same code was accepted twice at pop-1"
wait_for 20 "totpuse/alice at pop-2" wait_replicated totpuse/alice last_step
[ "$(login "$H2" alice "$GOOD")" = 401 ] || fail "the same code was accepted again at pop-2"
grep -q "second factor of 'alice'.*replay" "$WORK/n2.log" || fail "pop-2 did not log the replay"
ok "the same code refused a second time, at pop-1 and at pop-2 after replication (logged as a replay)"

# ---- malformed codes and a recovery code (carol: 5 attempts) ----
for bad in 12ab56 12345 1234567; do
    [ "$(login "$H1" carol "$bad")" = 401 ] || fail "carol's malformed code '$bad' was not refused"
done
ok "malformed codes refused: letters, 5 digits, 7 digits"
[ "$(login "$H1" carol "${RECOVERY^^}")" = 302 ] || fail "carol's recovery code did not sign her in"
wait_for 20 "totpuse/carol at pop-2" wait_replicated totpuse/carol recovery_used
[ "$(login "$H2" carol "$RECOVERY")" = 401 ] || fail "a recovery code worked twice (pop-2)"
ok "a recovery code (typed in upper case) works once: refused the second time at pop-2"

# what each PoP counted (meshctl status, "http")
counts() { jq_ '" ".join(str(j["http"][k]) for k in ("totp_accepted", "totp_refused", "totp_replayed"))' "$WORK/n$1" status; }
[ "$(counts 1)" = "2 5 1" ] || fail "pop-1 counted (accepted refused replayed) $(counts 1), want 2 5 1"
[ "$(counts 2)" = "0 0 2" ] || fail "pop-2 counted (accepted refused replayed) $(counts 2), want 0 0 2"
ok "meshctl status counts second factors: pop-1 2 accepted, 5 refused, 1 replay; pop-2 2 replays"

# ---- --require-2fa (bob has no TOTP) ----
[ "$(login "$H1" bob "")" = 302 ] || fail "bob (no TOTP) cannot sign in with his password"
cp "$WORK/jar.bob" "$WORK/bob.session"
ready() { [ "$(curl -s -m 5 -o /dev/null -w '%{http_code}' -H "$(session bob)" -H 'Host: app.test' "http://127.0.0.1:$H1/")" = 200 ]; }
wait_for 20 "the app through pop-1" ready
c=$(curl -s -m 5 -o "$WORK/body" -w '%{http_code}' -H "$(session bob)" -H 'Host: secure.test' "http://127.0.0.1:$H1/")
[ "$c" = 403 ] || fail "bob without TOTP reached the --require-2fa resource: $c"
expect_in "$WORK/body" "requires two-factor sign-in and your account has no second factor"
c=$(curl -s -m 5 -o /dev/null -w '%{http_code}' -H "$(session alice)" -H 'Host: secure.test' "http://127.0.0.1:$H2/")
[ "$c" = 200 ] || fail "alice's two-factor session did not open the --require-2fa resource at pop-2: $c"
KEY=$(mctl "$WORK/n1" apikey create --user alice | grep -o 'pmk1\.[A-Za-z0-9_.-]*' | head -1)
wait_key() { [ "$(curl -s -m 5 -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $KEY" -H 'Host: app.test' "http://127.0.0.1:$H1/")" = 200 ]; }
wait_for 10 "alice's API key" wait_key
c=$(curl -s -m 5 -o "$WORK/body" -w '%{http_code}' -H "Authorization: Bearer $KEY" -H 'Host: secure.test' "http://127.0.0.1:$H1/")
[ "$c" = 403 ] || fail "an API key reached the --require-2fa resource: $c"
expect_in "$WORK/body" "API keys are not accepted"
mctl "$WORK/n1" resource set secure --require-2fa off >/dev/null
open_now() { [ "$(curl -s -m 5 -o /dev/null -w '%{http_code}' -H "$(session bob)" -H 'Host: secure.test' "http://127.0.0.1:$H1/")" = 200 ]; }
wait_for 10 "secure open to bob once --require-2fa is off" open_now
ok "--require-2fa: bob (no TOTP) refused with a clear message, an API key refused, alice's session admitted at pop-2; resource set --require-2fa off lets bob in"

# ---- identity for the application ----
curl -s -m 5 -H "$(session alice)" -H 'Host: app.test' -H 'X-Popmesh-Identity: forged.by.client' \
    -H 'Remote-Name: Mallory' -H 'X_Popmesh_Identity: forged2' "http://127.0.0.1:$H1/who" >"$WORK/seen.json"
read -r NJWT JWT RUSER RGROUPS RNAME NNAME < <("$PY" -c '
import json, sys
h = json.load(open(sys.argv[1]))["headers"]
get = lambda n: [v for k, v in h if k.lower().replace("_", "-") == n]
j = get("x-popmesh-identity")
print(len(j), j[0] if j else "-", get("remote-user")[0], get("remote-groups")[0], get("remote-name")[0], len(get("remote-name")))' "$WORK/seen.json")
[ "$NJWT" = 1 ] || fail "the app got $NJWT X-Popmesh-Identity headers: $(cat "$WORK/seen.json")"
[ "$JWT" != forged.by.client ] || fail "the client's X-Popmesh-Identity reached the app"
[ "$RUSER $RGROUPS $RNAME $NNAME" = "alice staff alice 1" ] ||
    fail "Remote-User/Groups/Name: $RUSER $RGROUPS $RNAME ($NNAME Remote-Name headers)"
ok "the app gets Remote-User, Remote-Groups, Remote-Name and one X-Popmesh-Identity; the client's copies are stripped"
ID1=$(mctl "$WORK/n1" --json status | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["id"])')
ID2=$(mctl "$WORK/n2" --json status | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["id"])')
has_kid() { $APP kids "http://127.0.0.1:$1/.popmesh/jwks.json" | grep -q "$2"; }
wait_for 20 "pop-1's key in pop-2's key set" has_kid "$H2" "$ID1"
$APP verify "http://127.0.0.1:$H2/.popmesh/jwks.json" "$JWT" app >"$WORK/claims.json" ||
    fail "the JWT made at pop-1 does not verify against pop-2's key set"
"$PY" - "$WORK/claims.json" "$ID1" <<'PY' || fail "claims: $(cat "$WORK/claims.json")"
import json, sys
c = json.load(open(sys.argv[1]))
assert c["sub"] == c["user"] == "alice" and c["groups"] == ["staff"] and c["name"] == "alice", c
assert c["aud"] == "app" and c["pop"] == "pop-1" and c["iss"].startswith("popmesh:"), c
assert c["exp"] - c["iat"] == 60, c
PY
ok "the JWT verifies (python3-jwt and PyNaCl) with the key set from pop-2: sub, groups, aud=app, pop-1, iss, 60 s"
TAMPERED=$("$PY" -c '
import sys, base64, json
h, p, s = sys.argv[1].split(".")
c = json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))
c["groups"] = ["admins"]
print(h + "." + base64.urlsafe_b64encode(json.dumps(c).encode()).decode().rstrip("=") + "." + s)' "$JWT")
if $APP verify "http://127.0.0.1:$H2/.popmesh/jwks.json" "$TAMPERED" app >/dev/null 2>&1; then
    fail "a tampered JWT verified"
fi
if $APP verify "http://127.0.0.1:$H2/.popmesh/jwks.json" "$JWT" secure >/dev/null 2>&1; then
    fail "the JWT for app verified for another audience"
fi
ok "a tampered JWT and the wrong audience are refused by the verifier"
[ "$(stat -c %a "$WORK/n1/identity-jwt.key")" = 600 ] || fail "identity-jwt.key is not 0600"
ok "identity-jwt.key is 0600"

# ---- a removed PoP's key leaves every key set ----
"$POPD" join --data "$WORK/n3" --name pop-3 --mesh-listen "127.0.0.1:$(free_port)" \
    --tunnel-listen "127.0.0.1:$(free_port)" "$TOKEN" >/dev/null
start_popd "$WORK/n3"
P3=$LAST_PID
ID3=$(mctl "$WORK/n3" --json status | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["id"])')
wait_for 20 "pop-3's key at pop-2" has_kid "$H2" "$ID3"
mctl "$WORK/n1" node rm pop-3 >/dev/null
no_kid() { ! has_kid "$1" "$2"; }
wait_for 20 "pop-3's key gone from pop-2's key set" no_kid "$H2" "$ID3"
has_kid "$H2" "$ID1" && has_kid "$H2" "$ID2" || fail "pop-1's or pop-2's key went too"
kill "$P3" 2>/dev/null || true
ok "a joining PoP's key appears in the key set, and leaves it when the PoP is removed"

# ---- a code one step off, and lockout after failures (dave) ----
echo "correct-horse-battery" | mctl "$WORK/n1" user add dave >/dev/null
mctl "$WORK/n1" --json user totp enable dave >"$WORK/enable3.json" 2>&1 || fail "enable dave"
DSECRET=$("$PY" -c 'import json,sys,re; print(re.search("secret=([A-Z2-7]+)", json.load(open(sys.argv[1]))["uri"]).group(1))' "$WORK/enable3.json")
# The previous step's code is inside the +-1 window; two steps back is not.
OLD2=$($APP code "$DSECRET" -2) OLD1=$($APP code "$DSECRET" -1)
[ "$(login "$H1" dave "$OLD2")" = 401 ] || fail "a code two steps old was accepted"
c=$(login "$H1" dave "$OLD1")
[ "$c" = 302 ] || fail "the previous step's code (one step off) gave $c: $(cat "$WORK/body")"
ok "a code one step old signs in (the +-1 window); two steps old is refused"
# Each sign-in attempt takes one of the user's 5 (then one per 10 s): after wrong codes the
# right one is refused with 429 too, at this PoP and, the counts being shared, at the other.
n=0
for _ in 1 2 3 4 5 6; do
    c=$(login "$H1" dave "000000")
    [ "$c" = 429 ] && break
    [ "$c" = 401 ] || fail "a wrong code for dave gave $c"
    n=$((n + 1))
done
[ "$c" = 429 ] || fail "6 wrong codes in a row were never rate limited"
c=$(login "$H1" dave "$($APP code "$DSECRET")")
[ "$c" = 429 ] || fail "the right code right after the failures gave $c (no lockout)"
locked2() { [ "$(login "$H2" dave "000000")" = 429 ]; }
wait_for 10 "dave locked out at pop-2 too" locked2
ok "lockout: after $n refused attempts dave's next ones are refused with 429, the right code included, at pop-1 and at pop-2"

# ---- disable ----
mctl "$WORK/n1" user totp disable carol >"$WORK/dis.txt"
expect_in "$WORK/dis.txt" "TOTP disabled"
gone() { ! mctl "$WORK/n2" config get totp/carol >/dev/null 2>&1; }
wait_for 20 "totp/carol gone at pop-2" gone
ok "user totp disable removes the second factor everywhere"

done_testing
