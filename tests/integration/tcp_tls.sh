#!/usr/bin/env bash
# TLS on a TCP resource (resource add --tcp-port P --tls) with two real PoPs, a site and the
# echo backend: a certificate made by the openssl CLI here is imported at pop-1; at both PoPs
# a Python ssl client (verifying against the test CA, SNI tcp.test) echoes 1 MiB each way
# byte-exact (sha256) through the site; openssl s_client verifies the chain; an unknown or
# missing SNI gets a fatal unrecognized_name alert and no certificate; a handshake that stalls
# is closed at the (test-knob) timeout and counted, a plain client on the TLS port is closed;
# a plain TCP resource beside it carries plain bytes as before; a session ticket from pop-1
# resumes at pop-2; 16 MiB each way through TLS and plain, timed (printed, not checked).
# Refusals: --tls without --tcp-port. Every popd stays up.
source "$(dirname "$0")/lib.sh"
: "${POPSITE:?POPSITE must point to the popsite binary}"
HERE=$(cd "$(dirname "$0")" && pwd)
command -v openssl >/dev/null || { echo "SKIP: no openssl CLI"; exit 77; }

export POPMESH_TEST_TLS_HANDSHAKE_MS=1500
# Ticket-key periods of 8 s: the first key is written after half a period, not 10 s.
export POPMESH_TEST_TICKET_PERIOD_MS=8000

# ---- a CA and a certificate for tcp.test ----
C="$WORK/pki"
mkdir -p "$C"
ossl() { openssl "$@" >>"$C/openssl.log" 2>&1 || { cat "$C/openssl.log" >&2; fail "openssl $1"; }; }
ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$C/ca.key" \
    -out "$C/ca.pem" -days 2 -subj "/CN=popmesh test CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
ossl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$C/tcp.key" \
    -out "$C/tcp.csr" -subj "/CN=tcp.test"
printf 'subjectAltName=DNS:tcp.test\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' \
    >"$C/tcp.ext"
ossl x509 -req -in "$C/tcp.csr" -CA "$C/ca.pem" -CAkey "$C/ca.key" -CAcreateserial \
    -out "$C/tcp.pem" -days 1 -extfile "$C/tcp.ext"

# ---- two PoPs with their own ingress addresses (no HTTP listeners: TLS on TCP resources
# needs none), a site, the echo backend ----
ING=("" 127.0.0.21 127.0.0.22)
"$POPD" init --data "$WORK/n1" --name pop-1 --mesh-listen "127.0.0.1:$(free_port)" \
    --tunnel-listen "127.0.0.1:$(free_port)" --ingress-address "${ING[1]}" >/dev/null
start_popd "$WORK/n1" --log-level debug
TOKEN=$(mctl "$WORK/n1" token create --uses 1 --ttl 10m 2>/dev/null)
"$POPD" join --data "$WORK/n2" --name pop-2 --mesh-listen "127.0.0.1:$(free_port)" \
    --tunnel-listen "127.0.0.1:$(free_port)" --ingress-address "${ING[2]}" "$TOKEN" >/dev/null
start_popd "$WORK/n2" --log-level debug
grep -q 'TEST KNOB: POPMESH_TEST_TLS_HANDSHAKE_MS=1500' "$WORK/n1.log" ||
    fail "the handshake timeout knob is not logged by the data plane"
EPORT=$(free_port)
"$PY" "$HERE/echo_server.py" "$EPORT" >"$WORK/echo.log" 2>&1 &
PIDS+=("$!")
SITE_TOKEN=$(mctl "$WORK/n1" site add branch | grep -o 'pmt1\.[A-Za-z0-9_-]*' | head -1)
"$POPSITE" run --data "$WORK/site" --token "$SITE_TOKEN" >>"$WORK/site.log" 2>&1 &
PIDS+=("$!")
TP=$(free_port) # the TLS resource
PP=$(free_port) # a plain one beside it
expect_rc 2 mctl "$WORK/n1" resource add bad --site branch --target "127.0.0.1:$EPORT" \
    --host bad.test --tls
