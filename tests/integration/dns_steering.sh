#!/usr/bin/env bash
# DNS steering with real peers: four PoPs in two regions answer for a zone; a real recursive
# resolver (unbound, from Debian) forwards the zone to them as a stub zone; dig and curl are the
# clients.
#  1. through unbound, the resource host gets PoP addresses, two of them in two regions;
#  2. the zone's apex records at a PoP: SOA, NS (every DNS PoP, with glue), NAME.pop.ZONE,
#     NXDOMAIN for other names, REFUSED outside the zone, no recursion;
#  3. ECS: two client subnets mapped to two regions get their own region's PoP first, with
#     the scope of the rule, and every PoP gives the same answer;
#  4. a resource whose site has no connector gets no address (NODATA);
#  5. meshctl dns explain says why;
#  6. a client following DNS (a fresh lookup through unbound before each request, curl trying
#     the addresses in order) keeps working while PoPs are SIGKILLed one at a time: failed
#     requests per kill are reported, and the killed PoP leaves every PoP's answers;
#  7. bad input does not crash or amplify (tests/integration/dns_probe.py).
source "$(dirname "$0")/lib.sh"
: "${POPSITE:?POPSITE must point to the popsite binary}"
command -v unbound >/dev/null || fail "unbound is not installed (tools/setup.sh installs it)"
command -v dig >/dev/null || fail "dig is not installed (tools/setup.sh installs bind9-dnsutils)"

DP=$(free_port) # DNS port, the same on every PoP's address
HP=$(free_port) # HTTP ingress port, likewise
UP=$(free_port) # unbound
ZONE=mesh.test
ING=("" 127.0.0.11 127.0.0.12 127.0.0.13 127.0.0.14)
REG=("" eu eu us us)
LOC=("" "50.1,8.7" "48.9,2.4" "40.7,-74.0" "37.8,-122.4")
N=("" "$WORK/n1" "$WORK/n2" "$WORK/n3" "$WORK/n4")
declare -a PID=()
pop_args() { # pop_args I: the DNS, HTTP and address flags of PoP I
    local i=$1
    local pub=${ING[$i]}
    [ "$i" = 2 ] && pub="$pub,::1" # one PoP with an IPv6 public address: AAAA answers
    echo --region "${REG[$i]}" --ingress-address "${ING[$i]}" --http-listen "${ING[$i]}:$HP" \
        --dns-listen "${ING[$i]}:$DP" --public-address "$pub" --location "${LOC[$i]}"
}
# shellcheck disable=SC2046
init_node "${N[1]}" pop-1 $(pop_args 1)
start_popd "${N[1]}"
PID[1]=$LAST_PID
TOKEN=$(mctl "${N[1]}" token create --uses 3 --ttl 10m 2>/dev/null)
for i in 2 3 4; do
    # shellcheck disable=SC2046
    "$POPD" join --data "${N[$i]}" --name "pop-$i" --mesh-listen "127.0.0.1:$(free_port)" \
        --tunnel-listen "127.0.0.1:$(free_port)" $(pop_args "$i") "$TOKEN" >/dev/null
    start_popd "${N[$i]}"
    PID[$i]=$LAST_PID
done
ALL="pop-1=alive pop-2=alive pop-3=alive pop-4=alive"
wait_for 20 "4 alive members everywhere" all_see "${N[1]}" "${N[2]}" "${N[3]}" "${N[4]}" "$ALL"

BP=$(free_port)
"$PY" "$(dirname "$0")/http_backend.py" "$BP" >"$WORK/backend.log" 2>&1 &
PIDS+=("$!")
expect_rc 0 mctl "${N[1]}" site add branch
SITE_TOKEN=$(cat "$WORK/out")
"$POPSITE" run --data "$WORK/site" --token "$SITE_TOKEN" >>"$WORK/site.log" 2>&1 &
PIDS+=("$!")
expect_rc 0 mctl "${N[1]}" site add dark # a site whose connector never comes
expect_rc 0 mctl "${N[1]}" zone add "$ZONE" --ttl 1
expect_rc 0 mctl "${N[1]}" geo add 10.1.0.0/16 eu
expect_rc 0 mctl "${N[1]}" geo add 10.2.0.0/16 us
expect_rc 0 mctl "${N[1]}" resource add app --site branch --target "127.0.0.1:$BP" --host "app.$ZONE"
expect_rc 0 mctl "${N[1]}" resource add off --site dark --target "127.0.0.1:$BP" --host "off.$ZONE"

