#!/usr/bin/env bash
# The main job: installs what is needed, builds popmesh, creates a node, runs it, writes and
# reads replicated configuration through meshctl, and leaves the node running to explore.
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
mkdir -p "$DEMO"
NODE=$DEMO/pop-a
if [ ! -f "$NODE/popd.conf" ]; then
    echo "== popd init"
    "$POPD" init --data "$NODE" --name pop-a --region local-1
fi

echo "== popd run (log: demo/pop-a.log)"
nohup "$POPD" run --data "$NODE" >>"$DEMO/pop-a.log" 2>&1 &
for _ in $(seq 1 100); do
    "$MESHCTL" -d "$NODE" status >/dev/null 2>&1 && break
    sleep 0.05
done

run() {
    echo "\$ meshctl $*"
    "$MESHCTL" -d "$NODE" "$@"
    echo
}
run status
run config set cfg/welcome "hello from popmesh"
run config set cfg/session-ttl 12h
run config set site/office/region local-1
run config get cfg/welcome
run --json config get cfg/session-ttl
run config list cfg/
run config del site/office/region
run config list

cat <<EOT
The node is still running. Try:
  $MESHCTL -d $NODE status
  $MESHCTL -d $NODE config set KEY VALUE
  $MESHCTL -d $NODE --json config list
Stop it with: tools/demo.sh stop
EOT
