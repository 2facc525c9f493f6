#!/usr/bin/env bash
# TLS termination at the HTTP ingress of three real PoPs (--https-listen), with a CA and
# certificates made by the openssl CLI here and imported at one PoP (meshctl cert import):
# curl --cacert at every PoP, TLS 1.2 and 1.3, ALPN http/1.1, an unknown or missing SNI gets
# a fatal unrecognized_name alert, X-Forwarded-Proto https reaches the application, the login
# cookie is Secure, plain HTTP is redirected (308) unless the resource opted out (and never on
# the ACME challenge path), HSTS when asked for, 421 for a Host the certificate does not
# cover; a session ticket from pop-1 resumes at pop-2 (TLS 1.2 and 1.3); bad input: a
# handshake that never finishes (closed at the timeout while another client is served),
# garbage instead of a ClientHello, a flood of one-byte TLS records; every popd stays up.
source "$(dirname "$0")/lib.sh"
: "${POPSITE:?POPSITE must point to the popsite binary}"
HERE=$(cd "$(dirname "$0")" && pwd)
command -v openssl >/dev/null || { echo "SKIP: no openssl CLI"; exit 77; }

# The handshake timeout, shortened for this test (popd logs the knob).
export POPMESH_TEST_TLS_HANDSHAKE_MS=1500
# Ticket-key periods of 8 s: the first key is written after a settle time of half a period
# (ticketkeys.c) instead of 10 s.
export POPMESH_TEST_TICKET_PERIOD_MS=8000

# ---- a CA, a certificate for app.test and one for *.apps.test ----
C="$WORK/pki"
mkdir -p "$C"
ossl() { openssl "$@" >>"$C/openssl.log" 2>&1 || { cat "$C/openssl.log" >&2; fail "openssl $1"; }; }
ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$C/ca.key" \
    -out "$C/ca.pem" -days 2 -subj "/CN=popmesh test CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
leaf() { # leaf NAME SAN
    ossl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$C/$1.key" \
        -out "$C/$1.csr" -subj "/CN=$1"
    printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' "$2" \
        >"$C/$1.ext"
    ossl x509 -req -in "$C/$1.csr" -CA "$C/ca.pem" -CAkey "$C/ca.key" -CAcreateserial \
        -out "$C/$1.pem" -days 1 -extfile "$C/$1.ext"
}
leaf app.test "DNS:app.test"
leaf wild.apps.test "DNS:*.apps.test"

# ---- three PoPs with HTTP and HTTPS listeners, a site, an application ----
declare -a H S
for i in 1 2 3; do H[$i]=$(free_port); S[$i]=$(free_port); done
init_node "$WORK/n1" pop-1 --http-listen "127.0.0.1:${H[1]}" --https-listen "127.0.0.1:${S[1]}"
start_popd "$WORK/n1" --log-level debug
TOKEN=$(mctl "$WORK/n1" token create --uses 2 --ttl 10m 2>/dev/null)
for i in 2 3; do
    "$POPD" join --data "$WORK/n$i" --name "pop-$i" --mesh-listen "127.0.0.1:$(free_port)" \
        --tunnel-listen "127.0.0.1:$(free_port)" --http-listen "127.0.0.1:${H[$i]}" \
        --https-listen "127.0.0.1:${S[$i]}" "$TOKEN" >/dev/null
    start_popd "$WORK/n$i" --log-level debug
done
grep -q "https-listen = 127.0.0.1:${S[2]}" "$WORK/n2/popd.conf" || fail "popd.conf lacks https-listen"
grep -q 'TEST KNOB: POPMESH_TEST_TLS_HANDSHAKE_MS=1500' "$WORK/n1.log" ||
    fail "the handshake timeout knob is not logged"
ok "3 PoPs with --https-listen (popd.conf keeps it; the test knob is logged)"

BPORT=$(free_port)
"$PY" "$HERE/http_backend.py" "$BPORT" >"$WORK/backend.log" 2>&1 &
PIDS+=("$!")
SITE_TOKEN=$(mctl "$WORK/n1" site add branch | grep -o 'pmt1\.[A-Za-z0-9_-]*' | head -1)
"$POPSITE" run --data "$WORK/site" --token "$SITE_TOKEN" >>"$WORK/site.log" 2>&1 &
PIDS+=("$!")
T="127.0.0.1:$BPORT"
mctl "$WORK/n1" resource add app --site branch --target "$T" --host app.test --auth login \
    --hsts 600 >/dev/null
