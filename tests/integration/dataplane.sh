#!/usr/bin/env bash
# The data plane with real processes: three PoPs, one popsite, a Python echo backend.
# 1. a TCP resource answers through every PoP's ingress; 2. a PoP without a tunnel to the
# site relays through one that has; 3. 64 MiB each way arrive byte-exact; 4. 200 concurrent
# connections; 5. failover after SIGKILL of the site's primary PoP; 6. a stopped site is
# offline everywhere and new connections close promptly; 7. bad input: crossed tokens, a
# removed site's tunnel, garbage on the tunnel port.
source "$(dirname "$0")/lib.sh"
: "${POPSITE:?POPSITE must point to the popsite binary}"

# ---- helpers: a threaded echo backend and the clients ----
cat >"$WORK/dp.py" <<'PY'
import hashlib, os, socket, sys, threading, time


def recv_exact(s, n):
    out = bytearray()
    while len(out) < n:
        b = s.recv(min(262144, n - len(out)))
        if not b:
            raise EOFError("EOF after %d of %d bytes" % (len(out), n))
        out += b
    return bytes(out)

def echo_once(host, port, timeout=10.0, size=4096):
    msg = os.urandom(size)
    s = socket.create_connection((host, port), timeout=timeout)
    try:
        s.sendall(msg)
        got = recv_exact(s, len(msg))
    finally:
        s.close()
    if got != msg:
        raise ValueError("echo differs")

def bulk(host, port, n):
    s = socket.create_connection((host, port), timeout=60)
    hs, hr = hashlib.sha256(), hashlib.sha256()
    err = []
    def send():
        try:
            left = n
            while left:
                c = os.urandom(min(1 << 20, left))
                hs.update(c)
                s.sendall(c)
                left -= len(c)
        except Exception as e:
            err.append(e)
    t = threading.Thread(target=send)
    t0 = time.time()
    t.start()
    got = 0
    while got < n:
        b = s.recv(min(1 << 20, n - got))
        if not b:
            raise EOFError("EOF after %d of %d bytes" % (got, n))
        hr.update(b)
        got += len(b)
    t.join()
    dt = time.time() - t0
    s.close()
    if err:
        raise err[0]
    print("%d bytes each way in %.1f s (%.1f MiB/s); sha256 sent %s received %s"
          % (n, dt, n / dt / 1048576, hs.hexdigest()[:16], hr.hexdigest()[:16]))
    sys.exit(0 if hs.digest() == hr.digest() else 1)

def conc(host, port, n):
    fails = []
    def one(i):
        try:
            echo_once(host, port, timeout=30, size=1024 + i)
        except Exception as e:
            fails.append(repr(e))
    ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    t0 = time.time()
    for t in ts: t.start()
    for t in ts: t.join()
    print("%d/%d concurrent round trips ok in %.1f s %s" % (n - len(fails), n, time.time() - t0, fails[:3]))
    sys.exit(0 if not fails else 1)

def firstok(host, port, t0_ns, maxsec):
    # new connections in a loop until one round trip works; prints seconds since t0_ns
    tries = 0
    while time.time_ns() - t0_ns < maxsec * 1e9:
        tries += 1
        try:
            echo_once(host, port, timeout=0.5, size=64)
            print("%.3f %d" % ((time.time_ns() - t0_ns) / 1e9, tries))
            return 0
        except Exception:
            time.sleep(0.02)
    print("none %d" % tries)
    return 1

def closed(host, port):
    # 0: refused, EOF or reset within 3 s; 1: hangs; 2: data came back
    t0 = time.time()
    try:
        s = socket.create_connection((host, port), timeout=3)
    except (ConnectionRefusedError, ConnectionResetError) as e:
        print("%s after %.2f s" % (type(e).__name__, time.time() - t0)); return 0
    except socket.timeout:
        print("connect hung"); return 1
    try:
        s.settimeout(3)
        try:
            s.sendall(b"hello?")
        except OSError:
            pass
        b = s.recv(100)
        if b:
            print("data: %r" % b); return 2
        print("EOF after %.2f s" % (time.time() - t0)); return 0
    except (ConnectionResetError, BrokenPipeError):
        print("reset after %.2f s" % (time.time() - t0)); return 0
    except socket.timeout:
        print("no answer within 3 s"); return 1

