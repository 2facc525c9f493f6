#!/usr/bin/env bash
# Certificates and session-ticket keys on three real PoPs. A self-signed certificate for two
# names (openssl req -x509) imported at pop-1 shows in cert list at pop-3 within a second
# (time measured); a key that does not match, an expired certificate (made under faketime),
# garbage, swapped files and a missing file are refused with exit 1 or 2 and a message naming
# the problem, and change nothing; the LMDB store of every PoP (mdb_dump) and config get of
# the raw record hold no PEM private key, while the certificate is there; no log line holds
# the key; a second import replaces the first; cert rm by a second name at pop-2 replicates;
# with a 3 s ticket period (POPMESH_TEST_TICKET_PERIOD_MS, logged) every PoP holds the same
# current ticket key name, and a new one the next period, the next period's key is there before
# it starts, and after SIGKILL of pop-3 the other two keep agreeing on a new key every period.
source "$(dirname "$0")/lib.sh"

for tool in openssl mdb_dump faketime; do
    command -v "$tool" >/dev/null || { echo "SKIP: $tool is not installed (tools/setup.sh)"; exit 77; }
done

export POPMESH_TEST_TICKET_PERIOD_MS=3000
start_mesh 3
N1="$WORK/n1" N2="$WORK/n2" N3="$WORK/n3"
wait_for 20 "3 alive members on each PoP" all_see "$N1" "$N2" "$N3" "pop-1=alive pop-2=alive pop-3=alive"
ok "3 PoPs up (${WAITED}s)"
expect_in "$N1.log" "TEST KNOB: POPMESH_TEST_TICKET_PERIOD_MS=3000"
ok "the ticket period knob is logged"

# ---- certificates made here ----
C="$WORK/certs"
mkdir -p "$C"
mkcert() { # mkcert NAME SUBJ SAN [faketime-date]: $C/NAME.crt, $C/NAME.key
    local name=$1 subj=$2 san=$3 when=${4:-}
    local cmd=(openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes
        -keyout "$C/$name.key" -out "$C/$name.crt" -days 30 -subj "$subj" -addext "subjectAltName=$san")
    if [ -n "$when" ]; then faketime "$when" "${cmd[@]}"; else "${cmd[@]}"; fi >/dev/null 2>&1 ||
        fail "openssl could not make the $name certificate"
}
mkcert good "/CN=www.tls.test" "DNS:www.tls.test,DNS:*.apps.tls.test"
mkcert other "/CN=other.tls.test" "DNS:other.tls.test"
mkcert old "/CN=old.tls.test" "DNS:old.tls.test" "2020-01-01 00:00:00"
echo "this is not a certificate" >"$C/garbage.pem"

# ---- import at pop-1, list at pop-3 ----
expect_rc 0 mctl "$N1" cert import --cert "$C/good.crt" --key "$C/good.key"
expect_in "$WORK/out" "certificate www.tls.test imported: www.tls.test, *.apps.tls.test"
cert_ids() { # cert_ids DIR: "id:state:names ..." as DIR lists them
    mctl "$1" --json cert list | "$PY" -c '
import json, sys
print(" ".join("%s:%s:%s" % (c["id"], c["state"], ",".join(c.get("names", []))) for c in json.load(sys.stdin)["certs"]))'
}
has_good() { [ "$(cert_ids "$1")" = "www.tls.test:valid:www.tls.test,*.apps.tls.test" ]; }
wait_for 1 "the certificate at pop-3 within a second" has_good "$N3"
ok "cert import at pop-1 shows in cert list at pop-3 after ${WAITED}s"
wait_for 5 "the certificate at pop-2" has_good "$N2"
mctl "$N3" cert list >"$WORK/list.txt"
expect_in "$WORK/list.txt" "www.tls.test,*.apps.tls.test"
expect_in "$WORK/list.txt" "import"
expect_in "$WORK/list.txt" "pop-1"
expect_in "$WORK/list.txt" "valid"
expect_in "$WORK/list.txt" "CN = www.tls.test"
mctl "$N3" --json cert list | "$PY" -c '
import json, sys, time
c = json.load(sys.stdin)["certs"][0]
now = time.time() * 1000
assert c["source"] == "import" and c["obtained_by"] == "pop-1", c
assert c["not_before_ms"] <= now < c["not_after_ms"] and c["not_after_ms"] - now > 29 * 86400e3, c
assert c["renew_after_ms"] > c["not_before_ms"], c
assert "key" not in c and "chain" not in c, c' || fail "cert list --json is not what was imported"
ok "cert list at pop-3: names, issuer, expiry, source, obtained_by, state (no key, no chain)"

