#!/usr/bin/env bash
# PROXY protocol on TCP resources (resource add/set --proxy-protocol v1|v2) with two real PoPs,
# a site, and two targets that read the header:
#   - nginx (Debian's nginx-light) with `listen PORT proxy_protocol`, logging
#     $proxy_protocol_addr:$proxy_protocol_port and $remote_addr, the real parser;
#   - a Python listener that records the first bytes a connection brings, to check the
#     version on the wire (nginx takes v1 and v2 on the same listener and does not log which).
# The client connects from 127.0.0.2 (curl --interface) to the PoPs' ingress addresses
# (127.0.0.31, 127.0.0.32), so the address nginx logs from the header differs from the
# connection's own (the site's, 127.0.0.1). Checked: v1 and v2 at both PoPs name the client's
# address and port; a client's own PROXY header is data behind ours (nginx answers it 400 and
# still logs the client's real address, never the forged one); set --proxy-protocol off makes
# nginx refuse the connection (the control: the test can fail), v2 again restores it;
# --proxy-protocol v3, and with --host, are refused; resource list shows the setting.
source "$(dirname "$0")/lib.sh"
: "${POPSITE:?POPSITE must point to the popsite binary}"
NGINX=${NGINX:-/usr/sbin/nginx}
[ -x "$NGINX" ] || { echo "SKIP: no nginx (tools/setup.sh installs nginx-light)"; exit 77; }
command -v curl >/dev/null || { echo "SKIP: no curl"; exit 77; }

ING=("" 127.0.0.31 127.0.0.32)
CLIENT=127.0.0.2

# ---- nginx with proxy_protocol on its listener, and the byte recorder ----
NP=$(free_port)
mkdir -p "$WORK/ngx/www" "$WORK/ngx/tmp"
echo "hello from nginx" >"$WORK/ngx/www/index.html"
cat >"$WORK/ngx/nginx.conf" <<NGX
daemon off;
master_process off;
worker_processes 1;
pid $WORK/ngx/nginx.pid;
error_log $WORK/ngx/error.log info;
events { worker_connections 256; }
http {
    log_format pp 'pp=\$proxy_protocol_addr:\$proxy_protocol_port remote=\$remote_addr status=\$status';
    access_log $WORK/ngx/access.log pp;
    client_body_temp_path $WORK/ngx/tmp;
    proxy_temp_path $WORK/ngx/tmp;
    fastcgi_temp_path $WORK/ngx/tmp;
    server {
        listen 127.0.0.1:$NP proxy_protocol;
        location / { root $WORK/ngx/www; }
    }
}
NGX
"$NGINX" -c "$WORK/ngx/nginx.conf" -p "$WORK/ngx" >"$WORK/nginx.log" 2>&1 &
PIDS+=("$!")

RP=$(free_port)
cat >"$WORK/rec.py" <<'PY'
# Records the first bytes of every connection (up to 200, or 1 s of waiting) as hex, one line
# each, then closes.
import socket, sys, threading
port, out = int(sys.argv[1]), sys.argv[2]
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", port))
ls.listen(16)
lock = threading.Lock()
def one(c):
    c.settimeout(1.0)
    got = b""
    try:
        while len(got) < 200:
            b = c.recv(200 - len(got))
            if not b:
                break
            got += b
    except OSError:
        pass
    with lock, open(out, "a") as f:
        f.write(got.hex() + "\n")
    c.close()
while True:
    c, _ = ls.accept()
    threading.Thread(target=one, args=(c,), daemon=True).start()
PY
"$PY" "$WORK/rec.py" "$RP" "$WORK/rec.txt" >"$WORK/rec.log" 2>&1 &
PIDS+=("$!")

# ---- two PoPs with ingress addresses, a site ----
"$POPD" init --data "$WORK/n1" --name pop-1 --mesh-listen "127.0.0.1:$(free_port)" \
    --tunnel-listen "127.0.0.1:$(free_port)" --ingress-address "${ING[1]}" >/dev/null
start_popd "$WORK/n1"
TOKEN=$(mctl "$WORK/n1" token create --uses 1 --ttl 10m 2>/dev/null)
"$POPD" join --data "$WORK/n2" --name pop-2 --mesh-listen "127.0.0.1:$(free_port)" \
    --tunnel-listen "127.0.0.1:$(free_port)" --ingress-address "${ING[2]}" "$TOKEN" >/dev/null
