#!/usr/bin/env bash
# The main job: installs what is needed, builds popmesh, creates a mesh of three PoPs on this
# machine (one inits the mesh, two join with a bootstrap token), shows the members, writes
# configuration on one node and reads it on another, and leaves the mesh running to explore.
#
#   tools/demo.sh          start (or restart) the demo
#   tools/demo.sh stop     stop it
#
# Everything lives under ./demo (data directories and logs).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DEMO=$ROOT/demo
BUILD=$ROOT/build

stop_demo() {
    local stopped=0
    for lock in "$DEMO"/*/popd.lock; do
        [ -f "$lock" ] || continue
        pid=$(head -n1 "$lock" 2>/dev/null || true)
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && grep -q popd "/proc/$pid/cmdline" 2>/dev/null; then
            kill -TERM "$pid"
            for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            stopped=$((stopped + 1))
        fi
    done
    echo "demo: stopped $stopped node(s)"
}

if [ "${1:-}" = "stop" ]; then
    stop_demo
    exit 0
fi

bash tools/setup.sh
echo "== building (Release) in build/"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DPOPMESH_TESTS=OFF >/dev/null
cmake --build build -j"$(nproc)" --target popd meshctl >/dev/null
POPD=$BUILD/node/popd
MESHCTL=$BUILD/tools/meshctl/meshctl

stop_demo >/dev/null
rm -rf "$DEMO"
mkdir -p "$DEMO"

start_node() { # start_node NAME
    nohup "$POPD" run --data "$DEMO/$1" >>"$DEMO/$1.log" 2>&1 &
    for _ in $(seq 1 100); do
        "$MESHCTL" -d "$DEMO/$1" status >/dev/null 2>&1 && return
        sleep 0.05
    done
    echo "demo: $1 did not start; see demo/$1.log" >&2
    exit 1
}

run() { # run NODE meshctl-args...
    local node=$1
    shift
    echo "\$ meshctl -d demo/$node $*"
    "$MESHCTL" -d "$DEMO/$node" "$@"
    echo
}

echo "== popd init: pop-a creates a new mesh"
"$POPD" init --data "$DEMO/pop-a" --name pop-a --region local-1 --mesh-listen 127.0.0.1:7941
start_node pop-a
echo
echo "== meshctl token create, then popd join: pop-b and pop-c join with it"
TOKEN=$("$MESHCTL" -d "$DEMO/pop-a" token create --uses 2 --ttl 10m)
echo "token: ${TOKEN:0:40}..."
"$POPD" join --data "$DEMO/pop-b" --name pop-b --region local-2 --mesh-listen 127.0.0.1:7942 "$TOKEN"
start_node pop-b
"$POPD" join --data "$DEMO/pop-c" --name pop-c --region local-3 --mesh-listen 127.0.0.1:7943 "$TOKEN"
start_node pop-c
sleep 1
echo
run pop-c members
run pop-a status
echo "== configuration written on pop-a is read on pop-c"
run pop-a config set cfg/welcome "hello from popmesh"
run pop-a config set cfg/session-ttl 12h
sleep 0.5
run pop-c config get cfg/welcome
run pop-c --json config get cfg/session-ttl
run pop-b config list cfg/
run pop-a token list

cat <<EOT
The three nodes are still running (logs in demo/*.log). Try:
  $MESHCTL -d demo/pop-b members
  $MESHCTL -d demo/pop-c config set cfg/colour blue; $MESHCTL -d demo/pop-a config get cfg/colour
  kill -9 \$(head -1 demo/pop-b/popd.lock); sleep 2; $MESHCTL -d demo/pop-a members
Stop them with: tools/demo.sh stop
EOT
