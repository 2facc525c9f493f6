#!/usr/bin/env bash
# TLS termination benchmark: popmesh's HTTPS ingress against nginx terminating TLS in front of
# ssh -L (the hand-made equivalent of a PoP and its tunnel, PEERS.md), same run, on loopback.
#   popmesh: 2 PoPs (--https-listen), a site (popsite), an HTTP resource app.test (--auth none)
#            whose target is the backend; an ECDSA P-256 certificate for app.test imported at
#            pop-2 (meshctl cert import) and measured at pop-1, where it arrived by the store.
#   peer:    nginx (one worker, like popd's one loop) with the same certificate and key, TLS 1.2
#            and 1.3, popd's TLS 1.2 cipher list and groups, session tickets on (nginx's default
#            in-memory ticket key), no session cache (popd keeps none either), proxying with a
#            keep-alive upstream to ssh -L, which forwards to the same backend.
#   backend: nginx serving a 100-byte static file (as in bench_http.sh).
# Measures, alternated (the side that goes first swaps every run), RUNS runs of each:
#   - full handshakes/s and resumed handshakes/s, TLS 1.3 and 1.2: tools/bench/tls_probe.c
#     (PROCS processes, HS_SECS seconds; each connection: TCP, handshake with SNI and the
#     certificate verified, close_notify, read to the server's close; no HTTP request);
#     openssl s_time cannot be used: it sends no SNI, and popd refuses a ClientHello without one;
#   - handshakes/s with single-use TLS 1.3 tickets (tls_probe --mode once: each ticket offered
#     once, as RFC 8446 C.4 advises and Chrome's BoringSSL does) and the share that resumed:
#     a server that sends no ticket after a resumption (nginx) makes every other one full;
#   - keep-alive requests/s and p99 latency: wrk -t2 -c32 over TLS (wrk's defaults: TLS 1.3,
#     SNI from the URL; app.test resolves to 127.0.0.1 through /etc/hosts in a private mount
#     namespace of wrk alone).
# Prints medians and popd/peer ratios, and the server CPU per handshake (user + system time of
# popd or the nginx worker over a tls_probe run, divided by its handshakes: client and servers
# share the cores, so this is the figure that shows what a handshake costs the server).
# Fails loudly on errors: wrk non-2xx or socket errors, handshake errors, a resumption run
# that did not resume. The mesh's first ticket key takes 25 to 55 s to appear (waited for).
#   RUNS=3 HS_SECS=5 WRK_SECS=10 PROCS=4 tools/bench/bench_tls.sh   (BUILD=DIR: another build;
#   HOLD=S: the servers wait S seconds before the runs, for a profiler)
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${RUNS:-3}
HS_SECS=${HS_SECS:-5}
WRK_SECS=${WRK_SECS:-10}
PROCS=${PROCS:-4}
PY=/usr/bin/python3
NGINX=${NGINX:-/usr/sbin/nginx}
WRK=${WRK:-wrk}
for t in "$WRK" "$NGINX" openssl cc curl unshare ssh /usr/sbin/sshd; do
    command -v "$t" >/dev/null || { echo "bench_tls: $t missing (tools/setup.sh)" >&2; exit 1; }
done
if [ -z "${BUILD:-}" ]; then
    BUILD=$PWD/build-bench
    cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DPOPMESH_TESTS=OFF >/dev/null
    cmake --build "$BUILD" -j2 --target popd meshctl popsite >/dev/null
fi
POPD=$BUILD/node/popd
MESHCTL=$BUILD/tools/meshctl/meshctl
POPSITE=$BUILD/node/site/popsite
. tools/bench/lib.sh
bench_workdir tls
row() { printf '| %-34s | %12s | %14s | %12s |\n' "$@"; }

PROBE=$W/tls_probe
cc -O2 -Wall -Wextra -o "$PROBE" tools/bench/tls_probe.c -lssl -lcrypto || fail "cannot build tls_probe"

# ---- a CA and an ECDSA P-256 certificate for app.test (as tests/integration/https_ingress.sh)
C=$W/pki
mkdir -p "$C"
ossl() { openssl "$@" >>"$C/openssl.log" 2>&1 || { cat "$C/openssl.log" >&2; fail "openssl $1"; }; }
ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$C/ca.key" \
    -out "$C/ca.pem" -days 2 -subj "/CN=popmesh bench CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
ossl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$C/app.key" \
    -out "$C/app.csr" -subj "/CN=app.test"
