#!/usr/bin/env bash
# 10% random packet loss on every node for LOSS_SECONDS (default 120): no healthy node is ever
# declared dead by anyone. Suspicions may happen (that is what they are for) but must be
# refuted. Config writes still reach every node.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/netns.sh"
netns_require
trap 'rc=$?; cleanup $rc; netns_cleanup' EXIT
LOSS_SECONDS=${LOSS_SECONDS:-120}

netns_setup 5
start_mesh_netns 5
N=("$WORK/n1" "$WORK/n2" "$WORK/n3" "$WORK/n4" "$WORK/n5")
ALL5="pop-1=alive pop-2=alive pop-3=alive pop-4=alive pop-5=alive"
wait_for 20 "5 alive members everywhere" all_see "${N[@]}" "$ALL5"
ok "5 nodes alive"

for i in 1 2 3 4 5; do netns_loss "$i" 0.10; done
end=$(( $(date +%s) + LOSS_SECONDS ))
writes=0
while [ "$(date +%s)" -lt "$end" ]; do
    i=$(( writes % 5 + 1 ))
    mctl "$WORK/n$i" config set "cfg/under-loss-$writes" "v$writes" >/dev/null
    writes=$((writes + 1))
    sleep 1
done
for i in 1 2 3 4 5; do netns_heal "$i"; done

deaths=$(cat "$WORK"/n*.log | grep -c -- "-> dead" || true)
suspicions=$(cat "$WORK"/n*.log | grep -c -- "-> suspect" || true)
[ "$deaths" -eq 0 ] || { grep -- "-> dead" "$WORK"/n*.log >&2; fail "$deaths false death declarations under 10% loss"; }
ok "${LOSS_SECONDS}s of 10% loss on every node: 0 nodes declared dead ($suspicions suspicions, all refuted)"
wait_for 5 "all alive" all_see "${N[@]}" "$ALL5"
wait_for 30 "identical stores" same_fingerprints "${N[@]}"
for d in "${N[@]}"; do
    [ "$(mctl "$d" config get "cfg/under-loss-$((writes - 1))")" = "v$((writes - 1))" ] || fail "$d missed a write"
done
ok "all $writes writes made under loss are on every node"
done_testing
