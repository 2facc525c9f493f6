#!/usr/bin/env bash
# Failure detection with real processes: SIGKILL one of five nodes, every other node marks it
# dead; restart it, it refutes with a higher incarnation and is alive everywhere again. A
# graceful stop (SIGTERM) is reported as "left", not as a failure.
source "$(dirname "$0")/lib.sh"

start_mesh 5
N=("$WORK/n1" "$WORK/n2" "$WORK/n3" "$WORK/n4" "$WORK/n5")
ALL5="pop-1=alive pop-2=alive pop-3=alive pop-4=alive pop-5=alive"
wait_for 20 "5 alive members everywhere" all_see "${N[@]}" "$ALL5"
ok "5 nodes alive everywhere"

kill -9 "${NODE_PID[3]}"
OTHERS=("$WORK/n1" "$WORK/n2" "$WORK/n4" "$WORK/n5")
DEAD3="pop-1=alive pop-2=alive pop-3=dead pop-4=alive pop-5=alive"
wait_for 15 "pop-3 dead on every other node" all_see "${OTHERS[@]}" "$DEAD3"
ok "SIGKILLed pop-3 is marked dead by all four others within ${WAITED}s"

INC_BEFORE=$(mctl "$WORK/n1" --json members | "$PY" -c 'import json,sys; print([m["incarnation"] for m in json.load(sys.stdin) if m["name"]=="pop-3"][0])')
start_popd "$WORK/n3"
NODE_PID[3]=$LAST_PID
wait_for 15 "pop-3 alive again everywhere" all_see "${N[@]}" "$ALL5"
INC_AFTER=$(mctl "$WORK/n1" --json members | "$PY" -c 'import json,sys; print([m["incarnation"] for m in json.load(sys.stdin) if m["name"]=="pop-3"][0])')
[ "$INC_AFTER" -gt "$INC_BEFORE" ] || fail "pop-3 came back without a higher incarnation ($INC_BEFORE -> $INC_AFTER)"
ok "restarted pop-3 is alive everywhere within ${WAITED}s, incarnation $INC_BEFORE -> $INC_AFTER"

mctl "$WORK/n2" config set cfg/while-3-was-down yes >/dev/null
kill -9 "${NODE_PID[4]}"
mctl "$WORK/n1" config set cfg/while-4-is-down yes >/dev/null
start_popd "$WORK/n4"
NODE_PID[4]=$LAST_PID
wait_for 15 "pop-4 catches up on the write it missed" bash -c "[ \"\$('$MESHCTL' -d '$WORK/n4' config get cfg/while-4-is-down)\" = yes ]"
ok "a node that missed a write while down catches up by anti-entropy (${WAITED}s)"

stop_popd "${NODE_PID[5]}"
LEFT5="pop-1=alive pop-2=alive pop-3=alive pop-4=alive pop-5=left"
wait_for 10 "pop-5 left on all others" all_see "$WORK/n1" "$WORK/n2" "$WORK/n3" "$WORK/n4" "$LEFT5"
ok "SIGTERM: pop-5 leaves gracefully and is shown as left, not dead"

FP=""
for d in "$WORK/n1" "$WORK/n2" "$WORK/n3" "$WORK/n4"; do
    f=$(mctl "$d" --json status | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["store"]["digest"])')
    [ -z "$FP" ] && FP=$f
    [ "$f" = "$FP" ] || { sleep 2; f=$(mctl "$d" --json status | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["store"]["digest"])'); [ "$f" = "$FP" ] || fail "store fingerprints differ: $d has $f, n1 has $FP"; }
done
ok "the four running nodes hold identical stores (fingerprint $FP)"
done_testing
