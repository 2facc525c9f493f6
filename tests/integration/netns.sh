# Network namespaces as test hosts: each node gets its own namespace with one veth into a
# shared bridge, so links can be cut and made lossy with iptables inside the namespaces.
# Addresses are 10.231.S.i/24 (S picked per run), inside namespaces this test creates and
# deletes; nothing leaves the machine.
# Source after lib.sh. Needs root, iproute2 and iptables.

NETNS_TAG="pm$(( $$ % 10000 ))"
NETNS_SUBNET=$(( ($$ % 200) + 20 ))
declare -a NETNS_NAMES=()

netns_require() {
    if [ "$(id -u)" -ne 0 ] || ! ip netns add "${NETNS_TAG}probe" 2>/dev/null; then
        echo "SKIP: network namespaces need root" >&2
        exit 77
    fi
    ip netns del "${NETNS_TAG}probe"
}

netns_cleanup() {
    for n in "${NETNS_NAMES[@]:-}"; do
        [ -n "$n" ] && ip netns del "$n" 2>/dev/null || true
    done
}

# netns_setup N: namespaces ${NETNS_TAG}h (the bridge) and ${NETNS_TAG}n1..nN.
netns_setup() {
    local n=$1 hub="${NETNS_TAG}h"
    ip netns add "$hub"
    NETNS_NAMES+=("$hub")
    ip -n "$hub" link add br0 type bridge
    ip -n "$hub" link set br0 up
    for i in $(seq 1 "$n"); do
        local ns="${NETNS_TAG}n$i"
        ip netns add "$ns"
        NETNS_NAMES+=("$ns")
        ip link add "${NETNS_TAG}a$i" type veth peer name "${NETNS_TAG}b$i"
        ip link set "${NETNS_TAG}a$i" netns "$ns"
        ip link set "${NETNS_TAG}b$i" netns "$hub"
        ip -n "$hub" link set "${NETNS_TAG}b$i" master br0 up
        ip -n "$ns" addr add "$(netns_ip "$i")/24" dev "${NETNS_TAG}a$i"
        ip -n "$ns" link set "${NETNS_TAG}a$i" up
        ip -n "$ns" link set lo up
    done
}

netns_ip() {
    echo "10.231.$NETNS_SUBNET.$1"
}

# netns_exec I CMD...: runs CMD inside node I's namespace.
netns_exec() {
    local i=$1
    shift
    ip netns exec "${NETNS_TAG}n$i" "$@"
}

# netns_spawn I CMD...: runs CMD in the background inside node I's namespace; LAST_PID is
# CMD's own pid (ip netns exec execs it), so killing it really stops it. Backgrounding
# netns_exec instead records the pid of a subshell, and the daemon outlives the test.
netns_spawn() {
    local i=$1
    shift
    ip netns exec "${NETNS_TAG}n$i" "$@" &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}

# netns_block I J: drop all traffic between nodes I and J (both directions, both ends).
netns_block() {
    netns_exec "$1" iptables -A INPUT -s "$(netns_ip "$2")" -j DROP
    netns_exec "$1" iptables -A OUTPUT -d "$(netns_ip "$2")" -j DROP
    netns_exec "$2" iptables -A INPUT -s "$(netns_ip "$1")" -j DROP
    netns_exec "$2" iptables -A OUTPUT -d "$(netns_ip "$1")" -j DROP
}

# netns_heal I: removes every rule in node I's namespace.
netns_heal() {
    netns_exec "$1" iptables -F INPUT
    netns_exec "$1" iptables -F OUTPUT
}

# netns_loss I P: drop a fraction P (e.g. 0.1) of the packets node I receives.
netns_loss() {
    netns_exec "$1" iptables -A INPUT -m statistic --mode random --probability "$2" -j DROP
}

# start_mesh_netns N: like start_mesh, but node i runs inside namespace i on its own address.
start_mesh_netns() {
    local n=$1
    "$POPD" init --data "$WORK/n1" --name pop-1 --mesh-listen "$(netns_ip 1):7946" >/dev/null
    netns_spawn 1 "$POPD" run --data "$WORK/n1" >>"$WORK/n1.log" 2>&1
    NODE_PID[1]=$LAST_PID
    wait_ready "$WORK/n1" "${NODE_PID[1]}"
    local token
    token=$(mctl "$WORK/n1" token create --uses "$((n - 1))" --ttl 10m 2>/dev/null)
    for i in $(seq 2 "$n"); do
        netns_exec "$i" "$POPD" join --data "$WORK/n$i" --name "pop-$i" \
            --mesh-listen "$(netns_ip "$i"):7946" "$token" >/dev/null
        netns_spawn "$i" "$POPD" run --data "$WORK/n$i" >>"$WORK/n$i.log" 2>&1
        NODE_PID[$i]=$LAST_PID
        wait_ready "$WORK/n$i" "${NODE_PID[$i]}"
    done
}

# fingerprint DIR: the store fingerprint (hash of all bucket digests) of a node.
fingerprint() {
    mctl "$1" --json status | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["store"]["digest"])'
}

# same_fingerprints DIR...: all equal.
same_fingerprints() {
    local first
    first=$(fingerprint "$1") || return 1
    for d in "$@"; do
        [ "$(fingerprint "$d")" = "$first" ] || return 1
    done
}
