#!/usr/bin/env bash
# The root key's life with real popd (docs/security.md, "The key hierarchy"):
#   - popd init --root-offline: no PoP holds the root; a joined PoP stays uncertified (and
#     signs no session) until `meshctl key certify --root FILE` on the operator's machine;
#   - meshctl key export-root FILE moves an on-line root off the PoP;
#   - meshctl key rotate-root: a new root endorsed by the old one, every certificate issued
#     again; sessions keep working; a certificate of the old root is accepted during the
#     rollover and refused after it;
#   - upgrading a mesh from before roots: its oldest PoP makes the root and certifies all.
source "$(dirname "$0")/lib.sh"
HERE=$(cd "$(dirname "$0")" && pwd)

declare -a HP=()
for i in 1 2 3 4; do HP[$i]=$(free_port); done
code() { # code POP COOKIE: app.test's status at pop-POP with that session
    curl -s -m 5 -o /dev/null -w '%{http_code}' -H "Host: app.test" \
        -H "Cookie: popmesh_session=$2" "http://127.0.0.1:${HP[$1]}/"
}
authenticated() { case "$(code "$1" "$2")" in 502 | 503 | 504) return 0 ;; *) return 1 ;; esac; }
login() { # login POP: the session cookie pop-POP set for alice, or nothing
    curl -s -m 10 -o /dev/null -D - -H "Host: app.test" \
        --data "username=alice&password=correct-horse-battery&rd=/" \
        "http://127.0.0.1:${HP[$1]}/.popmesh/login" | tr -d '\r' |
        sed -n 's/^[Ss]et-[Cc]ookie: popmesh_session=\([^;]*\);.*/\1/p' | head -1
}
join() { # join I TOKEN
    "$POPD" join --data "$WORK/n$1" --name "pop-$1" --mesh-listen "127.0.0.1:$(free_port)" \
        --tunnel-listen "127.0.0.1:$(free_port)" --http-listen "127.0.0.1:${HP[$1]}" "$2" >/dev/null
}
valid_certs() { mctl "$1" --json key list | "$PY" -c 'import json,sys; print(sum(c["valid"] for c in json.load(sys.stdin)))'; }
setup_app() { # setup_app DIR: a resource behind login and alice
    mctl "$1" site add branch >/dev/null 2>&1
    mctl "$1" resource add app --site branch --target 127.0.0.1:9 --host app.test --auth login >/dev/null
    echo "correct-horse-battery" | mctl "$1" user add alice >/dev/null
}

# ---- an off-line root ----
init_node "$WORK/n1" pop-1 --http-listen "127.0.0.1:${HP[1]}" --root-offline "$WORK/root.key"
[ ! -e "$WORK/n1/root.key" ] || fail "--root-offline left the root on the PoP"
[ "$(stat -c %a "$WORK/root.key")" = 600 ] || fail "the off-line root file is not mode 0600"
start_popd "$WORK/n1"
setup_app "$WORK/n1"
join 2 "$(mctl "$WORK/n1" token create --ttl 10m --capabilities verify,issue-sessions 2>/dev/null)"
start_popd "$WORK/n2"
pop2_known() { mctl "$WORK/n2" user list | grep -q alice && mctl "$WORK/n2" resource list | grep -q '^app '; }
wait_for 20 "alice and app at pop-2" pop2_known
sleep 1 # a root holder would have certified pop-2 by now: there is none
[ "$(valid_certs "$WORK/n1")" = 1 ] || fail "a PoP was certified with the root off-line"
C=$(curl -s -m 10 -o /dev/null -w '%{http_code}' -H "Host: app.test" \
    --data "username=alice&password=correct-horse-battery&rd=/" "http://127.0.0.1:${HP[2]}/.popmesh/login")
