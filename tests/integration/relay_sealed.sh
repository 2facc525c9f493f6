#!/usr/bin/env bash
# Sealed streams (tunnel/seal.h) with real processes: two PoPs and one popsite holding a
# single tunnel, so a connection entering at the PoP without the tunnel is carried by the
# other (the relay). A random canary pattern goes through, then every readable mapping of the
# relay PoP's memory is read through /proc/PID/mem and searched for it.
# 1. sealed: the canary crosses and comes back intact; the ingress says it sealed the stream,
#    the relay that it carried a sealed one; the relay's memory holds no copy of the canary,
#    while the ingress's (which reads it from the client) and the site's (which opens it) do:
#    the search works.
# 2. the control, so the test can fail: the ingress restarted with seal-streams = no; the
#    same check now finds the canary in the relay's memory (it opened and sealed every byte).
source "$(dirname "$0")/lib.sh"
: "${POPSITE:?POPSITE must point to the popsite binary}"

cat >"$WORK/canary.py" <<'PY'
import os, socket, sys, time

def send(host, port, canary, total):
    # total bytes of the canary repeated, echoed back and checked; the connection is closed
    # only after the scan (the caller kills us), so buffers are still in use if anyone kept one
    s = socket.create_connection((host, port), timeout=20)
    blob = (canary * (total // len(canary) + 1))[:total]
    s.sendall(blob)
    got = bytearray()
    while len(got) < total:
        b = s.recv(262144)
        if not b:
            print("EOF after %d of %d bytes" % (len(got), total)); return 1
        got += b
    if bytes(got) != blob:
        print("echo differs"); return 1
    print("ok %d bytes" % total)
    sys.stdout.flush()
    time.sleep(60)
    return 0

def scan(pid, canary):
    # every readable private or anonymous mapping up to 1 GiB (ASan's shadow is far larger
    # and holds no data); returns how many times the canary occurs
    hits = 0
    with open("/proc/%d/maps" % pid) as m, open("/proc/%d/mem" % pid, "rb", 0) as mem:
        for line in m:
            f = line.split()
            lo, hi = (int(x, 16) for x in f[0].split("-"))
            if "r" not in f[1] or hi - lo > (1 << 30):
                continue
            name = f[5] if len(f) > 5 else ""
            if name in ("[vvar]", "[vsyscall]", "[vdso]"):
                continue
            try:
                mem.seek(lo)
                data = mem.read(hi - lo)
            except (OSError, ValueError, OverflowError):
                continue
            hits += data.count(canary)
    return hits

if sys.argv[1] == "send":
    sys.exit(send(sys.argv[2], int(sys.argv[3]), sys.argv[4].encode(), int(sys.argv[5])))
elif sys.argv[1] == "scan":
    print(scan(int(sys.argv[2]), sys.argv[3].encode()))
PY
cy() { "$PY" "$WORK/canary.py" "$@"; }

ING=("" 127.0.0.21 127.0.0.22)
N=("" "$WORK/n1" "$WORK/n2")
declare -a POPPID
init_node "${N[1]}" pop-1 --ingress-address "${ING[1]}"
start_popd "${N[1]}" --log-level debug
POPPID[1]=$LAST_PID
TOKEN=$(mctl "${N[1]}" token create --uses 1 --ttl 10m 2>/dev/null)
"$POPD" join --data "${N[2]}" --name pop-2 --mesh-listen "127.0.0.1:$(free_port)" \
    --tunnel-listen "127.0.0.1:$(free_port)" --ingress-address "${ING[2]}" "$TOKEN" >/dev/null
start_popd "${N[2]}" --log-level debug
POPPID[2]=$LAST_PID
wait_for 20 "2 alive members on both" all_see "${N[1]}" "${N[2]}" "pop-1=alive pop-2=alive"

BPORT=$(free_port)
"$PY" "$(dirname "$0")/echo_server.py" "$BPORT" >"$WORK/backend.log" 2>&1 &
PIDS+=("$!")
wait_for 5 "the echo backend" "$PY" -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' "$BPORT"
expect_rc 0 mctl "${N[1]}" site add branch-1
SITETOKEN=$(cat "$WORK/out")
RPORT=$(free_port)
expect_rc 0 mctl "${N[1]}" resource add echo --site branch-1 --target "127.0.0.1:$BPORT" --tcp-port "$RPORT"
"$POPSITE" run --data "$WORK/site" --log-level debug --token "$SITETOKEN" --pops 1 >>"$WORK/site.log" 2>&1 &
SITE_PID=$!
PIDS+=("$SITE_PID")

site_pops() { # the PoPs branch-1 has tunnels to, as pop-1 sees it ("pop-1", ...)
    jq_ '",".join(sorted(p["name"] for s in j["sites"] if s["name"] == "branch-1" for p in s["pops"]))' "${N[1]}" sites
}
one_pop() { case "$(site_pops)" in pop-1 | pop-2) return 0 ;; *) return 1 ;; esac; }
wait_for 20 "branch-1 on one PoP" one_pop
HOLD=$(site_pops)
HOLD=${HOLD#pop-}
IN=$((3 - HOLD)) # the ingress: the PoP without the site's tunnel
# The ingress learns that the site opens sealed streams from its STATUS in sitehealth/ (the
# site's primary PoP stores it): small echoes until one goes sealed.
echo_ok() {
    "$PY" - "${ING[$IN]}" "$RPORT" <<'PY' >/dev/null 2>&1
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
s.sendall(b"x" * 64)
got = b""
while len(got) < 64:
    b = s.recv(64)
    if not b: sys.exit(1)
    got += b
PY
}
sealable() { echo_ok && [ "$(jq_ 'j["dataplane"]["ingress_sealed"]' "${N[$IN]}" status)" -ge 1 ]; }
wait_for 20 "a stream via pop-$IN sealed for the site" sealable

# run_canary LABEL: sends a fresh canary through pop-$IN, scans pop-$HOLD (the relay), pop-$IN
# and the site. Sets RELAY_HITS, INGRESS_HITS, SITE_HITS.
run_canary() {
    CANARY="popmesh-canary-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')-"
    : >"$WORK/send.txt"
    cy send "${ING[$IN]}" "$RPORT" "$CANARY" $((4 << 20)) >"$WORK/send.txt" 2>&1 &
    local sender=$!
    PIDS+=("$sender")
    wait_for 30 "the canary's echo ($1)" grep -q "^ok" "$WORK/send.txt"
    RELAY_HITS=$(cy scan "${POPPID[$HOLD]}" "$CANARY")
    INGRESS_HITS=$(cy scan "${POPPID[$IN]}" "$CANARY")
    SITE_HITS=$(cy scan "$SITE_PID" "$CANARY")
    kill "$sender" 2>/dev/null
    wait "$sender" 2>/dev/null || true
}

# ---- 1. sealed ----
SEALED0=$(jq_ 'j["dataplane"]["relayed_sealed"]' "${N[$HOLD]}" status)
run_canary sealed
[ "$(jq_ 'j["dataplane"]["ingress_sealed"]' "${N[$IN]}" status)" -ge 1 ] ||
    fail "pop-$IN sealed no stream: $(mctl "${N[$IN]}" --json status)"
SEALED1=$(jq_ 'j["dataplane"]["relayed_sealed"]' "${N[$HOLD]}" status)
[ "$SEALED1" -gt "$SEALED0" ] || fail "pop-$HOLD relayed no sealed stream ($SEALED0 -> $SEALED1)"
[ "$INGRESS_HITS" -ge 1 ] || fail "the scan found the canary nowhere in the ingress pop-$IN: the scan does not work"
[ "$SITE_HITS" -ge 1 ] || fail "the scan found the canary nowhere in popsite, which opens it"
[ "$RELAY_HITS" = 0 ] || fail "the relay pop-$HOLD holds $RELAY_HITS copies of the canary in clear"
# The relay forwards the sealed records from the buffer they arrived in (tconn.c, zero-copy):
# most of the 4 MiB each way left without a copy in user space.
ZC=$(jq_ 'sum(t["zero_copy_bytes"] for t in j["tunnels"])' "${N[$HOLD]}" tunnels)
[ "$ZC" -ge $((4 << 20)) ] || fail "pop-$HOLD relayed only $ZC bytes without copying them (expected at least 4 MiB of the 8 MiB both ways)"
ok "1: sealed: 4 MiB of a canary via pop-$IN, relayed by pop-$HOLD (relayed_sealed $SEALED0 -> $SEALED1): found in pop-$HOLD's memory 0 times (ingress pop-$IN: $INGRESS_HITS, popsite: $SITE_HITS); $ZC bytes relayed without a copy"

# ---- 2. the control: the ingress without sealing ----
stop_popd "${POPPID[$IN]}"
echo "seal-streams = no" >>"${N[$IN]}/popd.conf"
start_popd "${N[$IN]}" --log-level debug
POPPID[$IN]=$LAST_PID
wait_for 20 "pop-$IN alive again" all_see "${N[1]}" "${N[2]}" "pop-1=alive pop-2=alive"
wait_for 20 "an echo via pop-$IN again" echo_ok
run_canary unsealed
[ "$(jq_ 'j["dataplane"]["ingress_unsealed"]' "${N[$IN]}" status)" -ge 1 ] ||
    fail "pop-$IN (seal-streams = no) opened no unsealed stream"
[ "$RELAY_HITS" -ge 1 ] || fail "unsealed, the canary was still not found in the relay pop-$HOLD: the scan cannot fail"
ok "2: control, seal-streams = no at pop-$IN: the relay pop-$HOLD holds the canary in clear ($RELAY_HITS copies): the search finds what is there"

done_testing
