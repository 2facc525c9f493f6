#!/usr/bin/env bash
# UDP resource datagram sizes at the limits, with real processes: one PoP whose ingress address
# is ::1 (IPv6 carries UDP payloads up to 65,527 bytes, IPv4 only 65,507), one site, a UDP echo
# server behind it. Through the mesh: an empty datagram comes back empty; one of 65,507 bytes
# (the payload limit) comes back whole and byte-exact; one of 65,508 and one of 65,527 are
# dropped at the PoP and counted as oversize (udp_dropped.oversize), and the same client flow
# is still echoed afterwards. Then a UDP port held by another program: the bind failure is
# logged and retried, and the resource is served once the port is free.
source "$(dirname "$0")/lib.sh"
: "${POPSITE:?POPSITE must point to the popsite binary}"

cat >"$WORK/udp.py" <<'PY'
import os, socket, sys, time
cmd = sys.argv[1]
if cmd == "echo":  # echo PORT: a UDP echo server on 127.0.0.1
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    s.bind(("127.0.0.1", int(sys.argv[2])))
    while True:
        b, a = s.recvfrom(65535)
        s.sendto(b, a)
elif cmd == "sizes":  # sizes PORT N...: from one IPv6 socket, each size then "ping"; prints results
    port = int(sys.argv[2])
    c = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    c.bind(("::1", 0))
    c.settimeout(1.5)
    out = []
    for n in map(int, sys.argv[3:]):
        msg = os.urandom(n)
        c.sendto(msg, ("::1", port))
        try:
            b = c.recv(70000)
            out.append("%d:%s" % (n, "same" if b == msg else "differs(%d)" % len(b)))
        except socket.timeout:
            out.append("%d:none" % n)
        c.sendto(b"ping", ("::1", port))
        try:
            out.append("ping:" + ("ok" if c.recv(100) == b"ping" else "bad"))
        except socket.timeout:
            out.append("ping:none")
    print(" ".join(out))
elif cmd == "until":  # until PORT: "ping" through the mesh answered (one try)
    c = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    c.settimeout(0.5)
    c.sendto(b"ping", ("::1", int(sys.argv[2])))
    sys.exit(0 if c.recv(100) == b"ping" else 1)
PY
EPORT=$(free_port)
"$PY" "$WORK/udp.py" echo "$EPORT" >"$WORK/echo.log" 2>&1 &
PIDS+=("$!")

init_node "$WORK/n1" pop-1 --ingress-address ::1
start_popd "$WORK/n1"
expect_rc 0 mctl "$WORK/n1" site add s1
TOKEN=$(cat "$WORK/out")
RP=$(free_port)
expect_rc 0 mctl "$WORK/n1" resource add echo --site s1 --target "127.0.0.1:$EPORT" --udp-port "$RP"
"$POPSITE" run --data "$WORK/site" --token "$TOKEN" >>"$WORK/site.log" 2>&1 &
PIDS+=("$!")
wait_for 20 "an echo through [::1]:$RP" "$PY" "$WORK/udp.py" until "$RP"
ok "a UDP resource on a PoP whose ingress address is ::1 echoes through the site"

RES=$("$PY" "$WORK/udp.py" sizes "$RP" 0 65507 65508 65527)
echo "# $RES"
[ "$RES" = "0:same ping:ok 65507:same ping:ok 65508:none ping:ok 65527:none ping:ok" ] ||
    fail "sizes through the mesh: $RES"
OV=$(mctl "$WORK/n1" --json status | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["dataplane"]["udp_dropped"]["oversize"])')
[ "$OV" = 2 ] || fail "udp_dropped.oversize is $OV, want 2"
ok "0 bytes and 65,507 bytes come back byte-exact; 65,508 and 65,527 dropped and counted (oversize $OV); the flow still echoes"

# A UDP port held by another program: the PoP says so, retries, and binds once it is free.
P2=$(free_port)
"$PY" -c 'import socket,sys,time; s=socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); s.bind(("::1", int(sys.argv[1]))); time.sleep(float(sys.argv[2]))' "$P2" 3 &
HOLDER=$!
sleep 0.3
expect_rc 0 mctl "$WORK/n1" resource add echo2 --site s1 --target "127.0.0.1:$EPORT" --udp-port "$P2"
wait_for 5 "the bind failure logged" grep -q "resource echo2: cannot bind UDP \[::1\]:$P2: Address already in use (retrying every second)" "$WORK/n1.log"
wait "$HOLDER"
wait_for 5 "echo2 bound once the port is free" grep -q "resource echo2: listening on UDP \[::1\]:$P2" "$WORK/n1.log"
wait_for 5 "an echo through [::1]:$P2" "$PY" "$WORK/udp.py" until "$P2"
ok "a UDP port held by another program: bind failure logged, retried, served ${WAITED} s after it was freed"
done_testing