[ "$C" = 403 ] || fail "uncertified pop-2 answered a sign-in with $C"
expect_rc 1 mctl "$WORK/n1" key certify --node pop-2
expect_in "$WORK/err" "the root key is not on this PoP"
ok "init --root-offline: the root only in its file (0600); joined pop-2 has no certificate and signs no session"
expect_rc 0 mctl "$WORK/n1" key certify --root "$WORK/root.key" --node pop-2 --capabilities verify,issue-sessions
expect_in "$WORK/out" "certified pop-2"
certified2() { [ "$(valid_certs "$WORK/n2")" = 2 ]; }
wait_for 10 "pop-2's certificate at pop-2" certified2
C2=$(login 2)
case "$C2" in pms2.*) ;; *) fail "pop-2 signed no session after certification: '$C2'" ;; esac
authenticated 1 "$C2" || fail "pop-2's session refused at pop-1"
# A certificate made with another root is refused by popd before it is stored.
"$POPD" init --data "$WORK/other" --name other --mesh-listen "127.0.0.1:$(free_port)" \
    --tunnel-listen "127.0.0.1:$(free_port)" --root-offline "$WORK/other-root.key" >/dev/null
expect_rc 1 mctl "$WORK/n1" key certify --root "$WORK/other-root.key" --node pop-2
expect_in "$WORK/err" "certificate issued by a root this PoP does not accept"
ok "meshctl key certify --root FILE certifies pop-2 off-line: it signs sessions pop-1 accepts; another mesh's root is refused"

# ---- an on-line root: rotation, export ----
init_node "$WORK/n3" pop-3 --http-listen "127.0.0.1:${HP[3]}"
start_popd "$WORK/n3"
setup_app "$WORK/n3"
join 4 "$(mctl "$WORK/n3" token create --ttl 10m 2>/dev/null)"
start_popd "$WORK/n4"
ready4() { [ "$(valid_certs "$WORK/n4")" = 2 ] && mctl "$WORK/n4" user list | grep -q alice; }
wait_for 20 "both certificates and alice at pop-4" ready4
C4=$(login 4)
authenticated 3 "$C4" || fail "pop-4's session refused at pop-3"
ID4=$(sed -n 's/^node-id = //p' "$WORK/n4/node.pub")
"$PY" -c '
import sys; sys.path.insert(0, sys.argv[3])
from ctlclient import Ctl
import msgpack
st, body = Ctl(sys.argv[1]).call("config.get", {"key": sys.argv[2]})
assert st == 0, body
open(sys.argv[4], "wb").write(msgpack.packb(body["value"]))
' "$WORK/n3/control.sock" "nodecert/$ID4" "$HERE" "$WORK/oldcert"
OLDROOT=$(mctl "$WORK/n3" --json key status | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["root"])')
expect_rc 0 mctl "$WORK/n3" key rotate-root --rollover 4s
NEWROOT=$(mctl "$WORK/n3" --json key status | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["root"])')
[ "$NEWROOT" != "$OLDROOT" ] || fail "the root did not change"
rotated4() {
    mctl "$WORK/n4" --json key status | "$PY" -c 'import json,sys; j=json.load(sys.stdin); sys.exit(not (j["root"]==sys.argv[1] and j["root_previous"]==sys.argv[2]))' "$NEWROOT" "$OLDROOT" &&
        mctl "$WORK/n4" --json key list | "$PY" -c 'import json,sys; sys.exit(not all(c["issuer"]==sys.argv[1] and c["valid"] for c in json.load(sys.stdin)))' "$NEWROOT"
}
wait_for 10 "pop-4 pinned the new root and sees every certificate issued again under it" rotated4
authenticated 3 "$C4" && authenticated 4 "$C4" || fail "a session made before the rotation was refused"
C4B=$(login 4)
authenticated 3 "$C4B" || fail "a session made after the rotation was refused"
ok "rotate-root: pop-4 pinned root $NEWROOT (endorsed by $OLDROOT), every certificate issued again; sessions from before and after work"
# put_old_cert: pop-4's certificate from before the rotation, back in the store.
put_old_cert() {
    "$PY" -c '
import sys; sys.path.insert(0, sys.argv[3])
from ctlclient import Ctl
import msgpack
st, body = Ctl(sys.argv[1]).call("config.set", {"key": sys.argv[2], "value": msgpack.unpackb(open(sys.argv[4], "rb").read(), raw=False)})
assert st == 0, body
' "$WORK/n3/control.sock" "nodecert/$ID4" "$HERE" "$WORK/oldcert"
}
put_old_cert
authenticated 3 "$C4" || fail "during the rollover, a certificate of the old root was refused"
refused_after() { ! authenticated 3 "$C4"; }
wait_for 10 "the old root refused once the rollover ends" refused_after
ok "a certificate of the old root is accepted during the rollover, refused after it (${WAITED}s)"