printf 'subjectAltName=DNS:app.test\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$C/app.ext"
ossl x509 -req -in "$C/app.csr" -CA "$C/ca.pem" -CAkey "$C/ca.key" -CAcreateserial \
    -out "$C/app.pem" -days 1 -extfile "$C/app.ext"

# nginx_conf DIR SERVER_BLOCK_BODY [HTTP_EXTRA]: a self-contained nginx in DIR, one worker
nginx_conf() {
    local d=$1
    mkdir -p "$d"
    cat >"$d/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $d/body;
    proxy_temp_path $d/proxy;
    fastcgi_temp_path $d/fastcgi;
    uwsgi_temp_path $d/uwsgi;
    scgi_temp_path $d/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 65s;
    default_type application/octet-stream;
    ${3:-}
    server {
        $2
    }
}
EOF
}

# ---- backend: nginx serving a 100-byte file
echo "== backend: nginx, 100-byte static file"
APP_PORT=$(port)
mkdir -p "$W/app/www"
head -c 100 /dev/zero | tr '\0' 'x' >"$W/app/www/index.html"
nginx_conf "$W/app" "listen 127.0.0.1:$APP_PORT backlog=1024; location / { root $W/app/www; index index.html; }"
"$NGINX" -c "$W/app/nginx.conf" -p "$W/app" >"$W/app.log" 2>&1 &
PID[app]=$!
wait_port "$APP_PORT" 10 || fail "backend nginx did not start"