expect_in "$WORK/err" "--tls needs --tcp-port"
expect_rc 0 mctl "$WORK/n1" resource add secure --site branch --target "127.0.0.1:$EPORT" \
    --tcp-port "$TP" --tls
expect_in "$WORK/out" "tcp port $TP (TLS)"
# The site was added at pop-1: wait (bounded) until its record has reached pop-2.
wait_for 10 "site branch at pop-2" sh -c "'$MESHCTL' -d '$WORK/n2' site list | grep -q branch"
expect_rc 0 mctl "$WORK/n2" resource add plain --site branch --target "127.0.0.1:$EPORT" \
    --tcp-port "$PP"
listed() { mctl "$WORK/n1" resource list | grep -q "^plain "; }
wait_for 10 "both resources listed at pop-1" listed
mctl "$WORK/n1" resource list >"$WORK/rl.txt"
expect_in "$WORK/rl.txt" "$TP/tls"
grep -q "^plain .* $PP " "$WORK/rl.txt" || { cat "$WORK/rl.txt" >&2; fail "the plain resource is listed with tls"; }
mctl "$WORK/n1" --json resource list | "$PY" -c '
import json, sys
r = {x["name"]: x for x in json.load(sys.stdin)["resources"]}
sys.exit(0 if r["secure"].get("tls") is True and "tls" not in r["plain"] else 1)' ||
    fail "resource list --json: tls only on the TLS resource"
ok "resource add --tls (needs --tcp-port), shown as PORT/tls; the plain record has no tls field"

expect_rc 0 mctl "$WORK/n1" cert import --cert "$C/tcp.pem" --key "$C/tcp.key"

cat >"$WORK/tlsc.py" <<'PY'
import hashlib, os, select, socket, ssl, sys, time

mode, host, port, ca = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]

def connect(tls=True, sni="tcp.test"):
    raw = socket.create_connection((host, port), timeout=20)
    if not tls:
        return raw
    ctx = ssl.create_default_context(cafile=ca)
    return ctx.wrap_socket(raw, server_hostname=sni)

def bulk(n, tls=True):
    # One thread, non-blocking: an SSL object must not be used by two threads at once.
    s = connect(tls)
    s.setblocking(False)
    hs, hr = hashlib.sha256(), hashlib.sha256()
    out = os.urandom(n)
    hs.update(out)
    sent = got = 0
    t0 = time.time()
    while got < n:
        if time.time() - t0 > 30:
            raise TimeoutError("sent %d, received %d of %d" % (sent, got, n))
        want_w = sent < n
        progress = False
        if want_w:
            try:
                k = s.send(out[sent:sent + 65536])
                sent += k
                progress = k > 0
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                pass
        try:
            b = s.recv(1 << 20)
            if not b:
                raise EOFError("EOF after %d of %d bytes" % (got, n))
            hr.update(b)
            got += len(b)
            progress = True
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
            pass
        if not progress and not (tls and s.pending()):
            select.select([s], [s] if sent < n else [], [], 1.0)
    dt = time.time() - t0
    ver = s.version() if tls else "plain"
    s.close()
    print("%s: %d bytes each way in %.2f s (%.0f MiB/s each way); sha256 sent %s received %s"
          % (ver, n, dt, n / dt / 1048576, hs.hexdigest()[:16], hr.hexdigest()[:16]))
    sys.exit(0 if hs.digest() == hr.digest() else 1)

def small():
    # Many small round trips on one connection: each record must reach the target at once
    # (nothing left behind in TLS's buffers waiting for the socket to become readable).
    s = connect()
    for i in range(200):
        m = b"ping %d\n" % i
        s.sendall(m)
        got = b""
        while len(got) < len(m):
            b = s.recv(len(m) - len(got))
            if not b:
                raise EOFError("EOF at round %d" % i)
            got += b
        if got != m:
            raise ValueError("round %d: %r" % (i, got))
    s.close()
    print("200 small round trips ok")