expect_rc 0 mctl "$WORK/n3" key export-root "$WORK/exported.key"
[ "$(stat -c %a "$WORK/exported.key")" = 600 ] && [ ! -e "$WORK/n3/root.key" ] ||
    fail "export-root: the file is not 0600, or the root is still on the PoP"
expect_rc 1 mctl "$WORK/n3" key export-root "$WORK/again.key"
expect_rc 0 mctl "$WORK/n3" key certify --root "$WORK/exported.key" --node pop-4
certified4() { authenticated 3 "$C4"; }
wait_for 10 "pop-4 certified again with the exported root" certified4
ok "key export-root moves the root to a 0600 file and off the PoP; certify --root with it works"

# ---- upgrading a mesh made before roots ----
# A mesh as an older popd leaves it: no root.pub or root.key, no trust/root or nodecert/
# records (deleted here, the PoP's own certificate last: each delete needs admin).
H5=$(free_port)
H6=$(free_port)
HP[5]=$H5
HP[6]=$H6
init_node "$WORK/n5" pop-5 --http-listen "127.0.0.1:$H5"
start_popd "$WORK/n5"
P5=$LAST_PID
setup_app "$WORK/n5"
join 6 "$(mctl "$WORK/n5" token create --ttl 10m 2>/dev/null)"
start_popd "$WORK/n6"
P6=$LAST_PID
ready6() { [ "$(valid_certs "$WORK/n6")" = 2 ] && mctl "$WORK/n6" user list | grep -q alice; }
wait_for 20 "pop-6 certified, alice at pop-6" ready6
ID5=$(sed -n 's/^node-id = //p' "$WORK/n5/node.pub")
ID6=$(sed -n 's/^node-id = //p' "$WORK/n6/node.pub")
for k in trust/root "nodecert/$ID6" "nodecert/$ID5"; do mctl "$WORK/n5" config del "$k" >/dev/null; done
gone6() { ! mctl "$WORK/n6" config get "nodecert/$ID5" >/dev/null 2>&1; }
wait_for 10 "the deletes at pop-6" gone6
stop_popd "$P5"
stop_popd "$P6"
rm -f "$WORK/n5/root.key" "$WORK/n5/root.pub" "$WORK/n6/root.pub"
start_popd "$WORK/n5"
start_popd "$WORK/n6"
OLD=$(login 6) # before the upgrade (it waits 3 s after start): the mesh key signs
case "$OLD" in pms1.*) ;; *) fail "a PoP with no root signed '$OLD', not a pms1. session" ;; esac
upgraded() {
    [ -f "$WORK/n5/root.key" ] && [ -f "$WORK/n6/root.pub" ] && [ "$(valid_certs "$WORK/n6")" = 2 ] &&
        cmp -s <(grep root-public "$WORK/n5/root.pub") <(grep root-public "$WORK/n6/root.pub")
}
wait_for 20 "the oldest PoP made the root; both pinned it; both certified" upgraded
grep -q "created one" "$WORK/n5.log" || fail "pop-5 did not log the upgrade"
! grep -q "created one" "$WORK/n6.log" || fail "pop-6 made a root too"
NEW=$(login 6)
case "$NEW" in pms2.*) ;; *) fail "after the upgrade pop-6 signed '$NEW'" ;; esac
authenticated 5 "$NEW" || fail "pop-6's new session refused at pop-5"
authenticated 5 "$OLD" || fail "a mesh-key session from before the upgrade was refused"
EPOCH=$(mctl "$WORK/n5" --json user list | "$PY" -c 'import json,sys; print([u for u in json.load(sys.stdin)["users"] if u["name"]=="alice"][0]["session_epoch"])')
LATE=$("$PY" "$HERE/trust_forge.py" legacy-cookie "$WORK/n6" alice "$EPOCH")
! authenticated 5 "$LATE" || fail "a mesh-key session made after the upgrade was accepted"
ok "upgrade: the oldest PoP (pop-5) made the root and certified both, pop-6 pinned it; mesh-key sessions from before still pass, one made after is refused"
done_testing
