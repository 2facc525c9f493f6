#!/usr/bin/env bash
# Signed configuration with real popd (docs/security.md, "Signed configuration"): pop-1 made
# the mesh (root, every capability), pop-2 joined with every capability (admin), pop-3 with
# `--capabilities verify,issue-sessions`. Then:
#   - records written through meshctl are signed by the PoP that wrote them;
#   - pop-3 (no admin, may sign sessions in) may write what a sign-in by an identity provider
#     writes, user/<idp:subject> without a password, and nothing more: not an admin flag, not a
#     password, not a local user (PUSHes sent with its identity to pop-1);
#   - adoption: carol, written by pop-2, stays accepted after `node rm pop-2` and reaches pop-4,
#     which joins afterwards (pop-1 signs her record again; without that, pop-4 would refuse
#     a record signed by a removed PoP);
#   - the registry: pop-3 cannot mark pop-1 removed, removed pop-2's keys cannot bring pop-2
#     back, and pop-3 may still update its own record (what a PoP publishes about itself);
#   - upgrade: pop-1 restarted as a popd that does not sign (POPMESH_TEST_UNSIGNED_CONFIG)
#     writes dave unsigned, which the other PoPs refuse; restarted as itself, it signs dave's
#     record again and dave reaches every PoP.
source "$(dirname "$0")/lib.sh"
HERE=$(cd "$(dirname "$0")" && pwd)
[ -x "${MESH_SEND:-}" ] || fail "MESH_SEND (the mesh_send helper) is not set"

init_node "$WORK/n1" pop-1
start_popd "$WORK/n1"
P1=$LAST_PID
FULL=$(mctl "$WORK/n1" token create --ttl 10m 2>/dev/null)
SESS=$(mctl "$WORK/n1" token create --ttl 10m --capabilities verify,issue-sessions 2>/dev/null)
join() {
    "$POPD" join --data "$WORK/n$1" --name "pop-$1" --mesh-listen "127.0.0.1:$(free_port)" \
        --tunnel-listen "127.0.0.1:$(free_port)" "$2" >/dev/null
}
join 2 "$FULL"
join 3 "$SESS"
start_popd "$WORK/n2"
P2=$LAST_PID
start_popd "$WORK/n3"
wait_certified "$WORK/n2"
wait_certified "$WORK/n3"
ADDR1=$(sed -n 's/^mesh-listen = //p' "$WORK/n1/popd.conf")
ID1=$(sed -n 's/^node-id = //p' "$WORK/n1/node.pub")

