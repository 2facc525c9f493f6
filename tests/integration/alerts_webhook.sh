#!/usr/bin/env bash
# Webhook alerts with real processes: three PoPs, a site with one target, and a receiver that
# logs every POST. Each event must reach the receiver exactly once (not 0, not one per PoP):
# 1. a PoP killed with SIGKILL: one "pop down"; restarted: one "pop up" (never sent by itself);
# 2. the site connector killed: one "site down"; restarted: one "site up";
# 3. the target stopped: one "target down";
# 4. a certificate imported 5 days from expiry: one "cert expiring";
# 5. a receiver that accepts and never answers: every PoP keeps answering meshctl status at
#    once, and the delivery is given up after ALERTPOST_ATTEMPTS (5) attempts;
# 6. bad input for meshctl alert: a non-http URL, an unknown event kind, a duplicate.
# Every body is JSON with the event's id, kind, subject, state, time and sender.
# ALERTS_NO_GUARD=1 runs it with POPMESH_TEST_ALERT_NO_GUARD (every PoP announces what it
# sees): it then fails after check 4, listing the events that did not arrive exactly once
# (2 "pop down" from the two survivors, 3 "site down" from the three PoPs, ...).
source "$(dirname "$0")/lib.sh"
: "${POPSITE:?POPSITE must point to the popsite binary}"
# Short webhook attempts (1 s) and backoff for check 5.
export POPMESH_TEST_ALERT_TIMEOUT_MS=1000
[ -n "${ALERTS_NO_GUARD:-}" ] && export POPMESH_TEST_ALERT_NO_GUARD=1
MISCOUNTS=


# ---- three PoPs ----
N=("" "$WORK/n1" "$WORK/n2" "$WORK/n3")
declare -a POPPID
"$POPD" init --data "${N[1]}" --name pop-1 --mesh-listen "127.0.0.1:$(free_port)" \
    --tunnel-listen "127.0.0.1:$(free_port)" --ingress-address 127.0.0.11 >/dev/null
start_popd "${N[1]}"
POPPID[1]=$LAST_PID
POPTOKEN=$(mctl "${N[1]}" token create --uses 2 --ttl 10m 2>/dev/null)
for i in 2 3; do
    "$POPD" join --data "${N[$i]}" --name "pop-$i" --mesh-listen "127.0.0.1:$(free_port)" \
        --tunnel-listen "127.0.0.1:$(free_port)" --ingress-address "127.0.0.1$i" "$POPTOKEN" >/dev/null
    start_popd "${N[$i]}"
    POPPID[$i]=$LAST_PID
done
wait_for 20 "3 alive members on every node" all_see "${N[1]}" "${N[2]}" "${N[3]}" "pop-1=alive pop-2=alive pop-3=alive"