def garbage(host, port):
    s = socket.create_connection((host, port), timeout=5)
    try:
        s.sendall(os.urandom(4096))
        s.settimeout(3)
        s.recv(100)
    except OSError:
        pass
    s.close()
    s = socket.create_connection((host, port), timeout=5)
    try:
        s.sendall(bytes([1, 0xff, 0xff, 0xff]) + os.urandom(1000))  # HELLO claiming 16 MiB
        s.settimeout(3)
        s.recv(100)
    except OSError:
        pass
    s.close()
    s = socket.create_connection((host, port), timeout=5)
    try:
        s.sendall(bytes([0xff, 0xff, 0xff, 0xff]))  # unknown type, huge length, then silence
        s.settimeout(3)
        s.recv(100)
    except OSError:
        pass
    s.close()

cmd = sys.argv[1]
a = sys.argv[2:]
if cmd == "echo":
    try:
        echo_once(a[0], int(a[1]))
    except Exception as e:
        print("echo via %s:%s failed: %r" % (a[0], a[1], e)); sys.exit(1)
elif cmd == "bulk": bulk(a[0], int(a[1]), int(a[2]))
elif cmd == "conc": conc(a[0], int(a[1]), int(a[2]))
elif cmd == "firstok": sys.exit(firstok(a[0], int(a[1]), int(a[2]), float(a[3])))
elif cmd == "closed": sys.exit(closed(a[0], int(a[1])))
elif cmd == "garbage": garbage(a[0], int(a[1]))
PY
dp() { "$PY" "$WORK/dp.py" "$@"; }

# json_get DIR JSONCMD... -- EXPR: evaluates EXPR (python, on j) over meshctl --json output

# ---- three PoPs with tunnel ports and their own ingress addresses ----
declare -a T POPPID
for i in 1 2 3; do T[$i]=$(free_port); done
ING=("" 127.0.0.11 127.0.0.12 127.0.0.13)
N=("" "$WORK/n1" "$WORK/n2" "$WORK/n3")
"$POPD" init --data "${N[1]}" --name pop-1 --mesh-listen "127.0.0.1:$(free_port)" \
    --tunnel-listen "127.0.0.1:${T[1]}" --ingress-address "${ING[1]}" >/dev/null
start_popd "${N[1]}" --log-level debug
POPPID[1]=$LAST_PID
POPTOKEN=$(mctl "${N[1]}" token create --uses 3 --ttl 10m 2>/dev/null)
for i in 2 3; do
    "$POPD" join --data "${N[$i]}" --name "pop-$i" --mesh-listen "127.0.0.1:$(free_port)" \
        --tunnel-listen "127.0.0.1:${T[$i]}" --ingress-address "${ING[$i]}" "$POPTOKEN" >/dev/null
    start_popd "${N[$i]}" --log-level debug
    POPPID[$i]=$LAST_PID
done
wait_for 20 "3 alive members on every node" all_see "${N[1]}" "${N[2]}" "${N[3]}" "pop-1=alive pop-2=alive pop-3=alive"

BPORT=$(free_port)
"$PY" "$(dirname "$0")/echo_server.py" "$BPORT" >"$WORK/backend.log" 2>&1 & # not via dp(): $! must be python
PIDS+=("$!")
wait_for 5 "the echo backend" "$PY" -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' "$BPORT"

expect_rc 0 mctl "${N[1]}" site add branch-1
SITETOKEN=$(cat "$WORK/out")
RPORT=$(free_port)
expect_rc 0 mctl "${N[1]}" resource add echo --site branch-1 --target "127.0.0.1:$BPORT" --tcp-port "$RPORT"

