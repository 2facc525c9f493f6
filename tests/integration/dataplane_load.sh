#!/usr/bin/env bash
# The data plane under load: 1 GiB each way byte-exact, 1000 concurrent streams, and a reader
# that stops reading (every process's memory must stay bounded: backpressure reaches the
# sender). One PoP, one site, backends in python; all on loopback.
source "$(dirname "$0")/lib.sh"
: "${POPSITE:?POPSITE must point to the popsite binary}"
ulimit -n 8192 2>/dev/null || ulimit -n "$(ulimit -Hn)"
GIB=${LOAD_BYTES:-1073741824}
# Memory is measured below: keep ASan's quarantine of freed blocks small, so RSS shows what
# the daemons hold rather than what the sanitizer keeps for use-after-free detection.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=4"

init_node "$WORK/n1" pop-1 --ingress-address 127.0.0.51
start_popd "$WORK/n1"
POP_PID=$LAST_PID
SITE_TOKEN=$(mctl "$WORK/n1" site add branch | grep -o 'pmt1\.[A-Za-z0-9_-]*' | head -1)
"$POPSITE" run --data "$WORK/site" --token "$SITE_TOKEN" >>"$WORK/site.log" 2>&1 &
SITE_PID=$!
PIDS+=("$SITE_PID")

# Backends: "sink" hashes what it gets and answers the digest after the client's FIN;
# "source" sends N deterministic bytes then closes; "echo" echoes; "flood" sends forever.
cat >"$WORK/backend.py" <<'EOF'
import hashlib, socket, sys, threading
mode, port = sys.argv[1], int(sys.argv[2])
def pattern(i):  # 1 MiB blocks that differ by their index
    return hashlib.sha256(str(i).encode()).digest() * 32768
def serve(c):
    with c:
        if mode == "sink":
            h = hashlib.sha256()
            while True:
                d = c.recv(1 << 20)
                if not d: break
                h.update(d)
            c.sendall(h.hexdigest().encode())
        elif mode == "source":
            n = int(c.recv(64).decode())
            for i in range(n >> 20):
                c.sendall(pattern(i))
        elif mode == "echo":
            while True:
                d = c.recv(65536)
                if not d: return
                c.sendall(d)
        elif mode == "flood":
            global flooded
            if c.recv(2) != b"go":  # only the test's client, not the readiness probes
                return
            blk = b"x" * 65536
            try:
                while True:
                    c.sendall(blk); flooded += len(blk)
            except OSError:
                pass
flooded = 0
def report():  # the flood's byte count, for the test to see whether the sender is blocked
    import time, os
    while True:
        with open(sys.argv[3] + ".tmp", "w") as f: f.write(str(flooded))
        os.replace(sys.argv[3] + ".tmp", sys.argv[3]); time.sleep(0.1)
if mode == "flood":
    threading.Thread(target=report, daemon=True).start()
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port)); s.listen(2048)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
EOF
declare -A BPORT RPORT
for m in sink source echo flood; do
    BPORT[$m]=$(free_port)
    RPORT[$m]=$(free_port)
    "$PY" "$WORK/backend.py" "$m" "${BPORT[$m]}" "$WORK/flood.count" >"$WORK/backend-$m.log" 2>&1 &
    PIDS+=("$!")
    mctl "$WORK/n1" resource add "$m" --site branch --target "127.0.0.1:${BPORT[$m]}" \
        --tcp-port "${RPORT[$m]}" >/dev/null
done
port_open() { "$PY" -c 'import socket,sys; socket.create_connection(("127.0.0.51", int(sys.argv[1])), timeout=1).close()' "$1"; }
for m in sink source echo flood; do wait_for 10 "resource $m listening" port_open "${RPORT[$m]}"; done
echo_ok() {
    "$PY" -c '
import socket, sys
c = socket.create_connection(("127.0.0.51", int(sys.argv[1])), timeout=3)
c.sendall(b"hello"); sys.exit(0 if c.recv(5) == b"hello" else 1)' "${RPORT[echo]}"
}
wait_for 15 "the site carries a stream" echo_ok