mctl "$WORK/n1" resource add w1 --site branch --target "$T" --host w1.apps.test >/dev/null
mctl "$WORK/n1" resource add legacy --site branch --target "$T" --host legacy.apps.test \
    --no-https-redirect >/dev/null
mctl "$WORK/n1" resource add open --site branch --target "$T" --host open.test >/dev/null
echo "correct-horse-battery" | mctl "$WORK/n1" user add alice >/dev/null
mctl "$WORK/n1" --json resource list | grep -q '"no_https_redirect": true' ||
    fail "resource list does not show no_https_redirect"

# Before any certificate: plain HTTP is served as ever, HTTPS refuses every name.
code() { curl -s -m 5 -o /dev/null -w '%{http_code}' "$@"; }
plain_ok() { [ "$(code -H 'Host: w1.apps.test' "http://127.0.0.1:${H[3]}/")" = 200 ]; }
wait_for 20 "w1.apps.test over plain HTTP through pop-3" plain_ok
ok "before any certificate: plain HTTP serves w1.apps.test (no redirect)"

expect_rc 0 mctl "$WORK/n1" cert import --cert "$C/app.test.pem" --key "$C/app.test.key"
cat "$C/wild.apps.test.pem" "$C/ca.pem" >"$C/wild.chain.pem" # with the CA as "intermediate"
expect_rc 0 mctl "$WORK/n2" cert import --cert "$C/wild.chain.pem" --key "$C/wild.apps.test.key"
ok "two certificates imported (app.test at pop-1, *.apps.test at pop-2)"

# https PORT HOST PATH [curl args...]: curl over TLS to 127.0.0.1:PORT as HOST.
https() {
    local port=$1 host=$2 path=$3
    shift 3
    curl -s -m 5 --cacert "$C/ca.pem" --resolve "$host:$port:127.0.0.1" "$@" \
        "https://$host:$port$path"
}
for i in 1 2 3; do
    served() { [ "$(https "${S[$i]}" w1.apps.test / -o /dev/null -w '%{http_code}')" = 200 ] &&
        [ "$(https "${S[$i]}" app.test /.popmesh/login -o /dev/null -w '%{http_code}')" = 200 ]; }
    wait_for 10 "both certificates served at pop-$i" served
    echo "  pop-$i serves both certificates ${WAITED}s after the imports"
done
ok "curl --cacert succeeds at every PoP, for the exact and the wildcard certificate"

# ---- versions, ALPN, SNI ----
sclient() { # sclient PORT ARGS...: openssl s_client's report (no input)
    local port=$1
    shift
    timeout 10 openssl s_client -connect "127.0.0.1:$port" -CAfile "$C/ca.pem" "$@" \
        </dev/null 2>&1 || true
}
for v in 1_2 1_3; do
    O=$(sclient "${S[2]}" -servername w1.apps.test "-tls$v" -alpn h2,http/1.1)
    echo "$O" | grep -q "^New, TLSv${v/_/.}," || { echo "$O" >&2; fail "TLS ${v/_/.} not used"; }
    echo "$O" | grep -q "Verify return code: 0 (ok)" || { echo "$O" >&2; fail "TLS ${v/_/.}: chain not verified"; }
    echo "$O" | grep -q "ALPN protocol: http/1.1" || { echo "$O" >&2; fail "ALPN with TLS ${v/_/.}"; }
done
[ "$(https "${S[1]}" w1.apps.test / --tlsv1.2 --tls-max 1.2 -o /dev/null -w '%{http_code}')" = 200 ] ||
    fail "curl over TLS 1.2"
[ "$(https "${S[1]}" w1.apps.test / --tlsv1.3 -o /dev/null -w '%{http_code}')" = 200 ] ||
    fail "curl over TLS 1.3"
O=$(sclient "${S[1]}" -servername w1.apps.test -tls1_1)
echo "$O" | grep -q "^New, TLSv1.1," && fail "TLS 1.1 was accepted"
ok "TLS 1.2 and 1.3 (verified chain), ALPN http/1.1 when h2 is offered first; TLS 1.1 refused"

for sni in nowhere.test apps.test a.b.apps.test; do
    O=$(sclient "${S[3]}" -servername "$sni")
    echo "$O" | grep -qi "unrecognized name" || { echo "$O" >&2; fail "SNI $sni: no unrecognized_name alert"; }
    echo "$O" | grep -q "BEGIN CERTIFICATE\|subject=" && { echo "$O" >&2; fail "SNI $sni: a certificate was sent"; }
done
O=$(sclient "${S[3]}" -noservername)
echo "$O" | grep -qi "unrecognized name" || { echo "$O" >&2; fail "no SNI: no unrecognized_name alert"; }
ok "an unknown SNI (and none at all) gets a fatal unrecognized_name alert, no certificate"

# ---- HTTP semantics under TLS ----
R=$(https "${S[3]}" w1.apps.test /hello)
echo "$R" | "$PY" -c 'import json,sys; j=json.load(sys.stdin); assert j["xfp"]=="https", j; assert any(k.lower()=="forwarded" and "proto=https" in v for k,v in j["headers"]), j' ||
    fail "X-Forwarded-Proto/Forwarded under TLS: $R"
ok "X-Forwarded-Proto: https and Forwarded proto=https reach the application"

# Signed in at pop-1, where the user was added (its record may still be on its way to pop-2).
HDR=$(https "${S[1]}" app.test /.popmesh/login -D - -o /dev/null \
    --data "username=alice&password=correct-horse-battery&rd=/after")
echo "$HDR" | grep -qi '^set-cookie: popmesh_session=.*; Secure' || { echo "$HDR" >&2; fail "the login cookie is not Secure"; }
echo "$HDR" | grep -qi '^strict-transport-security: max-age=600' || { echo "$HDR" >&2; fail "no HSTS on app.test"; }
COOKIE=$(echo "$HDR" | grep -i '^set-cookie: popmesh_session=' | sed 's/^[^:]*: //; s/;.*//')
signed_in() { https "${S[2]}" app.test /private -D - -H "Cookie: $COOKIE" -o "$WORK/body" >"$WORK/hdr" &&
    grep -q '^HTTP/1.1 200' "$WORK/hdr"; }
wait_for 10 "the session from pop-1 accepted at pop-2" signed_in
HDR=$(cat "$WORK/hdr")
echo "$HDR" | grep -qi '^strict-transport-security: max-age=600' || { echo "$HDR" >&2; fail "no HSTS on the app's answer"; }
HDR=$(https "${S[1]}" w1.apps.test / -D - -o /dev/null)
echo "$HDR" | grep -qi 'strict-transport-security' && fail "HSTS on a resource without --hsts"
HDR=$(curl -s -m 5 -D - -o /dev/null --data "username=alice&password=correct-horse-battery&rd=/" \
    -H "Host: open.test" "http://127.0.0.1:${H[1]}/.popmesh/login")
echo "$HDR" | grep -qi '^set-cookie: popmesh_session=.*Secure' && fail "a Secure cookie over plain HTTP"
echo "$HDR" | grep -qi '^set-cookie: popmesh_session=' || { echo "$HDR" >&2; fail "plain login on open.test"; }
ok "login over HTTPS: the cookie is Secure (not over plain HTTP), HSTS max-age=600 on app.test only"

[ "$(https "${S[1]}" w1.apps.test / -H 'Host: app.test' -o /dev/null -w '%{http_code}')" = 421 ] ||
    fail "a Host the connection's certificate does not cover did not get 421"
[ "$(https "${S[1]}" w1.apps.test / -H 'Host: legacy.apps.test' -o /dev/null -w '%{http_code}')" = 200 ] ||
    fail "a Host the wildcard covers, on the same connection's certificate"
ok "421 for a Host the connection's certificate does not cover; another name it covers is served"

# ---- plain HTTP: redirects ----
R=$(curl -s -m 5 -o /dev/null -w '%{http_code} %{redirect_url}' -H 'Host: w1.apps.test' \
    "http://127.0.0.1:${H[2]}/a/b?c=1")
[ "$R" = "308 https://w1.apps.test:${S[2]}/a/b?c=1" ] || fail "plain HTTP to a covered host: $R"
R=$(curl -s -m 5 -o /dev/null -w '%{http_code} %{redirect_url}' -H 'Host: app.test' \
    --data 'username=x&password=y' "http://127.0.0.1:${H[1]}/.popmesh/login")
[ "$R" = "308 https://app.test:${S[1]}/.popmesh/login" ] || fail "the login page over plain HTTP: $R"
[ "$(code -H 'Host: legacy.apps.test' "http://127.0.0.1:${H[3]}/")" = 200 ] ||
    fail "--no-https-redirect was redirected"
[ "$(code -H 'Host: open.test' "http://127.0.0.1:${H[3]}/")" = 200 ] ||
    fail "a host without a certificate was redirected"
C1=$(code -H 'Host: w1.apps.test' "http://127.0.0.1:${H[3]}/.well-known/acme-challenge/tok")
[ "$C1" != 308 ] || fail "the ACME HTTP-01 path was redirected"
ok "plain HTTP: 308 to https (path and query kept, the login POST too), not with --no-https-redirect, not without a certificate, never on /.well-known/acme-challenge/ ($C1)"

# ---- resumption across PoPs ----
resumes() { # resumes VERSION: a ticket from pop-1 accepted at pop-2
    local v=$1 O
    rm -f "$WORK/sess$v"
    O=$( (sleep 0.5) | timeout 10 openssl s_client -connect "127.0.0.1:${S[1]}" \
        -servername app.test -CAfile "$C/ca.pem" "-tls$v" -sess_out "$WORK/sess$v" 2>&1) || true
    echo "$O" | grep -q '^New, TLSv' || { echo "$O" >&2; return 1; }
    [ -s "$WORK/sess$v" ] || return 1
    O=$( (sleep 0.5) | timeout 10 openssl s_client -connect "127.0.0.1:${S[2]}" \
        -servername app.test -CAfile "$C/ca.pem" "-tls$v" -sess_in "$WORK/sess$v" 2>&1) || true
    echo "$O" | grep -q "^Reused, TLSv${v/_/.}" || { echo "$O" | grep -E '^(New|Reused)' >&2; return 1; }
}
for v in 1_2 1_3; do
    # The mesh's ticket key for this period may still be on its way to pop-2.
    wait_for 15 "a TLS ${v/_/.} ticket from pop-1 accepted at pop-2" resumes "$v"
done
resumes 1_3 || fail "TLS 1.3 resumption did not repeat"
ok "a session ticket from pop-1 resumes at pop-2 (\"Reused\", TLS 1.2 and 1.3)"

# ---- an orderly close: the client's close_notify is answered by popd's own (RFC 8446 6.1,
# RFC 5246 7.2.1), before the FIN (popd corks the socket so both leave in one segment) ----
CN=$("$PY" - "${S[1]}" "$C/ca.pem" <<'PY'
# Through memory BIOs, so the bytes after our close_notify are seen as they arrive (Python's
# unwrap() gives up quietly on a bare EOF and cannot tell the two apart).
import socket, ssl, sys
port, ca = int(sys.argv[1]), sys.argv[2]
out = []
for v in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
    ctx = ssl.create_default_context(cafile=ca)
    ctx.minimum_version = ctx.maximum_version = v
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    inc, outg = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, outg, server_hostname="app.test")
    def pump(fn, *a):
        while True:
            try:
                r = fn(*a)
                sock.sendall(outg.read())
                return r
            except ssl.SSLWantReadError:
                sock.sendall(outg.read())
                d = sock.recv(65536)
                if not d:
                    raise EOFError("EOF")
                inc.write(d)
    pump(obj.do_handshake)
    pump(obj.write, b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
    got = b""
    while b"\r\n\r\n" not in got:
        got += pump(obj.read, 65536)
    try:
        pump(obj.unwrap)  # ours out; then the server's alert must come before its FIN
        out.append("%s:ok" % v.name)
    except EOFError:
        out.append("%s:EOF-without-close_notify" % v.name)
    except ssl.SSLError as e:
        out.append("%s:%s" % (v.name, e))
    sock.close()
print(" ".join(out))
PY
)
[ "$CN" = "TLSv1_2:ok TLSv1_3:ok" ] || fail "close_notify not answered: $CN"
ok "an orderly close: the client's close_notify gets popd's in return (TLS 1.2 and 1.3)"

# ---- bad input ----
BAD=$("$PY" - "${S[1]}" "$C/ca.pem" <<'PY'
import socket, ssl, sys, time
port, ca = int(sys.argv[1]), sys.argv[2]
out = []
# 1. A handshake that never finishes: half a ClientHello, then nothing. Meanwhile another
#    client is served; the stalled one is closed at the timeout (1.5 s here). A client that
#    sends nothing at all is accepted only when the deferred accept gives up waiting for its
#    first bytes (2 s here, ~3 s as SYN-ACK retransmissions), then closed at the timeout too:
#    not held for ever.
silent = socket.create_connection(("127.0.0.1", port), timeout=12)
t_silent = time.time()
stall = socket.create_connection(("127.0.0.1", port), timeout=10)
stall.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
ctx = ssl.create_default_context(cafile=ca)
t0 = time.time()
with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
    with ctx.wrap_socket(raw, server_hostname="w1.apps.test") as s:
        s.sendall(b"GET /meanwhile HTTP/1.1\r\nHost: w1.apps.test\r\nConnection: close\r\n\r\n")
        first = s.recv(100)
out.append("other-served" if first.startswith(b"HTTP/1.1 200") else "other-not-served:%r" % first)
try:
    data = stall.recv(100)
except ConnectionResetError:  # closed with our half hello unread: a reset, as good as EOF
    data = b""
took = time.time() - t0
out.append("stall-closed" if data == b"" and 1.0 <= took <= 6 else "stall:%r:%.1f" % (data, took))
try:
    data = silent.recv(100)
except ConnectionResetError:
    data = b""
except socket.timeout:
    data = b"(still open)"
took = time.time() - t_silent
out.append("silent-closed" if data == b"" and 1.0 <= took <= 10 else "silent:%r:%.1f" % (data, took))
# 2. Garbage instead of a ClientHello: closed at once (an alert at most).
g = socket.create_connection(("127.0.0.1", port), timeout=5)
g.sendall(b"GET / HTTP/1.1\r\nHost: w1.apps.test\r\n\r\n")
t0 = time.time()
buf = b""
while True:
    try:
        d = g.recv(4096)
    except ConnectionResetError:
        break
    if not d:
        break
    buf += d
out.append("garbage-closed" if time.time() - t0 < 1.0 and b"HTTP" not in buf else "garbage:%r" % buf)
# 3. A flood of TLS records: 40 requests sent one byte per record (~1700 records), pipelined,
#    then a burst of 16 KiB records of junk after them; every request is answered, then the
#    junk gets one error answer (not a method: 501) and the connection closes.
with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
    with ctx.wrap_socket(raw, server_hostname="w1.apps.test") as s:
        req = b"GET /flood HTTP/1.1\r\nHost: w1.apps.test\r\n\r\n"
        for b in req * 40:
            s.sendall(bytes([b]))
        try:
            for _ in range(64):
                s.sendall(b"\xff" * 16384)
        except OSError:
            pass
        got = b""
        try:
            while True:
                d = s.recv(65536)
                if not d:
                    break
                got += d
        except (OSError, ssl.SSLError):
            pass
import re
codes = re.findall(rb"HTTP/1\.1 (\d\d\d) ", got)
ok = codes[:40] == [b"200"] * 40 and len(codes) == 41 and codes[40][:1] in (b"4", b"5")
out.append("flood-ok" if ok else "flood:%r:%r" % (codes, got[-200:]))
print(" ".join(out))
PY
)
[ "$BAD" = "other-served stall-closed silent-closed garbage-closed flood-ok" ] || fail "bad input: $BAD"
ok "a stalled handshake (half a hello, or nothing) is closed at the timeout while another client is served; garbage instead of a ClientHello is closed at once; 40 requests in ~1700 one-byte records are all answered, then junk records get one error and a close"

for i in 1 2 3; do
    "$MESHCTL" -d "$WORK/n$i" status >/dev/null 2>&1 || fail "pop-$i does not answer after the bad input"
done
ST=$(mctl "$WORK/n1" --json status)
echo "$ST" | "$PY" -c '
import json, sys
h = json.load(sys.stdin)["http"]
assert h["tls_handshakes"] > 0 and h["tls_resumed"] >= 0 and h["tls_unknown_sni"] >= 0, h
assert h["timeout_tls_handshake"] >= 1, h
assert h["tls_failed"] >= 1 and h["redirects_https"] >= 1 and h["misdirected"] >= 1, h
' || fail "status counters: $ST"
HL=$(mctl "$WORK/n1" --json members | "$PY" -c '
import json, sys
for m in json.load(sys.stdin):
    if m["name"] == "pop-1" and m["health"]:
        print(m["health"]["listeners"], m["health"]["listeners_up"])')
read -r L U <<<"$HL"
[ -n "$L" ] && [ "$L" = "$U" ] && [ "$L" -ge 2 ] || fail "health listeners $HL (HTTP and HTTPS should count)"
ok "every popd answers; status counts handshakes, timeouts, failures, redirects, 421s; the health vector counts the HTTPS listener ($U/$L listeners up)"
done_testing
