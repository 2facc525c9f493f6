#!/usr/bin/env bash
# ACME against Pebble (a real RFC 8555 CA, on loopback) with three PoPs that answer DNS for
# mesh.test and serve HTTP: after `meshctl acme set`, a resource host gets a certificate by
# HTTP-01 and a wildcard host by DNS-01 with no further command; every PoP lists both; each
# chain verifies against Pebble's root (openssl verify, and curl over each PoP's HTTPS
# listener); a host the CA cannot reach ends up "failed" with the CA's reason in cert list and
# a backoff in acme show; SIGKILL of the PoP holding an order's lease mid-order (steps slowed
# by a test knob) and another PoP takes the lease over and finishes; a certificate past its
# (shortened) renewal point is replaced by a new one everywhere. Pebble resolves names through
# unbound, stubbed to every PoP's DNS listener, so it survives the kill.
source "$(dirname "$0")/lib.sh"

: "${POPSITE:?POPSITE must point to the popsite binary}"
for t in pebble unbound openssl curl dig; do
    command -v "$t" >/dev/null || fail "$t is not installed (tools/setup.sh installs it)"
done

DP=$(free_port)  # DNS, the same port on every PoP's address
HP=$(free_port)  # HTTP ingress (and Pebble's httpPort: HTTP-01 goes there)
SP=$(free_port)  # HTTPS ingress
UP=$(free_port)  # unbound
PP=$(free_port)  # Pebble's ACME API
PM=$(free_port)  # Pebble's management API (roots)
ZONE=mesh.test
ING=("" 127.0.0.31 127.0.0.32 127.0.0.33)
N=("" "$WORK/n1" "$WORK/n2" "$WORK/n3")
declare -a PID=()
# Slowed orders (time to kill a PoP mid-order), short leases, quick looks, early renewal.
export POPMESH_TEST_ACME_STEP_DELAY_MS=600 POPMESH_TEST_ACME_LEASE_MS=6000
export POPMESH_TEST_ACME_TICK_MS=1000 POPMESH_TEST_ACME_RENEW_AFTER_MS=70000
pop_args() {
    local i=$1
    echo --ingress-address "${ING[$i]}" --http-listen "${ING[$i]}:$HP" \
        --https-listen "${ING[$i]}:$SP" --dns-listen "${ING[$i]}:$DP" --public-address "${ING[$i]}"
}
# shellcheck disable=SC2046
init_node "${N[1]}" pop-1 $(pop_args 1)
start_popd "${N[1]}"
PID[1]=$LAST_PID
TOKEN=$(mctl "${N[1]}" token create --uses 2 --ttl 10m 2>/dev/null)
for i in 2 3; do
    # shellcheck disable=SC2046
    "$POPD" join --data "${N[$i]}" --name "pop-$i" --mesh-listen "127.0.0.1:$(free_port)" \
        --tunnel-listen "127.0.0.1:$(free_port)" $(pop_args "$i") "$TOKEN" >/dev/null
    start_popd "${N[$i]}"
    PID[$i]=$LAST_PID
done
wait_for 20 "3 alive members everywhere" all_see "${N[1]}" "${N[2]}" "${N[3]}" \
    "pop-1=alive pop-2=alive pop-3=alive"

BP=$(free_port)
"$PY" "$(dirname "$0")/http_backend.py" "$BP" >"$WORK/backend.log" 2>&1 &
PIDS+=("$!")
expect_rc 0 mctl "${N[1]}" site add branch
SITE_TOKEN=$(cat "$WORK/out")
"$POPSITE" run --data "$WORK/site" --token "$SITE_TOKEN" >>"$WORK/site.log" 2>&1 &
PIDS+=("$!")
expect_rc 0 mctl "${N[1]}" site add dark # no connector: its hosts get no address
expect_rc 0 mctl "${N[1]}" zone add "$ZONE" --ttl 1
expect_rc 0 mctl "${N[1]}" resource add app --site branch --target "127.0.0.1:$BP" --host "app.$ZONE"
expect_rc 0 mctl "${N[1]}" resource add apps --site branch --target "127.0.0.1:$BP" \
    --host "*.apps.$ZONE"
