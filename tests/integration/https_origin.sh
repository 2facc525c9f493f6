#!/usr/bin/env bash
# HTTPS origins (resource add --target https://HOST:PORT [--ca FILE | --insecure-skip-verify])
# with a real PoP, a site and an nginx origin serving TLS with a certificate from a test CA
# made here by the openssl CLI, for the name localhost. nginx logs $ssl_server_name (the SNI
# the site sent) and $ssl_protocol. Checked through the PoP's HTTP ingress:
#   - --ca with the right CA: 200 with nginx's page, SNI localhost in its log;
#   - --ca with another CA: 502 to the client, its page and the site's log naming the
#     verification failure;
#   - no --ca (system store only): 502 too (the test CA is in no system store);
#   - --insecure-skip-verify with no CA: 200, and resource list says INSECURE;
#   - a TCP resource with an https:// target: the stream itself is TLS to nginx;
#   - bad input: a scheme other than http/https, https and plain targets mixed,
#     --insecure-skip-verify without https, --ca without https, --ca with junk, --ca with
#     --insecure-skip-verify, an http: health check with https targets.
source "$(dirname "$0")/lib.sh"
: "${POPSITE:?POPSITE must point to the popsite binary}"
NGINX=${NGINX:-/usr/sbin/nginx}
[ -x "$NGINX" ] || { echo "SKIP: no nginx (tools/setup.sh installs nginx-light)"; exit 77; }
command -v openssl >/dev/null || { echo "SKIP: no openssl CLI"; exit 77; }

# ---- two CAs, a certificate for localhost from the first ----
C="$WORK/pki"
mkdir -p "$C"
ossl() { openssl "$@" >>"$C/openssl.log" 2>&1 || { cat "$C/openssl.log" >&2; fail "openssl $1"; }; }
for ca in ca other; do
    ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$C/$ca.key" \
        -out "$C/$ca.pem" -days 2 -subj "/CN=popmesh test $ca" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
done
ossl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$C/origin.key" \
    -out "$C/origin.csr" -subj "/CN=localhost"
printf 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' \
    >"$C/origin.ext"
ossl x509 -req -in "$C/origin.csr" -CA "$C/ca.pem" -CAkey "$C/ca.key" -CAcreateserial \
    -out "$C/origin.pem" -days 1 -extfile "$C/origin.ext"
printf 'not a certificate\n' >"$C/junk.pem"

# ---- nginx: TLS on 127.0.0.1 ----
NP=$(free_port)
mkdir -p "$WORK/ngx/www" "$WORK/ngx/tmp"
echo "hello over tls" >"$WORK/ngx/www/index.html"
cat >"$WORK/ngx/nginx.conf" <<NGX
daemon off;
master_process off;
worker_processes 1;
pid $WORK/ngx/nginx.pid;
error_log $WORK/ngx/error.log info;
events { worker_connections 256; }
http {
    log_format tls 'sni=\$ssl_server_name proto=\$ssl_protocol host=\$host status=\$status';
    access_log $WORK/ngx/access.log tls;
    client_body_temp_path $WORK/ngx/tmp;
    proxy_temp_path $WORK/ngx/tmp;
    fastcgi_temp_path $WORK/ngx/tmp;
    server {
        listen 127.0.0.1:$NP ssl;
        ssl_certificate $C/origin.pem;
        ssl_certificate_key $C/origin.key;
        location / { root $WORK/ngx/www; }
    }
}
NGX
"$NGINX" -c "$WORK/ngx/nginx.conf" -p "$WORK/ngx" >"$WORK/nginx.log" 2>&1 &
PIDS+=("$!")

# ---- a PoP with an HTTP listener, a site ----
H1=$(free_port)
init_node "$WORK/n1" pop-1 --http-listen "127.0.0.1:$H1"
start_popd "$WORK/n1"
SITE_TOKEN=$(mctl "$WORK/n1" site add branch | grep -o 'pmt1\.[A-Za-z0-9_-]*' | head -1)
"$POPSITE" run --data "$WORK/site" --token "$SITE_TOKEN" >>"$WORK/site.log" 2>&1 &
PIDS+=("$!")

# ---- bad input ----
T="https://localhost:$NP"
bad() { # WANT_TEXT ARGS...
    local want=$1
    shift
    expect_rc 2 mctl "$WORK/n1" resource add bad --site branch "$@"
    expect_in "$WORK/err" "$want"
}
bad "scheme 'ftp' is not http or https" --target "ftp://localhost:$NP" --host bad.test
bad "scheme 'HTTPS' is not http or https" --target "HTTPS://localhost:$NP" --host bad.test
bad "every target of a resource is https:// or none is" --target "$T" \
    --target "127.0.0.1:$NP" --host bad.test
