#!/usr/bin/env bash
# Secrets in the replicated store are sealed under the store key (docs/security.md, "Secrets in
# the store"). Two PoPs with HTTPS listeners: the store key made by popd init reaches the
# joiner (same file, mode 0600); a certificate imported at pop-1 is served at both PoPs
# (openssl s_client, by fingerprint), while neither PoP's store/data.mdb, nor a copy of it,
# holds the key's PEM base64 body, its DER or its raw private scalar; the same search finds all
# three in a file that holds the key in clear, so the search can fail. pop-2 restarted still
# serves it. pop-2 with another mesh's store key logs which record it cannot open, serves
# nothing for it and keeps running. The upgrade path: a PoP that seals as popd did before the
# store key (POPMESH_TEST_LEGACY_SEAL) and has no store.key, restarted as this version,
# derives its store key, writes store.key, rewrites the records sealed the old way, serves the
# certificate, and after one more restart finds every secret sealed under the store key.
source "$(dirname "$0")/lib.sh"

command -v openssl >/dev/null || { echo "SKIP: openssl is not installed (tools/setup.sh)"; exit 77; }

C="$WORK/certs"
mkdir -p "$C"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$C/www.key" \
    -out "$C/www.crt" -days 30 -subj "/CN=www.sec.test" -addext "subjectAltName=DNS:www.sec.test" \
    >/dev/null 2>&1 || fail "openssl could not make the certificate"
openssl pkey -in "$C/www.key" -outform DER -out "$C/www.der" 2>/dev/null
FP=$(openssl x509 -in "$C/www.crt" -noout -fingerprint -sha256)

# holds_key FILE: exit 0 if FILE holds the private key in any of three spellings: a line of
# its PEM base64 body, its DER (PKCS#8), its raw 32-byte private scalar.
holds_key() {
    "$PY" - "$1" "$C/www.key" "$C/www.der" <<'PY'
import subprocess, sys
data = open(sys.argv[1], "rb").read()
pem = open(sys.argv[2], "rb").read().splitlines()
body = [l for l in pem if l and not l.startswith(b"-----")]
der = open(sys.argv[3], "rb").read()
text = subprocess.run(["openssl", "pkey", "-in", sys.argv[2], "-noout", "-text"],
                      capture_output=True, check=True).stdout.decode()
hexes, on = [], False
for line in text.splitlines():
    if line.startswith("priv:"):
        on = True
        continue
    if on and line.startswith("    "):
        hexes.append(line.strip())
    elif on:
        break
raw = bytes.fromhex("".join(hexes).replace(":", ""))[-32:]
assert len(raw) == 32 and all(len(b) >= 40 for b in body[:2]) and der
found = [n for n, b in (("a PEM body line", body[0]), ("another PEM body line", body[1]),
                        ("the DER", der), ("the raw scalar", raw)) if b in data]
print(", ".join(found))
sys.exit(0 if found else 1)
PY
}

# served PORT: the certificate pop at PORT serves for www.sec.test is the one imported.
served() {
    local got
    got=$(openssl s_client -connect "127.0.0.1:$1" -servername www.sec.test </dev/null 2>/dev/null |
        openssl x509 -noout -fingerprint -sha256 2>/dev/null) || return 1
    [ "$got" = "$FP" ]
}
sealed() { # sealed DIR FIELD: the store.sealed counter FIELD in status
    mctl "$1" --json status | "$PY" -c "import json,sys; print(json.load(sys.stdin)['store']['sealed']['$2'])"
}

# ---- two PoPs; the store key travels in JOIN_OK ----
declare -a S
for i in 1 2; do S[$i]=$(free_port); done
init_node "$WORK/n1" pop-1 --https-listen "127.0.0.1:${S[1]}"
start_popd "$WORK/n1"
NODE_PID[1]=$LAST_PID
TOKEN=$(mctl "$WORK/n1" token create --uses 1 --ttl 10m 2>/dev/null)
"$POPD" join --data "$WORK/n2" --name pop-2 --mesh-listen "127.0.0.1:$(free_port)" \
    --tunnel-listen "127.0.0.1:$(free_port)" --https-listen "127.0.0.1:${S[2]}" "$TOKEN" >/dev/null
start_popd "$WORK/n2"
NODE_PID[2]=$LAST_PID
N1="$WORK/n1" N2="$WORK/n2"
wait_for 20 "both PoPs alive" all_see "$N1" "$N2" "pop-1=alive pop-2=alive"
for d in "$N1" "$N2"; do
    [ "$(stat -c %a "$d/store.key")" = 600 ] || fail "$d/store.key is not mode 0600"
done
cmp -s "$N1/store.key" "$N2/store.key" || fail "pop-2's store key differs from pop-1's"
ok "popd init made store.key (0600); pop-2 received the same key when it joined"

# ---- a certificate with its key, served at both PoPs ----
expect_rc 0 mctl "$N1" cert import --cert "$C/www.crt" --key "$C/www.key"
wait_for 10 "pop-1 serves the certificate" served "${S[1]}"
wait_for 10 "pop-2 serves the certificate" served "${S[2]}"
ok "the imported certificate is served at pop-1 and pop-2 (s_client, SHA-256 fingerprint)"