# ---- the receivers ----
HOOK=$(free_port)
"$PY" "$(dirname "$0")/webhook_receiver.py" "$HOOK" "$WORK/hook.jsonl" >"$WORK/receiver.log" 2>&1 &
PIDS+=("$!")
HANG=$(free_port)
"$PY" "$(dirname "$0")/webhook_receiver.py" "$HANG" "$WORK/hang.txt" --hang >"$WORK/hang.log" 2>&1 &
PIDS+=("$!")
port_open() { "$PY" -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' "$1"; }
wait_for 5 "the webhook receiver" port_open "$HOOK"
wait_for 5 "the hanging receiver" port_open "$HANG"
: >"$WORK/hang.txt"

# count KIND SUBJECT STATE: alerts the receiver got for that event
count() {
    [ -f "$WORK/hook.jsonl" ] || { echo 0; return; }
    "$PY" - "$WORK/hook.jsonl" "$@" <<'PY'
import json, sys
f, kind, subject, state = sys.argv[1:5]
n = 0
for line in open(f):
    j = json.loads(line)
    n += j.get("kind") == kind and j.get("subject") == subject and j.get("state") == state
print(n)
PY
}
has_alert() { [ "$(count "$@")" -ge 1 ]; }
# exactly_one KIND SUBJECT STATE WHAT: waits for the first alert, then long enough for a second
# sender to have spoken (a takeover is ALERT_TAKEOVER_MS = 10 s later; a PoP with another view
# decides within the settle time, 2 s), and requires exactly one.
exactly_one() {
    local what=$4
    wait_for 30 "$what" has_alert "$1" "$2" "$3"
    local first=$WAITED
    sleep 4
    local n
    n=$(count "$1" "$2" "$3")
    if [ -n "${ALERTS_NO_GUARD:-}" ] && [ "$n" != 1 ]; then
        MISCOUNTS="$MISCOUNTS $what: $n;" # without the rule: counted, reported at the end
    else
        [ "$n" = 1 ] || { cat "$WORK/hook.jsonl" >&2; fail "$what: the receiver got $n alerts, not 1"; }
    fi
    WAITED=$first
}
field() { # field KIND SUBJECT STATE KEY: KEY of that alert
    "$PY" - "$WORK/hook.jsonl" "$@" <<'PY'
import json, sys
f, kind, subject, state, key = sys.argv[1:6]
for line in open(f):
    j = json.loads(line)
    if j.get("kind") == kind and j.get("subject") == subject and j.get("state") == state:
        print(j[key] if key in j else j["detail"].get(key, "")); break
PY
}

# ---- 6. bad input (first: nothing is configured yet) ----
expect_rc 2 mctl "${N[1]}" alert add x
expect_in "$WORK/err" "needs --webhook"
expect_rc 2 mctl "${N[1]}" alert add x --webhook "ftp://127.0.0.1:$HOOK/"
expect_in "$WORK/err" "starts with http:// or https://"
expect_rc 2 mctl "${N[1]}" alert add x --webhook "http://user:pw@127.0.0.1:$HOOK/"
expect_in "$WORK/err" "user:password@"
expect_rc 2 mctl "${N[1]}" alert add x --webhook "http://127.0.0.1:99999/"
expect_in "$WORK/err" "port"
expect_rc 2 mctl "${N[1]}" alert add x --webhook "http://127.0.0.1:$HOOK/" --events pop,disk
expect_in "$WORK/err" "unknown event kind"
expect_rc 2 mctl "${N[1]}" alert add x --webhook "http://127.0.0.1:$HOOK/" --events pop,pop
expect_in "$WORK/err" "twice"
expect_rc 2 mctl "${N[1]}" alert add "Bad_Name" --webhook "http://127.0.0.1:$HOOK/"
expect_in "$WORK/err" "alert name"
expect_rc 1 mctl "${N[1]}" alert rm nothing-here
expect_in "$WORK/err" "no alert nothing-here"
expect_rc 0 mctl "${N[1]}" --json alert list
[ "$(jq_ 'len(j["alerts"])' "${N[1]}" alert list)" = 0 ] || fail "a refused alert was stored"
ok "6: meshctl alert refuses a missing --webhook, ftp://, user:pw@, port 99999, an unknown and a repeated event kind, a bad name; rm of a missing alert is 'not found'"

# ---- the site, its target, the alert ----
BPORT=$(free_port)
"$PY" "$(dirname "$0")/echo_server.py" "$BPORT" >"$WORK/backend.log" 2>&1 &
BACKEND=$!
PIDS+=("$BACKEND")
wait_for 5 "the echo backend" port_open "$BPORT"
expect_rc 0 mctl "${N[1]}" site add branch-1
SITETOKEN=$(cat "$WORK/out")
RPORT=$(free_port)
expect_rc 0 mctl "${N[1]}" resource add echo --site branch-1 --target "127.0.0.1:$BPORT" --tcp-port "$RPORT" \
    --hc-interval 300 --hc-timeout 250 --hc-rise 1 --hc-fall 1
start_site() {
    "$POPSITE" run --data "$WORK/site" "$@" >>"$WORK/site.log" 2>&1 &
    SITE_PID=$!
    PIDS+=("$SITE_PID")
}
start_site --token "$SITETOKEN"
site_online() { [ "$(jq_ '[s["state"] for s in j["sites"] if s["name"] == "branch-1"][0]' "$1" sites)" = online ]; }
target_is() { [ "$(jq_ '[t["state"] for r in j["resources"] for t in r["targets"]][0]' "$1" targets)" = "$2" ]; }
for i in 1 2 3; do wait_for 20 "branch-1 online on pop-$i" site_online "${N[$i]}"; done
wait_for 15 "the target up" target_is "${N[1]}" up

expect_rc 0 mctl "${N[1]}" alert add ops --webhook "http://127.0.0.1:$HOOK/hook?token=s3cret"
expect_in "$WORK/out" "alert ops added: pop,site,target,cert events"
expect_rc 1 mctl "${N[2]}" alert add ops --webhook "http://127.0.0.1:$HOOK/other"
expect_in "$WORK/err" "already exists"
for i in 1 2 3; do
    wait_for 5 "the alert on pop-$i" bash -c "[ \"\$('$MESHCTL' -d '${N[$i]}' --json alert list | '$PY' -c 'import json,sys; print(len(json.load(sys.stdin)[\"alerts\"]))')\" = 1 ]"
done
# The site's and the target's first states are recorded (not announced) by one PoP each.
baselines() {
    local s=0 i
    for i in 1 2 3; do s=$((s + $(jq_ 'j["alerts"]["baselines"]' "${N[$i]}" status))); done
    [ -n "${ALERTS_NO_GUARD:-}" ] && s=2 # that mode keeps first states in memory only
    [ "$s" = 2 ]
}
wait_for 20 "the site's and the target's first states recorded" baselines
if grep -q "s3cret" "$WORK"/n*.log; then fail "the webhook URL's query (its secret) is in a popd log"; fi
ok "alert ops added at pop-1 (a duplicate at pop-2 refused); the site's and the target's first states recorded by one PoP each, without an alert; the URL's secret in no log"

# ---- 1. a PoP dies and comes back ----
kill -9 "${POPPID[3]}"
wait "${POPPID[3]}" 2>/dev/null || true
exactly_one pop pop-3 down "pop-3 down"
DOWN_AFTER=$WAITED
SENDER=$(field pop pop-3 down sender)
case "$SENDER" in pop-1 | pop-2) ;; *) fail "pop-3 down was sent by '$SENDER'" ;; esac
"$PY" - "$WORK/hook.jsonl" <<'PY' || fail "the pop-3 down alert lacks a field: $(head -1 "$WORK/hook.jsonl")"
import json, re, sys
j = json.loads(open(sys.argv[1]).readline())
assert j["_content_type"] == "application/json", j
assert j["_path"] == "/hook?token=s3cret", j
assert re.fullmatch(r"[0-9a-f]{16}", j["id"]), j
assert j["previous"] == "up" and j["alert"] == "ops", j
assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", j["time"]), j
assert j["time_ms"] > 0 and j["detail"]["swim_state"] in ("dead", "left"), j
assert j["since"] <= j["time"], j  # seen first, announced after the settle time
PY
ok "1a: SIGKILL of pop-3: exactly one 'pop down' (${DOWN_AFTER}s after, sent by $SENDER; JSON with id, kind, subject, state, previous, time, sender)"