q() { # q SERVER NAME TYPE [DIG ARGS...]: the answer section's data, one per line
    local server=$1 name=$2 type=$3
    shift 3
    dig +short +tries=1 +time=1 -p "$DP" "@$server" "$name" "$type" "$@" 2>/dev/null | sed "/^;/d"
}
qfull() { dig +tries=1 +time=1 -p "$DP" "@$1" "$2" "$3" "${@:4}" 2>/dev/null; }
answers_everywhere() { # every PoP holds all 4 PoPs as answerable, and answers app with 2
    for i in 1 2 3 4; do
        [ "$(mctl "${N[$i]}" --json dns status | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["pops_answerable"])')" = 4 ] || return 1
        [ "$(q "${ING[$i]}" "app.$ZONE" A | wc -l)" = 2 ] || return 1
    done
}
# A PoP that just joined is left out of answers until its first health vector arrives (up to
# 2 s): wait until every view holds all four.
wait_for 20 "every PoP to hold all 4 PoPs as answerable and answer app.$ZONE with two" answers_everywhere

# ---- unbound, a real recursive resolver, with the zone as a stub zone ----
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
    outgoing-range: 64
stub-zone:
    name: "$ZONE"
    stub-addr: ${ING[1]}@$DP
    stub-addr: ${ING[2]}@$DP
    stub-addr: ${ING[3]}@$DP
    stub-addr: ${ING[4]}@$DP
EOF
unbound-checkconf "$WORK/unbound.conf" >/dev/null || fail "unbound.conf does not check"
unbound -d -c "$WORK/unbound.conf" >"$WORK/unbound.log" 2>&1 &
PIDS+=("$!")
# dig +short prints its errors (";; communications error ...") on stdout: keep answers only,
# or two error lines pass for two addresses while unbound is still starting.
ures() { dig +short +tries=1 +time=2 -p "$UP" @127.0.0.1 "$@" 2>/dev/null | sed '/^;/d'; }
# unbound resolves app through the stub PoPs: two addresses. The full answer of the last try is
# kept, so a failure shows what unbound said (a SERVFAIL, one address, a timeout).
unbound_has_app() {
    dig +tries=1 +time=2 -p "$UP" @127.0.0.1 "app.$ZONE" A >"$WORK/unbound-last.txt" 2>&1
    [ "$(ures "app.$ZONE" A | wc -l)" = 2 ]
}
if ! (wait_for 20 "unbound to resolve app.$ZONE" unbound_has_app); then
    cat "$WORK/unbound-last.txt" >&2
    fail "unbound did not resolve app.$ZONE to two addresses within 20 s (its last answer above)"
fi

# ---- 1. through unbound ----
mapfile -t A1 < <(ures "app.$ZONE" A)
region_of() { for i in 1 2 3 4; do [ "${ING[$i]}" = "$1" ] && { echo "${REG[$i]}"; return; }; done; echo "?"; }
[ "${#A1[@]}" = 2 ] || fail "unbound gave ${#A1[@]} addresses for app.$ZONE: ${A1[*]}"
[ "$(region_of "${A1[0]}")" != "?" ] && [ "$(region_of "${A1[1]}")" != "?" ] ||
    fail "unbound's answer ${A1[*]} holds an address that is not a PoP's"
[ "$(region_of "${A1[0]}")" != "$(region_of "${A1[1]}")" ] ||
    fail "the two addresses ${A1[*]} are in one region; the second should be in the other"
ok "1: unbound resolves app.$ZONE to ${A1[*]} ($(region_of "${A1[0]}"), then $(region_of "${A1[1]}"))"
# and curl reaches the application through the first of them
# DNS counts a PoP as able to reach the site from the link-state records it holds; that PoP
# computes its own routes from the same records a debounce later (20-200 ms). So the first
# request may meet a PoP a moment before its route exists: allowed for 5 s, not longer.
curl_app() { curl -sf --max-time 2 --resolve "app.$ZONE:$HP:${A1[0]}" "http://app.$ZONE:$HP/hello" >"$WORK/curl1"; }
wait_for 5 "curl through ${A1[0]}" curl_app
expect_in "$WORK/curl1" '"path": "/hello"'
ok "1: curl reaches the application through the address unbound gave"

# ---- 2. the zone at one PoP ----
qfull "${ING[2]}" "$ZONE" SOA >"$WORK/soa"
expect_in "$WORK/soa" "status: NOERROR"
expect_in "$WORK/soa" "flags: qr aa"
grep -q "IN	SOA	.*hostmaster.$ZONE" "$WORK/soa" || { cat "$WORK/soa" >&2; fail "no SOA with hostmaster.$ZONE"; }
grep -q "flags:.* ra" "$WORK/soa" && fail "RA set: the PoP offers recursion"
mapfile -t NS < <(q "${ING[2]}" "$ZONE" NS | sort)
[ "${NS[*]}" = "pop-1.pop.$ZONE. pop-2.pop.$ZONE. pop-3.pop.$ZONE. pop-4.pop.$ZONE." ] ||
    fail "NS set is '${NS[*]}'"
