#!/usr/bin/env bash
# Past a tunnel's stream limit. Part 1, a deliberately low limit (POPMESH_TEST_MAX_STREAMS=8
# for popd and popsite): 8 connections held open, the 9th is refused at once (reset within
# 100 ms), counted in the dataplane counters and logged; once the 8 close, connections work
# again. Part 2 (the real limits): 10,000 concurrent connections through one PoP to one TCP
# resource all complete; memory per connection is measured (RSS growth / connections). The
# clients spread over source addresses 127.0.0.2-51 (200 each): a PoP admits at most
# DATAPLANE_TCP_PER_ADDR (256) connections from one address (dataplane_caps.sh tests that).
source "$(dirname "$0")/lib.sh"
: "${POPSITE:?POPSITE must point to the popsite binary}"
N10K=${DP_LIMIT_CONNS:-10000}

cat >"$WORK/lim.py" <<'PY'
import asyncio, socket, sys, time

async def echo_server(port):
    async def h(r, w):
        try:
            while True:
                b = await r.read(65536)
                if not b:
                    break
                w.write(b)
                await w.drain()
        except OSError:
            pass
        w.close()
    srv = await asyncio.start_server(h, "127.0.0.1", port, backlog=16384)
    async with srv:
        await srv.serve_forever()

async def one(port, i, hold, results, gate):
    t0 = time.time()
    try:
        # 200 per source address, under the PoP's per-address cap
        src = ("127.0.0.%d" % (2 + i // 200), 0)
        r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port, local_addr=src), 30)
        msg = b"%08d" % i
        w.write(msg)
        got = await asyncio.wait_for(r.readexactly(len(msg)), 60)
        if got != msg:
            raise ValueError("bad echo")
        results.append(("ok", time.time() - t0))
        if gate is not None:
            await gate.wait()
        w.close()
    except Exception as e:
        results.append((type(e).__name__, time.time() - t0))

async def many(port, n, pidfile):
    # n connections at once, each held until all have answered (so n are concurrent)
    results = []
    gate = asyncio.Event()
    tasks = [asyncio.ensure_future(one(port, i, True, results, gate)) for i in range(n)]
    t0 = time.time()
    while len(results) < n and time.time() - t0 < 120:
        await asyncio.sleep(0.2)
    # all answered (or failed): measure while they are held open
    print("held", sum(1 for r in results if r[0] == "ok"), flush=True)
    open(pidfile, "w").write("ready\n")
    await asyncio.sleep(1.5)
    gate.set()
    await asyncio.gather(*tasks)
    ok = sum(1 for r in results if r[0] == "ok")
    errs = {}
    for r in results:
        if r[0] != "ok":
            errs[r[0]] = errs.get(r[0], 0) + 1
    print("%d/%d ok in %.1f s, errors %s" % (ok, n, time.time() - t0, errs))
    return 0 if ok == n else 1

def refused(port):
    # prints seconds until the connection is reset/closed with no data, or "answered"/"hung"
    t0 = time.time()
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
    except ConnectionResetError:  # reset before connect() returned
        print("%.4f reset" % (time.time() - t0))
        return
    s.sendall(b"ping")
    s.settimeout(5)
    try:
        b = s.recv(10)
        print("answered" if b else "%.4f eof" % (time.time() - t0))
    except ConnectionResetError:
        print("%.4f reset" % (time.time() - t0))
    except socket.timeout:
        print("hung")

cmd, a = sys.argv[1], sys.argv[2:]
if cmd == "server": asyncio.run(echo_server(int(a[0])))
elif cmd == "many": sys.exit(asyncio.run(many(int(a[0]), int(a[1]), a[2])))
elif cmd == "refused": refused(int(a[0]))
PY
lim() { "$PY" "$WORK/lim.py" "$@"; }
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
status() { jq_ "j['dataplane']['$1']" "$WORK/n1" status; } # status FIELD: dataplane.FIELD of pop-1's status
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
fds() { ls "/proc/$1/fd" | wc -l; }

BPORT=$(free_port)
RPORT=$(free_port)
"$PY" "$WORK/lim.py" server "$BPORT" >"$WORK/backend.log" 2>&1 & # not through lim(): PIDS must get python itself, or it outlives the test
PIDS+=("$!")
init_node "$WORK/n1" pop-1

