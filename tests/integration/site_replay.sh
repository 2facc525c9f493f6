#!/usr/bin/env bash
# A recorded tunnel HELLO replayed to the PoP. popsite dials the PoP through a small recording
# proxy (the PoP advertises the proxy's address as its tunnel endpoint), which keeps the first
# record of every connection: popsite's HELLOs. Replayed to the PoP's real tunnel port, each
# copy must be refused by the replay filter (counted in dataplane.hello_replays, logged), no
# "site ... attached" may appear for them, and connections through that PoP stay fast while
# the copies hang around. Then, the PoP restarted with the site stopped (its replay filter is
# empty): a copy passes the filter but is never attached, since it cannot send a record sealed
# with the session's keys; it dies at the handshake deadline (dataplane.hello_unconfirmed).
source "$(dirname "$0")/lib.sh"
: "${POPSITE:?POPSITE must point to the popsite binary}"

cat >"$WORK/rp.py" <<'PY'
import asyncio, os, socket, sys, time

async def proxy(listen_port, target_port, outdir):
    n = [0]
    async def pipe(r, w, first=None):
        try:
            if first is not None:
                hdr = await r.readexactly(4)
                body = await r.readexactly(int.from_bytes(hdr[1:4], "big"))
                n[0] += 1
                path = os.path.join(outdir, "hello.%d" % n[0])
                with open(path + ".tmp", "wb") as f:
                    f.write(hdr + body)
                os.rename(path + ".tmp", path)
                w.write(hdr + body)
            while True:
                b = await r.read(65536)
                if not b:
                    break
                w.write(b)
                await w.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            w.close()
    async def handle(cr, cw):
        try:
            sr, sw = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            cw.close()
            return
        await asyncio.gather(pipe(cr, sw, first=True), pipe(sr, cw))
    srv = await asyncio.start_server(handle, "127.0.0.1", listen_port)
    async with srv:
        await srv.serve_forever()

def replay(port, files, copies, hold):
    # From four source addresses, so the copies held open stay under the PoP's per-address cap
    # on handshakes in progress (dataplane_caps tests that cap): every copy must reach the
    # replay filter, which is what this test measures.
    socks = []
    for _ in range(copies):
        for f in files:
            src = ("127.0.0.%d" % (2 + len(socks) % 4), 0)
            s = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=src)
            s.sendall(open(f, "rb").read())
            socks.append(s)
    time.sleep(hold)
    for s in socks:
        s.close()

def rtts(host, port, n):
    worst = 0.0
    for i in range(n):
        t0 = time.time()
        try:
            one_rtt(host, port)
        except OSError as e:
            print("99 (%r)" % e)
            sys.exit(1)
        worst = max(worst, time.time() - t0)
        time.sleep(0.01)
    print("%.4f" % worst)

def one_rtt(host, port):
    if True:
        s = socket.create_connection((host, port), timeout=5)
        s.sendall(b"x" * 64)
        got = b""
        while len(got) < 64:
            b = s.recv(64 - len(got))
            if not b:
                raise EOFError("EOF")
            got += b
        s.close()


cmd, a = sys.argv[1], sys.argv[2:]
if cmd == "proxy": asyncio.run(proxy(int(a[0]), int(a[1]), a[2]))
elif cmd == "replay": replay(int(a[0]), a[3:], int(a[1]), float(a[2]))
elif cmd == "rtts": rtts(a[0], int(a[1]), int(a[2]))
PY
rp() { "$PY" "$WORK/rp.py" "$@"; }
status() { # status FIELD: dataplane.FIELD of pop-1's status
    mctl "$WORK/n1" --json status | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["dataplane"][sys.argv[1]])' "$1"
}