qfull "${ING[2]}" "$ZONE" NS >"$WORK/ns"
grep -q "^pop-3.pop.$ZONE.*IN	A	${ING[3]}" "$WORK/ns" || { cat "$WORK/ns" >&2; fail "no glue for pop-3"; }
[ "$(q "${ING[2]}" "pop-4.pop.$ZONE" A)" = "${ING[4]}" ] || fail "pop-4.pop.$ZONE is not ${ING[4]}"
qfull "${ING[2]}" "nope.$ZONE" A >"$WORK/nx"
expect_in "$WORK/nx" "status: NXDOMAIN"
grep -q "IN	SOA" "$WORK/nx" || fail "NXDOMAIN without the SOA"
qfull "${ING[2]}" "pop.$ZONE" A >"$WORK/ent"
expect_in "$WORK/ent" "status: NOERROR" # an empty non-terminal: NODATA, not NXDOMAIN
qfull "${ING[2]}" "example.com" A >"$WORK/ref"
expect_in "$WORK/ref" "status: REFUSED"
[ "$(q "${ING[3]}" "app.$ZONE" AAAA)" = "::1" ] || fail "AAAA for app.$ZONE is not pop-2's ::1"
[ "$(q "${ING[3]}" "pop-2.pop.$ZONE" AAAA)" = "::1" ] || fail "AAAA for pop-2.pop.$ZONE is not ::1"
qfull "${ING[3]}" "pop-3.pop.$ZONE" AAAA >"$WORK/noaaaa"
expect_in "$WORK/noaaaa" "ANSWER: 0" # pop-3 has no IPv6 address: NODATA
ok "2: AAAA: the one PoP with an IPv6 public address (::1), NODATA for a PoP without one"
ok "2: SOA, NS ${#NS[@]} with glue, NAME.pop, NXDOMAIN with SOA, NODATA for pop.$ZONE, REFUSED outside"

# ---- 3. ECS ----
first_for() { q "$1" "app.$ZONE" A "+subnet=$2" | head -1; }
# The same view gives the same answer: every PoP must agree. A PoP that briefly suspects
# another (a loaded machine) holds another view for a moment, so agreement is waited for (5 s)
# rather than sampled once; a real disagreement persists and fails.
same_everywhere() {
    for i in 1 2 3 4; do
        E[$i]=$(first_for "${ING[$i]}" 10.1.7.0/24)
        U[$i]=$(first_for "${ING[$i]}" 10.2.9.0/24)
    done
    for i in 2 3 4; do
        [ "${E[$i]}" = "${E[1]}" ] && [ "${U[$i]}" = "${U[1]}" ] || return 1
    done
}
AGREE_T0=$(date +%s%N)
if ! same_everywhere; then
    echo "# the PoPs disagree at first: eu-client ${E[*]}, us-client ${U[*]}"
    for _ in $(seq 1 25); do sleep 0.2; same_everywhere && break; done
    same_everywhere || fail "the PoPs give different answers for 5 s: ${E[*]} / ${U[*]}"
    echo "# they agree after $(awk "BEGIN{printf \"%.1f\", ($(date +%s%N)-$AGREE_T0)/1e9}") s"
fi
[ "$(region_of "${E[1]}")" = eu ] || fail "a 10.1/16 client got ${E[1]} first (an eu PoP expected)"
[ "$(region_of "${U[1]}")" = us ] || fail "a 10.2/16 client got ${U[1]} first (a us PoP expected)"
qfull "${ING[3]}" "app.$ZONE" A "+subnet=10.1.7.0/24" >"$WORK/ecs"
grep -q "CLIENT-SUBNET: 10.1.7.0/24/16" "$WORK/ecs" || { cat "$WORK/ecs" >&2; fail "ECS not echoed with scope 16"; }
ok "3: ECS 10.1.7.0/24 gets ${E[1]} (eu) first and 10.2.9.0/24 gets ${U[1]} (us) first at all 4 PoPs; scope /16 echoed"

# ---- 4. a site with no connector: no PoP has a route ----
qfull "${ING[1]}" "off.$ZONE" A >"$WORK/off"
expect_in "$WORK/off" "status: NOERROR"
expect_in "$WORK/off" "ANSWER: 0"
ok "4: off.$ZONE (site 'dark' has no connector) gets no address (NODATA)"

# ---- 5. explain ----
expect_rc 0 mctl "${N[2]}" dns explain "app.$ZONE" --client 10.2.3.4
expect_in "$WORK/out" "us"
expect_rc 0 mctl "${N[2]}" --json dns explain "off.$ZONE"
expect_in "$WORK/out" "no-route"
ok "5: dns explain names the region for 10.2.3.4 and 'no-route' for off.$ZONE"