bad "insecure_skip_verify is for https:// targets" --target "localhost:$NP" --host bad.test \
    --insecure-skip-verify
bad "a CA for the targets needs https:// targets" --target "localhost:$NP" --host bad.test \
    --ca "$C/ca.pem"
bad "a CA for the targets needs https:// targets" --target "$T" --host bad.test \
    --ca "$C/ca.pem" --insecure-skip-verify
bad "does not start with -----BEGIN CERTIFICATE-----" --target "$T" --host bad.test \
    --ca "$C/junk.pem"
bad "an http: health check speaks plain HTTP" --target "$T" --host bad.test --health http:/
ok "refused: scheme ftp:// and HTTPS://, mixed https and plain targets, --insecure-skip-verify or --ca without https, --ca with --insecure-skip-verify, a CA file that is not PEM, an http: health check"

# ---- the four resources ----
expect_rc 0 mctl "$WORK/n1" resource add good --site branch --target "$T" --host good.test \
    --ca "$C/ca.pem"
expect_rc 0 mctl "$WORK/n1" resource add wrongca --site branch --target "$T" --host wrong.test \
    --ca "$C/other.pem"
expect_rc 0 mctl "$WORK/n1" resource add noca --site branch --target "$T" --host noca.test
expect_rc 0 mctl "$WORK/n1" resource add skip --site branch --target "$T" --host skip.test \
    --insecure-skip-verify
TP=$(free_port)
expect_rc 0 mctl "$WORK/n1" resource add tcptls --site branch --target "$T" --tcp-port "$TP" \
    --ca "$C/ca.pem"
mctl "$WORK/n1" resource list >"$WORK/rl.txt"
grep -q "^good .*(https, own CA)" "$WORK/rl.txt" && grep -q "^noca .*(https)" "$WORK/rl.txt" &&
    grep -q "^skip .*(https, INSECURE: certificates not verified)" "$WORK/rl.txt" ||
    { cat "$WORK/rl.txt" >&2; fail "resource list does not show the origins' TLS"; }
ok "resource list: (https, own CA), (https), (https, INSECURE: certificates not verified)"

get() { # HOST -> "CODE" with the body in $WORK/body
    curl -s -m 8 -H "Host: $1" -o "$WORK/body" -w '%{http_code}' "http://127.0.0.1:$H1/" || true
}
code_is() { [ "$(get "$1")" = "$2" ]; }
wait_for 20 "good.test served over TLS" code_is good.test 200
expect_in "$WORK/body" "hello over tls"
wait_for 5 "nginx logs the SNI" grep -Eq "sni=localhost proto=TLSv1\.[23] host=good.test status=200" \
    "$WORK/ngx/access.log"
ok "--ca with the origin's CA: 200 with nginx's page; nginx saw SNI localhost over TLS 1.2 or 1.3"

[ "$(get wrong.test)" = 502 ] || fail "wrong.test: $(get wrong.test), want 502"
expect_in "$WORK/body" "certificate verify failed"
wait_for 5 "the site logs the refusal" grep -q \
    "resource wrongca: target localhost:$NP: TLS: certificate verify failed" "$WORK/site.log"
grep -q "host=wrong.test" "$WORK/ngx/access.log" && fail "a request reached nginx through the wrong CA"
ok "--ca with another CA: 502 to the client saying 'certificate verify failed', the site logs it, nginx served nothing"

[ "$(get noca.test)" = 502 ] || fail "noca.test: $(get noca.test), want 502"
ok "no --ca: the system store does not know the test CA: 502"

[ "$(get skip.test)" = 200 ] || fail "skip.test: $(get skip.test), want 200"
expect_in "$WORK/body" "hello over tls"
grep -Eq "sni=localhost proto=TLSv1\.[23] host=skip.test status=200" "$WORK/ngx/access.log" ||
    fail "skip.test: no TLS request in nginx's log"
ok "--insecure-skip-verify: 200, TLS to nginx (SNI localhost) without certificate checks"

# ---- a TCP resource: the client speaks plain HTTP, the site TLS ----
R=$(printf 'GET / HTTP/1.0\r\nHost: tcp.test\r\n\r\n' | timeout 8 "$PY" -c '
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(sys.stdin.buffer.read())
out = b""
while True:
    b = s.recv(4096)
    if not b:
        break
    out += b
print(out.decode(errors="replace"))' "$TP" || true)
echo "$R" | grep -q "hello over tls" || { echo "$R" >&2; fail "tcp resource with an https:// target"; }
grep -Eq "sni=localhost proto=TLSv1\.[23] host=tcp.test status=200" "$WORK/ngx/access.log" ||
    fail "tcp.test: no TLS request in nginx's log"
ok "a TCP resource with an https:// target: plain bytes from the client, TLS from the site to nginx"

for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null || fail "a process exited (pid $pid)"; done
done_testing
