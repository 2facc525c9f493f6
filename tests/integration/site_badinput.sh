#!/usr/bin/env bash
# popsite against a PoP that misbehaves (tests/integration/fake_pop.c): OPENs for a target
# that is not one of the site's resources, asking the site to relay, for another site, with
# an undecodable descriptor; a control message that is not msgpack. Each is refused with its
# reason, the site stays up, and a valid stream through the same tunnel still works.
source "$(dirname "$0")/lib.sh"
: "${POPSITE:?POPSITE must point to the popsite binary}"
: "${FAKE_POP:?FAKE_POP must point to the fake_pop binary}"

# Enroll the site with a real PoP, then stop both.
init_node "$WORK/n1" pop-1
start_popd "$WORK/n1"
POP_PID=$LAST_PID
SITE_TOKEN=$(mctl "$WORK/n1" site add branch | grep -o 'pmt1\.[A-Za-z0-9_-]*' | head -1)
"$POPSITE" run --data "$WORK/site" --token "$SITE_TOKEN" >>"$WORK/site.log" 2>&1 &
SITE_PID=$!
PIDS+=("$SITE_PID")
wait_for 10 "the site's tunnel up" grep -q "tunnel to PoP pop-1 up" "$WORK/site.log"
kill -TERM "$SITE_PID"
wait "$SITE_PID" || true
stop_popd "$POP_PID"
[ "$(stat -c %a "$WORK/site/node.key")" = 600 ] || fail "the site's key is not mode 0600"
[ "$(stat -c %a "$WORK/site/site.conf")" = 600 ] || fail "site.conf is not mode 0600"
ok "the site enrolled, stored its credentials with mode 0600, and stopped"

SID=$(awk '$1 == "id" {print $3}' "$WORK/site/site.conf")
[ -n "$SID" ] || fail "site.conf has no id"
BPORT=$(free_port)
"$PY" -c '
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(16)
def echo(c):
    with c:
        while True:
            d = c.recv(4096)
            if not d: return
            c.sendall(d)
while True:
    c, _ = s.accept(); threading.Thread(target=echo, args=(c,), daemon=True).start()
' "$BPORT" >"$WORK/backend.log" 2>&1 &
PIDS+=("$!")
FPORT=$(free_port)
"$FAKE_POP" --listen "127.0.0.1:$FPORT" --cache "$WORK/site/pops.cache" --site-id "$SID" \
    --target "127.0.0.1:$BPORT" >"$WORK/fake.out" 2>&1 &
FAKE=$!
PIDS+=("$FAKE")
wait_for 5 "fake_pop listening" grep -q listening "$WORK/fake.out"

"$POPSITE" run --data "$WORK/site" >>"$WORK/site.log" 2>&1 &
SITE_PID=$!
PIDS+=("$SITE_PID")
RC=0
wait "$FAKE" || RC=$?
cat "$WORK/fake.out"
[ "$RC" = 0 ] || fail "fake_pop's checks failed (exit $RC)"
ok "a restarted site needs no token and dials the PoPs it knows (here, only the fake one)"
ok "refused with a reason: a target outside its resources, a relay path, another site's id, a bad descriptor"
kill -0 "$SITE_PID" || fail "popsite died"
grep -q "bad message from PoP" "$WORK/site.log" || fail "popsite did not log the junk control message"
ok "popsite shrugs off a junk control message (logged) and stays up; a valid stream still echoes"
done_testing
