#!/usr/bin/env bash
# OCSP stapling with a real responder: Debian's `openssl ocsp` serves an index of a CA made
# here (the responder signs with a certificate the CA delegated for OCSP signing). Two PoPs with
# --https-listen; app.test's leaf names the responder (authorityInfoAccess OCSP;URI:...),
# plain.test's names none. Checks:
#   - within a bounded time `openssl s_client -status` gets "OCSP Response Status: successful"
#     and "Cert Status: good" for app.test at BOTH PoPs (the times are printed);
#   - one PoP fetched (the rendezvous choice of ocspfetch.h), the other staples the record;
#   - that PoP killed, the other one fetches in its place;
#   - plain.test gets no fetch and no staple;
#   - `meshctl cert list` and `--json cert list` at both PoPs show app.test's OCSP as "good
#     until" the response's nextUpdate (and who fetched it, when), then "revoked" with the time
#     of the revocation, and plain.test's as "none";
#   - after the leaf is revoked in the responder's index, the next refresh (test knob
#     POPMESH_TEST_OCSP_REFRESH_MS=3000) stops the stapling at both PoPs: a revoked status is
#     never stapled, as good or otherwise (the choice is in docs/tls.md), and the PoPs log why;
#   - with the responder gone, the fetching PoP logs the failure and when it tries again.
source "$(dirname "$0")/lib.sh"
command -v openssl >/dev/null || { echo "SKIP: no openssl CLI"; exit 77; }

# ---- the CA, the responder's certificate, two leaves; the responder's index ----
C="$WORK/pki"
mkdir -p "$C"
OPORT=$(free_port)
ossl() { openssl "$@" >>"$C/openssl.log" 2>&1 || { cat "$C/openssl.log" >&2; fail "openssl $1"; }; }
ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$C/ca.key" \
    -out "$C/ca.pem" -days 2 -subj "/CN=popmesh OCSP test CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
leaf() { # leaf NAME EXTRA-EXT-LINES
    ossl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$C/$1.key" \
        -out "$C/$1.csr" -subj "/CN=$1"
    printf '%s\n' "$2" >"$C/$1.ext"
    ossl x509 -req -in "$C/$1.csr" -CA "$C/ca.pem" -CAkey "$C/ca.key" -CAcreateserial \
        -out "$C/$1.pem" -days 1 -extfile "$C/$1.ext"
    cat "$C/$1.pem" "$C/ca.pem" >"$C/$1.chain.pem"
}
leaf responder $'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=OCSPSigning'
leaf app.test $'subjectAltName=DNS:app.test\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nauthorityInfoAccess=OCSP;URI:http://127.0.0.1:'"$OPORT"
leaf plain.test $'subjectAltName=DNS:plain.test\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth'
openssl x509 -in "$C/app.test.pem" -noout -text | grep -q "OCSP - URI:http://127.0.0.1:$OPORT" ||
    fail "the leaf does not name the responder"
# index.txt lines: status, expiry (YYMMDDHHMMSSZ), revocation time, serial (hex), file, DN
index_line() { # index_line NAME STATUS REVOKED-AT
    local serial end dn
    serial=$(openssl x509 -in "$C/$1.pem" -noout -serial | cut -d= -f2)
    end=$(date -u -d "$(openssl x509 -in "$C/$1.pem" -noout -enddate | cut -d= -f2)" +%y%m%d%H%M%SZ)
    dn=$(openssl x509 -in "$C/$1.pem" -noout -subject -nameopt compat | sed 's/^subject=//')
    printf '%s\t%s\t%s\t%s\tunknown\t%s\n' "$2" "$end" "$3" "$serial" "$dn"
}
index_line app.test V "" >"$C/index.txt"
index_line plain.test V "" >>"$C/index.txt"
: >"$C/index.txt.attr"

# The responder: responses valid one minute (-nmin 1), so refreshes come quickly anyway.
openssl ocsp -index "$C/index.txt" -port "$OPORT" -rsigner "$C/responder.pem" \
    -rkey "$C/responder.key" -CA "$C/ca.pem" -nmin 1 -ignore_err >"$WORK/responder.log" 2>&1 &
PIDS+=("$!")
RESP_PID=$!
ask_responder() {
    openssl ocsp -issuer "$C/ca.pem" -cert "$C/app.test.pem" -url "http://127.0.0.1:$OPORT" \
        -VAfile "$C/responder.pem" -timeout 3 2>&1
}
responder_up() { ask_responder | grep -q "app.test.pem: good"; }
wait_for 10 "the OCSP responder" responder_up
ok "openssl ocsp answers on 127.0.0.1:$OPORT (app.test: good)"