start_popd "$WORK/n2"
SITE_TOKEN=$(mctl "$WORK/n1" site add branch | grep -o 'pmt1\.[A-Za-z0-9_-]*' | head -1)
"$POPSITE" run --data "$WORK/site" --token "$SITE_TOKEN" >>"$WORK/site.log" 2>&1 &
PIDS+=("$!")

P1=$(free_port) # v1 to nginx
P2=$(free_port) # v2 to nginx
Q1=$(free_port) # v1 to the recorder
Q2=$(free_port) # v2 to the recorder

# ---- bad input first ----
expect_rc 2 mctl "$WORK/n1" resource add bad --site branch --target "127.0.0.1:$NP" \
    --tcp-port "$(free_port)" --proxy-protocol v3
expect_in "$WORK/err" "proxy_protocol must be v1, v2 or off"
expect_rc 2 mctl "$WORK/n1" resource add bad --site branch --target "127.0.0.1:$NP" \
    --tcp-port "$(free_port)" --host bad.test --proxy-protocol v1
expect_in "$WORK/err" "proxy_protocol is for TCP resources"
expect_rc 2 mctl "$WORK/n1" resource add bad --site branch --target "127.0.0.1:$NP" \
    --host bad.test --proxy-protocol v2
expect_in "$WORK/err" "proxy_protocol is for TCP resources"
ok "--proxy-protocol v3 refused; with --host refused (the HTTP ingress has X-Forwarded-For)"

expect_rc 0 mctl "$WORK/n1" resource add ngx1 --site branch --target "127.0.0.1:$NP" \
    --tcp-port "$P1" --proxy-protocol v1
expect_rc 0 mctl "$WORK/n1" resource add ngx2 --site branch --target "127.0.0.1:$NP" \
    --tcp-port "$P2" --proxy-protocol v2
expect_rc 0 mctl "$WORK/n1" resource add rec1 --site branch --target "127.0.0.1:$RP" \
    --tcp-port "$Q1" --proxy-protocol v1
expect_rc 0 mctl "$WORK/n1" resource add rec2 --site branch --target "127.0.0.1:$RP" \
    --tcp-port "$Q2" --proxy-protocol v2
mctl "$WORK/n1" resource list >"$WORK/rl.txt"
grep -q "^ngx1 .*(proxy-protocol v1)" "$WORK/rl.txt" && grep -q "^ngx2 .*(proxy-protocol v2)" "$WORK/rl.txt" ||
    { cat "$WORK/rl.txt" >&2; fail "resource list does not show the PROXY protocol versions"; }
mctl "$WORK/n1" --json resource list | "$PY" -c '
import json, sys
r = {x["name"]: x for x in json.load(sys.stdin)["resources"]}
sys.exit(0 if r["ngx1"]["proxy_protocol"] == 1 and r["ngx2"]["proxy_protocol"] == 2 else 1)' ||
    fail "resource list --json: proxy_protocol 1 and 2"
ok "resources with --proxy-protocol v1 and v2; resource list shows them"

# curl from 127.0.0.2 to a PoP's resource port; prints its local port (the header's source port).
get() { # POP_IP PORT -> "STATUS LOCALPORT"
    curl -s --interface "$CLIENT" --max-time 5 -o "$WORK/body" -w '%{http_code} %{local_port}' \
        "http://$1:$2/" || true
}
served() { [ "$(get "$1" "$2" | cut -d' ' -f1)" = 200 ]; }
wait_for 20 "ngx1 served through pop-1" served "${ING[1]}" "$P1"
wait_for 20 "ngx2 served through pop-2" served "${ING[2]}" "$P2"