# ---- refusals: nothing changes ----
bad() { # bad RC TEXT ARGS...: meshctl at pop-1 exits RC and says TEXT
    local rc=$1 text=$2
    shift 2
    expect_rc "$rc" mctl "$N1" "$@"
    expect_in "$WORK/err" "$text"
}
bad 1 "the key does not match the certificate" cert import --cert "$C/good.crt" --key "$C/other.key"
bad 1 "the certificate has expired (not after 2020-01-31" cert import --cert "$C/old.crt" --key "$C/old.key"
bad 1 "not a PEM certificate" cert import --cert "$C/garbage.pem" --key "$C/good.key"
bad 1 "not a PEM private key" cert import --cert "$C/good.crt" --key "$C/garbage.pem"
bad 1 "holds a private key, not a certificate" cert import --cert "$C/good.key" --key "$C/good.crt"
bad 2 "cannot read the certificate file" cert import --cert "$C/nothere.crt" --key "$C/good.key"
bad 2 "needs --cert FILE and --key FILE" cert import --cert "$C/good.crt"
bad 1 "no certificate nothere.tls.test" cert rm nothere.tls.test
bad 2 "cert rm takes one" cert rm
for d in "$N1" "$N2" "$N3"; do has_good "$d" || fail "a refused import changed the certificates at $d"; done
ok "mismatched key, expired, garbage, swapped, missing files, unknown rm: exit 1 or 2, named"

# ---- no private key in clear ----
for d in "$N1" "$N2" "$N3"; do
    mdb_dump -a -p "$d/store" >"$WORK/dump.txt" 2>&1 || fail "mdb_dump could not read $d/store"
    grep -q "BEGIN CERTIFICATE" "$WORK/dump.txt" || fail "mdb_dump of $d shows no certificate: the check would prove nothing"
    if grep -q "PRIVATE KEY" "$WORK/dump.txt"; then fail "$d's LMDB store holds a PEM private key in clear"; fi
    # The key's base64 body, in case a future encoding drops the armour.
    body=$(sed -n '2p' "$C/good.key")
    if grep -qF "$body" "$WORK/dump.txt"; then fail "$d's LMDB store holds the key's base64 in clear"; fi
done
mctl "$N2" --json config get cert/www.tls.test >"$WORK/raw.json"
expect_in "$WORK/raw.json" "BEGIN CERTIFICATE"
if grep -q "PRIVATE KEY" "$WORK/raw.json"; then fail "config get shows the private key in clear"; fi
if grep -l "PRIVATE KEY\|$(sed -n '2p' "$C/good.key")" "$WORK"/n*.log; then fail "a log holds the key"; fi
ok "no PEM private key in clear in any PoP's LMDB (mdb_dump), in config get, or in a log"