SITE_PID=
start_site() { # start_site ARGS...: popsite run in the background (log $WORK/site.log)
    "$POPSITE" run --data "$WORK/site" --log-level debug "$@" >>"$WORK/site.log" 2>&1 &
    SITE_PID=$!
    PIDS+=("$SITE_PID")
}
site_state() { # site_state DIR: "state pop,pop" of branch-1 as DIR sees it
    jq_ '[[s["state"], ",".join(sorted(p["name"] for p in s["pops"]))] for s in j["sites"] if s["name"] == "branch-1"][0]' "$1" sites |
        "$PY" -c 'import json,sys; a=json.load(sys.stdin); print(a[0], a[1])'
}
site_is() { [ "$(site_state "$1")" = "$2" ]; }
site_online() { site_state "$1" | grep -q '^online '; }

# ---- 1. the resource through every PoP ----
start_site --token "$SITETOKEN" --pops 1
wait_for 20 "popsite's tunnel up" grep -q "tunnel to PoP .* up" "$WORK/site.log"
for i in 1 2 3; do wait_for 15 "branch-1 online on pop-$i" site_online "${N[$i]}"; done
for i in 1 2 3; do
    wait_for 15 "an echo round trip via ${ING[$i]}:$RPORT" dp echo "${ING[$i]}" "$RPORT"
done
ok "1: an echo round trip (4 KiB, content checked) through each of the 3 PoPs' ingress reaches the backend"

# ---- 2. relay: the site has one tunnel; the other PoPs relay through it ----
# With --pops 1 the site holds one tunnel; it moves only to a PoP clearly closer (10 ms and a
# third), draining the old one. The check still counts only attempts during which the set held
# still and the connection was really relayed, so a legitimate move cannot fail it.
site_pops() { site_state "${N[1]}" | awk '{print $2}'; }
relayed_sum() { # relayed_sum EXCEPT: dataplane.relayed summed over the PoPs other than EXCEPT
    local sum=0 i
    for i in 1 2 3; do [ "$i" = "$1" ] || sum=$((sum + $(jq_ 'j["dataplane"]["relayed"]' "${N[$i]}" status))); done
    echo "$sum"
}
# One connection per attempt; an attempt during which the site's PoPs moved does not count.
R= GOOD=0 RELTOT=0 ATTS=
for attempt in $(seq 1 40); do
    ATT=$(site_pops)
    case "$ATT" in pop-[123] | pop-[123],pop-[123] | pop-[123],pop-[123],pop-[123]) ;; *) fail "branch-1's PoPs on pop-1: '$ATT'" ;; esac
    R=
    for i in 1 2 3; do case ",$ATT," in *",pop-$i,"*) ;; *) R=$i; break ;; esac; done
    # (seen while the site settles: even all 3 PoPs listed with --pops 1)
    [ -n "$R" ] || { echo "# attempt $attempt: the site (--pops 1) is on all of $ATT; not counted"; sleep 0.2; continue; }
    REL0=$(relayed_sum "$R")
    E=0
    dp echo "${ING[$R]}" "$RPORT" >"$WORK/echo.txt" 2>&1 || E=$?
    REL1=$(relayed_sum "$R")
    [ "$(site_pops)" = "$ATT" ] || { echo "# the site's PoPs moved during attempt $attempt ($ATT -> $(site_pops)); not counted"; continue; }
    [ "$E" = 0 ] || { cat "$WORK/echo.txt" >&2; fail "echo via pop-$R (no tunnel to the site, which is on $ATT)"; }
    # pop-1's view of the site's PoPs can lag a swap: a connection that was not relayed (the
    # ingress PoP had a tunnel after all) does not count either; 5 must be.
    [ "$REL1" -ge $((REL0 + 1)) ] || { echo "# attempt $attempt via pop-$R was not relayed (relayed over $ATT $REL0 -> $REL1); not counted"; continue; }
    GOOD=$((GOOD + 1)) RELTOT=$((RELTOT + REL1 - REL0)) ATTS="$ATTS $ATT/via-pop-$R"
    [ "$GOOD" = 5 ] && break
