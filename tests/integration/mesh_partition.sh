#!/usr/bin/env bash
# A 3 | 2 partition with iptables inside network namespaces: each side declares the other dead
# and keeps taking writes, including conflicting writes to the same key; after the heal the
# sides merge back into one mesh and every node holds identical data, where for each key the
# write with the higher (HLC version, origin) wins (docs/storage.md).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/netns.sh"
netns_require
trap 'rc=$?; cleanup $rc; netns_cleanup' EXIT

netns_setup 5
start_mesh_netns 5
N=("$WORK/n1" "$WORK/n2" "$WORK/n3" "$WORK/n4" "$WORK/n5")
ALL5="pop-1=alive pop-2=alive pop-3=alive pop-4=alive pop-5=alive"
wait_for 20 "5 alive members everywhere" all_see "${N[@]}" "$ALL5"
ok "5 nodes in 5 network namespaces, all alive"

for a in 1 2 3; do for b in 4 5; do netns_block "$a" "$b"; done; done
SIDE_A="pop-1=alive pop-2=alive pop-3=alive pop-4=dead pop-5=dead"
SIDE_B="pop-1=dead pop-2=dead pop-3=dead pop-4=alive pop-5=alive"
wait_for 30 "side A sees B dead" all_see "$WORK/n1" "$WORK/n2" "$WORK/n3" "$SIDE_A"
wait_for 30 "side B sees A dead" all_see "$WORK/n4" "$WORK/n5" "$SIDE_B"
ok "partition 3|2: each side declares the other dead"

mctl "$WORK/n1" config set cfg/only-a from-a >/dev/null
mctl "$WORK/n4" config set cfg/only-b from-b >/dev/null
mctl "$WORK/n2" config set cfg/conflict written-on-a >/dev/null
sleep 0.05
mctl "$WORK/n5" config set cfg/conflict written-on-b-later >/dev/null
mctl "$WORK/n3" config set cfg/deleted-on-b before >/dev/null
mctl "$WORK/n4" config set cfg/deleted-on-b before-b >/dev/null
sleep 0.05
mctl "$WORK/n4" config rm cfg/deleted-on-b >/dev/null
wait_for 10 "side A converged" same_fingerprints "$WORK/n1" "$WORK/n2" "$WORK/n3"
wait_for 10 "side B converged" same_fingerprints "$WORK/n4" "$WORK/n5"
[ "$(fingerprint "$WORK/n1")" != "$(fingerprint "$WORK/n4")" ] || fail "sides agree while partitioned?"
ok "writes on both sides, including the same key on both: each side converges on its own"

for i in 1 2 3 4 5; do netns_heal "$i"; done
wait_for 60 "one mesh again" all_see "${N[@]}" "$ALL5"
ok "after the heal every node sees all 5 alive again (${WAITED}s)"
wait_for 30 "identical stores" same_fingerprints "${N[@]}"
ok "identical store fingerprints on all five nodes (${WAITED}s)"

for d in "${N[@]}"; do
    [ "$(mctl "$d" config get cfg/only-a)" = from-a ] || fail "$d lost cfg/only-a"
    [ "$(mctl "$d" config get cfg/only-b)" = from-b ] || fail "$d lost cfg/only-b"
    [ "$(mctl "$d" config get cfg/conflict)" = written-on-b-later ] || fail "$d: the later write did not win"
    expect_rc 1 "$MESHCTL" -d "$d" config get cfg/deleted-on-b
done
ok "last writer wins: the later conflicting write and the later delete win on every node"
done_testing