# 1. Upload: the client's hash and the backend's must match.
OUT=$("$PY" -c '
import hashlib, socket, sys, time
total = int(sys.argv[2]); c = socket.create_connection(("127.0.0.51", int(sys.argv[1])))
h = hashlib.sha256(); t = time.time(); i = 0; sent = 0
while sent < total:
    blk = hashlib.sha256(b"up%d" % i).digest() * 32768; i += 1
    blk = blk[: total - sent]; h.update(blk); c.sendall(blk); sent += len(blk)
c.shutdown(socket.SHUT_WR)
got = b""
while True:
    d = c.recv(100)
    if not d: break
    got += d
print(h.hexdigest(), got.decode(), "%.0f" % (total / (time.time() - t) / 1e6))' "${RPORT[sink]}" "$GIB")
read -r MINE THEIRS MBS <<<"$OUT"
[ -n "$MINE" ] && [ "$MINE" = "$THEIRS" ] || fail "upload digest mismatch: sent $MINE, backend got ${THEIRS:-nothing}"
ok "$GIB bytes uploaded byte-exact through PoP and site (sha256 equal, $MBS MB/s, ASan build)"

# 2. Download: the client's hash of what arrived equals the hash of what the backend sent.
OUT=$("$PY" -c '
import hashlib, socket, sys, time
total = int(sys.argv[2]); c = socket.create_connection(("127.0.0.51", int(sys.argv[1])))
c.sendall(str(total).encode()); t = time.time()
h = hashlib.sha256(); n = 0
while True:
    d = c.recv(1 << 20)
    if not d: break
    h.update(d); n += len(d)
want = hashlib.sha256()
for i in range(total >> 20):
    want.update(hashlib.sha256(str(i).encode()).digest() * 32768)
print(n, h.hexdigest() == want.hexdigest(), "%.0f" % (total / (time.time() - t) / 1e6))' "${RPORT[source]}" "$GIB")
read -r GOT SAME MBS <<<"$OUT"
[ "$GOT" = "$GIB" ] && [ "$SAME" = True ] || fail "download: got $GOT bytes, digest equal: $SAME"
ok "$GIB bytes downloaded byte-exact (sha256 equal, $MBS MB/s incl. hashing twice)"

# 3. 1000 concurrent streams, each an echo of its own 4 KiB.
OUT=$("$PY" -c '
import os, selectors, socket, sys, time
port = int(sys.argv[1]); N = 1000; sel = selectors.DefaultSelector(); conns = []
for i in range(N):
    # 200 per source address: a PoP admits at most 256 connections from one address
    c = socket.create_connection(("127.0.0.51", port), source_address=("127.0.0.%d" % (101 + i // 200), 0)); conns.append(c)
t = time.time()
want = {}
for i, c in enumerate(conns):
    msg = os.urandom(4096); want[c] = msg; c.sendall(msg); c.setblocking(False)
    sel.register(c, selectors.EVENT_READ, b"")
got = {c: b"" for c in conns}; done = 0; deadline = time.time() + 60
while done < N and time.time() < deadline:
    for key, _ in sel.select(timeout=1):
        c = key.fileobj
        d = c.recv(8192)
        if not d: sel.unregister(c); continue
        got[c] += d
        if len(got[c]) == 4096: done += 1; sel.unregister(c)
ok = sum(1 for c in conns if got[c] == want[c])
print(ok, "%.2f" % (time.time() - t))' "${RPORT[echo]}")
read -r NOK SECS <<<"$OUT"
[ "$NOK" = 1000 ] || fail "1000 concurrent streams: only $NOK echoed correctly"
ok "1000 concurrent streams all echoed their own 4 KiB (in ${SECS}s)"

# 4. A reader that stops reading: the backend floods, the client reads 1 MiB then stalls.
# Backpressure must reach the backend (its sends block: its byte count stops growing) and no
# process may keep buffering (RSS flat while stalled).
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
POP0=$(rss_kib "$POP_PID"); SITE0=$(rss_kib "$SITE_PID")
"$PY" -c '
import socket, sys, time
c = socket.create_connection(("127.0.0.51", int(sys.argv[1])))
c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
c.sendall(b"go")
n = 0
while n < (1 << 20):
    n += len(c.recv(65536))
time.sleep(20)  # stalled: nothing read (killed by the test before that)
' "${RPORT[flood]}" &
STALL=$!
PIDS+=("$STALL")
# Kernel socket buffers fill first (autotuned up to tcp_rmem/tcp_wmem max, tens of MiB on
# loopback); after that only the stalled receiver's kernel compacting its buffer lets a few
# KiB a second through. Without backpressure the backend would go on at hundreds of MB/s.
sleep 5
SENT1=$(cat "$WORK/flood.count"); POP1=$(rss_kib "$POP_PID"); SITE1=$(rss_kib "$SITE_PID")
sleep 3
SENT2=$(cat "$WORK/flood.count"); POP2=$(rss_kib "$POP_PID"); SITE2=$(rss_kib "$SITE_PID")
kill "$STALL" 2>/dev/null || true
CREEP=$(( (SENT2 - SENT1) / 1024 ))
[ "$CREEP" -lt 2048 ] || fail "the backend kept sending to a stalled reader: $CREEP KiB in 3 s"
INFLIGHT=$(( SENT2 / 1048576 ))
RMEM=$(awk '{print int($3 / 1048576)}' /proc/sys/net/ipv4/tcp_rmem)
WMEM=$(awk '{print int($3 / 1048576)}' /proc/sys/net/ipv4/tcp_wmem)
LIMIT=$(( RMEM + 2 * WMEM + 8 )) # one receive and two send buffers, plus windows and slack
[ "$INFLIGHT" -lt "$LIMIT" ] || fail "$INFLIGHT MiB left the backend for a reader that took 1 MiB (limit $LIMIT)"
GROW_POP=$(( (POP2 - POP1) / 1024 ))
GROW_SITE=$(( (SITE2 - SITE1) / 1024 ))
[ "$GROW_POP" -lt 4 ] && [ "$GROW_SITE" -lt 4 ] ||
    fail "while stalled popd grew $GROW_POP MiB and popsite $GROW_SITE MiB"
HELD_POP=$(( (POP2 - POP0) / 1024 ))
HELD_SITE=$(( (SITE2 - SITE0) / 1024 ))
# A stream's window grows to 8 MiB at most (DATAPLANE_WINDOW_MAX) while its consumer keeps
# up; that is the most either process may hold for it, plus buffers.
[ "$HELD_POP" -lt 16 ] && [ "$HELD_SITE" -lt 16 ] ||
    fail "the stalled stream costs popd $HELD_POP MiB and popsite $HELD_SITE MiB (bound: one 8 MiB window)"
ok "a reader that stops reading: the backend is held after $INFLIGHT MiB in flight (kernel socket buffers, limit $LIMIT; +$CREEP KiB in 3 s), popd and popsite flat while stalled (+$GROW_POP/+$GROW_SITE MiB; $HELD_POP/$HELD_SITE MiB held for it)"
kill -0 "$POP_PID" && kill -0 "$SITE_PID" || fail "a daemon died under load"
echo_ok || fail "no echo after the load"
ok "popd and popsite are alive and serving after the load"
done_testing
