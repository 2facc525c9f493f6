#!/usr/bin/env bash
# A real Prometheus (Debian's) scrapes the /metrics of 3 PoPs every second; the test asks its
# HTTP API (/api/v1/query) and finds: 3 alive members at each PoP, an HTTP resource's request
# counter rising under a small bounded load, and after SIGKILL of pop-3 the other two reporting
# it suspect, then dead. promtool check metrics accepts each PoP's output. Also measures one
# scrape (time and size).
source "$(dirname "$0")/lib.sh"
: "${POPSITE:?POPSITE must point to the popsite binary}"
HERE=$(cd "$(dirname "$0")" && pwd)
command -v prometheus >/dev/null && command -v promtool >/dev/null || {
    echo "SKIP: prometheus/promtool not installed (tools/setup.sh installs them)"
    exit 77
}

# three PoPs, each with an admin listener and an HTTP ingress
declare -a ADM HP
for i in 1 2 3; do ADM[$i]=$(free_port); HP[$i]=$(free_port); done
init_node "$WORK/n1" pop-1 --http-listen "127.0.0.1:${HP[1]}" --admin-listen "127.0.0.1:${ADM[1]}"
start_popd "$WORK/n1"
NODE_PID[1]=$LAST_PID
TOKEN=$(mctl "$WORK/n1" token create --uses 2 --ttl 10m 2>/dev/null)
for i in 2 3; do
    "$POPD" join --data "$WORK/n$i" --name "pop-$i" --mesh-listen "127.0.0.1:$(free_port)" \
        --tunnel-listen "127.0.0.1:$(free_port)" --http-listen "127.0.0.1:${HP[$i]}" \
        --admin-listen "127.0.0.1:${ADM[$i]}" "$TOKEN" >/dev/null
    start_popd "$WORK/n$i"
    NODE_PID[$i]=$LAST_PID
done
ALL3="pop-1=alive pop-2=alive pop-3=alive"
wait_for 20 "3 alive members everywhere" all_see "$WORK/n1" "$WORK/n2" "$WORK/n3" "$ALL3"

# an HTTP resource behind a site
BPORT=$(free_port)
"$PY" "$HERE/http_backend.py" "$BPORT" >"$WORK/backend.log" 2>&1 &
PIDS+=("$!")
SITE_TOKEN=$(mctl "$WORK/n1" site add branch | grep -o 'pmt1\.[A-Za-z0-9_-]*' | head -1)
"$POPSITE" run --data "$WORK/site" --token "$SITE_TOKEN" >>"$WORK/site.log" 2>&1 &
PIDS+=("$!")
mctl "$WORK/n1" resource add web --site branch --target "127.0.0.1:$BPORT" --host web.test >/dev/null
code() { curl -s -m 5 -o /dev/null -w '%{http_code}' -H "Host: web.test" "http://127.0.0.1:${HP[1]}/$1"; }
app_up() { [ "$(code up)" = 200 ]; }
wait_for 20 "the app through pop-1" app_up

# promtool accepts every PoP's output; one scrape's time and size
for i in 1 2 3; do
    curl -sf -m 5 -o "$WORK/metrics-$i.txt" -w '%{time_total} %{size_download}\n' \
        "http://127.0.0.1:${ADM[$i]}/metrics" >"$WORK/scrape-$i" || fail "scrape pop-$i"
    promtool check metrics <"$WORK/metrics-$i.txt" >"$WORK/promtool-$i.out" 2>&1 ||
        { cat "$WORK/promtool-$i.out" >&2; fail "promtool check metrics refused pop-$i's output"; }
done
ok "promtool check metrics accepts the /metrics of all 3 PoPs (pop-1: $(awk '{printf "%.1f ms, %d bytes", $1*1000, $2}' "$WORK/scrape-1"))"
expect_in "$WORK/metrics-1.txt" 'popmesh_http_requests_total{resource="web"}'
expect_in "$WORK/metrics-1.txt" 'popmesh_member_state{member="pop-3",state="alive"} 1'
# the requests above went to an open resource: counted as let through by "open"
grep -qE '^popmesh_auth_allowed_total\{method="open"\} [1-9]' "$WORK/metrics-1.txt" ||
    fail "no open decision counted: $(grep auth_allowed "$WORK/metrics-1.txt")"
grep -qE '^popmesh_auth_allowed_total\{method="session"\} 0$' "$WORK/metrics-1.txt" ||
    fail "session decisions counted with no session: $(grep auth_allowed "$WORK/metrics-1.txt")"
expect_in "$WORK/metrics-1.txt" 'popmesh_login_failures_total 0'

# Prometheus, 1 s scrapes of the 3 admin listeners
PP=$(free_port)
cat >"$WORK/prometheus.yml" <<EOT
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: popmesh
    static_configs:
      - targets: ['127.0.0.1:${ADM[1]}', '127.0.0.1:${ADM[2]}', '127.0.0.1:${ADM[3]}']
