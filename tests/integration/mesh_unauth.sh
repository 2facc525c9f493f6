#!/usr/bin/env bash
# Unauthenticated peers on the mesh port: huge frame headers before the CURVE handshake, a
# NULL greeting, a stalled handshake, many idle connections. popd must stay up, its memory
# bounded, and keep serving its operator (cases and bounds in mesh_unauth.py).
source "$(dirname "$0")/lib.sh"
D="$WORK/n1"
init_node "$D" pop-unauth
start_popd "$D"
PID=$LAST_PID
ADDR=$(sed -n 's/^mesh_listen *= *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$D/popd.conf" 2>/dev/null || true)
if [ -z "$ADDR" ]; then
    ADDR=$(mctl "$D" --json status | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["mesh"]["addr"])')
fi
HOST=${ADDR%:*}
PORT=${ADDR##*:}

for c in curve-1g curve-2e62 curve-1g-x3 null-1g curve-1g-x16 stall many; do
    "$PY" "$(dirname "$0")/mesh_unauth.py" "$PID" "$HOST" "$PORT" "$c" || fail "case $c"
    kill -0 "$PID" 2>/dev/null || fail "popd died during case $c"
    expect_rc 0 "$MESHCTL" -d "$D" status
    ok "case $c: popd alive, memory bounded, status answers"
done
expect_rc 0 "$MESHCTL" -d "$D" --json status
"$PY" -c 'import json,sys; m=json.load(open(sys.argv[1]))["mesh"]; assert m["conns_refused"] > 0, m; print("conns %d, conns_refused %d" % (m["conns"], m["conns_refused"]))' "$WORK/out"
ok "the connection cap was counted"
grep -q 'ERROR: AddressSanitizer' "$D.log" && fail "ASan report in the log"
ok "no sanitizer report"
done_testing
