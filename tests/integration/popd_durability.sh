#!/usr/bin/env bash
# Acknowledged writes survive SIGKILL of popd: a client streams config.set requests and logs
# each key only after popd's OK arrived; popd is killed mid-stream (three times, at different
# moments); after each restart every acknowledged key must be there with its value, and the
# store must open cleanly. Also: a full store map gives a clear error and popd keeps serving.
source "$(dirname "$0")/lib.sh"
D="$WORK/n1"
init_node "$D" pop-dur --store-map-size 2M

WRITER=$(cat <<'PY'
import sys, os
sys.path.insert(0, os.environ["LIBDIR"])
from ctlclient import Ctl
sock, ackfile, start = sys.argv[1], sys.argv[2], int(sys.argv[3])
c = Ctl(sock)
with open(ackfile, "a") as acks:
    i = start
    while True:
        try:
            st, body = c.call("config.set", {"key": "dur/%07d" % i, "value": "v%d" % i})
        except Exception:
            break  # popd died: everything acknowledged so far is in the ack file
        if st != 0:
            print("unexpected status", st, body, file=sys.stderr)
            sys.exit(1)
        acks.write("%d\n" % i)
        acks.flush()
        i += 1
PY
)
export LIBDIR
LIBDIR=$(dirname "$0")
: >"$WORK/acks"
next=0
for delay in 0.3 0.7 1.1; do
    start_popd "$D"
    PID=$LAST_PID
    before=$(wc -l <"$WORK/acks")
    "$PY" -c "$WRITER" "$D/control.sock" "$WORK/acks" "$next" &
    WPID=$!
    sleep "$delay"
    kill -9 "$PID"
    wait "$WPID" || fail "writer failed"
    wait "$PID" 2>/dev/null || true
    n=$(wc -l <"$WORK/acks")
    [ "$n" -gt "$before" ] || fail "no writes were acknowledged in ${delay}s"
    start_popd "$D"
    PID=$LAST_PID
    "$PY" - "$D/control.sock" "$WORK/acks" <<'PY'
import sys, os
sys.path.insert(0, os.environ["LIBDIR"])
from ctlclient import Ctl
c = Ctl(sys.argv[1])
missing = []
acked = [int(x) for x in open(sys.argv[2])]
for i in acked:
    st, body = c.call("config.get", {"key": "dur/%07d" % i})
    if st != 0 or body["value"] != "v%d" % i:
        missing.append(i)
if missing:
    print("FAIL: %d acknowledged writes lost, e.g. %s" % (len(missing), missing[:10]))
    sys.exit(1)
print("all %d acknowledged writes present" % len(acked))
PY
    ok "SIGKILL after ${delay}s: all $(wc -l <"$WORK/acks") acknowledged writes survive"
    stop_popd "$PID"
    [ "$STOP_RC" -eq 0 ] || fail "popd did not stop cleanly after recovery"
    next=$(( $(tail -n 1 "$WORK/acks") + 1000 ))
done

# ---- a full map ----
start_popd "$D"
"$PY" - "$D/control.sock" <<'PY'
import sys, os
sys.path.insert(0, os.environ["LIBDIR"])
from ctlclient import Ctl
c = Ctl(sys.argv[1])
big = "x" * 60000
written = 0
for i in range(200):
    st, body = c.call("config.set", {"key": "fill/%03d" % i, "value": big})
    if st != 0:
        assert st == 4 and "store is full" in body["error"], body
        print("map full after %d values: %s" % (written, body["error"]))
        break
    written += 1
else:
    print("FAIL: 12 MB of values fitted in a 2 MiB map"); sys.exit(1)
# reads still work, the failed write left nothing behind, small writes may still fit
st, body = c.call("config.get", {"key": "fill/000"})
assert st == 0 and body["value"] == big, st
st, body = c.call("config.get", {"key": "fill/%03d" % written})
assert st == 1, (st, body)
# deleting makes room again
for i in range(written):
    st, body = c.call("config.del", {"key": "fill/%03d" % i})
    assert st == 0, body
# LMDB reuses the deleted values' pages once no reader's snapshot still sees them: a read
# transaction of the daemon's other work (anti-entropy, a scrape) can pin them for a moment.
import time
for attempt in range(30):
    st, body = c.call("config.set", {"key": "fill/again", "value": big})
    if st == 0:
        break
    assert st == 4 and "store is full" in body["error"], body
    time.sleep(0.1)
assert st == 0, body
print("after deletes, writes work again (attempt %d)" % (attempt + 1))
PY
ok "full map: clear error, reads work, nothing half-written, deletes make room"
done_testing