def stall(limit):
    # Half a ClientHello, then nothing: closed at the timeout.
    s = connect(tls=False)
    s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
    t0 = time.time()
    try:
        d = s.recv(100)
    except ConnectionResetError:
        d = b""
    took = time.time() - t0
    print("stall closed after %.2f s" % took)
    sys.exit(0 if d == b"" and limit * 0.6 <= took <= limit + 3 else 1)

def garbage():
    # A plain client on the TLS port: closed at once, nothing reaches the target.
    s = connect(tls=False)
    s.sendall(b"hello, plain\n")
    t0 = time.time()
    buf = b""
    while True:
        try:
            d = s.recv(4096)
        except ConnectionResetError:
            break
        if not d:
            break
        buf += d
    took = time.time() - t0
    print("plain client closed after %.2f s, %d bytes back" % (took, len(buf)))
    sys.exit(0 if took < 1.0 and b"hello" not in buf else 1)

if mode == "bulk":
    bulk(int(sys.argv[5]))
elif mode == "bulk-notls":
    bulk(int(sys.argv[5]), tls=False)
elif mode == "plainbulk":
    s = socket.create_connection((host, port), timeout=20)
    m = os.urandom(262144)
    s.sendall(m)
    got = b""
    while len(got) < len(m):
        b = s.recv(65536)
        if not b:
            break
        got += b
    sys.exit(0 if got == m else 1)
elif mode == "small":
    small()
elif mode == "stall":
    stall(float(sys.argv[5]))
elif mode == "garbage":
    garbage()
PY
tlsc() { "$PY" "$WORK/tlsc.py" "$1" "$2" "$3" "$C/ca.pem" "${@:4}"; }

for i in 1 2; do
    wait_for 20 "an echo over TLS through pop-$i" tlsc small "${ING[$i]}" "$TP"
done
ok "the TLS resource answers at both PoPs (200 small round trips each)"

for i in 1 2; do
    R=$(tlsc bulk "${ING[$i]}" "$TP" 1048576) || fail "1 MiB each way through pop-$i: $R"
    echo "  pop-$i: $R"
done
ok "1 MiB each way byte-exact (sha256) through pop-1 and pop-2"

sclient() { # sclient ARGS...: openssl s_client's report at pop-2 (no input)
    timeout 10 openssl s_client -connect "${ING[2]}:$TP" -CAfile "$C/ca.pem" "$@" </dev/null 2>&1 || true
}
O=$(sclient -servername tcp.test)
echo "$O" | grep -q "Verify return code: 0 (ok)" || { echo "$O" >&2; fail "s_client: chain not verified"; }
echo "$O" | grep -q "^New, TLSv1.3," || { echo "$O" >&2; fail "s_client: not TLS 1.3"; }
O=$(sclient -servername tcp.test -tls1_2)
echo "$O" | grep -q "^New, TLSv1.2," || { echo "$O" >&2; fail "s_client: TLS 1.2 refused"; }
# s_client's own data path: a line typed in comes back.
O=$( (echo "over-s_client"; sleep 1) | timeout 10 openssl s_client -connect "${ING[1]}:$TP" \
    -servername tcp.test -CAfile "$C/ca.pem" -quiet 2>/dev/null) || true
echo "$O" | grep -q "^over-s_client$" || fail "s_client: the line did not come back: $O"
ok "openssl s_client: verified chain, TLS 1.3 and 1.2, bytes through"

for sni in nowhere.test other.tcp.test; do
    O=$(sclient -servername "$sni")
    echo "$O" | grep -qi "unrecognized name" || { echo "$O" >&2; fail "SNI $sni: no unrecognized_name alert"; }
    echo "$O" | grep -q "BEGIN CERTIFICATE\|subject=" && { echo "$O" >&2; fail "SNI $sni: a certificate was sent"; }
done
O=$(sclient -noservername)
echo "$O" | grep -qi "unrecognized name" || { echo "$O" >&2; fail "no SNI: no unrecognized_name alert"; }
ok "an unknown SNI (and none at all) gets a fatal unrecognized_name alert, no certificate"

