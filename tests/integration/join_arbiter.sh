#!/usr/bin/env bash
# Joins are decided at one place (docs/security.md, "Joining"): concurrent joins of one
# k-use token at three different seeds admit exactly k nodes, the others are told the token
# is used up; two concurrent joins with one name at two seeds (with two tokens minted at two
# PoPs) admit exactly one. With the deciding PoP (the join arbiter, the oldest PoP) down, a
# join is refused with a clear error and records nothing; once the operator removes it, the
# next oldest PoP decides and joins work again.
#
# Every seed holds each JOIN POPMESH_TEST_JOIN_HOLD_MS after its own checks pass, before the
# use is decided and recorded: a window far wider than the joiners' start-up spread, so the
# concurrent joins really overlap (without the arbiter, every seed admits them all).
source "$(dirname "$0")/lib.sh"

export POPMESH_TEST_JOIN_HOLD_MS=1500
start_mesh 3
N=("$WORK/n1" "$WORK/n2" "$WORK/n3")
wait_for 20 "3 alive members on every node" all_see "${N[@]}" "pop-1=alive pop-2=alive pop-3=alive"
addr_of() { jq_ "[m['addr'] for m in j if m['name'] == '$1'][0]" "$WORK/n1" members; }
A1=$(addr_of pop-1)
A2=$(addr_of pop-2)
A3=$(addr_of pop-3)
SEEDS=("$A1" "$A2" "$A3")
ok "3 PoPs up: pop-1 $A1, pop-2 $A2, pop-3 $A3"

# join_bg TAG NAME SEED TOKEN: popd join through that seed only, in the background; its exit
# code lands in $WORK/TAG.rc, its stderr in $WORK/TAG.err.
declare -a JPIDS=()
join_bg() {
    local port
    port=$(free_port) # here, not in the subshell: free_port keeps its state in a file
    (
        rc=0
        POPMESH_TEST_JOIN_SEED="$3" "$POPD" join --data "$WORK/$1" --name "$2" \
            --mesh-listen "127.0.0.1:$port" "$4" >/dev/null 2>"$WORK/$1.err" || rc=$?
        echo "$rc" >"$WORK/$1.rc"
    ) &
    JPIDS+=("$!")
}
wait_joins() {
    for p in "${JPIDS[@]}"; do wait "$p" || true; done
    JPIDS=()
}
tokenuses() { # tokenuses DIR ID: uses recorded for token ID as DIR sees them
    mctl "$1" --json token list | "$PY" -c 'import json,sys; print([t["uses"] for t in json.load(sys.stdin) if t["id"]==sys.argv[1]][0])' "$2"
}

# ---- 20 concurrent joins of a 5-use token over 3 seeds (the issue's numbers) --------------
USES=5
JOINERS=20
TJ=$(mctl "$WORK/n1" --json token create --uses $USES --ttl 10m)
TOK=$("$PY" -c 'import json,sys; print(json.loads(sys.argv[1])["token"])' "$TJ")
TID=$("$PY" -c 'import json,sys; print(json.loads(sys.argv[1])["id"])' "$TJ")
for d in "${N[@]}"; do wait_for 10 "the token reaching $d" bash -c "'$MESHCTL' -d '$d' token list | grep -q $TID"; done
T0=$(date +%s%N)
for i in $(seq 1 $JOINERS); do
    join_bg "k$i" "k-$i" "${SEEDS[$((i % 3))]}" "$TOK"
done
wait_joins
T1=$(date +%s%N)
okn=0
usedup=0
for i in $(seq 1 $JOINERS); do
    rc=$(cat "$WORK/k$i.rc")
    if [ "$rc" = 0 ]; then
        okn=$((okn + 1))
    elif grep -qF "the token is used up" "$WORK/k$i.err"; then
        usedup=$((usedup + 1))
    else
        cat "$WORK/k$i.err" >&2
        fail "joiner k-$i exited $rc without saying the token is used up"
    fi
done
[ "$okn" = "$USES" ] || fail "$okn of $JOINERS concurrent joins of a $USES-use token succeeded (want $USES)"
[ "$usedup" = $((JOINERS - USES)) ] || fail "$usedup joiners were told 'used up' (want $((JOINERS - USES)))"
for d in "${N[@]}"; do
    for _ in $(seq 1 50); do # 5 s at most: the uses are pushed to every PoP at once
        [ "$(tokenuses "$d" "$TID")" = $USES ] && break
        sleep 0.1
    done
    [ "$(tokenuses "$d" "$TID")" = $USES ] || fail "$d counts $(tokenuses "$d" "$TID") uses of the token (want $USES)"