# ---- two PoPs with HTTPS listeners; the certificates imported at pop-1 ----
export POPMESH_TEST_OCSP_REFRESH_MS=3000
declare -a S
for i in 1 2; do S[$i]=$(free_port); done
declare -a PID
init_node "$WORK/n1" pop-1 --https-listen "127.0.0.1:${S[1]}"
start_popd "$WORK/n1"
PID[1]=$LAST_PID
TOKEN=$(mctl "$WORK/n1" token create --uses 1 --ttl 10m 2>/dev/null)
"$POPD" join --data "$WORK/n2" --name pop-2 --mesh-listen "127.0.0.1:$(free_port)" \
    --tunnel-listen "127.0.0.1:$(free_port)" --https-listen "127.0.0.1:${S[2]}" "$TOKEN" >/dev/null
start_popd "$WORK/n2"
PID[2]=$LAST_PID
IMPORTED=$(date +%s%N)
expect_rc 0 mctl "$WORK/n1" cert import --cert "$C/app.test.chain.pem" --key "$C/app.test.key"
expect_rc 0 mctl "$WORK/n1" cert import --cert "$C/plain.test.chain.pem" --key "$C/plain.test.key"

# ocsp_is N ID PYEXPR: pop-N's `--json cert list` holds ID, and its ocsp object o satisfies
# PYEXPR (now: Unix ms).
ocsp_is() {
    mctl "$WORK/n$1" --json cert list | "$PY" -c '
import json, sys, time
cs = [c for c in json.load(sys.stdin)["certs"] if c["id"] == sys.argv[1]]
o = cs[0].get("ocsp", {}) if cs else {}
sys.exit(0 if cs and eval("(" + sys.argv[2] + ")", {"o": o, "now": time.time() * 1000}) else 1)' "$2" "$3"
}
ocsp_json() { # ocsp_json N ID: the ocsp object, for messages
    mctl "$WORK/n$1" --json cert list | "$PY" -c '
import json, sys
print(json.dumps([c.get("ocsp") for c in json.load(sys.stdin)["certs"] if c["id"] == sys.argv[1]]))' "$2"
}
# table_ocsp N ID: the OCSP column (22 wide, under "OCSP (UTC)") of ID's row in pop-N's
# `cert list`, trailing blanks cut
table_ocsp() {
    mctl "$WORK/n$1" cert list | awk -v id="$2" 'NR == 1 { p = index($0, "OCSP (UTC)") }
        $1 == id && p { print substr($0, p, 22); exit }' | sed 's/ *$//'
}

status_of() { # status_of PORT NAME: what s_client -status shows about the staple
    timeout 5 openssl s_client -connect "127.0.0.1:$1" -servername "$2" -status \
        -CAfile "$C/ca.pem" </dev/null 2>&1 | grep -E "OCSP [Rr]esponse|Cert Status|Verify return code"
}
stapled_good() {
    local s
    s=$(status_of "$1" app.test)
    grep -q "OCSP Response Status: successful" <<<"$s" && grep -q "Cert Status: good" <<<"$s"
}
for i in 1 2; do
    wait_for 30 "a good OCSP response stapled at pop-$i" stapled_good "${S[$i]}"
    since=$(awk "BEGIN{printf \"%.1f\", ($(date +%s%N)-$IMPORTED)/1e9}")
    ok "pop-$i staples app.test's OCSP response (successful, good), ${since} s after the import"
done
status_of "${S[2]}" app.test | sed 's/^/    pop-2: /'

# One PoP fetched: the one the rendezvous hash picks; the other stapled the record.
n1=$(grep -c "OCSP response for cert/app.test from" "$WORK/n1.log" || true)
n2=$(grep -c "OCSP response for cert/app.test from" "$WORK/n2.log" || true)
echo "    fetches logged: pop-1 $n1, pop-2 $n2"
{ [ "$n1" -gt 0 ] && [ "$n2" -eq 0 ]; } || { [ "$n2" -gt 0 ] && [ "$n1" -eq 0 ]; } ||
    fail "expected exactly one PoP to fetch (pop-1 $n1, pop-2 $n2)"
grep -q "stapling the OCSP response of cert/app.test" "$WORK/n1.log" || fail "pop-1 logs no staple"
grep -q "stapling the OCSP response of cert/app.test" "$WORK/n2.log" || fail "pop-2 logs no staple"
ok "one PoP fetched (pop-1 $n1 fetch(es), pop-2 $n2), both staple"

