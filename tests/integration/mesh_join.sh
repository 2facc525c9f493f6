#!/usr/bin/env bash
# Five real popd processes form a mesh with bootstrap tokens; config written on one is read
# on all; every bad token is refused with its own reason and changes nothing; an unregistered
# key is refused at the door; a removed node is evicted everywhere and stops.
source "$(dirname "$0")/lib.sh"

start_mesh 5
N=("$WORK/n1" "$WORK/n2" "$WORK/n3" "$WORK/n4" "$WORK/n5")
ALL5="pop-1=alive pop-2=alive pop-3=alive pop-4=alive pop-5=alive"
wait_for 20 "5 alive members on every node" all_see "${N[@]}" "$ALL5"
ok "5 nodes joined with one token; every node lists 5 alive members (${WAITED}s)"

mctl "$WORK/n3" --json members >"$WORK/members.json"
"$PY" - "$WORK/members.json" <<'PY'
import json, sys
ms = json.load(open(sys.argv[1]))
assert len(ms) == 5
for m in ms:
    for k in ("name", "id", "region", "addr", "state", "incarnation", "rtt_ms"):
        assert k in m, (k, m)
    assert m["state"] in ("alive", "suspect", "dead", "left")
PY
# Counts by state: a member just joined may be suspected for a moment while its connections
# come up (a loaded CI machine), so the counts settle rather than hold at the first look.
status_counts_ok() {
    mctl "$WORK/n2" --json status >"$WORK/st.json" &&
        "$PY" -c 'import json,sys; j=json.load(open(sys.argv[1])); assert j["members"]=={"alive":5,"suspect":0,"dead":0,"left":0} and len(j["mesh_id"])==32, j' "$WORK/st.json"
}
wait_for 10 "status counts 5 alive on pop-2" status_counts_ok
ok "members --json has name, id, region, addr, state, incarnation, rtt_ms; status counts by state"

has_health() {
    mctl "$1" --json members | "$PY" -c 'import json,sys; ms=json.load(sys.stdin); sys.exit(0 if all(m["health"] and m["health"]["rss_kb"] > 0 and m["health"]["age_ms"] < 10000 for m in ms) else 1)'
}
for d in "${N[@]}"; do wait_for 15 "health vectors of all members on $d" has_health "$d"; done
ok "every node holds a fresh gossiped health vector (CPU, RSS, streams) of every member"

mctl "$WORK/n3" config set cfg/written-on-3 "hello mesh" >/dev/null
for d in "${N[@]}"; do
    wait_for 10 "cfg/written-on-3 on $d" bash -c "[ \"\$('$MESHCTL' -d '$d' config get cfg/written-on-3)\" = 'hello mesh' ]"
done
mctl "$WORK/n5" config set cfg/written-on-3 "changed on 5" >/dev/null
mctl "$WORK/n2" config rm cfg/doesnotexist >/dev/null 2>&1 || true
for d in "${N[@]}"; do
    wait_for 10 "the newer write on $d" bash -c "[ \"\$('$MESHCTL' -d '$d' config get cfg/written-on-3)\" = 'changed on 5' ]"
done
ok "a config write on one node is readable on all five; a later write on another wins everywhere"

# ---- bad tokens: each refused with its own reason, nothing changes ----
registry_size() { jq_ 'len(j)' "$WORK/n1" config list node/; }
uses_of() { jq_ 'sum(t["uses"] for t in j)' "$WORK/n1" token list; }
REG0=$(registry_size)
USES0=$(uses_of)
try_join() { # try_join NAME TOKEN EXPECTED-TEXT
    expect_rc 1 "$POPD" join --data "$WORK/j-$1-$RANDOM" --name "$1" --mesh-listen "127.0.0.1:$(free_port)" "$2"
    expect_in "$WORK/err" "$3"
}
GOOD=$(mctl "$WORK/n1" token create --uses 1 2>/dev/null)

