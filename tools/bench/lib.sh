# Shared pieces of the benchmark scripts: a temp dir and the processes started in it (killed by
# pid on exit, logs kept on failure), free ports, medians, the peer's user sshd with ssh -L, and
# for the HTTP benchmarks (bench_http.sh, bench_identity.sh, bench_accesslog.sh) their options,
# build, nginx backend, wrk driver and CPU time per request. Source after setting PY; call
# bench_workdir NAME.

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

# ---- HTTP benchmarks ----------------------------------------------------------------------------

# bench_args "$@": --runs N (RUNS, default 5) and --seconds S (SECS, default 10).
bench_args() {
    RUNS=5
    SECS=10
    while [ $# -gt 0 ]; do
        case $1 in
        --runs) RUNS=$2; shift 2 ;;
        --seconds) SECS=$2; shift 2 ;;
        *) echo "usage: $0 [--runs N] [--seconds S]" >&2; exit 2 ;;
        esac
    done
}

# bench_build: the Release build dir BUILD (default build-bench; NO_BUILD=1 takes it as it is),
# and POPD, POPSITE and MESHCTL in it. Run from the top of the checkout.
bench_build() {
    BUILD=${BUILD:-build-bench}
    if [ -z "${NO_BUILD:-}" ]; then
        cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
        cmake --build "$BUILD" -j2 --target popd popsite meshctl >/dev/null
    fi
    local b
    case $BUILD in /*) b=$BUILD ;; *) b=$PWD/$BUILD ;; esac
    POPD=$b/node/popd
    POPSITE=$b/node/site/popsite
    MESHCTL=$b/tools/meshctl/meshctl
}

# nginx_conf DIR PORT SERVER_BLOCK_BODY [HTTP_EXTRA]: a self-contained nginx in DIR (NGINX runs it).
nginx_conf() {
    local d=$1
    mkdir -p "$d"
    cat >"$d/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $d/body;
    proxy_temp_path $d/proxy;
    fastcgi_temp_path $d/fastcgi;
    uwsgi_temp_path $d/uwsgi;
    scgi_temp_path $d/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 65s;
    ${4:-}
    server {
        listen 127.0.0.1:$2 backlog=1024;
        $3
    }
}
EOF
}

# start_backend [HTTP_EXTRA] [LOCATION_EXTRA]: the backend every HTTP benchmark proxies to, an
# nginx serving a 100-byte static file (W/app/www/index.html) with keep-alive, on APP_PORT.
start_backend() {
    APP_PORT=$(port)
    mkdir -p "$W/app/www"
    head -c 100 /dev/zero | tr '\0' 'x' >"$W/app/www/index.html"
    nginx_conf "$W/app" "$APP_PORT" "location / { root $W/app/www; index index.html; ${2:-}}" "${1:-}"
    "$NGINX" -c "$W/app/nginx.conf" -p "$W/app" >"$W/app.log" 2>&1 &
    PID[app]=$!
    wait_port "$APP_PORT" 10 || fail "backend nginx did not start"
}

# wrk_run NAME URL HEADER...: one run of WRK with WRK_OPTS; prints "REQ/S P99_MS REQUESTS"
# (P99_MS is nan unless WRK_OPTS holds --latency). Fails loudly on wrk's "Non-2xx or 3xx
# responses" or socket errors, or output it cannot parse; every output is kept in W/wrk.log.
wrk_run() {
    local name=$1 url=$2 out rps p99 n
    shift 2
    out=$("$WRK" "${WRK_OPTS[@]}" "$@" "$url" 2>&1) || { echo "$out" >>"$W/wrk.log"; fail "wrk $name failed"; }
    echo "== $name" >>"$W/wrk.log"; echo "$out" >>"$W/wrk.log"
    if grep -q 'Non-2xx' <<<"$out"; then
        echo "$out" >&2; fail "wrk $name: $(grep 'Non-2xx' <<<"$out")"
    fi
    if grep -q 'Socket errors' <<<"$out"; then
        echo "$out" >&2; fail "wrk $name: $(grep 'Socket errors' <<<"$out")"
    fi
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    n=$(awk '/requests in/ {print $1}' <<<"$out")
    p99=$(awk '$1=="99%" { v=$2; u=v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v);
        f = (u=="us") ? 0.001 : (u=="ms") ? 1 : (u=="s") ? 1000 : (u=="m") ? 60000 : -1;
        if (f < 0) print "nan"; else printf "%.3f", v * f }' <<<"$out")
    if [ -z "$p99" ]; then
        [[ " ${WRK_OPTS[*]} " != *" --latency "* ]] || fail "wrk $name: no 99% latency in: $out"
        p99=nan
    fi
    [ -n "$rps" ] && [ -n "$n" ] || fail "wrk $name: cannot parse output: $out"
    echo "$rps $p99 $n"
}

# CPU time per request: a process's utime + stime from /proc over a run, which a machine shared
# with other work disturbs far less than requests/s. PROC is a key of PID.
ticks() { awk '{print $14 + $15}' "/proc/${PID[$1]}/stat"; } # ticks PROC
us_per() { # us_per TICKS REQUESTS
    awk -v t="$1" -v n="$2" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t * 1e6 / hz / n }'
}

# wrk_cpu NAME PROC URL HEADER...: wrk_run, and PROC's CPU time over it; prints
# "REQ/S P99_MS REQUESTS CPU_US_PER_REQUEST".
wrk_cpu() {
    local name=$1 proc=$2 t0 out n
    shift 2
    t0=$(ticks "$proc")
    out=$(wrk_run "$name" "$@") || exit 1
    read -r _ _ n <<<"$out"
    echo "$out $(us_per $(($(ticks "$proc") - t0)) "$n")"
}
