#!/usr/bin/env bash
# The admin listener over HTTPS: one port serves both. A connection that opens with a TLS
# handshake gets the mesh's certificate for the name it asks (imported here with meshctl cert
# import, made by the openssl CLI); plain HTTP goes on working on the same port for scrapers.
# Checked: before any certificate the TLS attempt fails and plain HTTP answers; once the
# certificate is imported, https://admin.test/healthz, /metrics and the sign-in work with the
# certificate verified by curl, the session cookie is Secure over HTTPS and not over HTTP, an
# unknown name gets an alert (never the admin certificate), and the handshake counters move.
source "$(dirname "$0")/lib.sh"
command -v openssl >/dev/null || { echo "SKIP: no openssl CLI"; exit 77; }

A=$(free_port)
init_node "$WORK/n1" pop-1 --admin-listen "127.0.0.1:$A"
start_popd "$WORK/n1"
PID=$LAST_PID
echo "an-admin-password" | mctl "$WORK/n1" user add alice --admin >/dev/null ||
    fail "user add alice --admin"

https() { # https NAME PATH [CURL ARGS...]: curl over TLS to NAME (resolved to 127.0.0.1)
    local name=$1 path=$2
    shift 2
    curl -s -m 5 --cacert "$WORK/admin.pem" --resolve "$name:$A:127.0.0.1" "$@" \
        "https://$name:$A$path"
}

# ---- no certificate yet: plain HTTP only ----
[ "$(curl -s -m 5 "http://127.0.0.1:$A/healthz")" = ok ] || fail "plain /healthz"
if https admin.test /healthz -o /dev/null; then fail "a TLS handshake succeeded with no certificate"; fi
kill -0 "$PID" || fail "popd died on a TLS hello it had no certificate for"
ok "no certificate: the TLS handshake is refused, plain HTTP answers on the same port"

# ---- a certificate for admin.test ----
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj /CN=admin.test -addext "subjectAltName=DNS:admin.test" \
    -keyout "$WORK/admin.key" -out "$WORK/admin.pem" >"$WORK/openssl.log" 2>&1 ||
    { cat "$WORK/openssl.log" >&2; fail "openssl req"; }
expect_rc 0 mctl "$WORK/n1" cert import --cert "$WORK/admin.pem" --key "$WORK/admin.key"
# The certificate is served as soon as its record is committed (the change feed), so the very
# first try must work.
[ "$(https admin.test /healthz)" = ok ] || fail "https://admin.test/healthz right after the import"
https admin.test /metrics >"$WORK/m.txt" || fail "/metrics over HTTPS"
expect_in "$WORK/m.txt" 'popmesh_members{state="alive"} 1'
grep -q '^popmesh_admin_tls_handshakes_total [1-9]' "$WORK/m.txt" ||
    fail "the handshake counter did not move: $(grep tls_ "$WORK/m.txt")"
[ "$(curl -s -m 5 "http://127.0.0.1:$A/healthz")" = ok ] || fail "plain /healthz after the import"
ok "after cert import: /healthz and /metrics over HTTPS with the certificate verified; plain HTTP still answers"

# ---- an unknown name: an alert, not the admin certificate ----
O=$(timeout 10 openssl s_client -connect "127.0.0.1:$A" -servername other.test </dev/null 2>&1 || true)
echo "$O" | grep -qi "unrecognized name\|alert" || fail "an unknown SNI was not refused with an alert: $O"
echo "$O" | grep -q "CN *= *admin.test" && fail "an unknown SNI was served the admin.test certificate"
kill -0 "$PID" || fail "popd died on an unknown SNI"
ok "an unknown SNI gets an alert, never the admin.test certificate"

# ---- sign-in: Secure over HTTPS, not over HTTP ----
https admin.test /login -D "$WORK/head.tls" -o /dev/null -d 'username=alice&password=an-admin-password'
grep -qi '^HTTP/1.1 303' "$WORK/head.tls" || fail "sign-in over HTTPS: $(cat "$WORK/head.tls")"
grep -i '^Set-Cookie: popmesh_admin=' "$WORK/head.tls" | grep -q "; Secure" ||
    fail "the cookie set over HTTPS is not Secure: $(grep -i set-cookie "$WORK/head.tls")"
COOKIE=$(grep -i '^Set-Cookie: popmesh_admin=' "$WORK/head.tls" | sed 's/^[^=]*=\([^;]*\).*/\1/')
https admin.test / -o "$WORK/page.html" -b "popmesh_admin=$COOKIE" || fail "the page over HTTPS"
grep -qi "<html" "$WORK/page.html" || fail "no page over HTTPS"
grep -q 'name="password"' "$WORK/page.html" && fail "the session did not work over HTTPS: the sign-in form came back"
curl -s -m 5 -D "$WORK/head.plain" -o /dev/null -d 'username=alice&password=an-admin-password' \
    "http://127.0.0.1:$A/login"
grep -qi '^HTTP/1.1 303' "$WORK/head.plain" || fail "sign-in over HTTP: $(cat "$WORK/head.plain")"
grep -i '^Set-Cookie: popmesh_admin=' "$WORK/head.plain" | grep -q "; Secure" &&
    fail "the cookie set over plain HTTP is Secure (the browser would never send it back)"
ok "sign-in over HTTPS: 303 with a Secure cookie that opens the page; over plain HTTP the cookie is not Secure"

# ---- garbage after a TLS record header, then a client that stops mid-handshake ----
"$PY" - "$A" <<'PY' || fail "the garbage client"
import socket, sys
port = int(sys.argv[1])
s = socket.create_connection(("127.0.0.1", port), timeout=5)
s.sendall(b"\x16\x03\x01\x00\x05hello" + b"\x00" * 200)
try:
    s.recv(100)
except OSError:
    pass
s.close()
s = socket.create_connection(("127.0.0.1", port), timeout=5)
s.sendall(b"\x16\x03\x01")
s.close()
PY
[ "$(https admin.test /healthz)" = ok ] || fail "HTTPS after the garbage"
https admin.test /metrics >"$WORK/m2.txt"
grep -q '^popmesh_admin_tls_failed_total [1-9]' "$WORK/m2.txt" ||
    fail "failed handshakes not counted: $(grep tls_ "$WORK/m2.txt")"
kill -0 "$PID" || fail "popd died"
ok "a garbage TLS hello and a client gone mid-handshake are counted as failed; popd serves on"
done_testing
