#!/usr/bin/env bash
# Clock skew: a PoP whose clock runs 300 s ahead (libfaketime) must not lose writes silently.
# Both sides show the offset, the skewed node refuses writes with a message that says why,
# the healthy node's writes still reach it, and both logs say what is wrong. A 2 s offset is
# shown and harmless.
source "$(dirname "$0")/lib.sh"
FAKETIME_LIB=/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1
[ -f "$FAKETIME_LIB" ] || fail "libfaketime missing (tools/setup.sh installs the faketime package)"

# start_skewed DIR OFFSET: popd under libfaketime, its wall clock moved by OFFSET ("+300").
# Only the wall clock moves: CLOCK_MONOTONIC (libev's timers, SWIM's now) stays true. ASan
# insists on being first in the preload order; libfaketime must come first to see the calls.
start_skewed() {
    local dir=$1 off=$2
    LD_PRELOAD=$FAKETIME_LIB FAKETIME="$off" FAKETIME_DONT_FAKE_MONOTONIC=1 \
        ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" \
        "$POPD" run --data "$dir" >>"$dir.log" 2>&1 &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
    wait_ready "$dir" "$LAST_PID"
}

# offset_of DIR NAME: NAME's clock_offset_ms as DIR's node sees it ("" if not measured).
offset_of() {
    mctl "$1" --json members 2>/dev/null | "$PY" -c '
import json, sys
for m in json.load(sys.stdin):
    if m["name"] == sys.argv[1] and m["state"] == "alive" and m["clock_offset_ms"] is not None:
        print(m["clock_offset_ms"])' "$2"
}
# near DIR NAME WANT_MS TOL_MS: NAME's offset seen from DIR is within TOL of WANT.
near() {
    local v
    v=$(offset_of "$1" "$2")
    [ -n "$v" ] && [ $(( v > $3 ? v - $3 : $3 - v )) -le "$4" ]
}

init_node "$WORK/n1" pop-1
start_popd "$WORK/n1"
TOKEN=$(mctl "$WORK/n1" token create --uses 2 --ttl 10m)
"$POPD" join --data "$WORK/n2" --name pop-2 --mesh-listen "127.0.0.1:$(free_port)" \
    --tunnel-listen "127.0.0.1:$(free_port)" "$TOKEN" >/dev/null
start_skewed "$WORK/n2" +300
P2=$LAST_PID

wait_for 20 "both alive with a clock estimate" near "$WORK/n1" pop-2 300000 2000
wait_for 10 "pop-2 sees pop-1 300 s behind" near "$WORK/n2" pop-1 -300000 2000
ok "members: pop-1 sees pop-2 at $(offset_of "$WORK/n1" pop-2) ms, pop-2 sees pop-1 at $(offset_of "$WORK/n2" pop-1) ms"
expect_rc 0 mctl "$WORK/n2" members
expect_in "$WORK/out" "CLOCK"
expect_in "$WORK/out" "-300."
ok "members shows a CLOCK column"

# status on the skewed node: its offset against the mesh and that writes are refused.
expect_rc 0 mctl "$WORK/n2" --json status
"$PY" -c '
import json, sys
c = json.load(open(sys.argv[1]))["clock"]
assert abs(c["offset_ms"] - 300000) < 2000 and c["peers"] == 1 and c["writes"] == "refused", c' "$WORK/out"
expect_rc 0 mctl "$WORK/n2" status
expect_in "$WORK/out" "WRITES REFUSED"
ok "status on pop-2: +300 s against the mesh, writes refused"

# The skewed node refuses writes, and says why.
expect_rc 1 mctl "$WORK/n2" config set cfg/skewed '"lost"'
expect_in "$WORK/err" "refused: this node's clock is 300."
expect_in "$WORK/err" "ahead of the mesh"
expect_in "$WORK/err" "fix its time (NTP)"
ok "config set on pop-2 exits 1: $(cat "$WORK/err")"
expect_rc 1 mctl "$WORK/n2" site add far-site
expect_in "$WORK/err" "refused: this node's clock is"
ok "site add on pop-2 refused the same way"
expect_rc 0 mctl "$WORK/n2" config list
ok "reads still work on pop-2"

# The healthy node's writes work and reach the skewed one (its versions are in the past
# there, which the store accepts).
expect_rc 0 mctl "$WORK/n1" config set cfg/healthy '"reached"'
wait_for 10 "pop-1's write to reach pop-2" mctl "$WORK/n2" config get cfg/healthy
ok "pop-1's write reached pop-2"

# Logs on both sides. pop-2 published its tunnel address at start: pop-1 refused it.
wait_for 15 "pop-1 to log the refused versions" grep -q "ahead of this node's clock" "$WORK/n1.log"
grep "ahead of this node's clock" "$WORK/n1.log" | head -1 | grep -q "pop-2" ||
    fail "pop-1's log does not name pop-2: $(grep "ahead of this node" "$WORK/n1.log" | head -1)"
ok "pop-1 logs: $(grep "ahead of this node's clock" "$WORK/n1.log" | head -1 | cut -c1-160)"
wait_for 10 "pop-2 to log its own skew" grep -q "clock: this node's clock is 3" "$WORK/n2.log"
ok "pop-2 logs: $(grep "clock: this node's clock is" "$WORK/n2.log" | head -1 | cut -c1-160)"
grep -q "clock: this node's clock is .* ahead of the mesh" "$WORK/n1.log" && fail "pop-1 blamed itself"
wait_for 10 "pop-1 to note that it is behind its one peer" grep -q "behind the mesh" "$WORK/n1.log"
ok "pop-1 notes it is behind its only peer, and keeps writing"

# A small offset is shown and harmless. pop-2 leaves first, so that pop-1's only peer is
# the new one.
stop_popd "$P2"
wait_for 10 "pop-2 gone from pop-1's view" sh -c "! mctl '$WORK/n1' --json members | grep -q '\"pop-2\".*alive'"
"$POPD" join --data "$WORK/n3" --name pop-3 --mesh-listen "127.0.0.1:$(free_port)" \
    --tunnel-listen "127.0.0.1:$(free_port)" "$TOKEN" >/dev/null
start_skewed "$WORK/n3" +2
wait_for 20 "pop-3 at +2 s" near "$WORK/n1" pop-3 2000 500
wait_for 10 "pop-3 sees pop-1 at -2 s" near "$WORK/n3" pop-1 -2000 500
ok "a 2 s offset is shown: $(offset_of "$WORK/n1" pop-3) ms"
expect_rc 0 mctl "$WORK/n3" config set cfg/small '"ok"'
wait_for 10 "pop-3's write to reach pop-1" mctl "$WORK/n1" config get cfg/small
ok "pop-3 (+2 s) writes and its write reaches pop-1"
grep -q "clock: this node's clock is" "$WORK/n3.log" && fail "pop-3 logged a skew for 2 s"
ok "no skew warning for 2 s"

for d in n1 n3; do
    grep -q 'ERROR: AddressSanitizer' "$WORK/$d.log" && fail "ASan report in $d.log"
done
ok "no sanitizer report"
done_testing
