#!/usr/bin/env bash
# HTTP ingress benchmark: popmesh's HTTP ingress against nginx reverse proxy + ssh -L (PEERS.md),
# side by side in one run, on loopback. Everything lives in a temp dir; sshd runs as the current
# user with its own config (in a private mount namespace when root, for its privilege-separation
# dir). The backend is an nginx serving a 100-byte static file with keep-alive.
#   A. popmesh, resource with --auth login (every request carries a session cookie);
#   B. peer: nginx reverse proxy (keep-alive upstream) -> ssh -L -> the same backend;
#   C. popmesh, a second resource on the same site with --auth none (auth on vs off).
# Load: wrk -t2 -c32 -d S --latency. Medians of N interleaved runs (A, B, C, A, B, C, ...).
# Fails loudly on wrk "Non-2xx or 3xx responses" or socket errors. Usage:
#   tools/bench/bench_http.sh [--runs N (5)] [--seconds S (10)]
# BUILD (default build-bench) is the CMake Release build dir used; NO_BUILD=1 skips building it.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=/usr/bin/python3
NGINX=${NGINX:-/usr/sbin/nginx}
WRK=${WRK:-wrk}
source tools/bench/lib.sh
bench_args "$@"
WRK_OPTS=(-t2 -c32 -d "${SECS}s" --latency)
bench_build
bench_workdir http
row() { printf '| %-40s | %15s | %15s | %15s |\n' "$@"; }

# ---- backend: nginx serving a 100-byte file
echo "== backend: nginx, 100-byte static file"
start_backend "default_type application/octet-stream;"

# ---- peer: user sshd, ssh -L, nginx reverse proxy with a keep-alive upstream
echo "== peer: sshd + ssh -L + nginx reverse proxy"
SSH_LOCAL=$(port)
start_ssh_forward "$SSH_LOCAL:$APP_PORT"
PROXY_PORT=$(port)
nginx_conf "$W/proxy" "$PROXY_PORT" \
    "location / { proxy_pass http://tunnel; proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_set_header Host \$host; }" \
    "upstream tunnel { server 127.0.0.1:$SSH_LOCAL; keepalive 64; keepalive_requests 1000000; }"
"$NGINX" -c "$W/proxy/nginx.conf" -p "$W/proxy" >"$W/proxy.log" 2>&1 &
PID[proxy]=$!
wait_port "$PROXY_PORT" 10 || fail "proxy nginx did not start"

# ---- popmesh: 1 PoP with an HTTP ingress, site s1, two HTTP resources, a user
echo "== popmesh: 1 PoP (--http-listen), site s1, app.test (--auth login), open.test (--auth none)"
HTTP_PORT=$(port)
"$POPD" init --data "$W/p1" --name p1 --mesh-listen "127.0.0.1:$(port)" \
    --tunnel-listen "127.0.0.1:$(port)" --http-listen "127.0.0.1:$HTTP_PORT" >>"$W/p1.log" 2>&1
"$POPD" run --data "$W/p1" --http-listen "127.0.0.1:$HTTP_PORT" >>"$W/p1.log" 2>&1 &
PID[p1]=$!
for _ in $(seq 1 200); do ctl p1 status >/dev/null 2>&1 && break; sleep 0.05; done
ctl p1 status >/dev/null 2>&1 || fail "PoP p1 did not start"
# a site enrolled before the PoP has published its tunnel endpoint (first sync, ~50-100 ms
# after start) learns no PoP and stays offline: wait for the publication
for _ in $(seq 1 100); do grep -q 'tunnel endpoint .* published$' "$W/p1.log" && break; sleep 0.05; done
grep -q 'tunnel endpoint .* published$' "$W/p1.log" || fail "PoP p1 did not publish its tunnel endpoint"
STOK=$(ctl p1 site add s1 2>&1 | grep -o 'pmt1\.[A-Za-z0-9_-]*' | head -1)
[ -n "$STOK" ] || fail "no site token"
"$POPSITE" run --data "$W/s1" --token "$STOK" --pops 1 >>"$W/s1.log" 2>&1 &
PID[s1]=$!
ctl p1 resource add app --site s1 --target "127.0.0.1:$APP_PORT" --host app.test --auth login >>"$W/meshctl.log" 2>&1
ctl p1 resource add app2 --site s1 --target "127.0.0.1:$APP_PORT" --host open.test --auth none >>"$W/meshctl.log" 2>&1
echo "a-long-password-for-bench" | ctl p1 user add alice >>"$W/meshctl.log" 2>&1
curl -s -o /dev/null -c "$W/jar" -H "Host: app.test" \
    --data "username=alice&password=a-long-password-for-bench&rd=/" \
    "http://127.0.0.1:$HTTP_PORT/.popmesh/login" || fail "login request failed"
SESS=$(awk '$6=="popmesh_session"{print $7}' "$W/jar")
[ -n "$SESS" ] || fail "no popmesh_session cookie after login: $(cat "$W/jar")"

