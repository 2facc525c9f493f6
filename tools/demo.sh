#!/usr/bin/env bash
# The main job: installs what is needed, builds popmesh, creates a mesh of three PoPs on this
# machine (one inits the mesh, two join with a bootstrap token), enrolls a site connector
# (popsite) in front of a small backend, publishes the backend as a TCP resource on every PoP,
# shows one connection through each PoP, a web app behind login, the PoPs answering DNS for
# a zone (and a connection to the address they give), and leaves everything running.
#
#   tools/demo.sh          start (or restart) the demo
#   tools/demo.sh stop     stop it
#
# Everything lives under ./demo (data directories and logs).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DEMO=$ROOT/demo
BUILD=${DEMO_BUILD:-$ROOT/build} # tools/test.sh points it at its Release build

stop_demo() {
    local stopped=0
    for lock in "$DEMO"/*/popd.lock; do
        [ -f "$lock" ] || continue
        pid=$(head -n1 "$lock" 2>/dev/null || true)
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && grep -q popd "/proc/$pid/cmdline" 2>/dev/null; then
            kill -TERM "$pid"
            for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            stopped=$((stopped + 1))
        fi
    done
    for lock in "$DEMO"/*/popsite.lock "$DEMO"/backend.pid; do
        [ -f "$lock" ] || continue
        if [ "${lock##*.}" = pid ]; then pid=$(cat "$lock"); else pid=$(fuser "$lock" 2>/dev/null | tr -d ' ' || true); fi
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            stopped=$((stopped + 1))
        fi
    done
    echo "demo: stopped $stopped process(es)"
}

if [ "${1:-}" = "stop" ]; then
    stop_demo
    exit 0
fi

bash tools/setup.sh
echo "== building (Release) in ${BUILD#$ROOT/}/"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DPOPMESH_TESTS=OFF >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target popd popsite meshctl >/dev/null
POPD=$BUILD/node/popd
POPSITE=$BUILD/node/site/popsite
MESHCTL=$BUILD/tools/meshctl/meshctl

stop_demo >/dev/null
rm -rf "$DEMO"
mkdir -p "$DEMO"

start_node() { # start_node NAME
    nohup "$POPD" run --data "$DEMO/$1" >>"$DEMO/$1.log" 2>&1 &
    for _ in $(seq 1 100); do
        "$MESHCTL" -d "$DEMO/$1" status >/dev/null 2>&1 && return
        sleep 0.05
    done
    echo "demo: $1 did not start; see demo/$1.log" >&2
    exit 1
}

