#!/usr/bin/env bash
# Resources that point back into the mesh, or clash with its ports, with real processes:
# resource add refuses a tcp port that is a PoP's mesh or tunnel port, a target that is a PoP's
# own TCP ingress (its host with a resource port, mesh or tunnel port), and a path prefix with
# '.', '..' or '//' segments, each with a message naming the clash (exit 1). A port the
# registry cannot know (the PoP's HTTP ingress port) is accepted, and the PoP that finds the
# clash logs it once and does not bind it.
source "$(dirname "$0")/lib.sh"
: "${POPSITE:?POPSITE must point to the popsite binary}"

MP=$(free_port)
T=$(free_port)
H=$(free_port)
RPORT=$(free_port)
BPORT=$(free_port)
"$POPD" init --data "$WORK/n1" --name pop-1 --mesh-listen "127.0.0.1:$MP" \
    --tunnel-listen "127.0.0.1:$T" --http-listen "127.0.0.1:$H" >/dev/null
start_popd "$WORK/n1"
mctl "$WORK/n1" site add branch >/dev/null

# refuse WANT ARGS...: resource add ARGS exits RC (1: refused; 2: a bad argument) with WANT in
# its message
RC=1
refuse() {
    local want=$1
    shift
    expect_rc "$RC" mctl "$WORK/n1" resource add "$@"
    expect_in "$WORK/err" "$want"
}
refuse "is PoP pop-1's tunnel port (127.0.0.1:$T)" web --site branch --target "10.9.9.9:80" --tcp-port "$T"
refuse "is PoP pop-1's mesh port (127.0.0.1:$MP)" web --site branch --target "10.9.9.9:80" --tcp-port "$MP"
ok "a resource port equal to the PoP's tunnel or mesh port is refused, naming the clash"
refuse "target 127.0.0.1:$RPORT is an ingress of the mesh (PoP pop-1, tcp port of resource 'loop' itself)" \
    loop --site branch --target "127.0.0.1:$RPORT" --tcp-port "$RPORT"
expect_rc 0 mctl "$WORK/n1" resource add echo --site branch --target "127.0.0.1:$BPORT" --tcp-port "$RPORT"
refuse "target 127.0.0.1:$RPORT is an ingress of the mesh (PoP pop-1, tcp port of resource 'echo')" \
    loop --site branch --target "127.0.0.1:$RPORT" --tcp-port "$(free_port)"
refuse "target localhost:$T is an ingress of the mesh (PoP pop-1, tunnel port)" \
    loop --site branch --target "localhost:$T" --tcp-port "$(free_port)"
ok "a target that is the PoP's own TCP ingress (its own port, another resource's, the tunnel port) is refused"
RC=2 # meshctl's exit code for a request it could never make valid
for p in /a/../b /.. /a/. //x /a//b; do
    refuse "never match" web --site branch --target "10.9.9.9:80" --host web.example --path-prefix "$p"
done
ok "path prefixes with '.', '..' or '//' segments are refused (exit 2, a bad argument): they could never match"

# The HTTP ingress port is not in the registry: accepted at add, refused by the PoP itself.
expect_rc 0 mctl "$WORK/n1" resource add clash --site branch --target "10.9.9.9:80" --tcp-port "$H"
wait_for 5 "the PoP to log the clash" grep -q "resource clash: tcp port $H is this PoP's HTTP ingress port" "$WORK/n1.log"
sleep 2.2
N=$(grep -c "resource clash: tcp port $H" "$WORK/n1.log")
[ "$N" = 1 ] || fail "the clash was logged $N times in 2 s (once expected)"
curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$H/" -H 'Host: nothing.example' >"$WORK/code" || true
[ "$(cat "$WORK/code")" != 000 ] || fail "the HTTP ingress stopped answering"
ok "a resource on the PoP's HTTP port: the PoP logs the clash once, does not bind it, and its HTTP ingress still answers"
done_testing
