#!/usr/bin/env bash
# Message versions: a member's message in a version this node does not speak (99) is dropped
# unread, counted in status (mesh.bad_version) and logged once, and the mesh carries on. The
# same message in the version it does speak is not counted there.
source "$(dirname "$0")/lib.sh"
[ -x "${MESH_SEND:-}" ] || fail "MESH_SEND (the mesh_send helper) is not set"

counter() { jq_ "j['mesh']['$2']" "$1" status; } # counter DIR FIELD: status.mesh.FIELD at DIR's node
above() { [ "$(counter "$1" "$2")" -gt "$3" ]; }

start_mesh 2
wait_for 20 "pop-1 and pop-2 alive on both" all_see "$WORK/n1" "$WORK/n2" "pop-1=alive pop-2=alive"
ADDR1=$(mctl "$WORK/n1" --json status | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["mesh"]["addr"])')
[ "$(counter "$WORK/n1" bad_version)" = 0 ] || fail "bad_version is not 0 at start"

# A version-1 PUSH that is not an entry: a bad message, but not a version problem.
"$MESH_SEND" "$WORK/n2" "$WORK/n1" "$ADDR1" 1 34 || fail "mesh_send (version 1) failed"
wait_for 5 "the malformed PUSH counted as a bad message" above "$WORK/n1" bad_messages 0
[ "$(counter "$WORK/n1" bad_version)" = 0 ] || fail "a version-1 message was counted as bad_version"
ok "version 1 PUSH: bad_messages $(counter "$WORK/n1" bad_messages), bad_version 0"

# Version 99 of a PING (SWIM type 1) and of a PUSH, from the member pop-2.
BAD_BEFORE=$(counter "$WORK/n1" bad_messages)
"$MESH_SEND" "$WORK/n2" "$WORK/n1" "$ADDR1" 99 1 || fail "mesh_send (version 99 PING) failed"
"$MESH_SEND" "$WORK/n2" "$WORK/n1" "$ADDR1" 99 34 || fail "mesh_send (version 99 PUSH) failed"
wait_for 5 "both version-99 messages counted" above "$WORK/n1" bad_version 1
[ "$(counter "$WORK/n1" bad_version)" = 2 ] || fail "bad_version is $(counter "$WORK/n1" bad_version), want 2"
[ "$(counter "$WORK/n1" bad_messages)" = "$BAD_BEFORE" ] || fail "version-99 messages reached a decoder"
ok "version 99: bad_version 2, bad_messages unchanged ($BAD_BEFORE)"
expect_in "$WORK/n1.log" "in version 99 from pop-2"
[ "$(grep -c 'in version 99 from' "$WORK/n1.log")" = 1 ] || fail "the drop was not logged exactly once (rate limit)"
ok "logged once: $(grep -m1 'in version 99 from' "$WORK/n1.log" | cut -c1-160)"

wait_for 10 "the mesh still alive on both" all_see "$WORK/n1" "$WORK/n2" "pop-1=alive pop-2=alive"
ok "pop-1 and pop-2 still see each other alive"
done_testing