# ---- a second import replaces; rm by a second name ----
expect_rc 0 mctl "$N2" cert import --cert "$C/good.crt" --key "$C/good.key"
expect_in "$WORK/out" "replacing the old one"
by_pop2() { mctl "$1" --json cert list | "$PY" -c '
import json, sys
c = json.load(sys.stdin)["certs"]
sys.exit(0 if len(c) == 1 and c[0]["obtained_by"] == "pop-2" else 1)'; }
for d in "$N1" "$N3"; do wait_for 5 "the replacement at $d" by_pop2 "$d"; done
ok "an import for the same names at pop-2 replaces the certificate everywhere"

expect_rc 0 mctl "$N2" cert rm '*.apps.tls.test'
expect_in "$WORK/out" "certificate www.tls.test removed"
none() { [ "$(cert_ids "$1")" = "" ]; }
for d in "$N1" "$N3"; do wait_for 5 "cert rm at $d" none "$d"; done
ok "cert rm by a second name at pop-2 replicates (${WAITED}s to the last PoP)"

# ---- session-ticket keys ----
cur_name() { mctl "$1" --json tls status | "$PY" -c '
import json, sys
t = json.load(sys.stdin)["tickets"]
assert t["period_ms"] == 3000
print(t["current"] or "")'; }
same_key() { # same_key [NOT]: every PoP has the same current key name (and not NOT)
    local a b c
    a=$(cur_name "$N1") b=$(cur_name "$N2") c=$(cur_name "$N3")
    [ -n "$a" ] && [ "$a" = "$b" ] && [ "$a" = "$c" ] && [ "$a" != "${1:-}" ] || return 1
    SAME=$a
}
wait_for 15 "the same ticket key name at every PoP" same_key
first=$SAME
[[ "$first" =~ ^[0-9a-f]{32}$ ]] || fail "the current key name '$first' is not 32 hex digits"
ok "every PoP holds the same current ticket key ($first, after ${WAITED}s)"
wait_for 10 "a new common ticket key next period" same_key "$first"
ok "next period: a new key ($SAME), the same at every PoP"
mctl "$N1" --json tls status >"$WORK/tls.json"
"$PY" -c '
import json, sys
t = json.load(open(sys.argv[1]))["tickets"]
assert set(t) == {"period_ms", "epoch", "current", "keys", "written", "fallbacks", "deleted", "unreadable"}, t
for k in t["keys"]:
    assert set(k) == {"epoch", "name", "created_by", "created_ms"}, k
    assert k["created_by"] in ("pop-1", "pop-2", "pop-3"), k
assert t["unreadable"] == 0, t
' "$WORK/tls.json" || fail "tls status is not names and counters only"
mctl "$N1" tls status >"$WORK/tls.txt"
expect_in "$WORK/tls.txt" "session tickets: period 3 s"
ok "tls status shows key names and counters, never a key"
ahead() { mctl "$N2" --json tls status | "$PY" -c '
import json, sys
t = json.load(sys.stdin)["tickets"]
sys.exit(0 if t["epoch"] + 1 in [k["epoch"] for k in t["keys"]] else 1)'; }
wait_for 5 "the next period's key held ahead" ahead
ok "the next period's key is held before the period starts"
# Who wrote: the writers' counts over the three PoPs add up to the keys made (>= 2 periods).
total=0
for d in "$N1" "$N2" "$N3"; do
    w=$(mctl "$d" --json tls status | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["tickets"]["written"])')
    total=$((total + w))
done
[ "$total" -ge 2 ] || fail "only $total ticket keys written over the mesh"
ok "ticket keys written over the mesh: $total"

# ---- a PoP dies: the other two keep making and agreeing on keys ----
kill -9 "${NODE_PID[3]}"
wait "${NODE_PID[3]}" 2>/dev/null || true
same2() { # same2 [NOT]: pop-1 and pop-2 have the same current key name (and not NOT)
    local a b
    a=$(cur_name "$N1") b=$(cur_name "$N2")
    [ -n "$a" ] && [ "$a" = "$b" ] && [ "$a" != "${1:-}" ] || return 1
    SAME=$a
}
prev=$(cur_name "$N1")
for period in 1 2 3; do
    wait_for 10 "a new common key at pop-1 and pop-2 (period $period after the kill)" same2 "$prev"
    prev=$SAME
done
ok "pop-3 killed: pop-1 and pop-2 agree on a new key in each of the next 3 periods"

done_testing
