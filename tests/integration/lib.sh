# Shared helpers for integration tests: start and stop real popd processes, assertions.
# Tests source this with POPD and MESHCTL set to the binaries under test.
set -euo pipefail

: "${POPD:?POPD must point to the popd binary}"
: "${MESHCTL:?MESHCTL must point to the meshctl binary}"

TEST_NAME=$(basename "$0" .sh)
WORK=$(mktemp -d "/tmp/popmesh-${TEST_NAME}-XXXXXX")
declare -a PIDS=()
CHECKS=0
# Debian's interpreter: python3-msgpack (tools/setup.sh) is installed for it, whatever
# other python3 may come first on PATH.
PY=/usr/bin/python3

# cleanup [RC]: on failure (RC, else $?) shows logs and member views, then kills every
# process the test started.
cleanup() {
    local rc=${1:-$?}
    if [ "$rc" -ne 0 ]; then
        for d in "$WORK"/*/; do
            [ -S "$d/control.sock" ] || continue
            echo "--- members seen by $d" >&2
            "$MESHCTL" -d "$d" members >&2 2>&1 || true
        done
    fi
    for p in "${PIDS[@]:-}"; do
        [ -n "$p" ] && { kill -9 "$p" && wait "$p"; } 2>/dev/null || true
    done
    if [ "$rc" -ne 0 ]; then
        echo "--- $TEST_NAME failed (rc=$rc); logs kept in $WORK" >&2
        for f in "$WORK"/*.log; do
            [ -f "$f" ] && { echo "--- $f (last 30 lines)" >&2; tail -n 30 "$f" >&2; }
        done

    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

ok() {
    CHECKS=$((CHECKS + 1))
    echo "ok $CHECKS - $*"
}

# expect_rc WANT CMD...: runs CMD, checks its exit code; output goes to $WORK/out, $WORK/err.
expect_rc() {
    local want=$1
    shift
    local rc=0
    "$@" >"$WORK/out" 2>"$WORK/err" || rc=$?
    if [ "$rc" -ne "$want" ]; then
        echo "stdout:" >&2; cat "$WORK/out" >&2
        echo "stderr:" >&2; cat "$WORK/err" >&2
        fail "'$*' exited $rc, expected $want"
    fi
}

# expect_in FILE TEXT: FILE contains TEXT.
expect_in() {
    grep -qF -- "$2" "$1" || { echo "--- $1:" >&2; cat "$1" >&2; fail "'$2' not in $1"; }
}

# start_popd DIR [ARGS...]: runs popd in the background, waits until its control socket
# answers. Sets LAST_PID.
start_popd() {
    local dir=$1
    shift
    "$POPD" run --data "$dir" "$@" >>"$dir.log" 2>&1 &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
    wait_ready "$dir" "$LAST_PID"
}

wait_ready() {
    local dir=$1 pid=$2
    for _ in $(seq 1 100); do
        if "$MESHCTL" -d "$dir" status >/dev/null 2>&1; then
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || { cat "$dir.log" >&2; fail "popd on $dir exited during start-up"; }
        sleep 0.05
    done
    fail "popd on $dir did not answer within 5 s"
}

# wait_certified DIR: until the PoP's node certificate is valid (key status). A PoP that just
# joined gets it from the root holder within about a second; until then it refuses what needs a
# capability (token create, site add, user add, ...) with a clear error.
wait_certified() {
    local dir=$1
    for _ in $(seq 1 200); do
        "$MESHCTL" -d "$dir" --json key status 2>/dev/null |
            "$PY" -c 'import json,sys; sys.exit(0 if json.load(sys.stdin).get("cert") == "valid" else 1)' \
            2>/dev/null && return 0
        sleep 0.05
    done
    fail "the PoP at $dir has no valid certificate after 10 s: $("$MESHCTL" -d "$dir" key status 2>&1)"
}

# stop_popd PID: SIGTERM, then waits (bounded) and returns popd's exit code in STOP_RC.
stop_popd() {
    local pid=$1
    kill -TERM "$pid"
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    kill -0 "$pid" 2>/dev/null && fail "popd $pid did not stop within 5 s of SIGTERM"
    STOP_RC=0
    wait "$pid" || STOP_RC=$?
}

# free_port: a port below the kernel's ephemeral range (tools/ports.sh says why).
PORT_STATE="$WORK/.port"
# shellcheck source=../../tools/ports.sh
. "$(dirname "${BASH_SOURCE[0]}")/../../tools/ports.sh"

# init_node DIR NAME [ARGS...]: popd init with free mesh and tunnel ports on 127.0.0.1 (the
# tunnel port is given explicitly: the default, mesh port + 1, may be another test's port).
init_node() {
    local dir=$1 name=$2
    shift 2
    "$POPD" init --data "$dir" --name "$name" --mesh-listen "127.0.0.1:$(free_port)" \
        --tunnel-listen "127.0.0.1:$(free_port)" "$@" >/dev/null
}

done_testing() {
    echo "$TEST_NAME: $CHECKS checks passed"
}

# ---- meshes -------------------------------------------------------------------------------

# mctl DIR ARGS...: meshctl against a node.
mctl() {
    local dir=$1
    shift
    "$MESHCTL" -d "$dir" "$@"
}

# jq_ EXPR DIR ARGS...: prints the Python expression EXPR evaluated with j = DIR's --json answer
# to ARGS (a dict or list printed as JSON, anything else as Python prints it).
jq_() {
    local expr=$1 dir=$2
    shift 2
    mctl "$dir" --json "$@" | "$PY" -c 'import json,sys; j=json.load(sys.stdin); r=eval(sys.argv[1]); print(r if not isinstance(r,(dict,list)) else json.dumps(r))' "$expr"
}

# start_mesh N [NS_PREFIX]: creates and starts nodes $WORK/n1..nN on 127.0.0.1 (n1 inits the
# mesh, the others join with one token). Sets NODE_PID[i].
declare -a NODE_PID=()
start_mesh() {
    local n=$1
    init_node "$WORK/n1" pop-1
    start_popd "$WORK/n1"
    NODE_PID[1]=$LAST_PID
    local token
    token=$(mctl "$WORK/n1" token create --uses "$((n - 1))" --ttl 10m 2>/dev/null)
    for i in $(seq 2 "$n"); do
        "$POPD" join --data "$WORK/n$i" --name "pop-$i" \
            --mesh-listen "127.0.0.1:$(free_port)" --tunnel-listen "127.0.0.1:$(free_port)" \
            "$token" >/dev/null
        start_popd "$WORK/n$i"
        NODE_PID[$i]=$LAST_PID
    done
}

# members_state DIR: "name=state ..." sorted, as DIR's node sees the mesh.
members_state() {
    mctl "$1" --json members 2>/dev/null |
        "$PY" -c 'import json,sys; print(" ".join(sorted("%s=%s" % (m["name"], m["state"]) for m in json.load(sys.stdin))))'
}

# wait_for SECONDS DESCRIPTION CMD...: polls CMD (every 0.1 s) until it succeeds; prints the
# time it took in WAITED (seconds, 1 decimal).
wait_for() {
    local secs=$1 what=$2
    shift 2
    local start end
    start=$(date +%s%N)
    local deadline=$((start + secs * 1000000000))
    until "$@" >/dev/null 2>&1; do
        if [ "$(date +%s%N)" -gt "$deadline" ]; then
            fail "timed out after ${secs}s waiting for: $what"
        fi
        sleep 0.1
    done
    end=$(date +%s%N)
    WAITED=$(awk "BEGIN{printf \"%.1f\", ($end-$start)/1e9}")
}

# all_see DIR... -- EXPECTED: every node's members_state equals EXPECTED.
all_see() {
    local expected=${*: -1}
    local dirs=("${@:1:$#-1}")
    for d in "${dirs[@]}"; do
        [ "$(members_state "$d")" = "$expected" ] || return 1
    done
}

# ---- ACME ---------------------------------------------------------------------------------

# start_pebble API_PORT MGMT_PORT HTTP_PORT DNS_SERVER [KID:HMAC]: starts Pebble (a real
# RFC 8555 CA) on 127.0.0.1:API_PORT, its management API (roots) on MGMT_PORT, validating
# HTTP-01 on HTTP_PORT and resolving names through DNS_SERVER (ADDR:PORT); with KID:HMAC it
# requires external account binding and knows that one key. Its TLS certificate, made here,
# is $WORK/pebble.pem (the CA bundle for its API); waits until its directory answers.
start_pebble() {
    local pp=$1 pm=$2 hp=$3 dns=$4 eab=${5:-} eab_json='"externalAccountBindingRequired": false'
    if [ -n "$eab" ]; then
        eab_json="\"externalAccountBindingRequired\": true,
  \"externalAccountMACKeys\": {\"${eab%%:*}\": \"${eab#*:}\"}"
    fi
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
        -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" -keyout "$WORK/pebble.key" \
        -out "$WORK/pebble.pem" 2>/dev/null
    cat >"$WORK/pebble.json" <<EOT
{"pebble": {"listenAddress": "127.0.0.1:$pp", "managementListenAddress": "127.0.0.1:$pm",
  "certificate": "$WORK/pebble.pem", "privateKey": "$WORK/pebble.key", "httpPort": $hp,
  "tlsPort": $(free_port), "ocspResponderURL": "", $eab_json}}
EOT
    PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 pebble -config "$WORK/pebble.json" \
        -dnsserver "$dns" >"$WORK/pebble.log" 2>&1 &
    PIDS+=("$!")
    wait_for 20 "Pebble's directory" curl -sf --cacert "$WORK/pebble.pem" "https://127.0.0.1:$pp/dir"
}