EOT
promtool check config "$WORK/prometheus.yml" >/dev/null || fail "promtool check config"
prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/tsdb" \
    --web.listen-address="127.0.0.1:$PP" >"$WORK/prometheus.log" 2>&1 &
PIDS+=("$!")
# query EXPR: the API's result as "labels=value" lines (sorted)
query() {
    curl -sf -m 5 --data-urlencode "query=$1" "http://127.0.0.1:$PP/api/v1/query" |
        "$PY" -c 'import json,sys
d=json.load(sys.stdin)
assert d["status"]=="success", d
print("\n".join(sorted("%s=%s" % (",".join("%s:%s" % kv for kv in sorted(r["metric"].items()) if kv[0] not in ("job", "__name__")), r["value"][1]) for r in d["data"]["result"])))'
}
q_is() { [ "$(query "$1")" = "$2" ]; }
targets_up() { q_is 'count(up{job="popmesh"} == 1)' "=3"; }
wait_for 20 "Prometheus scraping the 3 PoPs" targets_up
ok "Prometheus scrapes all 3 PoPs (up == 1) after ${WAITED} s"
wait_for 10 "3 alive members at each PoP in Prometheus" q_is \
    'popmesh_members{state="alive"}' "$(printf 'instance:127.0.0.1:%s,state:alive=3\n' "${ADM[@]:1}" | sort)"
ok "Prometheus: popmesh_members{state=\"alive\"} is 3 at each PoP"

# a small bounded load: 40 requests through pop-1
before=$(query 'popmesh_http_requests_total{resource="web",instance="127.0.0.1:'"${ADM[1]}"'"}' | cut -d= -f2)
before=${before:-0}
for _ in $(seq 1 40); do [ "$(code load)" = 200 ] || fail "a request of the load failed"; done
risen() {
    local v
    v=$(query 'popmesh_http_requests_total{resource="web",instance="127.0.0.1:'"${ADM[1]}"'"}' | cut -d= -f2)
    [ -n "$v" ] && [ "$v" -ge $((before + 40)) ]
}
wait_for 10 "the request counter of web to rise by 40" risen
R2=$(query 'popmesh_http_responses_total{resource="web",class="2xx",instance="127.0.0.1:'"${ADM[1]}"'"}' | cut -d= -f2)
[ "${R2:-0}" -ge 40 ] || fail "2xx responses of web: $R2"
H=$(query 'popmesh_http_request_duration_seconds_count{resource="web",instance="127.0.0.1:'"${ADM[1]}"'"}' | cut -d= -f2)
[ "${H:-0}" -ge 40 ] || fail "latency histogram count: $H"
ok "popmesh_http_requests_total{resource=\"web\"} rose from $before by 40 or more; 2xx responses $R2, latency histogram count $H"

# SIGKILL pop-3: the others report it suspect, then dead
SUSP0=$(query 'sum(popmesh_swim_suspicions_total{instance!="127.0.0.1:'"${ADM[3]}"'"})' | cut -d= -f2)
kill -9 "${NODE_PID[3]}"
T0=$(date +%s)
OTHERS="instance:127.0.0.1:${ADM[1]},member:pop-3,state:%s=1
instance:127.0.0.1:${ADM[2]},member:pop-3,state:%s=1"
seen_dead() { q_is 'popmesh_member_state{member="pop-3",state="dead"} == 1' "$(printf "$OTHERS" dead dead | sort)"; }
wait_for 30 "pop-3 dead at pop-1 and pop-2 in Prometheus" seen_dead
DEAD_AFTER=$(($(date +%s) - T0))
# Suspect first: SWIM's suspicion counter rose at pop-1 or pop-2 (a suspicion lasts about a
# second here, so a 1 s scrape may or may not catch popmesh_member_state{state="suspect"}).
sus_counted() {
    local v
    v=$(query 'sum(popmesh_swim_suspicions_total{instance!="127.0.0.1:'"${ADM[3]}"'"})' | cut -d= -f2)
    [ "${v:-0}" -gt "${SUSP0:-0}" ]
}
wait_for 5 "the suspicion counters to rise" sus_counted
SUS=$(query 'max_over_time(popmesh_member_state{member="pop-3",state="suspect"}[2m])' | grep -c '=1$' || true)
ok "after SIGKILL of pop-3: popmesh_swim_suspicions_total rose (suspect first; $SUS PoP(s) scraped while pop-3 was suspect), then pop-1 and pop-2 report it dead (within ${DEAD_AFTER} s)"
q_is 'popmesh_members{state="dead",instance="127.0.0.1:'"${ADM[1]}"'"}' "instance:127.0.0.1:${ADM[1]},state:dead=1" ||
    fail "popmesh_members{state=dead} at pop-1: $(query 'popmesh_members{state="dead"}')"
ok "popmesh_members{state=\"dead\"} is 1 at pop-1"
done_testing