# ---- peer: user sshd, ssh -L, nginx terminating TLS with a keep-alive upstream
echo "== peer: sshd + ssh -L + nginx terminating TLS"
SSH_LOCAL=$(port)
start_ssh_forward "$SSH_LOCAL:$APP_PORT"
PEER_PORT=$(port)
nginx_conf "$W/peer" "listen 127.0.0.1:$PEER_PORT ssl backlog=1024;
        server_name app.test;
        ssl_certificate $C/app.pem;
        ssl_certificate_key $C/app.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305;
        ssl_ecdh_curve X25519:P-256:P-384;
        ssl_session_tickets on;
        ssl_session_cache off;
        location / { proxy_pass http://tunnel; proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_set_header Host \$host; proxy_set_header X-Forwarded-Proto https; }" \
    "upstream tunnel { server 127.0.0.1:$SSH_LOCAL; keepalive 64; keepalive_requests 1000000; }"
"$NGINX" -c "$W/peer/nginx.conf" -p "$W/peer" >"$W/peer.log" 2>&1 &
PID[peer]=$!
wait_port "$PEER_PORT" 10 || fail "peer nginx did not start"

# ---- popmesh: 2 PoPs with HTTPS, a site, one resource, the certificate imported at pop-2
echo "== popmesh: 2 PoPs (--https-listen), site s1, resource app.test, certificate imported at pop-2"
declare -a HP SP
for i in 1 2; do HP[$i]=$(port); SP[$i]=$(port); done
start_pop() { # start_pop I
    "$POPD" run --data "$W/n$1" >>"$W/n$1.log" 2>&1 &
    PID[n$1]=$!
    for _ in $(seq 1 100); do ctl "n$1" status >/dev/null 2>&1 && return 0; sleep 0.05; done
    fail "pop-$1 did not start"
}
"$POPD" init --data "$W/n1" --name pop-1 --mesh-listen "127.0.0.1:$(port)" \
    --tunnel-listen "127.0.0.1:$(port)" --http-listen "127.0.0.1:${HP[1]}" \
    --https-listen "127.0.0.1:${SP[1]}" >>"$W/n1.log" 2>&1
start_pop 1
TOKEN=$(ctl n1 token create --uses 1 --ttl 10m 2>/dev/null)
"$POPD" join --data "$W/n2" --name pop-2 --mesh-listen "127.0.0.1:$(port)" \
    --tunnel-listen "127.0.0.1:$(port)" --http-listen "127.0.0.1:${HP[2]}" \
    --https-listen "127.0.0.1:${SP[2]}" "$TOKEN" >>"$W/n2.log" 2>&1 || fail "pop-2 did not join"
start_pop 2
# a site enrolled before a PoP has published its tunnel endpoint learns no PoP: wait for both
for i in 1 2; do
    for _ in $(seq 1 100); do grep -q 'tunnel endpoint .* published$' "$W/n$i.log" && break; sleep 0.05; done
    grep -q 'tunnel endpoint .* published$' "$W/n$i.log" || fail "pop-$i did not publish its tunnel endpoint"
done
STOK=$(ctl n1 site add s1 2>&1 | grep -o 'pmt1\.[A-Za-z0-9_-]*' | head -1)
[ -n "$STOK" ] || fail "no site token"
"$POPSITE" run --data "$W/s1" --token "$STOK" >>"$W/s1.log" 2>&1 &
PID[s1]=$!
ctl n1 resource add app --site s1 --target "127.0.0.1:$APP_PORT" --host app.test --auth none >>"$W/meshctl.log" 2>&1 ||
    fail "resource add: $(tail -n 3 "$W/meshctl.log")"
ctl n2 cert import --cert "$C/app.pem" --key "$C/app.key" >>"$W/meshctl.log" 2>&1 ||
    fail "cert import: $(tail -n 3 "$W/meshctl.log")"

POP=127.0.0.1:${SP[1]}
PEER=127.0.0.1:$PEER_PORT
check() { # check ADDR [curl args]: one GET over TLS must answer 200 with the 100-byte body
    local addr=$1 out
    shift
    out=$(curl -s -m 5 -o "$W/body" -w '%{http_code} %{size_download}' --cacert "$C/ca.pem" \
        --resolve "app.test:${addr#*:}:127.0.0.1" "$@" "https://app.test:${addr#*:}/" || true)
    [ "$out" = "200 100" ] && cmp -s "$W/body" "$W/app/www/index.html"
}
for side in POP PEER; do
    ok=0
    for _ in $(seq 1 300); do
        if check "${!side}"; then ok=1; break; fi
        sleep 0.1
    done
    [ $ok -eq 1 ] || fail "$side (${!side}): no 200 over TLS within 30 s"
done
# The first ticket key of a new mesh is written after a settle time (10 s) and the writer's
# next check (15 to 45 s later with the 12 h period; ticketkeys.c); until then popd issues no
# tickets and every handshake is full.
t0=$(date +%s)
for _ in $(seq 1 1200); do
    ctl n1 --json tls status 2>/dev/null | grep -q '"current": "[0-9a-f]' && break
    sleep 0.1
done
ctl n1 --json tls status 2>/dev/null | grep -q '"current": "[0-9a-f]' ||
    fail "pop-1 holds no ticket key after 120 s: $(ctl n1 --json tls status 2>&1 | head -20)"
echo "   the mesh's first ticket key arrived $(($(date +%s) - t0)) s after the certificate"
# Both sides must agree on the same parameters: the same version, suite, group and certificate.
declare -A NEG=()
for v in 1.2 1.3; do
    for side in POP PEER; do
        o=$(timeout 10 openssl s_client -connect "${!side}" -servername app.test -CAfile "$C/ca.pem" \
            "-tls${v/./_}" -cipher ECDHE-ECDSA-AES128-GCM-SHA256 -ciphersuites TLS_AES_128_GCM_SHA256 \
            -groups X25519:P-256 </dev/null 2>&1 || true)
        grep -q "^New, TLSv$v, Cipher is" <<<"$o" || { echo "$o" >&2; fail "$side: TLS $v not agreed"; }
        grep -q "Verify return code: 0 (ok)" <<<"$o" || { echo "$o" >&2; fail "$side: certificate not verified"; }
        NEG[$side]="$(grep '^New, ' <<<"$o" | sed 's/^New, //'), $(grep -o 'Server Temp Key: [^,]*' <<<"$o" | sed 's/.*: //')"
    done
    [ "${NEG[POP]}" = "${NEG[PEER]}" ] || fail "TLS $v: popd agreed '${NEG[POP]}', nginx '${NEG[PEER]}'"
    echo "   TLS $v on both: ${NEG[POP]}"
done
# wrk resolves the URL's host and sends it as SNI: app.test -> 127.0.0.1 for wrk alone
printf '127.0.0.1 localhost app.test\n' >"$W/hosts"
UNSHARE=(unshare -m)
[ "$(id -u)" -eq 0 ] || UNSHARE=(unshare -r -m)
"${UNSHARE[@]}" sh -c "mount --bind '$W/hosts' /etc/hosts && exec curl -s -o /dev/null --cacert '$C/ca.pem' https://app.test:$PEER_PORT/" ||
    fail "cannot give wrk a private /etc/hosts ($(id -un); unshare -m and mount --bind)"

# cpu_ticks PID: user + system time of the process (all its threads), in clock ticks
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
TCK=$(getconf CLK_TCK)
# hs_run NAME SIDE VERSION MODE: "handshakes/s server_cpu_us_per_handshake" from tls_probe
hs_run() {
    local name=$1 addr=${!2} pid out n r e rate c0 c1
    pid=${SRV_PID[$2]}
    c0=$(cpu_ticks "$pid")
    out=$("$PROBE" --connect "$addr" --sni app.test --cafile "$C/ca.pem" --tls "$3" --mode "$4" \
        --seconds "$HS_SECS" --procs "$PROCS" 2>&1) || { echo "$out" >&2; fail "tls_probe $name failed"; }
    c1=$(cpu_ticks "$pid")
    echo "== $name: $out; server cpu $((c1 - c0)) ticks" >>"$W/probe.log"
    read -r n r e rate < <(awk '{print $2, $4, $6, $10}' <<<"$out")
    # a handshake error is a bug (the servers have 4096 slots, the client has $PROCS)
    [ "$e" -eq 0 ] || fail "tls_probe $name: $e errors ($out)"
    if [ "$4" = resume ]; then
        # each process's first connection is full; all others must resume
        [ "$r" -ge $((n - PROCS)) ] || fail "tls_probe $name: only $r of $n resumed ($out)"
    fi
    echo "$rate $(awk -v c=$((c1 - c0)) -v t="$TCK" -v n="$n" 'BEGIN { printf "%.0f", c * 1e6 / t / n }') $(awk -v r="$r" -v n="$n" 'BEGIN { printf "%.0f", n ? r * 100 / n : 0 }')"
}
# wrk_run NAME ADDR: "req/s p99_ms"; fails loudly on non-2xx/3xx or socket errors
wrk_run() {
    local name=$1 out rps p99
    out=$("${UNSHARE[@]}" sh -c "mount --bind '$W/hosts' /etc/hosts && exec $WRK -t2 -c32 -d ${3:-$WRK_SECS}s --latency https://app.test:${2#*:}/" 2>&1) ||
        { echo "$out" >>"$W/wrk.log"; fail "wrk $name failed"; }
    echo "== $name" >>"$W/wrk.log"; echo "$out" >>"$W/wrk.log"
    if grep -q 'Non-2xx\|Socket errors' <<<"$out"; then
        echo "$out" >&2; fail "wrk $name: $(grep 'Non-2xx\|Socket errors' <<<"$out")"
    fi
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    p99=$(awk '$1=="99%" { v=$2; u=v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v);
        f = (u=="us") ? 0.001 : (u=="ms") ? 1 : (u=="s") ? 1000 : (u=="m") ? 60000 : -1;
        if (f < 0) print "nan"; else printf "%.3f", v * f }' <<<"$out")
    [ -n "$rps" ] && [ -n "$p99" ] || fail "wrk $name: cannot parse output: $out"
    echo "$rps $p99"
}

declare -A SRV_PID=([POP]=${PID[n1]} [PEER]=${PID[peer]})
# HOLD=S: keep both servers up S seconds before measuring, for a profiler (perf record -p PID)
if [ -n "${HOLD:-}" ]; then
    echo "   holding ${HOLD}s: popd pid ${PID[n1]} at $POP, nginx pid ${PID[peer]} at $PEER;" \
        "probe: $PROBE --connect ADDR --sni app.test --cafile $C/ca.pem --tls 1.3 --mode full"
    sleep "$HOLD"
fi
echo "== warm-up (not measured)"
for side in POP PEER; do
    hs_run "warm-up $side" "$side" 1.3 full >/dev/null
    wrk_run "warm-up $side" "${!side}" 2 >/dev/null
done
METRICS=(F13 F12 R13 S13 R12 KA)
declare -A VAL=() CPU=() RES=() # "METRIC SIDE" -> space-separated values of the runs
echo "== $RUNS runs: handshakes $PROCS processes x ${HS_SECS}s, wrk -t2 -c32 ${WRK_SECS}s; alternated"
for r in $(seq 1 "$RUNS"); do
    if [ $((r % 2)) -eq 1 ]; then order=(POP PEER); else order=(PEER POP); fi
    line="   run $r:"
    for m in "${METRICS[@]}"; do
        for side in "${order[@]}"; do
            case $m in
            F13) read -r v c _ < <(hs_run "$m $side" "$side" 1.3 full) || exit 1 ;;
            F12) read -r v c _ < <(hs_run "$m $side" "$side" 1.2 full) || exit 1 ;;
            R13) read -r v c _ < <(hs_run "$m $side" "$side" 1.3 resume) || exit 1 ;;
            S13) read -r v c p < <(hs_run "$m $side" "$side" 1.3 once) || exit 1
                RES["$m $side"]+=" $p" ;;
            R12) read -r v c _ < <(hs_run "$m $side" "$side" 1.2 resume) || exit 1 ;;
            KA) read -r v c < <(wrk_run "$m $side" "${!side}") || exit 1 ;; # c: p99
            esac
            VAL["$m $side"]+=" $v"
            CPU["$m $side"]+=" $c"
        done
        line+=" $m $(awk '{print $NF}' <<<"${VAL["$m POP"]}")/$(awk '{print $NF}' <<<"${VAL["$m PEER"]}")"
    done
    echo "$line"