ok "3 PoPs with DNS, HTTP and HTTPS; resources app.$ZONE and *.apps.$ZONE (a wildcard host)"

# ---- Pebble, resolving through unbound stubbed to every PoP ----
cat >"$WORK/unbound.conf" <<EOF
server:
    interface: 127.0.0.1
    port: $UP
    do-ip6: no
    username: ""
    chroot: ""
    directory: "$WORK"
    pidfile: "$WORK/unbound.pid"
    use-syslog: no
    logfile: "$WORK/unbound-inner.log"
    verbosity: 1
    num-threads: 1
    access-control: 127.0.0.0/8 allow
    do-not-query-localhost: no
    module-config: "iterator"
    local-zone: "test." nodefault
    cache-max-ttl: 1
    cache-max-negative-ttl: 1
    infra-host-ttl: 2
stub-zone:
    name: "$ZONE"
    stub-addr: ${ING[1]}@$DP
    stub-addr: ${ING[2]}@$DP
    stub-addr: ${ING[3]}@$DP
EOF
unbound -d -c "$WORK/unbound.conf" >"$WORK/unbound.log" 2>&1 &
PIDS+=("$!")
start_pebble "$PP" "$PM" "$HP" "127.0.0.1:$UP"
wait_for 20 "app.$ZONE to resolve through unbound" \
    bash -c "dig +short +tries=1 +time=1 -p $UP @127.0.0.1 app.$ZONE A | grep -q 127.0.0.3"
ok "Pebble up (TLS with its own certificate), resolving the zone through unbound"

# ---- acme set / show ----
expect_rc 2 mctl "${N[2]}" acme set --directory "http://127.0.0.1:$PP/dir" --email ops@$ZONE
expect_in "$WORK/err" "https://"
expect_rc 2 mctl "${N[2]}" acme set --directory "https://127.0.0.1:$PP/dir" --email nobody
expect_in "$WORK/err" "email"
expect_rc 1 mctl "${N[2]}" acme show
expect_in "$WORK/err" "not configured"
ok "acme set refuses a plain-HTTP directory and a bad email; acme show before set says so"
T0=$(date +%s)
expect_rc 0 mctl "${N[2]}" acme set --directory "https://127.0.0.1:$PP/dir" --email "ops@$ZONE" \
    --ca-bundle "$WORK/pebble.pem"
expect_in "$WORK/out" "(new account key)"
wait_for 10 "acme/config at pop-3" bash -c "'$MESHCTL' -d '${N[3]}' acme show"
mctl "${N[3]}" acme show >"$WORK/show.txt"
expect_in "$WORK/show.txt" "https://127.0.0.1:$PP/dir"
expect_in "$WORK/show.txt" "ops@$ZONE"
expect_in "$WORK/show.txt" "ca bundle            yes"
grep -q "PRIVATE" "$WORK/show.txt" && fail "acme show printed a private key"
mctl "${N[3]}" --json config get acme/config >"$WORK/cfg.json"
grep -q "PRIVATE KEY" "$WORK/cfg.json" && fail "the account key is stored in clear"
ok "acme set spreads; acme show at another PoP shows it, the account key is sealed, never shown"

# cert_is DIR ID PYEXPR: DIR's cert list --json has ID, and c (the entry) satisfies PYEXPR
cert_is() {
    mctl "$1" --json cert list | "$PY" -c '
import json, sys
cs = [c for c in json.load(sys.stdin)["certs"] if c["id"] == sys.argv[1]]
sys.exit(0 if cs and eval(sys.argv[2], {"c": cs[0]}) else 1)' "$2" "$3"
}
valid_everywhere() { # valid_everywhere ID [PYEXPR] over the PoPs in $LIVE
    for i in $LIVE; do
        cert_is "${N[$i]}" "$1" "c['state'] == 'valid' and c['source'] == 'acme' and ${2:-True}" ||
            return 1
    done
}
LIVE="1 2 3"
wait_for 120 "app.$ZONE valid at every PoP" valid_everywhere "app.$ZONE"
T_APP=$(($(date +%s) - T0))
wait_for 120 "*.apps.$ZONE valid at every PoP" valid_everywhere "_wild.apps.$ZONE" \
    "c['names'] == ['*.apps.$ZONE']"