start_popd "${N[3]}"
POPPID[3]=$LAST_PID
exactly_one pop pop-3 up "pop-3 up"
SENDER=$(field pop pop-3 up sender)
case "$SENDER" in pop-1 | pop-2) ;; *) fail "pop-3 up was sent by '$SENDER' (never by itself)" ;; esac
ok "1b: pop-3 restarted: exactly one 'pop up' (${WAITED}s after, sent by $SENDER)"
for i in 1 2 3; do wait_for 20 "branch-1 online on pop-$i" site_online "${N[$i]}"; done

# ---- 2. the site loses every tunnel, then regains one ----
kill -9 "$SITE_PID"
wait "$SITE_PID" 2>/dev/null || true
exactly_one site branch-1 down "branch-1 down"
ok "2a: the site connector killed: exactly one 'site down' (${WAITED}s after, sent by $(field site branch-1 down sender))"
start_site
exactly_one site branch-1 up "branch-1 up"
ok "2b: the connector restarted: exactly one 'site up' (${WAITED}s after, sent by $(field site branch-1 up sender))"
wait_for 15 "the target up again" target_is "${N[1]}" up

# ---- 3. the target stops ----
kill "$BACKEND"
wait "$BACKEND" 2>/dev/null || true
exactly_one target "echo/127.0.0.1:$BPORT" down "the target down"
ok "3: the target stopped: exactly one 'target down' (${WAITED}s after, sent by $(field target "echo/127.0.0.1:$BPORT" down sender); why: $(field target "echo/127.0.0.1:$BPORT" down why))"