# The search can fail: a file that holds the key in clear is found, in every spelling.
cp "$N1/store/data.mdb" "$WORK/control.mdb"
cat "$C/www.key" "$C/www.der" >>"$WORK/control.mdb"
found=$(holds_key "$WORK/control.mdb") || fail "the search does not find the key in a file that holds it"
ok "control: the search finds the key in a copy of data.mdb with the key appended ($found)"
# ... and in a file with only the raw scalar.
openssl pkey -in "$C/www.key" -noout -text 2>/dev/null | "$PY" -c '
import sys
h, on = [], False
for l in sys.stdin:
    if l.startswith("priv:"): on = True; continue
    if on and l.startswith("    "): h.append(l.strip())
    elif on: break
sys.stdout.buffer.write(b"x" * 100 + bytes.fromhex("".join(h).replace(":", ""))[-32:] + b"y" * 100)' \
    >"$WORK/raw.bin"
found=$(holds_key "$WORK/raw.bin") || fail "the search does not find the raw scalar"
[ "$found" = "the raw scalar" ] || fail "the raw-scalar control found '$found'"
ok "control: the raw private scalar alone is found"

for d in "$N1" "$N2"; do
    grep -q "www.sec.test" "$d/store/data.mdb" || fail "$d's data.mdb lacks the certificate record: the search would prove nothing"
    cp "$d/store/data.mdb" "$WORK/copy.mdb"
    for f in "$d/store/data.mdb" "$WORK/copy.mdb"; do
        if found=$(holds_key "$f"); then fail "$f holds the private key in clear: $found"; fi
    done
done
[ "$(sealed "$N2" key_id)" = 1 ] || fail "pop-2 has no store key in status"
ok "no PEM body, DER or raw scalar of the key in either PoP's data.mdb or a copy of it"

# ---- pop-2 restarted still serves it ----
stop_popd "${NODE_PID[2]}"
start_popd "$N2"
NODE_PID[2]=$LAST_PID
wait_for 10 "pop-2 serves the certificate after a restart" served "${S[2]}"
[ "$(sealed "$N2" current)" -ge 1 ] && [ "$(sealed "$N2" legacy)" = 0 ] &&
    [ "$(sealed "$N2" unreadable)" = 0 ] || fail "pop-2's start-up pass: $(mctl "$N2" --json status)"
ok "pop-2 restarted: serves the certificate; every secret it holds is under the store key"

# ---- a PoP with the wrong store key: a clear error naming the record, no crash ----
stop_popd "${NODE_PID[2]}"
cp "$N2/store.key" "$WORK/store.key.good"
rm -f "$N2/store.key"
printf 'store-key-id = 1\nstore-key = %s\n' "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$N2/store.key"
chmod 600 "$N2/store.key"
start_popd "$N2"
NODE_PID[2]=$LAST_PID
expect_in "$N2.log" "the private key of record cert/www.sec.test is unreadable"
[ "$(sealed "$N2" unreadable)" -ge 1 ] || fail "unreadable not counted"
if served "${S[2]}"; then fail "pop-2 serves a key it could not open"; fi
kill -0 "${NODE_PID[2]}" || fail "pop-2 died"
if grep -qF "$(sed -n 2p "$C/www.key")" "$N2.log"; then fail "the log holds the key"; fi
ok "another store key: the record is named in the log as unreadable, not served, popd runs on"
stop_popd "${NODE_PID[2]}"
rm -f "$N2/store.key"
cp "$WORK/store.key.good" "$N2/store.key"
chmod 600 "$N2/store.key"

# ---- the upgrade path: a store sealed the old way, without store.key ----
SU=$(free_port)
init_node "$WORK/u1" up-1 --https-listen "127.0.0.1:$SU"
rm -f "$WORK/u1/store.key" # a PoP of a mesh made before store keys has none
POPMESH_TEST_LEGACY_SEAL=1 start_popd "$WORK/u1"
UPID=$LAST_PID
expect_in "$WORK/u1.log" "TEST KNOB: POPMESH_TEST_LEGACY_SEAL"
expect_rc 0 mctl "$WORK/u1" cert import --cert "$C/www.crt" --key "$C/www.key"
wait_for 10 "the old-format PoP serves the certificate" served "$SU"
stop_popd "$UPID"
[ ! -e "$WORK/u1/store.key" ] || fail "the old-format run wrote a store key"
start_popd "$WORK/u1"
UPID=$LAST_PID
[ "$(sealed "$WORK/u1" legacy)" -ge 1 ] && [ "$(sealed "$WORK/u1" rewritten)" = "$(sealed "$WORK/u1" legacy)" ] ||
    fail "the start-up pass did not rewrite the old records: $(mctl "$WORK/u1" --json status)"
expect_in "$WORK/u1.log" "cert/www.sec.test sealed afresh under the store key"
[ "$(stat -c %a "$WORK/u1/store.key")" = 600 ] || fail "the derived store.key is not 0600"
wait_for 10 "the upgraded PoP serves the certificate" served "$SU"
ok "upgrade: old-format records read, served, rewritten ($(sealed "$WORK/u1" rewritten)); store.key derived and written"
stop_popd "$UPID"
start_popd "$WORK/u1"
UPID=$LAST_PID
[ "$(sealed "$WORK/u1" legacy)" = 0 ] && [ "$(sealed "$WORK/u1" current)" -ge 1 ] ||
    fail "old-format records remain after the rewrite: $(mctl "$WORK/u1" --json status)"
wait_for 10 "served after one more restart" served "$SU"
if found=$(holds_key "$WORK/u1/store/data.mdb"); then fail "the upgraded store holds the key: $found"; fi
ok "upgrade: after one more restart every secret is under the store key, still served"

done_testing