# start LIMIT: popd and popsite with POPMESH_TEST_MAX_STREAMS=LIMIT (empty: the defaults)
start() {
    POPMESH_TEST_MAX_STREAMS=$1 start_popd "$WORK/n1"
    POP=$LAST_PID
    if [ ! -d "$WORK/site" ]; then
        TOKEN=$(mctl "$WORK/n1" site add branch | grep -o 'pmt1\.[A-Za-z0-9_-]*' | head -1)
        expect_rc 0 mctl "$WORK/n1" resource add echo --site branch --target "127.0.0.1:$BPORT" --tcp-port "$RPORT"
        POPMESH_TEST_MAX_STREAMS=$1 "$POPSITE" run --data "$WORK/site" --token "$TOKEN" --pops 1 >>"$WORK/site.log" 2>&1 &
    else
        POPMESH_TEST_MAX_STREAMS=$1 "$POPSITE" run --data "$WORK/site" --pops 1 >>"$WORK/site.log" 2>&1 &
    fi
    SITE=$!
    PIDS+=("$SITE")
    wait_for 10 "the site attached" grep -q "site branch attached" "$WORK/n1.log"
    wait_for 10 "an echo through pop-1" lim refused "$RPORT" # any answer: the listener is up
}
stop() {
    kill -TERM "$SITE"; wait "$SITE" || true
    stop_popd "$POP"
    : >"$WORK/n1.log.attached"
    sed -i 's/site branch attached/site branch (was) attached/' "$WORK/n1.log"
}

# ---- part 1: a low limit ----
if [ "${DP_LIMIT_PART:-1}" = 1 ]; then
start 8
rm -f "$WORK/ready"
lim many "$RPORT" 8 "$WORK/ready" >"$WORK/many8.out" 2>&1 &
MANY=$!
wait_for 20 "8 connections held" test -f "$WORK/ready"
R=$(lim refused "$RPORT")
wait "$MANY" || fail "the 8 connections under the limit failed: $(cat "$WORK/many8.out")"
echo "9th connection: $R"
case "$R" in
*reset | *eof) awk -v t="${R%% *}" 'BEGIN{exit !(t < 0.1)}' || fail "the 9th connection was refused only after ${R}" ;;
*) fail "the 9th connection past the limit: $R" ;;
esac
ok "8 connections held (the limit), the 9th is refused at once: $R"
REF=$(status ingress_refused_limit)
[ "$REF" -ge 1 ] || fail "ingress_refused_limit is $REF"
grep -q "stream limit" "$WORK/n1.log" || fail "no log line about the stream limit"
ok "counted (dataplane.ingress_refused_limit $REF) and logged"
lim many "$RPORT" 8 "$WORK/ready2" >"$WORK/many8b.out" 2>&1 || fail "after the limit: $(cat "$WORK/many8b.out")"
ok "once they closed, 8 connections work again"
stop
fi

# ---- part 2: 10,000 concurrent connections with the real limits ----
start ""
sleep 0.5
RSS0_POP=$(rss_kib "$POP"); RSS0_SITE=$(rss_kib "$SITE")
rm -f "$WORK/ready"
lim many "$RPORT" "$N10K" "$WORK/ready" >"$WORK/many.out" 2>&1 &
MANY=$!
wait_for 150 "$N10K connections answered" test -f "$WORK/ready"
sleep 0.5
RSS1_POP=$(rss_kib "$POP"); RSS1_SITE=$(rss_kib "$SITE")
FD_POP=$(fds "$POP"); FD_SITE=$(fds "$SITE")
RC=0
wait "$MANY" || RC=$?
cat "$WORK/many.out"
[ "$RC" = 0 ] || fail "not all $N10K connections completed"
PER_POP=$(awk -v a="$RSS0_POP" -v b="$RSS1_POP" -v n="$N10K" 'BEGIN{printf "%.1f", (b-a)/n}')
PER_SITE=$(awk -v a="$RSS0_SITE" -v b="$RSS1_SITE" -v n="$N10K" 'BEGIN{printf "%.1f", (b-a)/n}')
ok "$N10K concurrent connections through one PoP all completed (popd $FD_POP fds, popsite $FD_SITE fds while held); memory per connection: popd $PER_POP KiB, popsite $PER_SITE KiB"
# Release builds measure about 8 KiB (popd) and 6 KiB (popsite); ASan's redzones and
# quarantine multiply that, hence the default bound. DP_LIMIT_MAX_KIB tightens it.
MAXK=${DP_LIMIT_MAX_KIB:-128}
awk -v p="$PER_POP" -v s="$PER_SITE" -v m="$MAXK" 'BEGIN{exit !(p < m && s < m)}' ||
    fail "memory per connection past $MAXK KiB"
done_testing