for pop in 1 2; do
    for v in 1 2; do
        eval "port=\$P$v"
        r=$(get "${ING[$pop]}" "$port")
        [ "${r% *}" = 200 ] || fail "v$v through pop-$pop: status ${r% *}"
        lp=${r#* }
        # the access log line of that request: the header's source is the client, the
        # connection's (remote) the site
        wait_for 5 "nginx logs pp=$CLIENT:$lp" grep -q "pp=$CLIENT:$lp remote=127.0.0.1 status=200" \
            "$WORK/ngx/access.log"
    done
done
expect_in "$WORK/body" "hello from nginx"
ok "nginx parses v1 and v2 from the site through both PoPs: \$proxy_protocol_addr:port is the client ($CLIENT and its port), \$remote_addr the site"

# ---- the bytes on the wire ----
"$PY" - "$CLIENT" "${ING[1]}" "$Q1" "$Q2" >"$WORK/wire.txt" <<'PY' || { cat "$WORK/wire.txt" >&2; fail "client to the recorder"; }
import socket, sys
client, pop, q1, q2 = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
for q in (q1, q2):
    s = socket.socket()
    s.bind((client, 0))
    s.settimeout(5)
    s.connect((pop, q))
    print(q, s.getsockname()[1])
    s.sendall(b"payload")
    try:
        s.recv(10)   # the recorder closes after 1 s of quiet
    except OSError:
        pass
    s.close()
PY
wait_for 10 "two connections recorded" sh -c "[ \$(wc -l <'$WORK/rec.txt') -ge 2 ]"
"$PY" - "$WORK/rec.txt" "$WORK/wire.txt" "$CLIENT" "${ING[1]}" <<'PY' || fail "the bytes the recorder got are not v1 then v2 headers naming the client"
import socket, struct, sys
recs = [bytes.fromhex(l.strip()) for l in open(sys.argv[1]) if l.strip()]
ports = [int(l.split()[1]) for l in open(sys.argv[2])]
client, pop = sys.argv[3], sys.argv[4]
v1 = [r for r in recs if r.startswith(b"PROXY ")]
v2 = [r for r in recs if r.startswith(b"\r\n\r\n\x00\r\nQUIT\n")]
assert len(v1) == 1 and len(v2) == 1, recs
line, rest = v1[0].split(b"\r\n", 1)
f = line.decode().split()
print("v1:", line.decode())
assert f[:3] == ["PROXY", "TCP4", client] and f[3] == pop and int(f[4]) == ports[0], f
assert rest == b"payload", rest
h = v2[0]
assert h[12] == 0x21 and h[13] == 0x11 and struct.unpack(">H", h[14:16])[0] == 12, h[:16]
src, dst = socket.inet_ntoa(h[16:20]), socket.inet_ntoa(h[20:24])
sp, dp = struct.unpack(">HH", h[24:28])
print("v2: src %s:%d dst %s:%d" % (src, sp, dst, dp))
assert src == client and sp == ports[1] and dst == pop, (src, sp, dst, dp)
assert h[28:] == b"payload", h[28:]
PY
sed 's/^/    /' "$WORK/wire.txt"
ok "on the wire: a v1 line and a v2 binary header with the client's address and port and the PoP's ingress address, then the client's bytes"

# ---- a client's own PROXY header is payload behind ours ----
"$PY" - "$CLIENT" "${ING[1]}" "$P1" <<'PY' >"$WORK/forged.txt" 2>&1 || true
import socket, sys
s = socket.socket()
s.bind((sys.argv[1], 0))
s.settimeout(5)
s.connect((sys.argv[2], int(sys.argv[3])))
s.sendall(b"PROXY TCP4 6.6.6.6 1.1.1.1 666 80\r\nGET / HTTP/1.0\r\n\r\n")
out = b""
try:
    while True:
        b = s.recv(4096)
        if not b:
            break
        out += b
except OSError:
    pass
print(out.split(b"\r\n")[0].decode(errors="replace"))
PY
expect_in "$WORK/forged.txt" "400"
wait_for 5 "the forged request logged" grep -q "pp=$CLIENT:[0-9]* remote=127.0.0.1 status=400" "$WORK/ngx/access.log"
grep -q "6\.6\.6\.6" "$WORK/ngx/access.log" && fail "nginx believed the client's PROXY header"
ok "a client-sent PROXY header reaches nginx after ours, as a bad request (400) logged with the real client address; 6.6.6.6 appears nowhere"

# ---- resource set: off breaks it (the control), v2 restores it ----
expect_rc 0 mctl "$WORK/n1" resource set ngx1 --proxy-protocol off
expect_in "$WORK/out" "PROXY protocol off"
unserved() { ! served "${ING[1]}" "$P1"; }
wait_for 10 "ngx1 without a header refused by nginx" unserved
wait_for 5 "nginx says broken header" grep -q "broken header" "$WORK/ngx/error.log"
expect_rc 0 mctl "$WORK/n1" resource set ngx1 --proxy-protocol v2
expect_in "$WORK/out" "PROXY protocol v2"
wait_for 10 "ngx1 served again with v2" served "${ING[1]}" "$P1"
ok "resource set --proxy-protocol off: nginx refuses the connection (broken header); v2: served again"

for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null || fail "a process exited (pid $pid)"; done
done_testing
