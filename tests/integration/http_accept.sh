#!/usr/bin/env bash
# The HTTP listener out of descriptors: accept() failing with EMFILE must not spin the loop
# (the listener stays readable while connections wait in the backlog). popd runs with 160
# descriptors and caps far above that; 300 clients connect and stay. popd must use (almost)
# no CPU while it cannot accept, say so in its log (at most once a second), and serve again
# once the clients are gone.
source "$(dirname "$0")/lib.sh"

H=$(free_port)
init_node "$WORK/n1" pop-1 --http-listen "127.0.0.1:$H"
(
    ulimit -n 160
    export POPMESH_TEST_HTTP_MAX_CONNS=2000 POPMESH_TEST_HTTP_PER_IP=2000
    start_popd "$WORK/n1"
    echo "$LAST_PID" >"$WORK/pid"
)
PID=$(cat "$WORK/pid")
PIDS+=("$PID")

OUT=$("$PY" - "$H" "$PID" <<'PY'
import os, socket, sys, time
port, pid = int(sys.argv[1]), sys.argv[2]
tick = os.sysconf("SC_CLK_TCK")
def cpu():
    f = open("/proc/%s/stat" % pid).read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])
socks = []
for i in range(300):
    s = socket.socket()
    s.settimeout(2)
    s.connect(("127.0.0.1", port))
    socks.append(s)
time.sleep(0.3)
c0 = cpu()
time.sleep(2.0)
busy = (cpu() - c0) * 1000 // tick
for s in socks:
    s.close()
deadline = time.monotonic() + 5
while True:
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=3)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        status = s.recv(100).split(b"\r\n")[0].decode()
        break
    except OSError:
        if time.monotonic() > deadline:
            status = "none"
            break
        time.sleep(0.05)
print(busy, status)
PY
)
BUSY=${OUT%% *}
STATUS=${OUT#* }
[ "$BUSY" -lt 300 ] || fail "popd used $BUSY ms of CPU in 2 s while out of descriptors (spinning on accept)"
ok "out of descriptors with 300 clients waiting: popd used $BUSY ms of CPU in 2 s (no spinning)"
N=$(grep -c 'http: cannot accept connections' "$WORK/n1.log" || true)
[ "$N" -ge 1 ] && [ "$N" -le 5 ] || fail "$N 'cannot accept' log lines (want 1 to 5: once a second)"
ok "the failure is logged, at most once a second ($N lines)"
[ "$STATUS" = "HTTP/1.1 404 Not Found" ] || fail "after the clients left: '$STATUS'"
ok "once the clients are gone the listener serves again ($STATUS)"
done_testing