SHORT=$(mctl "$WORK/n1" token create --ttl 1s 2>/dev/null)
sleep 1.2
try_join late "$SHORT" "the token expired"
ok "expired token: refused ('expired')"

REV_JSON=$(mctl "$WORK/n1" --json token create)
REV=$("$PY" -c 'import json,sys; print(json.loads(sys.argv[1])["token"])' "$REV_JSON")
REV_ID=$("$PY" -c 'import json,sys; print(json.loads(sys.argv[1])["id"])' "$REV_JSON")
wait_for 10 "the token reaching pop-2" bash -c "'$MESHCTL' -d '$WORK/n2' token list | grep -q $REV_ID"
mctl "$WORK/n2" token revoke "$REV_ID" >/dev/null
wait_for 10 "the revocation reaching pop-1" bash -c "'$MESHCTL' -d '$WORK/n1' token list | grep $REV_ID | grep -q revoked"
try_join revoked-node "$REV" "the token was revoked"
ok "revoked token (revoked on another node): refused ('revoked')"

TAMPERED=$("$PY" -c 'import sys; t=sys.argv[1]; i=len(t)//2; print(t[:i] + ("A" if t[i] != "A" else "B") + t[i+1:])' "$GOOD")
try_join tampered-node "$TAMPERED" "tampered"
ok "tampered token: refused locally ('tampered')"

try_join truncated-node "${GOOD:0:60}" "truncated"
try_join garbage-node "hello-i-am-not-a-token" "not a popmesh token"
try_join garbage2-node "pmt1.!!!!" "garbled"
ok "truncated and garbage tokens: refused locally"

try_join pop-2 "$GOOD" "the name 'pop-2' is already taken"
ok "a name already taken: refused by the seed"

SITE=$(mctl "$WORK/n1" token create --role site 2>/dev/null)
try_join site-as-pop "$SITE" "this is a site token"
ok "a site token used to join a PoP: refused"

# wrong mesh: a second, separate mesh signs a token that points at this mesh's seed
init_node "$WORK/x1" other-1
start_popd "$WORK/x1"
XPID=$LAST_PID
XTOK=$(mctl "$WORK/x1" token create 2>/dev/null)
SEED_ADDR=$(mctl "$WORK/n1" --json status | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["mesh"]["addr"])')
SEED_PK=$(grep curve-public "$WORK/n1/node.pub" | awk '{print $3}')
XSEED=$(grep mesh-sign-seed "$WORK/x1/mesh.key" | awk '{print $3}')
FORGED=$("$PY" - "$XTOK" "$SEED_ADDR" "$SEED_PK" "$XSEED" <<'PY'
import base64, sys, msgpack, nacl.signing
tok, addr, pk, seed = sys.argv[1:]
body = base64.urlsafe_b64decode(tok[5:] + "=" * (-len(tok[5:]) % 4))
payload = msgpack.unpackb(body[:-64], raw=False)
payload[5] = [[addr, bytes.fromhex(pk)]]
raw = msgpack.packb(payload, use_bin_type=True)
sig = nacl.signing.SigningKey(bytes.fromhex(seed)).sign(raw).signature
print("pmt1." + base64.urlsafe_b64encode(raw + sig).decode().rstrip("="))
PY
)
try_join wrong-mesh "$FORGED" "its mesh does not know it"
kill -TERM "$XPID"
ok "a token of another mesh pointed at this mesh's seed: refused at the door"

# used up: one use, then a second join
"$POPD" join --data "$WORK/n6" --name pop-6 --mesh-listen "127.0.0.1:$(free_port)" --tunnel-listen "127.0.0.1:$(free_port)" "$GOOD" >/dev/null
try_join pop-7 "$GOOD" "used up (1 of 1 uses)"
ok "used-up token: refused ('used up')"
[ "$(registry_size)" = $((REG0 + 1)) ] || fail "registry changed by a refused join ($(registry_size) vs $REG0 + 1)"
[ "$(uses_of)" = $((USES0 + 1)) ] || fail "token uses changed by a refused join"
mctl "$WORK/n1" node rm pop-6 >/dev/null
ok "refused joins changed nothing: registry and token uses moved only for the one good join"