# ---- 4. a certificate 5 days from expiry ----
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 5 -subj /CN=soon.example.test \
    -addext "subjectAltName=DNS:soon.example.test" -keyout "$WORK/soon.key" -out "$WORK/soon.pem" 2>/dev/null
expect_rc 0 mctl "${N[2]}" cert import --cert "$WORK/soon.pem" --key "$WORK/soon.key"
exactly_one cert soon.example.test expiring "the certificate expiring"
DAYS=$(field cert soon.example.test expiring days_left)
"$PY" -c 'import sys; d=float(sys.argv[1]); sys.exit(0 if 4 < d <= 5 else 1)' "$DAYS" || fail "days_left $DAYS, expected 4..5"
ok "4: a certificate imported 5 days from expiry: exactly one 'cert expiring' (${WAITED}s after, days_left $DAYS)"

[ -z "${ALERTS_NO_GUARD:-}" ] || fail "without the sender rule and record (ALERTS_NO_GUARD) the receiver got, per event:$MISCOUNTS"

# ---- 5. a receiver that never answers ----
expect_rc 0 mctl "${N[1]}" alert add slow --webhook "http://127.0.0.1:$HANG/never" --events target
wait_for 5 "the slow alert on every PoP" bash -c "for d in ${N[*]:1}; do [ \"\$('$MESHCTL' -d \$d --json alert list | '$PY' -c 'import json,sys; print(len(json.load(sys.stdin)[\"alerts\"]))')\" = 2 ] || exit 1; done"
"$PY" "$(dirname "$0")/echo_server.py" "$BPORT" >>"$WORK/backend.log" 2>&1 &
PIDS+=("$!")
exactly_one target "echo/127.0.0.1:$BPORT" up "the target up"
SENDER=$(field target "echo/127.0.0.1:$BPORT" up sender)
S=${SENDER#pop-}
# While the sender's worker waits on the hanging receiver, every PoP answers at once.
SLOWEST=0
for k in $(seq 1 10); do
    for i in 1 2 3; do
        t0=$(date +%s%N)
        mctl "${N[$i]}" status >/dev/null || fail "meshctl status on pop-$i failed while a webhook hangs"
        ms=$((($(date +%s%N) - t0) / 1000000))
        [ "$ms" -gt "$SLOWEST" ] && SLOWEST=$ms
    done
    sleep 0.3
done
[ "$SLOWEST" -lt 1000 ] || fail "meshctl status took $SLOWEST ms while a webhook hangs"
failed_at_sender() { [ "$(jq_ 'j["alerts"]["failed"]' "${N[$S]}" status)" -ge 1 ]; }
wait_for 30 "the hanging delivery given up at $SENDER" failed_at_sender
sleep 2
CONNS=$(grep -c '^connection' "$WORK/hang.txt" || true)
[ "$CONNS" = 5 ] || fail "the hanging receiver saw $CONNS connections, expected 5 (ALERTPOST_ATTEMPTS)"
ST=$(jq_ '[j["alerts"][k] for k in ("sent", "attempts_failed", "failed", "dropped", "pending")]' "${N[$S]}" status)
[ "$(jq_ 'j["alerts"]["attempts_failed"]' "${N[$S]}" status)" = 5 ] || fail "attempts_failed at $SENDER: $ST"
grep -q "given up" "${N[$S]}.log" || fail "no 'given up' line in $SENDER's log"
ok "5: a receiver that never answers: meshctl status answered within $SLOWEST ms on every PoP meanwhile; $SENDER gave the delivery up after $CONNS attempts (sent, attempts_failed, failed, dropped, pending: $ST); the other receiver got its 'target up'"

# ---- no other alert was sent ----
TOTAL=$(wc -l <"$WORK/hook.jsonl")
[ "$TOTAL" = 7 ] || { cat "$WORK/hook.jsonl" >&2; fail "the receiver got $TOTAL alerts in all, expected 7"; }
IDS=$("$PY" -c 'import json,sys; print(len({json.loads(l)["id"] for l in open(sys.argv[1])}))' "$WORK/hook.jsonl")
[ "$IDS" = 7 ] || fail "7 alerts but $IDS distinct event ids"
ok "the receiver got 7 alerts in all, 7 distinct event ids: one per event"
done_testing