T=$(free_port)
P=$(free_port)
BPORT=$(free_port)
RPORT=$(free_port)
mkdir -p "$WORK/cap"
rp proxy "$P" "$T" "$WORK/cap" >"$WORK/proxy.log" 2>&1 &
PIDS+=("$!")
"$PY" "$(dirname "$0")/echo_server.py" "$BPORT" >"$WORK/backend.log" 2>&1 &
PIDS+=("$!")
"$POPD" init --data "$WORK/n1" --name pop-1 --mesh-listen "127.0.0.1:$(free_port)" \
    --tunnel-listen "127.0.0.1:$T" --tunnel-advertise "127.0.0.1:$P" >/dev/null
start_popd "$WORK/n1"
POP=$LAST_PID
TOKEN=$(mctl "$WORK/n1" site add branch | grep -o 'pmt1\.[A-Za-z0-9_-]*' | head -1)
expect_rc 0 mctl "$WORK/n1" resource add echo --site branch --target "127.0.0.1:$BPORT" \
    --tcp-port "$RPORT"
"$POPSITE" run --data "$WORK/site" --token "$TOKEN" --pops 1 >>"$WORK/site.log" 2>&1 &
SITE=$!
PIDS+=("$SITE")
wait_for 10 "site attached" grep -q "site branch attached" "$WORK/n1.log"
wait_for 5 "an echo through pop-1" rp rtts 127.0.0.1 "$RPORT" 1
mapfile -t HELLOS < <(ls "$WORK"/cap/hello.*)
[ "${#HELLOS[@]}" -ge 1 ] || fail "the proxy recorded no HELLO"
ok "popsite's tunnel went through the recording proxy; ${#HELLOS[@]} HELLO(s) recorded ($(stat -c %s "${HELLOS[0]}") bytes)"

# ---- replays while the site is attached ----
COPIES=20
NREPLAY=$((COPIES * ${#HELLOS[@]}))
rp replay "$T" "$COPIES" 3 "${HELLOS[@]}" &
REPLAYER=$!
PIDS+=("$REPLAYER")
sleep 0.5
WORST=$(rp rtts 127.0.0.1 "$RPORT" 50) || true
wait "$REPLAYER"
ATT=$(grep -c "site branch attached" "$WORK/n1.log")
[ "$ATT" = 1 ] || fail "the PoP logged 'site branch attached' $ATT times (1 expected: the real tunnel)"
ok "$NREPLAY replayed HELLOs: none attached"
REP=$(status hello_replays)
[ "$REP" = "$NREPLAY" ] || fail "hello_replays is $REP, expected $NREPLAY"
grep -q "replayed HELLO of site branch" "$WORK/n1.log" || fail "no log line about the replays"
LINES=$(grep -c "replayed HELLO of site branch" "$WORK/n1.log")
[ "$LINES" -le 5 ] || fail "$LINES log lines for $NREPLAY replays: not rate limited"
ok "each replay refused by the timestamp filter and counted (hello_replays $REP), logged in $LINES line(s)"
awk -v w="${WORST%% *}" 'BEGIN{exit !(w < 0.2)}' ||
    fail "the slowest of 50 round trips through pop-1 during the replays took ${WORST}s"
ok "50 round trips through pop-1 during the replays: slowest ${WORST}s"

# ---- a PoP with an empty filter (restarted), the site away ----
kill -TERM "$SITE"
wait "$SITE" || true
stop_popd "$POP"
start_popd "$WORK/n1" --log-level debug
POP=$LAST_PID
rp replay "$T" 1 6 "${HELLOS[@]}" &
REPLAYER=$!
PIDS+=("$REPLAYER")
unconfirmed() { [ "$(status hello_unconfirmed)" = "${#HELLOS[@]}" ]; }
wait_for 10 "the replays to be dropped (hello_unconfirmed $(status hello_unconfirmed))" unconfirmed
wait "$REPLAYER" || true
ATT=$(grep -c "site branch attached" "$WORK/n1.log")
[ "$ATT" = 1 ] || fail "after the restart a replayed HELLO attached the site ($ATT attach lines)"
[ "$(status sites_attached)" = 0 ] || fail "a site counts as attached"
ok "after a restart a replayed HELLO passes the (empty) filter, but is never attached: dropped at the handshake deadline (hello_unconfirmed ${#HELLOS[@]})"
done_testing