done
for side in POP PEER; do check "${!side}" || fail "$side: no longer answers 200 after the load"; done

# popd's own counters: the resumptions were counted as such, nothing failed
ctl n1 --json status >"$W/status.json" 2>&1 || true
COUNTERS=$($PY -c 'import json, sys; h = json.load(open(sys.argv[1]))["http"]
print(" ".join("%s %s" % (k, h.get(k, "?")) for k in
    ("tls_handshakes", "tls_resumed", "tls_failed", "tls_tickets_stale")))' "$W/status.json" 2>&1) ||
    COUNTERS="(no status: $COUNTERS)"
echo
echo "TLS benchmark, $(nproc) cores shared by client and servers, loopback; popmesh Release, 2 PoPs;"
echo "ECDSA P-256 certificate, X25519; medians of $RUNS alternated runs; peer: nginx $("$NGINX" -v 2>&1 | sed 's/.*nginx\///')"
echo "(1 worker) terminating TLS + $(ssh -V 2>&1 | cut -d, -f1) -L; backend: nginx, 100-byte file."
echo "Handshakes: tls_probe, $PROCS client processes, a new connection each (no HTTP request);"
echo "resumed = every connection offers the newest ticket (one ticket may serve many: what nginx's"
echo "clients do, since it issues no ticket after a resumption); single-use = each ticket offered once,"
echo "as RFC 8446 C.4 advises and BoringSSL (Chrome) does, a connection without a fresh ticket being a full"
echo "handshake. Requests: wrk -t2 -c32 keep-alive, TLS 1.3."
echo
row "metric" "popd" "nginx + ssh -L" "popd/peer"
row "----------------------------------" "------------" "--------------" "------------"
name() { case $1 in
    F13) echo "full handshakes/s, TLS 1.3" ;; F12) echo "full handshakes/s, TLS 1.2" ;;
    R13) echo "resumed handshakes/s, TLS 1.3" ;; R12) echo "resumed handshakes/s, TLS 1.2" ;;
    S13) echo "single-use tickets: handshakes/s, 1.3" ;;
    KA) echo "keep-alive requests/s (wrk)" ;; esac; }
