# Shared pieces of the benchmark scripts (bench_tunnel.sh, bench_http.sh): a temp dir and the
# processes started in it (killed by pid on exit, logs kept on failure), free ports, medians,
# and the peer's user sshd with ssh -L. Source after setting PY; call bench_workdir NAME.

# bench_workdir NAME: W, PID[], FAILED, and the exit trap.
bench_workdir() {
    W=$(mktemp -d "/tmp/popmesh-bench-$1-XXXXXX")
    chmod 755 "$W"
    PORT_STATE="$W/.port"
    declare -gA PID=() # name -> pid of every process this script started
    FAILED=0
    trap bench_cleanup EXIT
}

bench_cleanup() {
    local rc=$?
    for k in "${!PID[@]}"; do kill -9 "${PID[$k]}" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ $rc -ne 0 ] || [ "$FAILED" -ne 0 ]; then
        echo "== something failed: log tails (kept in $W)" >&2
        for f in "$W"/*.log "$W"/*/error.log; do
            [ -f "$f" ] || continue
            echo "--- $f" >&2
            tail -n 15 "$f" >&2
        done
    elif [ -z "${KEEP:-}" ]; then
        rm -rf "$W"
    fi
}

fail() { echo "FAIL: $*" >&2; FAILED=1; exit 1; }
# port: a free port below the ephemeral range (tools/ports.sh); bench_workdir sets its state.
# shellcheck source=../ports.sh
. "$(dirname "${BASH_SOURCE[0]}")/../ports.sh"
port() { free_port || fail "no free port"; }
wait_port() { # wait_port PORT SECONDS
    $PY - "$1" "$2" <<'EOF'
import socket, sys, time
end = time.time() + float(sys.argv[2])
while time.time() < end:
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.5).close(); sys.exit(0)
    except OSError: time.sleep(0.05)
sys.exit(1)
EOF
}
ctl() { "$MESHCTL" -d "$W/$1" "${@:2}"; }

median() { printf '%s\n' "$@" | grep -v nan | sort -g | awk '{v[NR]=$1} END {
    if (!NR) { print "nan"; exit } print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2 }'; }
p99() { printf '%s\n' "$@" | grep -v nan | sort -g | awk '{v[NR]=$1} END {
    if (!NR) { print "nan"; exit } r = int(0.99 * NR + 0.999); if (r > NR) r = NR; print v[r] }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "nan" || b == "nan" || b == 0) print "n/a"; else printf "%.2f", a / b }'; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "nan" || b == "nan" || b == 0) print "n/a"; else printf "%+.1f%%", (a - b) * 100 / b }'; }

# start_ssh_forward LOCAL:REMOTE...: a user sshd (throwaway host key, one authorized key, its
# own config; as root in a private mount namespace, since root sshd insists on /run/sshd)
# and one `ssh -N -L 127.0.0.1:LOCAL:127.0.0.1:REMOTE ...` to it. Waits for the first LOCAL.
start_ssh_forward() {
    local S=$W/ssh fwd=() p
    mkdir -m 700 "$S"
    ssh-keygen -q -t ed25519 -N '' -f "$S/host_key"
    ssh-keygen -q -t ed25519 -N '' -f "$S/id"
    cp "$S/id.pub" "$S/authorized_keys"
    local sshd_port
    sshd_port=$(port)
    cat >"$S/sshd_config" <<EOF
Port $sshd_port
ListenAddress 127.0.0.1
HostKey $S/host_key
PidFile $S/sshd.pid
AuthorizedKeysFile $S/authorized_keys
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowTcpForwarding yes
EOF
    if [ "$(id -u)" -eq 0 ]; then
        mkdir -m 755 "$W/run" "$W/run/sshd"
        unshare -m sh -c "mount --bind '$W/run' /run && exec /usr/sbin/sshd -D -e -f '$S/sshd_config'" \
            >"$W/sshd.log" 2>&1 &
    else
        /usr/sbin/sshd -D -e -f "$S/sshd_config" >"$W/sshd.log" 2>&1 &
    fi
    PID[sshd]=$!
    wait_port "$sshd_port" 10 || fail "sshd did not start"
    for p in "$@"; do fwd+=(-L "127.0.0.1:${p%%:*}:127.0.0.1:${p#*:}"); done
    ssh -N -i "$S/id" -p "$sshd_port" -o StrictHostKeyChecking=no \
        -o UserKnownHostsFile="$S/known_hosts" -o BatchMode=yes -o ExitOnForwardFailure=yes \
        "${fwd[@]}" "$(id -un)@127.0.0.1" >"$W/ssh.log" 2>&1 &
    PID[ssh]=$!
    wait_port "${1%%:*}" 15 || fail "ssh -L did not start"
}