done
[ "$GOOD" = 5 ] || fail "only $GOOD of 40 attempts saw the site's PoPs hold still (popsite --pops 1 flapping)"
PATHLEN=$(jq_ '[len(s["path"]) for s in j["sites"] if s["site"] == "branch-1"][0]' "${N[$R]}" routes)
[ "$PATHLEN" -gt 1 ] || fail "pop-$R's route to branch-1 has path length $PATHLEN: $(mctl "${N[$R]}" --json routes)"
ok "2: site (--pops 1): 5 connections via a PoP without a tunnel work, each relayed by the site's PoP (relayed +$RELTOT; site/ingress:$ATTS); pop-$R's route path length $PATHLEN"

# Checks 3 and 4 keep --pops 1: the bulk transfer enters at a PoP without a tunnel (relayed).
A=$R

# ---- 3. 64 MiB each way, byte-exact ----
timeout 120 "$PY" "$WORK/dp.py" bulk "${ING[$R]}" "$RPORT" $((64 << 20)) >"$WORK/bulk.txt" 2>&1 ||
    { cat "$WORK/bulk.txt" >&2; fail "64 MiB echo via pop-$R (relayed) was not byte-exact or took over 120 s"; }
ok "3: 64 MiB each way via pop-$R: sha256 equal ($(cat "$WORK/bulk.txt"))"

# ---- 4. 200 concurrent connections ----
# When round trips hang, every popd and popsite logs its live splices (SIGUSR1): which leg
# holds the bytes of a stuck stream.
dump_splices() {
    kill -USR1 "${POPPID[1]}" "${POPPID[2]}" "${POPPID[3]}" "$SITE_PID" 2>/dev/null || true
    sleep 0.5
}
timeout 120 "$PY" "$WORK/dp.py" conc "${ING[$A]}" "$RPORT" 200 >"$WORK/conc.txt" 2>&1 &
CONC=$!
for _ in $(seq 1 120); do kill -0 "$CONC" 2>/dev/null || break; sleep 0.1; done
# Still running after 12 s (it takes 1-3): some round trips are stuck; dump while they are.
if kill -0 "$CONC" 2>/dev/null; then dump_splices; fi
wait "$CONC" || { cat "$WORK/conc.txt" >&2; fail "200 concurrent echo round trips via pop-$A"; }
ok "4: $(cat "$WORK/conc.txt")"

