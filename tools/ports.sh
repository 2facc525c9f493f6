# free_port: a TCP port on 127.0.0.1 that nothing listens on right now, for tests and
# benchmarks (sourced by tests/integration/lib.sh and tools/bench/lib.sh).
#
# Why not bind(0): such a port comes from the kernel's ephemeral range (32768 and up), where
# any outgoing connection (every DEALER a popd opens, a TIME_WAIT left by one) may take it
# between our check and popd's bind; a benchmark that drew mesh ports there failed to start its
# nodes on a busy machine. So ports come from 20000-32767, below that range, spread by PID (so
# parallel tests start far apart) and a counter kept in a file (so $(free_port), which runs in
# a subshell, still moves on), and each is checked free before it is handed out.
#
# Set PORT_STATE to a file in the caller's work directory before the first call.
free_port() {
    local p n
    : "${PORT_STATE:?PORT_STATE must name a file for the free_port counter}"
    [ -f "$PORT_STATE" ] || echo $(( ($$ * 97) % 12000 )) >"$PORT_STATE"
    for _ in $(seq 1 50); do
        n=$(cat "$PORT_STATE")
        echo $(( n + 1 )) >"$PORT_STATE"
        p=$(( 20000 + n % 12000 ))
        if /usr/bin/python3 -c 'import socket,sys; s=socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1])))' "$p" 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    echo "free_port: no free port found in 20000-32767" >&2
    return 1
}