# ---- an unregistered key is refused by the ZAP handler ----
REFUSED0=$(mctl "$WORK/n1" --json status | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["mesh"]["zap_refused"])')
"$PY" - "$SEED_ADDR" "$SEED_PK" <<'PY'
import sys, time, zmq, zmq.utils.z85, msgpack
addr, pk = sys.argv[1], bytes.fromhex(sys.argv[2])
ctx = zmq.Context()
s = ctx.socket(zmq.DEALER)
pub, sec = zmq.curve_keypair()
s.curve_publickey, s.curve_secretkey = pub, sec
s.curve_serverkey = zmq.utils.z85.encode(pk)
s.linger = 0
s.connect("tcp://" + addr)
for i in range(5):
    try:
        s.send(msgpack.packb([1, 1, i, 0, []]), zmq.NOBLOCK)
    except zmq.Again:
        pass  # no completed handshake to queue on: exactly what a refused key gets
    time.sleep(0.2)
s.close()
ctx.term()
PY
REFUSED1=$(mctl "$WORK/n1" --json status | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["mesh"]["zap_refused"])')
[ "$REFUSED1" -gt "$REFUSED0" ] || fail "an unregistered key was not refused by ZAP ($REFUSED0 -> $REFUSED1)"
wait_for 5 "still 5 alive" all_see "$WORK/n1" "$ALL5"
ok "a node whose key is not registered is refused at the handshake; the mesh is unchanged"

# ---- node rm: evicted everywhere, stops with a clear message, its key refused ----
mctl "$WORK/n2" node rm pop-5 >/dev/null
PID5=${NODE_PID[5]}
for _ in $(seq 1 100); do kill -0 "$PID5" 2>/dev/null || break; sleep 0.1; done
kill -0 "$PID5" 2>/dev/null && fail "removed node pop-5 is still running"
expect_in "$WORK/n5.log" "this node was removed from the mesh"
ALL4="pop-1=alive pop-2=alive pop-3=alive pop-4=alive"
wait_for 10 "pop-5 gone from every member list" all_see "$WORK/n1" "$WORK/n2" "$WORK/n3" "$WORK/n4" "$ALL4"
expect_rc 1 "$POPD" run --data "$WORK/n5"
expect_in "$WORK/err" "removed from the mesh"
ok "removed node stops with a clear message, is gone from every list, cannot run again"

REFUSED0=$(mctl "$WORK/n3" --json status | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["mesh"]["zap_refused"])')
N3_ADDR=$(mctl "$WORK/n3" --json status | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["mesh"]["addr"])')
N3_PK=$(grep curve-public "$WORK/n3/node.pub" | awk '{print $3}')
N5_SK=$(grep curve-secret "$WORK/n5/node.key" | awk '{print $3}')
"$PY" - "$N3_ADDR" "$N3_PK" "$N5_SK" <<'PY'
import sys, time, zmq, zmq.utils.z85, nacl.public
addr, pk, sk = sys.argv[1], bytes.fromhex(sys.argv[2]), bytes.fromhex(sys.argv[3])
ctx = zmq.Context()
s = ctx.socket(zmq.DEALER)
s.curve_secretkey = zmq.utils.z85.encode(sk)
s.curve_publickey = zmq.utils.z85.encode(bytes(nacl.public.PrivateKey(sk).public_key))
s.curve_serverkey = zmq.utils.z85.encode(pk)
s.linger = 0
s.connect("tcp://" + addr)
time.sleep(1.0)
s.close()
ctx.term()
PY
REFUSED1=$(mctl "$WORK/n3" --json status | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["mesh"]["zap_refused"])')
[ "$REFUSED1" -gt "$REFUSED0" ] || fail "the removed node's key was not refused by pop-3"
ok "the removed node's key is refused by a PoP that never talked to it about the removal"

done_testing
