#!/usr/bin/env bash
# What the identity JWT costs: requests/s of an authenticated resource (--auth login, a session
# cookie) with X-Popmesh-Identity added vs without it, same run. Two PoPs of one mesh on this
# machine, the same site (tunnels to both) and nginx backend (a 100-byte static file): jwt-on
# signs X-Popmesh-Identity as always, jwt-off runs with POPMESH_TEST_NO_IDENTITY_JWT=1 (the
# request goes through exactly the same code, without the JWT). nginx says in a header whether
# the JWT arrived, which checks each PoP did what it says. Load: wrk -t2 -c32 -d S with the
# same session cookie, interleaved (on, off, on, off, ...), medians of N runs; also each popd's
# CPU time per request (utime + stime from /proc over each run). The target is under 10%.
# Usage:
#   tools/bench/bench_identity.sh [--runs N (5)] [--seconds S (10)]
# BUILD (default build-bench) is the CMake Release build dir used; NO_BUILD=1 skips building it.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=/usr/bin/python3
NGINX=${NGINX:-/usr/sbin/nginx}
WRK=${WRK:-wrk}
source tools/bench/lib.sh
bench_args "$@"
[ "$RUNS" -ge 3 ] || { echo "--runs: at least 3 (medians)" >&2; exit 2; }
bench_build
bench_workdir identity
row() { printf '| %-28s | %15s | %15s | %10s |\n' "$@"; }

echo "== backend: nginx, 100-byte static file; answers X-Jwt: whether the JWT arrived"
# shellcheck disable=SC2016 # nginx's own variables, for nginx to expand
start_backend 'map $http_x_popmesh_identity $jwt_len { "" "none"; default "present"; }' \
    'add_header X-Jwt $jwt_len; '

echo "== popmesh: 2 PoPs (on: JWT; off: POPMESH_TEST_NO_IDENTITY_JWT=1), site s1, app.test"
declare -A HP=()
HP[on]=$(port)
HP[off]=$(port)
"$POPD" init --data "$W/on" --name on --mesh-listen "127.0.0.1:$(port)" \
    --tunnel-listen "127.0.0.1:$(port)" --http-listen "127.0.0.1:${HP[on]}" >>"$W/on.log" 2>&1
"$POPD" run --data "$W/on" >>"$W/on.log" 2>&1 &
PID[on]=$!
for _ in $(seq 1 200); do ctl on status >/dev/null 2>&1 && break; sleep 0.05; done
TOK=$(ctl on token create --ttl 10m 2>/dev/null)
"$POPD" join --data "$W/off" --name off --mesh-listen "127.0.0.1:$(port)" \
    --tunnel-listen "127.0.0.1:$(port)" --http-listen "127.0.0.1:${HP[off]}" "$TOK" >>"$W/off.log" 2>&1
POPMESH_TEST_NO_IDENTITY_JWT=1 "$POPD" run --data "$W/off" >>"$W/off.log" 2>&1 &
PID[off]=$!
for _ in $(seq 1 200); do ctl off status >/dev/null 2>&1 && break; sleep 0.05; done
ctl off status >/dev/null 2>&1 || fail "PoP off did not start"
STOK=$(ctl on site add s1 2>&1 | grep -o 'pmt1\.[A-Za-z0-9_-]*' | head -1)
[ -n "$STOK" ] || fail "no site token"
"$POPSITE" run --data "$W/s1" --token "$STOK" --pops 2 >>"$W/s1.log" 2>&1 &
PID[s1]=$!
ctl on resource add app --site s1 --target "127.0.0.1:$APP_PORT" --host app.test --auth login \
    >>"$W/meshctl.log" 2>&1
echo "bench-password-1" | ctl on user add alice --group staff >>"$W/meshctl.log" 2>&1
sleep 1
COOKIE=$(curl -s -m 10 -o /dev/null -D - -H "Host: app.test" \
    --data "username=alice&password=bench-password-1&rd=/" \
    "http://127.0.0.1:${HP[on]}/.popmesh/login" | grep -io 'popmesh_session=[^;]*' | head -1)
[ -n "$COOKIE" ] || fail "no session cookie"
for k in on off; do
    want=present
    [ $k = off ] && want=none
    ok=0
    for _ in $(seq 1 300); do
        [ "$(curl -s -o /dev/null -w '%{http_code} %{size_download} %header{x-jwt}' -H "Host: app.test" \
            -H "Cookie: $COOKIE" "http://127.0.0.1:${HP[$k]}/")" = "200 100 $want" ] && { ok=1; break; }
        sleep 0.1
    done
    [ $ok -eq 1 ] || fail "PoP $k: no 200 with X-Jwt $want within 30 s"
done

echo "== load: $RUNS x ${SECS}s each, interleaved JWT on / off"
HDR=(-H "Host: app.test" -H "Cookie: $COOKIE")
WRK_OPTS=(-t2 -c32 -d 1s)
wrk_run warm-up-on "http://127.0.0.1:${HP[on]}/" "${HDR[@]}" >/dev/null
wrk_run warm-up-off "http://127.0.0.1:${HP[off]}/" "${HDR[@]}" >/dev/null
WRK_OPTS=(-t2 -c32 -d "${SECS}s")
declare -a RON=() ROFF=() CON=() COFF=() PAIR=()
for r in $(seq 1 "$RUNS"); do
    read -r a _ _ c < <(wrk_cpu "on $r" on "http://127.0.0.1:${HP[on]}/" "${HDR[@]}") || exit 1
    RON+=("$a")
    CON+=("$c")
    read -r a _ _ c < <(wrk_cpu "off $r" off "http://127.0.0.1:${HP[off]}/" "${HDR[@]}") || exit 1
    ROFF+=("$a")
    COFF+=("$c")
    PAIR+=("$(ratio "${RON[-1]}" "${ROFF[-1]}")")
    echo "   run $r: req/s JWT on ${RON[-1]}, off ${ROFF[-1]}; popd CPU us/request ${CON[-1]}, ${COFF[-1]}"
done
on=$(median "${RON[@]}")
off=$(median "${ROFF[@]}")
echo
echo "Identity JWT benchmark, $(nproc) cores, loopback; popmesh Release ($BUILD); 100-byte static"
echo "file (nginx backend); --auth login with a session cookie; wrk ${WRK_OPTS[*]}; medians of $RUNS"
echo "interleaved runs (two PoPs of one mesh: on signs X-Popmesh-Identity, off does not)"
echo
row "metric" "JWT on" "JWT off" "on vs off"
row "----------------------------" "---------------" "---------------" "----------"
row "requests/s (median)" "$on" "$off" "$(pct "$on" "$off")"
con=$(median "${CON[@]}")
coff=$(median "${COFF[@]}")
row "popd CPU us/request (median)" "$con" "$coff" "$(pct "$con" "$coff")"
echo "every run, req/s: on ${RON[*]}; off ${ROFF[*]}"
echo "median of the pairs' req/s ratios (on/off): $(median "${PAIR[@]}")"