# j DIR KEY FIELD: a field of `meshctl --json config get KEY` at DIR ("" if absent).
j() {
    mctl "$1" --json config get "$2" 2>/dev/null |
        "$PY" -c 'import json,sys; v=json.load(sys.stdin)[sys.argv[1]]; print(str(v).lower() if isinstance(v,bool) else v)' "$3" 2>/dev/null
}
status() { mctl "$1" --json key status | "$PY" -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$2"; }
has_user() { mctl "$1" user list | grep -q "^$2 "; }

echo "correct-horse-battery" | mctl "$WORK/n1" user add alice >/dev/null
alice3() { has_user "$WORK/n3" alice; }
wait_for 10 "alice at pop-3" alice3
[ "$(j "$WORK/n3" user/alice signed)" = true ] || fail "alice's record is not signed at pop-3"
[ "$(j "$WORK/n3" user/alice origin)" = "$ID1" ] || fail "alice's record is not pop-1's"
ok "a user written at pop-1 arrives signed by pop-1 at pop-3"

# ---- what a PoP that signs sessions in, but is no admin, may write ----
push3() { # push3 KEY VALUE: one entry signed by pop-3, to pop-1
    "$MESH_SEND" "$WORK/n3" "$WORK/n1" "$ADDR1" hex \
        "$("$PY" "$HERE/trust_forge.py" push "$WORK/n3" "$1" "$2" self sign)" || fail "mesh_send did not deliver"
}
R0=$(status "$WORK/n1" config_refused)
push3 user/corp:bob "$("$PY" "$HERE/trust_forge.py" user corp:bob -)"
push3 user/corp:eve "$("$PY" "$HERE/trust_forge.py" user corp:eve - admin)"
push3 user/corp:pat "$("$PY" "$HERE/trust_forge.py" user corp:pat a-password)"
push3 user/local "$("$PY" "$HERE/trust_forge.py" user local -)"
push3 user/alice -
bob1() { has_user "$WORK/n1" corp:bob && [ $(($(status "$WORK/n1" config_refused) - R0)) -ge 4 ]; }
wait_for 10 "corp:bob taken, four records refused at pop-1" bob1
for u in corp:eve corp:pat local; do
    ! has_user "$WORK/n1" "$u" || fail "pop-1 took $u from pop-3"
done
has_user "$WORK/n1" alice || fail "pop-1 took pop-3's delete of alice"
ok "from pop-3 (issue-sessions, no admin) pop-1 takes an identity provider's user (corp:bob) and refuses one made admin, one with a password, a local user and a delete"

# ---- adoption: a removed PoP's records stay accepted ----
echo "another-long-password" | mctl "$WORK/n2" user add carol >/dev/null
carol1() { has_user "$WORK/n1" carol && has_user "$WORK/n3" carol; }
wait_for 10 "carol (written at pop-2) at pop-1 and pop-3" carol1
ID2=$(sed -n 's/^node-id = //p' "$WORK/n2/node.pub")
[ "$(j "$WORK/n1" user/carol origin)" = "$ID2" ] || fail "carol's record is not pop-2's"
A0=$(status "$WORK/n1" config_adopted)
stop_popd "$P2"
mctl "$WORK/n1" node rm pop-2 >/dev/null
adopted() { [ "$(j "$WORK/n1" user/carol origin)" = "$ID1" ] && [ "$(j "$WORK/n1" user/carol signed)" = true ]; }
wait_for 10 "pop-1 signed carol's record again" adopted
[ "$(status "$WORK/n1" config_adopted)" -gt "$A0" ] || fail "config_adopted did not move"
expect_in "$WORK/n1.log" "configuration record"
join 4 "$(mctl "$WORK/n1" token create --ttl 10m 2>/dev/null)"
start_popd "$WORK/n4"
P4=$LAST_PID
carol4() { has_user "$WORK/n4" carol && has_user "$WORK/n4" alice && has_user "$WORK/n4" corp:bob; }
wait_for 10 "carol, alice and corp:bob at pop-4, which joined after the removal" carol4
ok "node rm pop-2: pop-1 signed pop-2's record of carol again (${WAITED}s for pop-4); pop-4, joined after, has carol, alice and corp:bob"

# ---- the registry: removal stays, identity is an admin's ----
ID3=$(sed -n 's/^node-id = //p' "$WORK/n3/node.pub")
push_from3() { # push_from3 SIGNDIR KEY VALUE ORIGIN: over pop-3's connection, signed by SIGNDIR
    "$MESH_SEND" "$WORK/n3" "$WORK/n1" "$ADDR1" hex \
        "$("$PY" "$HERE/trust_forge.py" push "$1" "$2" "$3" "$4" sign)" || fail "mesh_send did not deliver"
}
R1=$(status "$WORK/n1" config_refused)
push_from3 "$WORK/n3" "node/$ID1" "edit:$WORK/n1/control.sock:removed=true" self
push_from3 "$WORK/n2" "node/$ID2" "edit:$WORK/n1/control.sock:removed=false" self
push_from3 "$WORK/n3" "node/$ID3" "edit:$WORK/n1/control.sock:region=\"moved\"" self
region3() { [ "$(mctl "$WORK/n1" --json config get "node/$ID3" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["value"]["region"])')" = moved ]; }
wait_for 10 "pop-3's update of its own record at pop-1" region3
[ $(($(status "$WORK/n1" config_refused) - R1)) -ge 2 ] || fail "pop-1 did not refuse the two registry forgeries"
removed() { mctl "$WORK/n1" --json config get "node/$1" | "$PY" -c 'import json,sys; print(str(json.load(sys.stdin)["value"]["removed"]).lower())'; }
[ "$(removed "$ID1")" = false ] || fail "pop-3 marked pop-1 removed"
[ "$(removed "$ID2")" = true ] || fail "removed pop-2 brought itself back"
sleep 0.5 # the certifier runs right after a registry change: give it the time it would need
mctl "$WORK/n1" key list >"$WORK/keys1"
grep -q "$ID3" "$WORK/keys1" || fail "key list does not list certificates by id any more"
! grep -q "$ID2" "$WORK/keys1" || fail "pop-2 got a certificate again"
ok "registry: pop-3 cannot mark pop-1 removed, pop-2's keys cannot undo its removal (no certificate comes back); pop-3 updates its own record"

# ---- upgrade: a popd that does not sign ----
stop_popd "$P1"
POPMESH_TEST_UNSIGNED_CONFIG=1 start_popd "$WORK/n1"
P1=$LAST_PID
echo "yet-another-password" | mctl "$WORK/n1" user add dave >/dev/null
[ "$(j "$WORK/n1" user/dave signed)" = false ] || fail "dave was signed by a popd told not to"
R4=$(status "$WORK/n4" config_refused)
refused4() { [ "$(status "$WORK/n4" config_refused)" -gt "$R4" ]; }
wait_for 10 "pop-4 refusing unsigned dave" refused4
sleep 1.5 # anti-entropy rounds: dave must not get in another way
! has_user "$WORK/n4" dave || fail "pop-4 took an unsigned user record"
! has_user "$WORK/n3" dave || fail "pop-3 took an unsigned user record"
stop_popd "$P1"
start_popd "$WORK/n1"
dave_everywhere() { has_user "$WORK/n3" dave && has_user "$WORK/n4" dave; }
wait_for 15 "dave at pop-3 and pop-4 once pop-1 signs again" dave_everywhere
[ "$(j "$WORK/n4" user/dave signed)" = true ] || fail "dave's record at pop-4 is not signed"
ok "a record written unsigned (as by a popd before signing) is refused by the others, and reaches them ${WAITED}s after pop-1, restarted, signs it again"
done_testing