# demo_failed WHAT: a step did not do what it shows; say so, show the logs, exit 1 (a demo
# that prints an error page and exits 0 would teach the wrong thing).
demo_failed() {
    echo "demo: FAILED: $*" >&2
    for f in "$DEMO"/*.log; do
        echo "--- $f (last 10 lines)" >&2
        tail -n 10 "$f" >&2
    done
    echo "demo: the mesh is left running for a look; tools/demo.sh stop stops it" >&2
    exit 1
}

run() { # run NODE meshctl-args...
    local node=$1
    shift
    echo "\$ meshctl -d demo/$node $*"
    "$MESHCTL" -d "$DEMO/$node" "$@"
    echo
}

echo "== popd init: pop-a creates a new mesh"
# Three PoPs on one machine: each binds resource ports on its own loopback address.
"$POPD" init --data "$DEMO/pop-a" --name pop-a --region local-1 --mesh-listen 127.0.0.1:7941 \
    --tunnel-listen 127.0.0.1:7951 --ingress-address 127.0.0.11 --http-listen 127.0.0.1:8080 \
    --https-listen 127.0.0.1:8443 --dns-listen 127.0.0.11:7960 --public-address 127.0.0.1
start_node pop-a
echo
echo "== meshctl token create, then popd join: pop-b and pop-c join with it"
TOKEN=$("$MESHCTL" -d "$DEMO/pop-a" token create --uses 2 --ttl 10m)
echo "token: ${TOKEN:0:40}..."
"$POPD" join --data "$DEMO/pop-b" --name pop-b --region local-2 --mesh-listen 127.0.0.1:7942 \
    --tunnel-listen 127.0.0.1:7952 --ingress-address 127.0.0.12 --http-listen 127.0.0.12:8080 \
    --https-listen 127.0.0.12:8443 --dns-listen 127.0.0.12:7960 "$TOKEN"
start_node pop-b
"$POPD" join --data "$DEMO/pop-c" --name pop-c --region local-3 --mesh-listen 127.0.0.1:7943 \
    --tunnel-listen 127.0.0.1:7953 --ingress-address 127.0.0.13 --http-listen 127.0.0.13:8080 \
    --https-listen 127.0.0.13:8443 --dns-listen 127.0.0.13:7960 "$TOKEN"
start_node pop-c
sleep 1
echo
run pop-c members
run pop-a status
echo "== configuration written on pop-a is read on pop-c"
run pop-a config set cfg/welcome "hello from popmesh"
run pop-a config set cfg/session-ttl 12h
sleep 0.5
run pop-c config get cfg/welcome
run pop-c --json config get cfg/session-ttl
run pop-b config list cfg/
run pop-a token list

echo "== a backend in the 'private network' (a small HTTP server on 127.0.0.1:7980)"
mkdir -p "$DEMO/www"
echo "hello from the backend behind site branch-1" >"$DEMO/www/index.html"
nohup /usr/bin/python3 -m http.server 7980 --bind 127.0.0.1 --directory "$DEMO/www" \
    >>"$DEMO/backend.log" 2>&1 &
echo $! >"$DEMO/backend.pid"
echo "== meshctl site add, then popsite enrolls with the token it printed"
SITE_TOKEN=$("$MESHCTL" -d "$DEMO/pop-a" site add branch-1 | grep -o 'pmt1\.[A-Za-z0-9_-]*' | head -1)
echo "site token: ${SITE_TOKEN:0:40}..."
[ -n "$SITE_TOKEN" ] || demo_failed "site add printed no token"
nohup "$POPSITE" run --data "$DEMO/branch-1" --token "$SITE_TOKEN" >>"$DEMO/branch-1.log" 2>&1 &
run pop-b resource add web --site branch-1 --target 127.0.0.1:7980 --tcp-port 7990 --health http:/
# The site enrolls and dials its PoPs: wait (at most 10 s) until all three PoPs carry a
# connection to the backend.
for _ in $(seq 1 100); do
    n=0
    for ip in 127.0.0.11 127.0.0.12 127.0.0.13; do
        curl -s -m 1 -o /dev/null "http://$ip:7990/" && n=$((n + 1))
    done
    [ "$n" = 3 ] && break
    sleep 0.1
done
# Its first STATUS names a primary a moment after the tunnels are up: wait (at most 5 s) so
# the table shows it rather than two standbys.
for _ in $(seq 1 50); do
    "$MESHCTL" -d "$DEMO/pop-c" --json sites 2>/dev/null | grep -q '"primary"' && break
    sleep 0.1
done
run pop-c sites
run pop-a routes
echo "== one connection through each PoP's ingress address (port 7990)"
for ip in 127.0.0.11 127.0.0.12 127.0.0.13; do
    echo "\$ curl http://$ip:7990/"
    out=$(curl -s -m 3 "http://$ip:7990/") || true
    echo "$out"
    case "$out" in *"hello from the backend"*) ;; *) demo_failed "no answer from the backend through $ip:7990" ;; esac
done
echo

echo "== the same backend as a web app behind login: app.localhost on port 8080 of every PoP"
run pop-a resource add webapp --site branch-1 --target 127.0.0.1:7980 --host app.localhost --auth login
DEMO_PASSWORD=$(head -c 12 /dev/urandom | base64 | tr -d '/+=' | cut -c1-14)
echo "\$ meshctl -d demo/pop-a user add demo --group staff   (password from stdin)"
echo "$DEMO_PASSWORD" | "$MESHCTL" -d "$DEMO/pop-a" user add demo --group staff
echo
echo "\$ curl -i -H 'Host: app.localhost' http://127.0.0.1:8080/      (no session: to the login page)"
out=$(curl -s -i -H 'Host: app.localhost' http://127.0.0.1:8080/ | grep -i '^HTTP\|^location') || true
echo "$out"
case "$out" in *302*"/.popmesh/login"*) ;; *) demo_failed "pop-a did not send an anonymous user to the login page" ;; esac
echo "\$ curl (log in as demo at pop-a, then use the cookie at pop-c)"
curl -s -o /dev/null -c "$DEMO/cookies" -H 'Host: app.localhost' \
    --data "username=demo&password=$DEMO_PASSWORD&rd=/" http://127.0.0.1:8080/.popmesh/login
out=$(curl -s -b "$DEMO/cookies" -H 'Host: app.localhost' http://127.0.0.13:8080/) || true
echo "$out"
case "$out" in *"hello from the backend"*) ;; *) demo_failed "the session made at pop-a did not open the app at pop-c" ;; esac
echo

echo "== DNS: every PoP is a name server for the zone demo.test (port 7960 here, 53 in real life)"
run pop-a zone add demo.test --ttl 5
run pop-a resource add www --site branch-1 --target 127.0.0.1:7980 --host www.demo.test
# The answer is computed from the live mesh: wait (at most 5 s) until the new host resolves.
for _ in $(seq 1 50); do
    [ -n "$(dig +short -p 7960 @127.0.0.12 www.demo.test A 2>/dev/null | sed "/^;/d")" ] && break
    sleep 0.1
done
echo "\$ dig +short -p 7960 @127.0.0.12 www.demo.test A    (pop-b answers: itself first, then another region)"
mapfile -t ADDRS < <(dig +short -p 7960 @127.0.0.12 www.demo.test A 2>/dev/null | sed "/^;/d")
printf '%s\n' "${ADDRS[@]}"
[ "${#ADDRS[@]}" -ge 1 ] || demo_failed "pop-b's name server gave no address for www.demo.test"
echo "\$ curl --resolve www.demo.test:8080:${ADDRS[0]} http://www.demo.test:8080/"
out=$(curl -s -m 3 --resolve "www.demo.test:8080:${ADDRS[0]}" http://www.demo.test:8080/) || true
echo "$out"
case "$out" in *"hello from the backend"*) ;; *) demo_failed "no answer through ${ADDRS[0]}, the PoP DNS gave" ;; esac
run pop-c dns explain www.demo.test --client 127.0.0.1
echo

echo "== HTTPS: a certificate imported at pop-a is served by every PoP (port 8443)"
# A throwaway CA and an ECDSA certificate for www.demo.test (an ACME CA would do this by itself:
# meshctl acme set; see docs/tls.md).
PKI=$DEMO/pki
mkdir -p "$PKI"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=popmesh demo CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" \
    -keyout "$PKI/ca.key" -out "$PKI/ca.pem" >/dev/null 2>&1 || demo_failed "openssl: the demo CA"
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=www.demo.test" \
    -keyout "$PKI/www.key" -out "$PKI/www.csr" >/dev/null 2>&1 || demo_failed "openssl: the CSR"
printf 'subjectAltName=DNS:www.demo.test\nextendedKeyUsage=serverAuth\n' >"$PKI/www.ext"
openssl x509 -req -in "$PKI/www.csr" -CA "$PKI/ca.pem" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 1 -extfile "$PKI/www.ext" -out "$PKI/www.pem" >/dev/null 2>&1 || demo_failed "openssl: the certificate"
echo "\$ meshctl -d demo/pop-a cert import --cert demo/pki/www.pem --key demo/pki/www.key"
"$MESHCTL" -d "$DEMO/pop-a" cert import --cert "$PKI/www.pem" --key "$PKI/www.key" ||
    demo_failed "cert import at pop-a"
echo
# The record reaches pop-c by replication (about 20 ms): wait at most 5 s for it to serve it.
for _ in $(seq 1 50); do
    curl -s -m 2 -o /dev/null --cacert "$PKI/ca.pem" --resolve www.demo.test:8443:127.0.0.13 \
        https://www.demo.test:8443/ && break
    sleep 0.1
done
echo "\$ curl --cacert demo/pki/ca.pem --resolve www.demo.test:8443:127.0.0.13 https://www.demo.test:8443/"
out=$(curl -s -m 3 --cacert "$PKI/ca.pem" --resolve www.demo.test:8443:127.0.0.13 https://www.demo.test:8443/) || true
echo "$out"
case "$out" in *"hello from the backend"*) ;; *) demo_failed "no answer over HTTPS at pop-c" ;; esac
echo "\$ curl -i --resolve www.demo.test:8080:127.0.0.13 http://www.demo.test:8080/x?y=1   (plain HTTP now redirects)"
curl -s -i -m 3 --resolve www.demo.test:8080:127.0.0.13 'http://www.demo.test:8080/x?y=1' | grep -i '^HTTP\|^location' ||
    demo_failed "no answer over plain HTTP at pop-c"
echo
run pop-c cert list

cat <<EOT
The web app: open http://app.localhost:8080/ in a browser (on this machine) and sign in as
  user: demo    password: $DEMO_PASSWORD
(app.localhost resolves to 127.0.0.1 in browsers; with curl use -H 'Host: app.localhost').

Everything is still running (logs in demo/*.log). Try:
  curl http://127.0.0.12:7990/
  $MESHCTL -d demo/pop-b sites
  $MESHCTL -d demo/pop-a routes
  $MESHCTL -d demo/pop-c members
  dig -p 7960 @127.0.0.13 demo.test NS; dig -p 7960 @127.0.0.13 www.demo.test A +subnet=10.0.0.0/24
  curl --cacert demo/pki/ca.pem --resolve www.demo.test:8443:127.0.0.12 https://www.demo.test:8443/
  kill -9 \$(head -1 demo/pop-a/popd.lock); sleep 1; curl http://127.0.0.12:7990/; $MESHCTL -d demo/pop-b sites
Stop it with: tools/demo.sh stop
EOT
