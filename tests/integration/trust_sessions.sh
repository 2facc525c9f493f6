#!/usr/bin/env bash
# The key hierarchy with real popd (docs/security.md, "The key hierarchy"): three PoPs, pop-1
# made the mesh (it holds the root), pop-2 joined with a token of every capability, pop-3 with
# `--capabilities verify`. Then:
#   - every PoP holds a certificate from the root, with the token's capabilities;
#   - a session made at pop-2 (pms2., signed by pop-2) works at pop-1 and pop-3;
#   - verify-only pop-3 cannot mint tokens, write users or share links, nor sign a session in;
#   - pop-3's data directory, copied: a session signed with its node key, one signed with its
#     mesh.key, a join with a token it signed (its record even in the store), and configuration
#     writes sent straight to pop-1's mesh port with its identity (a user made admin: unsigned,
#     signed by pop-3, signed by pop-3 in pop-1's name; alice deleted) are all refused;
#   - `node rm pop-2` revokes every session pop-2 signed, at pop-1 and pop-3.
source "$(dirname "$0")/lib.sh"
HERE=$(cd "$(dirname "$0")" && pwd)

declare -a HP=()
for i in 1 2 3; do HP[$i]=$(free_port); done
ADM=$(free_port)
init_node "$WORK/n1" pop-1 --http-listen "127.0.0.1:${HP[1]}" --admin-listen "127.0.0.1:$ADM"
[ "$(stat -c %a "$WORK/n1/root.key")" = 600 ] || fail "root.key is not mode 0600"
start_popd "$WORK/n1"
FULL=$(mctl "$WORK/n1" token create --ttl 10m 2>/dev/null)
VONLY=$(mctl "$WORK/n1" token create --ttl 10m --capabilities verify 2>/dev/null)
expect_rc 2 mctl "$WORK/n1" token create --capabilities verify,root
expect_in "$WORK/err" "unknown capability 'root'"
join() {
    "$POPD" join --data "$WORK/n$1" --name "pop-$1" --mesh-listen "127.0.0.1:$(free_port)" \
        --tunnel-listen "127.0.0.1:$(free_port)" --http-listen "127.0.0.1:${HP[$1]}" "$2" >/dev/null
}
join 2 "$FULL"
join 3 "$VONLY"
[ -f "$WORK/n3/root.pub" ] && [ ! -e "$WORK/n3/root.key" ] || fail "pop-3 did not pin the root, or got its key"
cmp -s <(grep root-public "$WORK/n1/root.pub") <(grep root-public "$WORK/n3/root.pub") ||
    fail "pop-3 pinned another root than pop-1's"
start_popd "$WORK/n2"
start_popd "$WORK/n3"
mctl "$WORK/n1" site add branch >/dev/null 2>&1
mctl "$WORK/n1" resource add app --site branch --target 127.0.0.1:9 --host app.test \
    --auth login >/dev/null
echo "correct-horse-battery" | mctl "$WORK/n1" user add alice >/dev/null
echo "an-admin-password" | mctl "$WORK/n1" user add boss --admin >/dev/null
certs_everywhere() {
    for i in 1 2 3; do
        [ "$(mctl "$WORK/n$i" --json key list | "$PY" -c 'import json,sys; print(sum(c["valid"] for c in json.load(sys.stdin)))')" = 3 ] || return 1
        mctl "$WORK/n$i" user list | grep -q alice || return 1
        mctl "$WORK/n$i" resource list | grep -q '^app ' || return 1
    done
}
wait_for 20 "three valid certificates, alice and app at every PoP" certs_everywhere
mctl "$WORK/n3" key status >"$WORK/st3"
expect_in "$WORK/st3" "this PoP:      verify (certificate: valid)"
mctl "$WORK/n2" key status >"$WORK/st2"
expect_in "$WORK/st2" "verify,issue-sessions,invite,admin (certificate: valid)"
ok "pop-1 made the root; pop-2 certified with every capability, pop-3 with verify only (${WAITED}s)"

# get PORT PATH [curl args...]: the HTTP status of app.test at a PoP.
code() {
    local port=$1 path=$2
    shift 2
    curl -s -m 5 -o /dev/null -w '%{http_code}' -H "Host: app.test" "$@" "http://127.0.0.1:$port$path"
}
# authenticated PORT COOKIE: the session passed (the site is offline: 502/503/504, not the
# login redirect 302).
authenticated() {
    local c
    c=$(code "$1" / -H "Cookie: popmesh_session=$2")
    case "$c" in 502 | 503 | 504) return 0 ;; 302) return 1 ;; *) fail "unexpected $c at port $1" ;; esac
}
login() { # login POP: prints the session cookie pop-POP set for alice, or nothing
    curl -s -m 10 -o /dev/null -D - -H "Host: app.test" \
        --data "username=alice&password=correct-horse-battery&rd=/" \
        "http://127.0.0.1:${HP[$1]}/.popmesh/login" | tr -d '\r' |
        sed -n 's/^[Ss]et-[Cc]ookie: popmesh_session=\([^;]*\);.*/\1/p' | head -1
}
C2=$(login 2)
case "$C2" in pms2.*) ;; *) fail "pop-2 set no pms2. session: '$C2'" ;; esac
authenticated "${HP[1]}" "$C2" || fail "pop-2's session refused at pop-1"
authenticated "${HP[3]}" "$C2" || fail "pop-2's session refused at pop-3"
ok "a session signed by pop-2 works at pop-1 and at verify-only pop-3"

