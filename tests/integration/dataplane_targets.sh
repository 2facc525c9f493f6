#!/usr/bin/env bash
# Targets of a resource: connections are spread over the healthy ones, sticky resources keep
# a client on one, a dead target is skipped at once and reported unhealthy within the check
# interval, an HTTP check that answers 503 takes a target out even though it accepts
# connections, and a target that comes back is used again.
source "$(dirname "$0")/lib.sh"
: "${POPSITE:?POPSITE must point to the popsite binary}"

init_node "$WORK/n1" pop-1 --ingress-address 127.0.0.61
start_popd "$WORK/n1"
SITE_TOKEN=$(mctl "$WORK/n1" site add branch | grep -o 'pmt1\.[A-Za-z0-9_-]*' | head -1)
"$POPSITE" run --data "$WORK/site" --token "$SITE_TOKEN" >>"$WORK/site.log" 2>&1 &
PIDS+=("$!")

# Backend NAME PORT: answers every connection with its name, then closes; GET /health answers
# 200, or 503 once the file $WORK/NAME.sick exists.
cat >"$WORK/backend.py" <<'EOF'
import os, socket, sys, threading
name, port, work = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def serve(c):
    with c:
        c.settimeout(2)
        try:
            first = c.recv(4096)
        except OSError:
            return
        if first.startswith(b"GET "):
            sick = os.path.exists(os.path.join(work, name + ".sick"))
            c.sendall(b"HTTP/1.1 503 Unavailable\r\nContent-Length: 0\r\n\r\n" if sick
                      else b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        else:
            c.sendall(name.encode())
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port)); s.listen(256)
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
EOF
declare -A BPORT BPID
start_backend() {
    "$PY" "$WORK/backend.py" "$1" "${BPORT[$1]}" "$WORK" >>"$WORK/backend-$1.log" 2>&1 &
    BPID[$1]=$!
    PIDS+=("$!")
}
for b in a b; do
    BPORT[$b]=$(free_port)
    start_backend "$b"
done
RP=$(free_port)
RS=$(free_port)
mctl "$WORK/n1" resource add spread --site branch --target "127.0.0.1:${BPORT[a]}" \
    --target "127.0.0.1:${BPORT[b]}" --tcp-port "$RP" --health http:/health >/dev/null
mctl "$WORK/n1" resource add sticky --site branch --target "127.0.0.1:${BPORT[a]}" \
    --target "127.0.0.1:${BPORT[b]}" --tcp-port "$RS" --health tcp --sticky >/dev/null

# who PORT [N]: N connections (default 20) from 127.0.0.1; prints the sorted set of answers.
who() {
    "$PY" -c '
import socket, sys
seen = []
for i in range(int(sys.argv[2])):
    try:
        c = socket.create_connection(("127.0.0.61", int(sys.argv[1])), timeout=3)
        c.sendall(b"hi\n")
        d = c.recv(16).decode() or "EOF"
    except OSError as e:
        d = "ERR"
    seen.append(d)
print(" ".join(sorted(set(seen))))' "$1" "${2:-20}"
}
both_healthy() {
    mctl "$WORK/n1" --json sites | "$PY" -c '
import json, sys
s = json.load(sys.stdin)["sites"][0]
h = {t["addr"]: t["healthy"] for t in s["targets"]}
sys.exit(0 if s["state"] == "online" and len(h) >= 2 and all(h.values()) else 1)'
}
target_state() { # target_state PORT: True/False, that target's health in meshctl sites
    mctl "$WORK/n1" --json sites | "$PY" -c '
import json, sys
s = json.load(sys.stdin)["sites"][0]
print([t["healthy"] for t in s["targets"] if t["addr"].endswith(":" + sys.argv[1])][0])' "$1"
}
is_target() { [ "$(target_state "$1")" = "$2" ]; }
answers_are() { [ "$(who "$1" 20)" = "$2" ]; }

wait_for 15 "both targets healthy" both_healthy
wait_for 10 "connections spread over both targets" answers_are "$RP" "a b"
ok "connections are spread over both healthy targets"
S1=$(who "$RS" 10)
[ "$S1" = a ] || [ "$S1" = b ] || fail "sticky resource sent one client to '$S1'"
ok "a sticky resource keeps a client on one target ($S1)"

# Kill backend a: no connection fails (the site tries the other target), and the check
# reports it within its interval.
kill -9 "${BPID[a]}"
T0=$(date +%s%N)
ANS=$(who "$RP" 20)
[ "$ANS" = b ] || fail "after killing target a, connections got: $ANS"
ok "target a killed: every new connection reaches b (no errors)"
wait_for 5 "target a reported unhealthy" is_target "${BPORT[a]}" False
ok "target a shown unhealthy after ${WAITED}s"
S2=$(who "$RS" 10)
[ "$S2" = b ] || fail "sticky clients after a died: $S2"
ok "sticky clients move to the healthy target"

start_backend a
wait_for 10 "target a healthy again" both_healthy
wait_for 10 "connections spread again" answers_are "$RP" "a b"
ok "target a back: healthy again after ${WAITED}s and used again"

# An HTTP check that fails takes a target out although it accepts connections.
touch "$WORK/b.sick"
wait_for 10 "target b unhealthy (503)" is_target "${BPORT[b]}" False
ANS=$(who "$RP" 20)
[ "$ANS" = a ] || fail "with b failing its HTTP check, connections got: $ANS"
grep -q "503" "$WORK/site.log" || fail "the site did not log the 503"
ok "target b answering 503 to its HTTP check gets no connections (all to a), reason logged"
rm -f "$WORK/b.sick"
wait_for 10 "connections spread again" answers_are "$RP" "a b"
ok "target b passes its check again and gets connections again"
done_testing
