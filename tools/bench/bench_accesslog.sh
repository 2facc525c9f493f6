#!/usr/bin/env bash
# Access log cost: requests/s through the HTTP ingress with the access log on vs off, same run.
# One PoP with access-log = a file, a site, and two resources on the same nginx backend (a
# 100-byte static file): logged.test (every request logged) and quiet.test (--access-log off:
# the request goes through exactly the same code, its line is neither formatted nor written).
# Load: wrk -t2 -c32 -d S, interleaved (on, off, on, off, ...), medians of N runs, and the
# ratio; also popd's CPU time per request (utime + stime from /proc, over each run), which a
# machine shared with other work disturbs far less than requests/s, and the median of each
# interleaved pair's ratio. Checks the log got one line per request of the logged runs and none
# of the others.
# The target is under 5% apart. Usage:
#   tools/bench/bench_accesslog.sh [--runs N (5)] [--seconds S (10)]
# BUILD (default build-bench) is the CMake Release build dir used; NO_BUILD=1 skips building it.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=/usr/bin/python3
NGINX=${NGINX:-/usr/sbin/nginx}
WRK=${WRK:-wrk}
source tools/bench/lib.sh
bench_args "$@"
[ "$RUNS" -ge 5 ] || { echo "--runs: at least 5 (medians)" >&2; exit 2; }
bench_build
bench_workdir accesslog
row() { printf '| %-28s | %15s | %15s | %10s |\n' "$@"; }

echo "== backend: nginx, 100-byte static file"
start_backend

echo "== popmesh: 1 PoP with access-log = $W/access.log, site s1, logged.test and quiet.test"
HTTP_PORT=$(port)
"$POPD" init --data "$W/p1" --name p1 --mesh-listen "127.0.0.1:$(port)" \
    --tunnel-listen "127.0.0.1:$(port)" --http-listen "127.0.0.1:$HTTP_PORT" >>"$W/p1.log" 2>&1
"$POPD" run --data "$W/p1" --access-log "$W/access.log" >>"$W/p1.log" 2>&1 &
PID[p1]=$!
for _ in $(seq 1 200); do ctl p1 status >/dev/null 2>&1 && break; sleep 0.05; done
ctl p1 status >/dev/null 2>&1 || fail "PoP p1 did not start"
for _ in $(seq 1 100); do grep -q 'tunnel endpoint .* published$' "$W/p1.log" && break; sleep 0.05; done
STOK=$(ctl p1 site add s1 2>&1 | grep -o 'pmt1\.[A-Za-z0-9_-]*' | head -1)
[ -n "$STOK" ] || fail "no site token"
"$POPSITE" run --data "$W/s1" --token "$STOK" --pops 1 >>"$W/s1.log" 2>&1 &
PID[s1]=$!
ctl p1 resource add logged --site s1 --target "127.0.0.1:$APP_PORT" --host logged.test >>"$W/meshctl.log" 2>&1
ctl p1 resource add quiet --site s1 --target "127.0.0.1:$APP_PORT" --host quiet.test \
    --access-log off >>"$W/meshctl.log" 2>&1
URL=http://127.0.0.1:$HTTP_PORT/
for h in logged.test quiet.test; do
    ok=0
    for _ in $(seq 1 300); do
        [ "$(curl -s -o /dev/null -w '%{http_code} %{size_download}' -H "Host: $h" "$URL")" = "200 100" ] &&
            { ok=1; break; }
        sleep 0.1
    done
    [ $ok -eq 1 ] || fail "$h: no 200 within 30 s"
done

lines() { grep -c "\"host\":\"$1\"" "$W/access.log" || true; }

echo "== load: $RUNS x ${SECS}s each, interleaved log on / log off"
WRK_OPTS=(-t2 -c32 -d 1s)
wrk_run warm-up-on "$URL" -H "Host: logged.test" >/dev/null
wrk_run warm-up-off "$URL" -H "Host: quiet.test" >/dev/null
WRK_OPTS=(-t2 -c32 -d "${SECS}s")
declare -a RON=() ROFF=() CON=() COFF=() PAIR=()
NON=0
for r in $(seq 1 "$RUNS"); do
    before=$(lines logged.test)
    read -r a _ n c < <(wrk_cpu "on $r" p1 "$URL" -H "Host: logged.test") || exit 1
    RON+=("$a")
    CON+=("$c")
    # popd holds lines up to ACCESSLOG_BATCH_MS (200 ms) before it writes them: wait for them
    for _ in $(seq 1 20); do
        got=$(( $(lines logged.test) - before ))
        [ "$got" -ge "$n" ] && break
        sleep 0.1
    done
    # wrk counts the requests answered; a few more may have been in flight at its end
    [ "$got" -ge "$n" ] && [ "$got" -le $((n + 64)) ] || fail "run $r: $n requests, $got lines"
    NON=$((NON + got))
    read -r a _ _ c < <(wrk_cpu "off $r" p1 "$URL" -H "Host: quiet.test") || exit 1
    ROFF+=("$a")
    COFF+=("$c")
    PAIR+=("$(ratio "${RON[-1]}" "${ROFF[-1]}")")
    echo "   run $r: req/s log on ${RON[-1]}, log off ${ROFF[-1]}; popd CPU us/request ${CON[-1]}, ${COFF[-1]}"
done
[ "$(lines quiet.test)" = 0 ] || fail "quiet.test (access_log off) has lines in the log"
"$PY" - "$W/access.log" <<'EOF' || fail "a line of the log does not parse"
import json, sys
n = 0
for l in open(sys.argv[1], "rb"):
    json.loads(l); n += 1
print("   %d lines, every one parses as JSON" % n)
EOF
SIZE=$(stat -c %s "$W/access.log")

on=$(median "${RON[@]}")
off=$(median "${ROFF[@]}")
echo
echo "Access log benchmark, $(nproc) cores, loopback; popmesh Release ($BUILD); 100-byte static file"
echo "(nginx backend); wrk ${WRK_OPTS[*]}; medians of $RUNS interleaved runs; $NON lines written"
echo "($((SIZE / (NON > 0 ? NON : 1))) bytes each on average, to a file on $(df -T "$W" | awk 'NR==2 {print $2}'))"
echo
row "metric" "log on" "log off" "on vs off"
row "----------------------------" "---------------" "---------------" "----------"
row "requests/s (median)" "$on" "$off" "$(pct "$on" "$off")"
con=$(median "${CON[@]}")
coff=$(median "${COFF[@]}")
row "popd CPU us/request (median)" "$con" "$coff" "$(pct "$con" "$coff")"
echo "every run, req/s: log on ${RON[*]}; log off ${ROFF[*]}"
echo "every run, popd CPU us/request: log on ${CON[*]}; log off ${COFF[*]}"
echo "median of the pairs' req/s ratios (on/off): $(median "${PAIR[@]}")"
echo
echo "popd log: $(grep -c ' WARN \| ERROR ' "$W/p1.log" || true) WARN/ERROR lines"