# ---- the verify-only PoP's own commands ----
expect_rc 1 mctl "$WORK/n3" token create
expect_in "$WORK/err" "needs the capability invite"
expect_rc 1 bash -c "echo long-enough-password | '$MESHCTL' -d '$WORK/n3' user add mallory"
expect_in "$WORK/err" "needs the capability admin"
expect_rc 1 mctl "$WORK/n3" share create app
expect_in "$WORK/err" "may not sign share links"
C3=$(curl -s -m 10 -o "$WORK/login3" -w '%{http_code}' -H "Host: app.test" \
    --data "username=alice&password=correct-horse-battery&rd=/" \
    "http://127.0.0.1:${HP[3]}/.popmesh/login")
[ "$C3" = 403 ] || fail "a sign-in at verify-only pop-3 gave $C3"
grep -q "does not sign sessions" "$WORK/login3" || fail "pop-3's refusal does not say why"
ok "verify-only pop-3 refuses token create (invite), user add (admin), share create and sign-ins (issue-sessions)"

# ---- pop-3's data directory, copied elsewhere ----
cp -a "$WORK/n3" "$WORK/stolen"
rm -f "$WORK/stolen/control.sock" "$WORK/stolen/popd.lock"
EPOCH=$(mctl "$WORK/n1" --json user list | "$PY" -c 'import json,sys; print([u for u in json.load(sys.stdin)["users"] if u["name"]=="alice"][0]["session_epoch"])')
F1=$("$PY" "$HERE/trust_forge.py" cookie "$WORK/stolen" alice "$EPOCH")
F2=$("$PY" "$HERE/trust_forge.py" legacy-cookie "$WORK/stolen" alice "$EPOCH")
# The control: the same forgery with pop-2's directory (issue-sessions) passes, so what
# refuses pop-3's is its certificate, not a malformed cookie.
F0=$("$PY" "$HERE/trust_forge.py" cookie "$WORK/n2" alice "$EPOCH")
authenticated "${HP[1]}" "$F0" || fail "the forge's cookie signed with pop-2's key was refused: the forge is wrong"
for i in 1 2; do
    ! authenticated "${HP[$i]}" "$F1" || fail "a session signed with the stolen node key passed at pop-$i"
    ! authenticated "${HP[$i]}" "$F2" || fail "a session signed with the stolen mesh.key passed at pop-$i"
done
# The admin status page's cookie (popmesh_admin) too: a real sign-in works, a mesh-key forgery
# for the admin user does not.
acode() { curl -s -m 10 -o /dev/null -w '%{http_code}' "$@"; }
AC=$(curl -s -m 10 -o /dev/null -D - -d 'username=boss&password=an-admin-password' "http://127.0.0.1:$ADM/login" |
    tr -d '\r' | sed -n 's/^[Ss]et-[Cc]ookie: popmesh_admin=\([^;]*\);.*/\1/p')