# ---- 5. failover: SIGKILL the primary PoP ----
stop_popd "$SITE_PID"
start_site # the default: --pops 2
primary_of() { # primary_of DIR: branch-1's primary PoP as DIR sees it ("" if none)
    jq_ 'next((p["name"] for s in j["sites"] if s["name"] == "branch-1" for p in s["pops"] if p["role"] == "primary"), "")' "$1" sites
}
# (wait_for runs this in this shell: PRIMARY is the value seen when the wait ended)
two_and_primary() { PRIMARY=$(primary_of "${N[1]}") && [ -n "$PRIMARY" ] && [ "$(site_pops | tr ',' ' ' | wc -w)" = 2 ]; }
wait_for 20 "branch-1 on 2 PoPs with a primary (seen on pop-1)" two_and_primary
case "$PRIMARY" in pop-[123]) ;; *) fail "no primary PoP for branch-1: $(mctl "${N[1]}" --json sites)" ;; esac
P=${PRIMARY#pop-}
# The survivor whose ingress we use: preferably the PoP without a tunnel to the site, whose
# connections must be re-routed through the standby; else the standby itself.
S=$(( P % 3 + 1 ))
for i in 1 2 3; do case ",$(site_pops)," in *",pop-$i,"*) ;; *) S=$i ;; esac; done
for i in 1 2 3; do wait_for 10 "echo via pop-$i before the failover" dp echo "${ING[$i]}" "$RPORT"; done
SITEPOPS=$(site_pops)
KILL_NS=$(date +%s%N)
kill -9 "${POPPID[$P]}"
wait "${POPPID[$P]}" 2>/dev/null || true
FO=$("$PY" "$WORK/dp.py" firstok "${ING[$S]}" "$RPORT" "$KILL_NS" 5) || fail "no connection via pop-$S worked within 5 s of killing $PRIMARY ($FO)"
FO_S=${FO%% *}
echo "# failover: first successful connection via pop-$S ${FO_S}s after SIGKILL of $PRIMARY (${FO#* } attempts)"
awk "BEGIN{exit !($FO_S < 2.0)}" || fail "failover took ${FO_S}s (>= 2 s)"
wait_for 20 "branch-1 online on pop-$S without $PRIMARY" bash -c "'$MESHCTL' -d '${N[$S]}' --json sites | '$PY' -c '
import json,sys
s=[s for s in json.load(sys.stdin)[\"sites\"] if s[\"name\"]==\"branch-1\"][0]
names=[p[\"name\"] for p in s[\"pops\"]]
sys.exit(0 if s[\"state\"]==\"online\" and names and \"$PRIMARY\" not in names else 1)'"
ok "5: SIGKILL of primary $PRIMARY (site on $SITEPOPS): first new connection via pop-$S worked after ${FO_S}s (< 2 s); pop-$S shows branch-1 online with $(site_state "${N[$S]}" | awk '{print $2}')"
SURV=()
for i in 1 2 3; do [ "$i" != "$P" ] && SURV+=("$i"); done

# ---- 6. site stopped ----
stop_popd "$SITE_PID"
STOP_NS=$(date +%s%N)
for i in "${SURV[@]}"; do wait_for 10 "branch-1 offline on pop-$i" bash -c "'$MESHCTL' -d '${N[$i]}' --json sites | grep -q '\"offline\"'"; done
OFF_S=$(awk "BEGIN{printf \"%.1f\", ($(date +%s%N)-$STOP_NS)/1e9}")
for i in "${SURV[@]}"; do
    timeout 10 "$PY" "$WORK/dp.py" closed "${ING[$i]}" "$RPORT" >"$WORK/closed.txt" 2>&1 ||
        { cat "$WORK/closed.txt" >&2; fail "a connection via pop-$i to the offline site's resource was not closed within 3 s"; }
    echo "# via pop-$i: $(cat "$WORK/closed.txt")"
done
sleep 0.5
for i in "${SURV[@]}"; do
    grep -qE "offline|cannot reach site" "${N[$i]}.log" ||
        fail "pop-$i's log has no line with 'offline' or 'cannot reach site'"
done
ok "6: popsite stopped: every surviving PoP shows branch-1 offline (${OFF_S}s), new connections are closed promptly, the logs say so"

# ---- 7. bad input ----
expect_rc 0 mctl "${N[$S]}" site add branch-2
SITE2TOKEN=$(cat "$WORK/out")
rc=0
"$POPD" join --data "$WORK/site-as-pop" --name sneaky --mesh-listen "127.0.0.1:$(free_port)" "$SITE2TOKEN" >"$WORK/out" 2>"$WORK/err" || rc=$?
[ "$rc" -ne 0 ] && grep -q "site token" "$WORK/err" || { cat "$WORK/err" >&2; fail "popd join with a site token: rc=$rc"; }
POPTOKEN2=$(mctl "${N[$S]}" token create 2>/dev/null)
rc=0
timeout 20 "$POPSITE" run --data "$WORK/pop-as-site" --token "$POPTOKEN2" >"$WORK/out" 2>"$WORK/err" || rc=$?
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && grep -qi "pop token" "$WORK/err" ||
    { cat "$WORK/out" "$WORK/err" >&2; fail "popsite run with a pop token: rc=$rc"; }
ok "7a: a site token given to popd join and a pop token given to popsite are refused with a message (popsite: $(head -c 200 "$WORK/err" | tr '\n' ' '))"

expect_rc 0 mctl "${N[$S]}" site rm branch-1
for i in "${SURV[@]}"; do
    wait_for 10 "branch-1 gone on pop-$i" bash -c "! '$MESHCTL' -d '${N[$i]}' --json site list | grep -q '\"branch-1\"'"
done
declare -a PRE_RM
for i in "${SURV[@]}"; do PRE_RM[$i]=$(wc -l <"${N[$i]}.log"); done
SITELOG_LINES=$(wc -l <"$WORK/site.log")
start_site --pops 2
sleep 5
tail -n +"$((SITELOG_LINES + 1))" "$WORK/site.log" >"$WORK/site-after-rm.txt"
grep -q "tunnel to PoP .* up" "$WORK/site-after-rm.txt" &&
    { cat "$WORK/site-after-rm.txt" >&2; fail "the removed site's popsite got a tunnel up again"; }
REFUSED=0
for i in "${SURV[@]}"; do
    tail -n +"$((PRE_RM[$i] + 1))" "${N[$i]}.log" >"$WORK/pop-$i-after-rm.txt"
    grep -q "tunnel from .* refused" "$WORK/pop-$i-after-rm.txt" && REFUSED=1
done
[ "$REFUSED" = 1 ] || fail "no surviving PoP logged 'refused' for the removed site's tunnel"
ok "7b: after site rm, the restarted popsite gets no tunnel within 5 s and the PoPs log 'refused'"
kill -9 "$SITE_PID"; wait "$SITE_PID" 2>/dev/null || true

TR0=$(jq_ 'j["dataplane"]["tunnels_refused"]' "${N[$S]}" status)
HF0=$(jq_ 'j["dataplane"]["handshake_failures"]' "${N[$S]}" status)
PRE_G=$(wc -l <"${N[$S]}.log")
dp garbage 127.0.0.1 "${T[$S]}"
mctl "${N[$S]}" status >/dev/null || fail "pop-$S stopped answering after garbage on its tunnel port"
kill -0 "${POPPID[$S]}" || fail "pop-$S died after garbage on its tunnel port"
dp echo "${ING[$S]}" "$RPORT" >/dev/null 2>&1 || true # (the site is gone: just exercises the loop)
TR1=$(jq_ 'j["dataplane"]["tunnels_refused"]' "${N[$S]}" status)
HF1=$(jq_ 'j["dataplane"]["handshake_failures"]' "${N[$S]}" status)
[ "$HF1" -ge $((HF0 + 3)) ] || fail "pop-$S: handshake_failures $HF0 -> $HF1 for 3 garbage connections"
# Garbage dies in the secure channel's handshake, before admission: tunnels_refused counts
# only admission refusals, so the evidence is the (debug) "tunnel from ... closed" line.
tail -n +"$((PRE_G + 1))" "${N[$S]}.log" | grep "tunnel from 127.0.0.1:[0-9]* closed\|tunnel from 127.0.0.1:[0-9]* refused" >"$WORK/garbage.txt" || true
DROPPED=$(wc -l <"$WORK/garbage.txt")
[ "$TR1" -ge $((TR0 + 1)) ] || [ "$DROPPED" -ge 3 ] ||
    { cat "$WORK/garbage.txt" >&2; fail "pop-$S: tunnels_refused $TR0 -> $TR1 and $DROPPED log lines for 3 garbage connections"; }
ok "7c: random bytes and headers claiming huge records on pop-$S's tunnel port: popd stays up and answers; handshake_failures $HF0 -> $HF1, $DROPPED connections logged as dropped ($(sed 's/.*closed: //' "$WORK/garbage.txt" | sort -u | tr '\n' ';'))"

done_testing