done
ok "$JOINERS concurrent joins of a $USES-use token at 3 seeds: exactly $okn admitted, $usedup told 'used up' ($(( (T1 - T0) / 1000000 )) ms); every PoP counts $USES uses"

# ---- one name, two seeds, two tokens minted at two PoPs ----------------------------------
wait_certified "$WORK/n2"
wait_certified "$WORK/n3"
T2=$(mctl "$WORK/n2" token create --ttl 10m 2>/dev/null)
T3=$(mctl "$WORK/n3" token create --ttl 10m 2>/dev/null)
sleep 0.5 # both token records reach every PoP (pushed at once; this is ample)
join_bg twin-a twin "$A2" "$T2"
join_bg twin-b twin "$A3" "$T3"
wait_joins
ra=$(cat "$WORK/twin-a.rc")
rb=$(cat "$WORK/twin-b.rc")
if [ "$ra" = 0 ] && [ "$rb" != 0 ]; then
    loser=twin-b
elif [ "$rb" = 0 ] && [ "$ra" != 0 ]; then
    loser=twin-a
else
    fail "two concurrent joins named 'twin' at pop-2 and pop-3 exited $ra and $rb (want exactly one 0)"
fi
expect_in "$WORK/$loser.err" "the name 'twin' is already taken"
# named DIR NAME: node records named NAME in DIR's store (removed or not)
named() { jq_ "sum(1 for e in j if isinstance(e['value'], dict) and e['value'].get('name') == '$2')" "$1" config list node/; }
sleep 1 # the winner's record reaches every PoP (pushed at once; this is ample)
for d in "${N[@]}"; do
    [ "$(named "$d" twin)" = 1 ] || fail "$d holds $(named "$d" twin) node records named twin (want 1)"
done
ok "two concurrent joins named 'twin' at two seeds with two tokens: exactly one admitted, the other told the name is taken"

# ---- the arbiter down ----------------------------------------------------------------------
kill -9 "${NODE_PID[1]}"
wait "${NODE_PID[1]}" 2>/dev/null || true
TJ=$(mctl "$WORK/n2" --json token create --uses 1 --ttl 10m)
TOK=$("$PY" -c 'import json,sys; print(json.loads(sys.argv[1])["token"])' "$TJ")
TID=$("$PY" -c 'import json,sys; print(json.loads(sys.argv[1])["id"])' "$TJ")
D0=$(date +%s%N)
expect_rc 1 env POPMESH_TEST_JOIN_SEED="$A2" "$POPD" join --data "$WORK/down-1" --name down-1 \
    --mesh-listen "127.0.0.1:$(free_port)" "$TOK"
D1=$(date +%s%N)
expect_in "$WORK/err" "(arbiter-down)"
expect_in "$WORK/err" "pop-1"
expect_in "$WORK/err" "meshctl node rm pop-1"
[ "$(tokenuses "$WORK/n2" "$TID")" = 0 ] || fail "a join refused for the arbiter used the token"
[ "$(named "$WORK/n2" down-1)" = 0 ] || fail "a join refused for the arbiter left a node record"
ok "arbiter (pop-1) killed: a join at pop-2 is refused in $(( (D1 - D0) / 1000000 )) ms with 'arbiter-down' naming pop-1 and what to do; nothing recorded"

mctl "$WORK/n2" node rm pop-1 >/dev/null
wait_for 10 "pop-1's removal on pop-3" bash -c "! '$MESHCTL' -d '$WORK/n3' --json members | grep -q '\"pop-1\"'"
expect_rc 0 env POPMESH_TEST_JOIN_SEED="$A3" "$POPD" join --data "$WORK/after-1" --name after-1 \
    --mesh-listen "127.0.0.1:$(free_port)" "$TOK"
expect_rc 1 env POPMESH_TEST_JOIN_SEED="$A3" "$POPD" join --data "$WORK/after-2" --name after-2 \
    --mesh-listen "127.0.0.1:$(free_port)" "$TOK"
expect_in "$WORK/err" "the token is used up"
ok "after 'meshctl node rm pop-1' the next oldest PoP decides: a join at pop-3 succeeds, the token's second use is refused"

done_testing