case "$AC" in pms2.*) ;; *) fail "the admin page set no pms2. cookie: '$AC'" ;; esac
[ "$(acode -b "popmesh_admin=$AC" "http://127.0.0.1:$ADM/api/status")" = 200 ] || fail "the admin page refused its own cookie"
BEPOCH=$(mctl "$WORK/n1" --json user list | "$PY" -c 'import json,sys; print([u for u in json.load(sys.stdin)["users"] if u["name"]=="boss"][0]["session_epoch"])')
FA=$("$PY" "$HERE/trust_forge.py" legacy-cookie "$WORK/stolen" boss "$BEPOCH")
[ "$(acode -b "popmesh_admin=$FA" "http://127.0.0.1:$ADM/api/status")" = 401 ] ||
    fail "an admin-page cookie signed with the stolen mesh.key was accepted"
ok "with pop-3's copied directory: a session signed by its node key and one by its mesh.key are refused at pop-1 and pop-2, and a mesh-key admin-page cookie at pop-1's admin listener"

SEED_PK=$(sed -n 's/^curve-public = //p' "$WORK/n1/node.pub")
SEED_ADDR=$(sed -n 's/^mesh-listen = //p' "$WORK/n1/popd.conf")
# forge_token DIR: a token signed with DIR's keys, its record put in the store as if DIR's
# identity had written it (an operator's write stands in for the attacker's gossip); prints
# the token.
forge_token() {
    "$PY" "$HERE/trust_forge.py" token "$1" "$SEED_ADDR" "$SEED_PK" >"$WORK/forged"
    "$PY" -c '
import sys, msgpack
sys.path.insert(0, sys.argv[4])
from ctlclient import Ctl
st, body = Ctl(sys.argv[1]).call("config.set", {"key": sys.argv[2], "value": msgpack.unpackb(bytes.fromhex(sys.argv[3]), raw=False)})
assert st == 0, (st, body)
' "$WORK/n1/control.sock" "$(sed -n 2p "$WORK/forged")" "$(sed -n 3p "$WORK/forged")" "$HERE"
    sed -n 1p "$WORK/forged"
}
# The control: forged with pop-2's directory (invite), the same token joins.
CTOKEN=$(forge_token "$WORK/n2")
expect_rc 0 "$POPD" join --data "$WORK/n5" --name pop-5 --mesh-listen "127.0.0.1:$(free_port)" \
    --tunnel-listen "127.0.0.1:$(free_port)" "$CTOKEN"
FTOKEN=$(forge_token "$WORK/stolen")
expect_rc 1 "$POPD" join --data "$WORK/n4" --name pop-4 --mesh-listen "127.0.0.1:$(free_port)" \
    --tunnel-listen "127.0.0.1:$(free_port)" "$FTOKEN"
expect_in "$WORK/err" "the token's minter cannot invite"
ok "a join with a token signed by pop-3's copied keys (its record in the store) is refused (the same forged with pop-2's keys joins): $(tr -d '\n' <"$WORK/err" | cut -c1-120)"

# ---- configuration written with pop-3's copied directory ----
# PUSH messages sent straight to pop-1's mesh port with the stolen identity (a member's, so
# pop-1 reads them; docs/security.md, "Signed configuration"): mallory, an admin with a
# password the attacker knows, written unsigned, signed by pop-3 (verify only), signed by pop-3
# but claiming pop-1 wrote it; and alice deleted, signed by pop-3.
ID1=$(sed -n 's/^node-id = //p' "$WORK/n1/node.pub")
MAL=$("$PY" "$HERE/trust_forge.py" user mallory mallory-password admin)
push_as() { # push_as DIR KEY VALUE ORIGIN SIGN: one entry, to pop-1, as DIR's node
    "$MESH_SEND" "$1" "$WORK/n1" "$SEED_ADDR" hex "$("$PY" "$HERE/trust_forge.py" push "$@")" ||
        fail "mesh_send did not deliver"
}
cfg_refused() {
    mctl "$WORK/n1" --json key status | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["config_refused"])'
}
R0=$(cfg_refused)
push_as "$WORK/stolen" user/mallory "$MAL" self none
push_as "$WORK/stolen" user/mallory "$MAL" self sign
push_as "$WORK/stolen" user/mallory "$MAL" "$ID1" sign
push_as "$WORK/stolen" user/alice - self sign
refused4() { [ $(($(cfg_refused) - R0)) -ge 4 ]; }
wait_for 10 "pop-1 refused the four writes" refused4
sleep 1.5 # an anti-entropy round: nothing of it may arrive by another way either
for i in 1 2 3; do
    ! mctl "$WORK/n$i" user list | grep -q mallory || fail "the forged user mallory reached pop-$i"
    mctl "$WORK/n$i" user list | grep -q alice || fail "the forged delete of alice took effect at pop-$i"
done
expect_in "$WORK/n1.log" "trust: refused the record user/"
MC=$(curl -s -m 10 -o /dev/null -w '%{http_code}' -H "Host: app.test" \
    --data "username=mallory&password=mallory-password&rd=/" "http://127.0.0.1:${HP[1]}/.popmesh/login")
[ "$MC" != 302 ] || fail "mallory, forged with pop-3's keys, signed in at pop-1"
# The control: the same write signed with admin pop-2's directory is taken, and spreads.
push_as "$WORK/n2" user/mallory "$MAL" self sign
mallory_everywhere() { for i in 1 2 3; do mctl "$WORK/n$i" user list | grep -q mallory || return 1; done; }
wait_for 10 "the write signed by pop-2 (admin) at every PoP" mallory_everywhere
ok "with pop-3's copied directory: configuration writes sent to pop-1 (unsigned, signed by verify-only pop-3, signed by pop-3 in pop-1's name, a delete) are refused at every PoP; the same write signed by admin pop-2 is taken everywhere ($(mctl "$WORK/n1" --json key status | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["config_last_refused"])' | cut -c1-110))"

# ---- node rm revokes what the removed PoP signed ----
C1=$(login 1)
authenticated "${HP[3]}" "$C1" || fail "pop-1's session refused at pop-3"
authenticated "${HP[1]}" "$C2" || fail "pop-2's session refused at pop-1 before the removal"
mctl "$WORK/n1" node rm pop-2 >/dev/null
revoked() { ! authenticated "${HP[1]}" "$C2" && ! authenticated "${HP[3]}" "$C2"; }
wait_for 10 "pop-2's sessions refused at pop-1 and pop-3" revoked
authenticated "${HP[1]}" "$C1" && authenticated "${HP[3]}" "$C1" || fail "pop-1's session was refused too"
ok "node rm pop-2: its session, accepted before, is refused at pop-1 and pop-3 within ${WAITED}s; pop-1's still works"
done_testing