R=$(tlsc stall "${ING[1]}" "$TP" 1.5) || fail "a stalled handshake: $R"
echo "  $R"
R=$(tlsc garbage "${ING[2]}" "$TP") || fail "a plain client on the TLS port: $R"
echo "  $R"
counters() { mctl "$WORK/n$1" --json tunnels | "$PY" -c '
import json, sys
d = json.load(sys.stdin)["dataplane"]
print(" ".join("%s=%d" % (k, d[k]) for k in ("tls_handshakes", "tls_resumed", "tls_failed", "tls_timeouts")))'; }
CN="pop-1: $(counters 1); pop-2: $(counters 2)"
echo "  counters: $CN"
echo "$CN" | grep -q "tls_timeouts=[1-9]" || fail "the stalled handshake was not counted: $CN"
echo "$CN" | grep -q "tls_failed=[1-9]" || fail "the failed handshakes were not counted: $CN"
ok "a stalled handshake is closed at the 1.5 s timeout, a plain client at once; both counted"

tlsc plainbulk "${ING[1]}" "$PP" || fail "the plain resource beside the TLS one"
OUT=$( (printf 'plain-line\n'; sleep 0.5) | timeout 5 "$PY" -c '
import socket, sys
s = socket.create_connection((sys.argv[2], int(sys.argv[1])), timeout=5)
s.sendall(sys.stdin.buffer.read())
s.shutdown(socket.SHUT_WR)
out = b""
while True:
    b = s.recv(4096)
    if not b:
        break
    out += b
sys.stdout.write(out.decode())' "$PP" "${ING[2]}")
[ "$OUT" = "plain-line" ] || fail "plain resource: $OUT"
ok "the plain TCP resource beside it carries plain bytes (256 KiB exact, half-close)"
# For the record, not a limit: 16 MiB each way through pop-1, TLS and plain (in the build the
# test runs on: a sanitizer build is several times slower).
for m in bulk bulk-notls; do
    port=$TP
    [ "$m" = bulk-notls ] && port=$PP
    R=$(tlsc "$m" "${ING[1]}" "$port" 16777216) || fail "16 MiB ($m): $R"
    echo "  $R"
done

resumes() { # a ticket from pop-1 accepted at pop-2
    local O
    rm -f "$WORK/sess"
    O=$( (sleep 0.5) | timeout 10 openssl s_client -connect "${ING[1]}:$TP" \
        -servername tcp.test -CAfile "$C/ca.pem" -sess_out "$WORK/sess" 2>&1) || true
    echo "$O" | grep -q '^New, TLSv' || { echo "$O" >&2; return 1; }
    [ -s "$WORK/sess" ] || return 1
    O=$( (sleep 0.5) | timeout 10 openssl s_client -connect "${ING[2]}:$TP" \
        -servername tcp.test -CAfile "$C/ca.pem" -sess_in "$WORK/sess" 2>&1) || true
    echo "$O" | grep -q "^Reused, TLSv1.3" || { echo "$O" | grep -E '^(New|Reused)' >&2; return 1; }
}
# The mesh's ticket key for this period may still be on its way to pop-2.
wait_for 20 "a TLS 1.3 ticket from pop-1 accepted at pop-2" resumes
resumes || fail "resumption across PoPs did not repeat"
CN=$(counters 2)
echo "$CN" | grep -q "tls_resumed=[1-9]" || fail "pop-2 did not count the resumption: $CN"
ok "a session ticket from pop-1 resumes at pop-2 (\"Reused, TLSv1.3\"; counted: $CN)"

# The TLS resource after all this, and every popd still up.
tlsc small "${ING[2]}" "$TP" >/dev/null || fail "the TLS resource after the bad input"
for i in 1 2; do mctl "$WORK/n$i" status >/dev/null || fail "pop-$i is down"; done
ok "both PoPs up and serving after the bad input"
done_testing