T_WILD=$(($(date +%s) - T0))
ok "app.$ZONE (HTTP-01) at every PoP ${T_APP}s after acme set, *.apps.$ZONE (DNS-01) ${T_WILD}s"

# ---- the chains verify against Pebble's root ----
curl -sf --cacert "$WORK/pebble.pem" "https://127.0.0.1:$PM/roots/0" >"$WORK/root.pem"
chain_of() { # chain_of DIR ID FILE: the record's chain (leaf first)
    mctl "$1" --json config get "cert/$2" |
        "$PY" -c 'import json,sys; sys.stdout.write(json.load(sys.stdin)["value"]["chain"])' >"$3"
}
for id in "app.$ZONE" "_wild.apps.$ZONE"; do
    chain_of "${N[3]}" "$id" "$WORK/$id.pem"
    openssl verify -CAfile "$WORK/root.pem" -untrusted "$WORK/$id.pem" "$WORK/$id.pem" \
        >"$WORK/verify.out" 2>&1 || { cat "$WORK/verify.out" >&2; fail "$id does not verify"; }
done
openssl x509 -in "$WORK/_wild.apps.$ZONE.pem" -noout -ext subjectAltName | grep -q "DNS:\*.apps.$ZONE" ||
    fail "the wildcard certificate lacks DNS:*.apps.$ZONE"
ok "both chains verify against Pebble's root (openssl verify); the wildcard's SAN is *.apps.$ZONE"

https_code() { # https_code POP HOST: the status of GET https://HOST/ at PoP POP
    curl -s -o /dev/null -w '%{http_code}' --max-time 5 --cacert "$WORK/root.pem" \
        --resolve "$2:$SP:${ING[$1]}" "https://$2:$SP/"
}
https_ok() {
    for i in 1 2 3; do
        [ "$(https_code "$i" "app.$ZONE")" = 200 ] || return 1
        [ "$(https_code "$i" "x.apps.$ZONE")" = 200 ] || return 1
    done
}
wait_for 20 "HTTPS at every PoP" https_ok
for i in 1 2 3; do
    dig +short +tries=1 +time=1 -p "$DP" "@${ING[$i]}" "x.apps.$ZONE" A | grep -q "^127\.0\.0\.3" ||
        fail "pop-$i does not answer x.apps.$ZONE from the wildcard host"
done
ok "curl --cacert Pebble's root: app.$ZONE and x.apps.$ZONE over HTTPS at every PoP; every PoP's DNS answers x.apps.$ZONE"

# ---- a host the CA cannot reach: failed, with the reason, and a backoff ----
expect_rc 0 mctl "${N[1]}" resource add off --site dark --target "127.0.0.1:$BP" --host "off.$ZONE"
wait_for 90 "off.$ZONE failed" cert_is "${N[2]}" "off.$ZONE" "c['state'] == 'failed' and c['error'] != ''"
cert_is "${N[1]}" "off.$ZONE" "c['state'] == 'failed'" || fail "pop-1 does not list off.$ZONE as failed"
mctl "${N[1]}" cert list >"$WORK/list.txt"
expect_in "$WORK/list.txt" "failed"
mctl "${N[1]}" acme show >"$WORK/show.txt"
grep "off.$ZONE" "$WORK/show.txt" | grep -q "released" || { cat "$WORK/show.txt" >&2; fail "no released lease with a backoff for off.$ZONE"; }
# The retry time is a UTC date and time: today's, or tomorrow's when the backoff crosses midnight
# (a CI run at 23:59 failed here when the check wanted today's date only).
grep -Eq "($(date -u +%Y-%m-%d)|$(date -u -d '+1 day' +%Y-%m-%d))[ T][0-9]{2}:[0-9]{2}" <<<"$(grep "off.$ZONE" "$WORK/show.txt")" ||
    { cat "$WORK/show.txt" >&2; fail "no retry time"; }