URL_A=http://127.0.0.1:$HTTP_PORT/
URL_B=http://127.0.0.1:$PROXY_PORT/
HDR_A=(-H "Host: app.test" -H "Cookie: popmesh_session=$SESS")
HDR_B=(-H "Host: app.test")
# The open path gets the same cookie (unused there), so "auth on vs off" measures the
# authentication work, not the 200 bytes more a logged-in client sends.
HDR_C=(-H "Host: open.test" -H "Cookie: popmesh_session=$SESS")
check() { # check NAME URL HEADER...: one GET must answer 200 with the 100-byte body
    local name=$1 url=$2 out
    shift 2
    out=$(curl -s -o "$W/body" -w '%{http_code} %{size_download}' "$@" "$url" || true)
    [ "$out" = "200 100" ] && cmp -s "$W/body" "$W/app/www/index.html"
}
for n in A B C; do
    u=URL_$n; [ $n = C ] && u=URL_A
    h="HDR_$n[@]"
    ok=0
    for _ in $(seq 1 300); do
        if check "$n" "${!u}" "${!h}"; then ok=1; break; fi
        sleep 0.1
    done
    [ $ok -eq 1 ] || fail "path $n: no 200 within 30 s: $(curl -s -i "${!h}" "${!u}" | head -5)"
done
echo "   all three paths answer 200 with the 100-byte body"
keepalive() { # keepalive URL HEADER...: "yes" if curl reuses the connection for a 2nd request
    curl -s -v -o /dev/null -o /dev/null "${@:2}" "$1" "$1" 2>&1 | grep -q 'Re-using existing connection' && echo yes || echo no
}
KA="client keep-alive: popmesh(login) $(keepalive "$URL_A" "${HDR_A[@]}"), nginx+ssh $(keepalive "$URL_B" "${HDR_B[@]}"), popmesh(none) $(keepalive "$URL_A" "${HDR_C[@]}")"
echo "   $KA"

echo "== load: $RUNS x ${SECS}s each, wrk ${WRK_OPTS[*]}, interleaved popmesh(login) / nginx+ssh -L / popmesh(none)"
WRK_OPTS=(-t2 -c32 -d 1s --latency)   # warm-up, not measured
wrk_run "warm-up A" "$URL_A" "${HDR_A[@]}" >/dev/null
wrk_run "warm-up B" "$URL_B" "${HDR_B[@]}" >/dev/null
wrk_run "warm-up C" "$URL_A" "${HDR_C[@]}" >/dev/null
WRK_OPTS=(-t2 -c32 -d "${SECS}s" --latency)
declare -a RA=() PA=() RB=() PB=() RC=() PC=()
for r in $(seq 1 "$RUNS"); do
    read -r a b _ < <(wrk_run "A popmesh auth=login" "$URL_A" "${HDR_A[@]}") || exit 1; RA+=("$a"); PA+=("$b")
    read -r a b _ < <(wrk_run "B nginx+ssh -L" "$URL_B" "${HDR_B[@]}") || exit 1; RB+=("$a"); PB+=("$b")
    read -r a b _ < <(wrk_run "C popmesh auth=none" "$URL_A" "${HDR_C[@]}") || exit 1; RC+=("$a"); PC+=("$b")
    echo "   run $r: req/s (p99 ms) popmesh-login ${RA[-1]} (${PA[-1]}) nginx+ssh ${RB[-1]} (${PB[-1]}) popmesh-none ${RC[-1]} (${PC[-1]})"
done
for n in A B C; do
    u=URL_$n; [ $n = C ] && u=URL_A
    h="HDR_$n[@]"
    check "$n" "${!u}" "${!h}" || fail "path $n: no longer answers 200 after the load"
done

echo
echo "HTTP benchmark, $(nproc) cores, loopback; popmesh Release; 100-byte static file (nginx backend);"
echo "wrk ${WRK_OPTS[*]}; medians of $RUNS interleaved runs; peer: nginx $("$NGINX" -v 2>&1 | sed 's/.*nginx\///') reverse proxy (keep-alive upstream) + $(ssh -V 2>&1 | cut -d, -f1) -L"
echo
row "metric" "popmesh (login)" "nginx + ssh -L" "popmesh/peer"
row "----------------------------------------" "---------------" "---------------" "---------------"
ra=$(median "${RA[@]}"); rb=$(median "${RB[@]}"); rc=$(median "${RC[@]}")
pa=$(median "${PA[@]}"); pb=$(median "${PB[@]}"); pc=$(median "${PC[@]}")
row "requests/s" "$ra" "$rb" "$(ratio "$ra" "$rb")"
row "p99 latency, ms" "$pa" "$pb" "$(ratio "$pa" "$pb")"
echo
row "popmesh auth on vs off" "auth login" "auth none" "on vs off"
row "----------------------------------------" "---------------" "---------------" "---------------"
row "requests/s" "$ra" "$rc" "$(pct "$ra" "$rc")"
row "p99 latency, ms" "$pa" "$pc" "$(pct "$pa" "$pc")"
echo
echo "$KA"
echo "popd log: $(grep -c ' WARN \| ERROR ' "$W/p1.log" || true) WARN/ERROR lines; tail ($W/p1.log):"
tail -n 5 "$W/p1.log" | sed 's/^/    /'