# ---- 6. a client that follows DNS while PoPs die one at a time ----
# Each request: a fresh lookup through unbound, then curl with the addresses in the order
# given (curl moves to the next address when one refuses).
cat >"$WORK/client.sh" <<EOF
#!/usr/bin/env bash
# client.sh COUNT: COUNT requests, one line per request: "ok" or "fail <why>"
for _ in \$(seq 1 "\$1"); do
    addrs=\$(dig +short +tries=2 +time=2 -p $UP @127.0.0.1 app.$ZONE A 2>/dev/null | grep -v '^;' | paste -sd, -)
    if [ -z "\$addrs" ]; then echo "fail no-address"; sleep 0.05; continue; fi
    if curl -sf --max-time 2 --connect-timeout 1 --resolve "app.$ZONE:$HP:\$addrs" \
        "http://app.$ZONE:$HP/x" >/dev/null 2>&1; then echo ok; else echo "fail curl \$addrs"; fi
    sleep 0.05
done
EOF
chmod +x "$WORK/client.sh"
dead_everywhere_absent() { # dead_everywhere_absent ADDR SURVIVORS...: no survivor answers ADDR
    local addr=$1
    shift
    for i in "$@"; do
        q "${ING[$i]}" "app.$ZONE" A | grep -qx "$addr" && return 1
        q "${ING[$i]}" "app.$ZONE" A "+subnet=10.1.0.0/24" | grep -qx "$addr" && return 1
        q "${ING[$i]}" "app.$ZONE" A "+subnet=10.2.0.0/24" | grep -qx "$addr" && return 1
    done
    return 0
}
TOTAL_FAIL=0
SURV=(1 2 3 4)
for victim in 1 3; do
    "$WORK/client.sh" 60 >"$WORK/client-$victim.log" &
    CPID=$!
    sleep 1
    kill -9 "${PID[$victim]}"
    T0=$(date +%s%N)
    SURV=($(for s in "${SURV[@]}"; do [ "$s" != "$victim" ] && echo "$s"; done))
    wait_for 15 "pop-$victim's address to leave every survivor's answers" \
        dead_everywhere_absent "${ING[$victim]}" "${SURV[@]}"
    GONE=$(awk "BEGIN{printf \"%.2f\", ($(date +%s%N)-$T0)/1e9}")
    wait "$CPID" || true
    F=$(grep -c '^fail' "$WORK/client-$victim.log" || true)
    NREQ=$(wc -l <"$WORK/client-$victim.log")
    TOTAL_FAIL=$((TOTAL_FAIL + F))
    [ "$F" -le 5 ] || { grep '^fail' "$WORK/client-$victim.log" | head >&2; fail "SIGKILL pop-$victim: $F of $NREQ requests failed (at most 5)"; }
    ok "6: SIGKILL pop-$victim: $F of $NREQ requests failed; its address left every survivor's answers in $GONE s"
done
# A client like a browser's: a stub resolver with a 2 s timeout and one retry (unbound may
# first try the dead PoP), curl moving to the next address on a refusal. Requests can still
# fail while the site's tunnels fail over (the killed PoP may have been its primary): at most
# 5 of 60 per kill are allowed; a resolver still handing out the dead PoP, or a PoP answering
# with no address, would fail far more.
[ "$TOTAL_FAIL" -le 10 ] || { grep -h '^fail' "$WORK"/client-*.log | head >&2; fail "$TOTAL_FAIL requests failed across 2 kills (at most 10 of 120 allowed)"; }
# unbound too: only survivors
mapfile -t A6 < <(ures "app.$ZONE" A)
for a in "${A6[@]}"; do
    [ "$a" = "${ING[1]}" ] || [ "$a" = "${ING[3]}" ] && fail "unbound still answers the dead PoP $a"
done
[ "${#A6[@]}" = 2 ] || fail "unbound gave ${A6[*]} after two kills (2 survivors expected)"
ok "6: unbound now answers ${A6[*]} (the survivors, one per region)"

# ---- 7. bad input at a survivor ----
"$PY" "$(dirname "$0")/dns_probe.py" "${ING[2]}" "$DP" "$ZONE" >"$WORK/probe" 2>&1 ||
    { cat "$WORK/probe" >&2; fail "dns_probe.py failed"; }
cat "$WORK/probe"
kill -0 "${PID[2]}" || fail "pop-2 died under bad input"
[ "$(q "${ING[2]}" "app.$ZONE" A | wc -l)" -ge 1 ] || fail "pop-2 stopped answering after bad input"
ok "7: bad input: pop-2 alive and answering"

done_testing