cat "${N[1]}.log" "${N[2]}.log" "${N[3]}.log" | grep -q "acme: certificate off.$ZONE for off.$ZONE failed at" ||
    fail "no log line for the failed order"
ok "off.$ZONE: state failed with the CA's reason in cert list, a backoff in acme show, one log line ($(grep -h "off.$ZONE for off.$ZONE failed" "${N[1]}.log" "${N[2]}.log" "${N[3]}.log" | head -1 | sed 's/.*failed at/failed at/' | cut -c1-100))"

# ---- SIGKILL of the lease holder mid-order ----
expect_rc 0 mctl "${N[1]}" resource add late --site branch --target "127.0.0.1:$BP" --host "late.$ZONE"
holder_mid_order() { # sets HOLDER when a PoP works on late.$ZONE past new-order
    for i in 1 2 3; do
        local st
        st=$(mctl "${N[$i]}" --json acme show | "$PY" -c '
import json, sys
j = json.load(sys.stdin)
print(j["order_step"] if j["order_cert"] == sys.argv[1] else "")' "late.$ZONE")
        case "$st" in challenge | validation | finalize | issuance)
            HOLDER=$i
            return 0 ;;
        esac
    done
    return 1
}
HOLDER=""
for _ in $(seq 1 300); do holder_mid_order && break; sleep 0.1; done
[ -n "$HOLDER" ] || fail "no PoP got to the middle of late.$ZONE's order within 30 s"
kill -9 "${PID[$HOLDER]}"
TK=$(date +%s)
LIVE=""
for i in 1 2 3; do
    if [ "$i" != "$HOLDER" ]; then LIVE="$LIVE $i"; fi
done
ok "SIGKILL of pop-$HOLDER, the lease holder of late.$ZONE, mid-order"
wait_for 150 "late.$ZONE valid at the live PoPs, from another PoP" valid_everywhere "late.$ZONE" \
    "c['obtained_by'] != 'pop-$HOLDER'"
T_TAKE=$(($(date +%s) - TK))
grep -h "late.$ZONE: the lease of pop-$HOLDER expired; taking the order over" \
    "${N[1]}.log" "${N[2]}.log" "${N[3]}.log" >/dev/null || fail "no takeover log line"
for i in $LIVE; do A=$i; done
chain_of "${N[$A]}" "late.$ZONE" "$WORK/late.pem"
openssl verify -CAfile "$WORK/root.pem" -untrusted "$WORK/late.pem" "$WORK/late.pem" >/dev/null ||
    fail "late.$ZONE does not verify"
ok "another PoP took the lease over and finished late.$ZONE ${T_TAKE}s after the kill; it verifies"

# ---- renewal: past the renewal point (70 s after not_before here), a new certificate ----
serial_of() { openssl x509 -in "$1" -noout -serial; }
S1=$(serial_of "$WORK/app.$ZONE.pem")
renewed() {
    chain_of "${N[$A]}" "app.$ZONE" "$WORK/app2.pem" && [ "$(serial_of "$WORK/app2.pem")" != "$S1" ]
}
wait_for 150 "app.$ZONE renewed" renewed
wait_for 20 "the renewed app.$ZONE valid at the live PoPs" valid_everywhere "app.$ZONE"
openssl verify -CAfile "$WORK/root.pem" -untrusted "$WORK/app2.pem" "$WORK/app2.pem" >/dev/null ||
    fail "the renewed app.$ZONE does not verify"
renewed_https() {
    for i in $LIVE; do
        echo | openssl s_client -connect "${ING[$i]}:$SP" -servername "app.$ZONE" 2>/dev/null |
            openssl x509 -noout -serial | grep -qv "$S1" || return 1
    done
}
wait_for 20 "the live PoPs to serve the renewed certificate" renewed_https
ok "app.$ZONE renewed past its renewal point: a new serial, valid, served over HTTPS"
done_testing