med() { # med METRIC SIDE [VAL|CPU]
    local -n arr=${3:-VAL}
    # shellcheck disable=SC2086 # the values are split on purpose
    median ${arr["$1 $2"]}
}
for m in "${METRICS[@]}"; do
    a=$(med "$m" POP); b=$(med "$m" PEER)
    row "$(name "$m")" "$a" "$b" "$(ratio "$a" "$b")"
done
a=$(med KA POP CPU); b=$(med KA PEER CPU)
row "p99 latency, ms (wrk)" "$a" "$b" "$(ratio "$a" "$b")"
a=$(med S13 POP RES); b=$(med S13 PEER RES)
row "single-use tickets: % resumed" "$a" "$b" "$(ratio "$a" "$b")"
echo
echo "Server CPU per handshake (user + system time of popd pop-1, all threads, or of the nginx"
echo "worker, over the tls_probe run, divided by its handshakes): what each costs the server"
echo "alone, whatever the client's share of the 2 cores."
echo
row "metric" "popd" "nginx + ssh -L" "popd/peer"
row "----------------------------------" "------------" "--------------" "------------"
for m in F13 F12 R13 S13 R12; do
    a=$(med "$m" POP CPU); b=$(med "$m" PEER CPU)
    row "$(name "$m" | sed 's/handshakes\/s/handshake, us CPU/')" "$a" "$b" "$(ratio "$a" "$b")"
done
echo
echo "pop-1 counters (HTTPS listener): $COUNTERS"
echo "popd logs: $(cat "$W"/n*.log | grep -c ' WARN \| ERROR ' || true) WARN/ERROR lines"