# What the operator sees: good, until the response's nextUpdate (the responder's -nmin 1 makes
# it thisUpdate + 60 s), fetched by the PoP that fetched, at both PoPs.
FETCHER=1
[ "$n2" -gt 0 ] && FETCHER=2
good_listed() {
    ocsp_is "$1" app.test 'o["state"] == "good" and o["status"] == "good" and
        o["next_update_ms"] > now and 55000 <= o["next_update_ms"] - o["this_update_ms"] <= 65000
        and o["fetched_by"] == "pop-'"$FETCHER"'" and now - 120000 < o["fetched_ms"] <= now
        and o["responder"] == "http://127.0.0.1:'"$OPORT"'" and "reason" not in o'
}
for i in 1 2; do
    ( wait_for 10 "pop-$i's cert list to show app.test's OCSP good" good_listed "$i" ) ||
        { ocsp_json "$i" app.test >&2; fail "pop-$i: app.test's OCSP in --json cert list"; }
    cell=$(table_ocsp "$i" app.test)
    # the time shown is the nextUpdate of --json, UTC, to the minute (a refresh every 3 s may
    # move it on by a minute between the two calls)
    want=$(mctl "$WORK/n$i" --json cert list | "$PY" -c '
import json, sys, time
o = [c["ocsp"] for c in json.load(sys.stdin)["certs"] if c["id"] == "app.test"][0]
for d in (0, 60):
    print(time.strftime("good until %m-%d %H:%M", time.gmtime(o["next_update_ms"] // 1000 - d)))')
    grep -qxF -- "$cell" <<<"$want" ||
        { mctl "$WORK/n$i" cert list >&2; fail "pop-$i's cert list OCSP column: '$cell', want one of: $want"; }
    ok "pop-$i: cert list shows app.test's OCSP '$cell'; --json: $(ocsp_json "$i" app.test)"
done
mctl "$WORK/n1" cert list | sed 's/^/    /'

# Refreshes: the knob (3 s) brings more fetches, still by the same PoP.
more_fetches() {
    [ "$(grep -c "OCSP response for cert/app.test from" "$WORK/n$FETCHER.log")" -ge $((n1 + n2 + 2)) ]
}
wait_for 20 "two refreshes" more_fetches
ok "pop-$FETCHER refreshed the response (every 3 s under the test knob)"

# ---- the fetching PoP dies: the other takes its turn (it is first among the alive PoPs, or
# second once three refresh periods have passed), and staples on; the dead one comes back ----
OTHER=$((3 - FETCHER))
kill -9 "${PID[$FETCHER]}"
wait "${PID[$FETCHER]}" 2>/dev/null || true
KILLED=$(date +%s%N)
other_fetched() { grep -q "OCSP response for cert/app.test from" "$WORK/n$OTHER.log"; }
wait_for 40 "pop-$OTHER to fetch in place of pop-$FETCHER" other_fetched
took=$(awk "BEGIN{printf \"%.1f\", ($(date +%s%N)-$KILLED)/1e9}")
stapled_good "${S[$OTHER]}" || fail "pop-$OTHER no longer staples"
ok "pop-$FETCHER killed: pop-$OTHER fetched ${took} s later and staples"
start_popd "$WORK/n$FETCHER"
PID[$FETCHER]=$LAST_PID
wait_for 30 "a good OCSP response stapled at the restarted pop-$FETCHER" stapled_good "${S[$FETCHER]}"
ok "pop-$FETCHER restarted and staples again (${WAITED} s)"

# A certificate without a responder: no fetch, no staple.
s=$(status_of "${S[1]}" plain.test)
grep -q "OCSP response: no response sent" <<<"$s" || { echo "$s" >&2; fail "plain.test got a staple"; }
grep -q "Verify return code: 0 (ok)" <<<"$s" || { echo "$s" >&2; fail "plain.test's handshake"; }
if grep -q "OCSP.*cert/plain.test\|cert/plain.test.*OCSP" "$WORK/n1.log" "$WORK/n2.log"; then
    fail "an OCSP fetch or staple for plain.test (no responder in its certificate)"
fi
ok "plain.test (no authorityInfoAccess): no fetch, nothing stapled"
for i in 1 2; do
    ocsp_is "$i" plain.test 'o["state"] == "none" and "names no OCSP responder" in o["reason"]
        and "responder" not in o and "fetched_by" not in o' ||
        { ocsp_json "$i" plain.test >&2; fail "pop-$i: plain.test's OCSP in --json cert list"; }
    cell=$(table_ocsp "$i" plain.test)
    [[ "$cell" =~ ^none\ *$ ]] || { mctl "$WORK/n$i" cert list >&2; fail "pop-$i: plain.test's OCSP column '$cell'"; }
done
ok "cert list at both PoPs: plain.test's OCSP is 'none' (the certificate names no OCSP responder)"

# ---- revoke app.test in the responder's index ----
REVOKED_AT=$(date -u +%s)
index_line app.test R "$(date -u -d "@$REVOKED_AT" +%y%m%d%H%M%SZ)" >"$C/index.new"
index_line plain.test V "" >>"$C/index.new"
mv "$C/index.new" "$C/index.txt"
responder_says_revoked() { ask_responder | grep -q "app.test.pem: revoked"; }
if ( wait_for 5 "the responder to reload its index" responder_says_revoked ) 2>/dev/null; then
    echo "    the responder reloaded its index"
else
    # An openssl that does not reload its index: restart it on the same port.
    kill "$RESP_PID" 2>/dev/null || true
    wait "$RESP_PID" 2>/dev/null || true
    openssl ocsp -index "$C/index.txt" -port "$OPORT" -rsigner "$C/responder.pem" \
        -rkey "$C/responder.key" -CA "$C/ca.pem" -nmin 1 -ignore_err >>"$WORK/responder.log" 2>&1 &
    PIDS+=("$!")
    RESP_PID=$!
    wait_for 10 "the restarted responder to say revoked" responder_says_revoked
fi
ok "the responder says app.test is revoked"
not_stapled() {
    local s
    s=$(status_of "$1" app.test)
    grep -q "OCSP response: no response sent" <<<"$s" && ! grep -q "Cert Status" <<<"$s"
}
for i in 1 2; do
    wait_for 30 "pop-$i to stop stapling app.test" not_stapled "${S[$i]}"
    ok "pop-$i staples nothing for app.test once it is revoked (${WAITED} s)"
done
grep -q "says cert/app.test is revoked" "$WORK/n1.log" || fail "pop-1 does not log the revocation"
grep -q "says cert/app.test is revoked" "$WORK/n2.log" || fail "pop-2 does not log the revocation"
grep -h "says cert/app.test is revoked" "$WORK/n1.log" | head -1 | sed 's/^/    /'
# and it stays so over several refreshes
for _ in 1 2 3; do
    sleep 2
    for i in 1 2; do
        s=$(status_of "${S[$i]}" app.test)
        grep -q "Cert Status" <<<"$s" && { echo "$s" >&2; fail "pop-$i stapled a response again"; }
    done
done
ok "still nothing stapled 6 s later (refreshes every 3 s)"
# and cert list says why: revoked, at the time the index says
for i in 1 2; do
    ocsp_is "$i" app.test 'o["state"] == "revoked" and o["status"] == "revoked" and
        abs(o["revoked_ms"] - '"$REVOKED_AT"' * 1000) < 2000 and o["next_update_ms"] > now and
        o["fetched_by"] in ("pop-1", "pop-2")' ||
        { ocsp_json "$i" app.test >&2; fail "pop-$i: app.test's OCSP in --json cert list after the revocation"; }
    cell=$(table_ocsp "$i" app.test)
    want=$(date -u -d "@$REVOKED_AT" +"%m-%d %H:%M")
    [ "$(echo $cell)" = "revoked $want" ] ||
        { mctl "$WORK/n$i" cert list >&2; fail "pop-$i: app.test's OCSP column '$cell', want 'revoked $want'"; }
    ok "pop-$i: cert list shows app.test's OCSP '$(echo $cell)'"
done

# ---- the responder goes away: the fetcher says so and backs off ----
kill "$RESP_PID" 2>/dev/null || true
wait "$RESP_PID" 2>/dev/null || true
failed_logged() {
    grep -q "OCSP for cert/app.test from http://127.0.0.1:$OPORT failed: .*; next try in" \
        "$WORK/n$FETCHER.log"
}
wait_for 20 "pop-$FETCHER to log the failed fetch" failed_logged
grep -h "OCSP for cert/app.test from http://127.0.0.1:$OPORT failed" "$WORK/n$FETCHER.log" |
    head -1 | sed 's/^/    /'
ok "a responder that is gone: the failure is logged with its reason and the next try"
done_testing
