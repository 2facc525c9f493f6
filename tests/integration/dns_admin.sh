#!/usr/bin/env bash
# DNS steering's configuration on two real popd nodes: popd init's --dns-listen,
# --public-address and --location land in the PoP's node record, which the OTHER PoP shows in
# members --json; a PoP without them publishes the default public address; bad values of those
# flags fail with exit 2 naming the problem. zone add/list/rm and geo add/list/rm replicate
# both ways, with names normalised (case, trailing dot, CIDR spelling); every bad request (bad
# zone names, ttl 0, answers 9, a CIDR with host bits, a bad region or location, an existing
# zone, unknown names) fails with exit 2 (bad request) or 1 (refused, not found) and a message
# naming the problem, and changes nothing. node drain / --undo shows at the other PoP, and a
# drained PoP stays drained across a restart that changes its settings (popd run flags).
source "$(dirname "$0")/lib.sh"

N1="$WORK/n1" N2="$WORK/n2"
DNS1=$(free_port)

# ---- popd init: bad values first, nothing is created ----
bad_init() { # bad_init TEXT ARGS...: popd init with ARGS exits 2 and says TEXT
    local text=$1
    shift
    expect_rc 2 "$POPD" init --data "$WORK/bad" --name bad --mesh-listen "127.0.0.1:$(free_port)" "$@"
    expect_in "$WORK/err" "$text"
    [ ! -e "$WORK/bad/popd.conf" ] || fail "a refused popd init left $WORK/bad/popd.conf"
}
bad_init "location must be LAT,LON" --location 91,0
bad_init "location must be LAT,LON" --location 48.8566
bad_init "public-address must be" --public-address 0.0.0.0
bad_init "public-address must be" --public-address 10.0.0.1,10.0.0.2
bad_init "public-address must be" --public-address pop.example.com
bad_init "dns-listen must be HOST:PORT" --dns-listen 127.0.0.1
bad_init "dns-rrl must be" --dns-rrl -5
ok "popd init refuses bad --location, --public-address, --dns-listen, --dns-rrl (exit 2, named)"

# ---- two PoPs, pop-1 with every DNS setting, pop-2 with none ----
init_node "$N1" pop-1 --region eu --dns-listen "127.0.0.1:$DNS1" \
    --public-address 203.0.113.7,2001:db8::7 --location "48.8566, 2.3522" --dns-rrl 50
expect_in "$N1/popd.conf" "dns-listen = 127.0.0.1:$DNS1"
expect_in "$N1/popd.conf" "public-address = 203.0.113.7,2001:db8::7"
expect_in "$N1/popd.conf" "location = 48.8566,2.3522"
expect_in "$N1/popd.conf" "dns-rrl = 50"
start_popd "$N1"
P1=$LAST_PID
TOKEN=$(mctl "$N1" token create --ttl 10m 2>/dev/null)
"$POPD" join --data "$N2" --name pop-2 --region us --mesh-listen "127.0.0.1:$(free_port)" \
    --tunnel-listen "127.0.0.1:$(free_port)" "$TOKEN" >/dev/null
start_popd "$N2"
P2=$LAST_PID
wait_for 20 "2 alive members on both" all_see "$N1" "$N2" "pop-1=alive pop-2=alive"
ok "2 PoPs up (${WAITED}s)"

# member_is DIR NAME PYEXPR: DIR's members --json entry m for NAME satisfies PYEXPR
member_is() {
    mctl "$1" --json members | "$PY" -c '
import json, sys
ms = [m for m in json.load(sys.stdin) if m["name"] == sys.argv[1]]
sys.exit(0 if ms and eval(sys.argv[2], {"m": ms[0]}) else 1)' "$2" "$3"
}
wait_for 10 "pop-1's DNS settings at pop-2" member_is "$N2" pop-1 \
    "m['public4'] == '203.0.113.7' and m['public6'] == '2001:db8::7' and m['location'] == '48.8566,2.3522' and m['dns_addr'] == '127.0.0.1:$DNS1' and m['draining'] is False and m['region'] == 'eu'"
ok "pop-1's public addresses, location and DNS listener show at pop-2 (members --json)"
# pop-2 gave none: its public address is the default (the host of its mesh address), no DNS.
wait_for 10 "pop-2's default public address at pop-1" member_is "$N1" pop-2 \
    "m['public4'] == '127.0.0.1' and m['public6'] == '' and m['location'] is None and m['dns_addr'] == ''"
mctl "$N2" members >"$WORK/members.txt"
expect_in "$WORK/members.txt" "DRAINING"
expect_in "$WORK/members.txt" "203.0.113.7,2001:db8::7"
expect_in "$WORK/members.txt" "48.8566,2.3522"
ok "pop-2 publishes the default public address and no DNS; the members table shows both"

# ---- zones ----
zones_are() { # zones_are DIR "name:ttl:answers ..." (sorted)
    local got
    got=$(mctl "$1" --json zone list | "$PY" -c '
import json, sys
print(" ".join("%s:%d:%d" % (z["name"], z["ttl"], z["answers"]) for z in json.load(sys.stdin)["zones"]))')
    [ "$got" = "$2" ]
}
expect_rc 0 mctl "$N1" zone add Example.TEST.
expect_in "$WORK/out" "zone example.test added: ttl 20s, 2 address(es) per answer"
expect_rc 0 mctl "$N2" --json zone add cdn.example.org --ttl 300 --answers 8
"$PY" -c 'import json,sys; z = json.load(open(sys.argv[1])); sys.exit(0 if z["name"] == "cdn.example.org" and z["ttl"] == 300 and z["answers"] == 8 and z["created_ms"] > 0 else 1)' "$WORK/out" ||
    fail "zone add --json did not answer the record"
for d in "$N1" "$N2"; do
    wait_for 10 "both zones at $d" zones_are "$d" "cdn.example.org:300:8 example.test:20:2"
done
mctl "$N2" zone list >"$WORK/zl.txt"
expect_in "$WORK/zl.txt" "example.test"
expect_in "$WORK/zl.txt" "300s"
ok "zone add at either PoP (normalised: lower case, no trailing dot) replicates to both"

bad() { # bad RC TEXT DIR ARGS...: meshctl exits RC and says TEXT
    local rc=$1 text=$2
    shift 2
    expect_rc "$rc" mctl "$@"
    expect_in "$WORK/err" "$text"
}
bad 2 "empty label" "$N1" zone add bad..example
bad 2 "starts or ends with '-'" "$N1" zone add -bad.example
bad 2 "other than a-z" "$N1" zone add 'bad zone.example'
bad 2 "longer than 63 bytes" "$N1" zone add "$(printf 'a%.0s' $(seq 64)).example"
bad 2 "ttl must be from 1 to 86400 seconds" "$N1" zone add new.example --ttl 0
bad 2 "ttl must be from 1 to 86400 seconds" "$N1" zone add new.example --ttl 86401
bad 2 "answers (PoP addresses per answer) must be from 1 to 8" "$N1" zone add new.example --answers 9
bad 2 "--ttl 'x' is not a whole number" "$N1" zone add new.example --ttl x
bad 2 "zone add takes one ZONE" "$N1" zone add
bad 1 "zone example.test already exists" "$N2" zone add EXAMPLE.test --ttl 60
bad 1 "no zone nothere.example" "$N1" zone rm nothere.example
zones_are "$N1" "cdn.example.org:300:8 example.test:20:2" || fail "a refused zone command changed the zones"
ok "bad zone names, ttl 0/86401, answers 9, an existing zone, an unknown zone: exit 2 or 1, named"

expect_rc 0 mctl "$N2" zone rm example.test.
expect_in "$WORK/out" "zone example.test removed"
for d in "$N1" "$N2"; do wait_for 10 "zone rm at $d" zones_are "$d" "cdn.example.org:300:8"; done
ok "zone rm at pop-2 replicates to pop-1"

# ---- geo rules ----
geos_are() { # geos_are DIR "cidr:region:location ..." (key order)
    local got
    got=$(mctl "$1" --json geo list | "$PY" -c '
import json, sys
print(" ".join("%s:%s:%s" % (g["cidr"], g["region"], g.get("location", "-")) for g in json.load(sys.stdin)["geos"]))')
    [ "$got" = "$2" ]
}
expect_rc 0 mctl "$N1" geo add 10.1.0.0/16 eu --location 50.1109,8.6821
expect_in "$WORK/out" "geo rule 10.1.0.0/16 -> region eu, location 50.1109,8.6821 added"
expect_rc 0 mctl "$N2" geo add 2001:DB8:0::/32 us
expect_in "$WORK/out" "geo rule 2001:db8::/32 -> region us added"
for d in "$N1" "$N2"; do
    wait_for 10 "both geo rules at $d" geos_are "$d" "10.1.0.0/16:eu:50.1109,8.6821 2001:db8::/32:us:-"
done
mctl "$N1" geo list >"$WORK/gl.txt"
expect_in "$WORK/gl.txt" "50.1109,8.6821"
ok "geo add at either PoP (CIDR in canonical spelling) replicates to both"

bad 2 "host bits" "$N1" geo add 10.1.0.1/16 eu
bad 2 "prefix length" "$N1" geo add 10.0.0.0/33 eu
bad 2 "not an IPv4 or IPv6 address" "$N1" geo add example.com/8 eu
bad 2 "region 'EU' is invalid" "$N1" geo add 10.2.0.0/16 EU
bad 2 "location '91,0' is invalid" "$N1" geo add 10.2.0.0/16 eu --location 91,0
bad 2 "location 'paris' is invalid" "$N1" geo add 10.2.0.0/16 eu --location paris
bad 2 "geo add takes CIDR and REGION" "$N1" geo add 10.2.0.0/16
bad 1 "a geo rule for 10.1.0.0/16 already exists" "$N2" geo add 10.1.0.0/16 us
bad 1 "no geo rule for 10.9.0.0/16" "$N1" geo rm 10.9.0.0/16
geos_are "$N1" "10.1.0.0/16:eu:50.1109,8.6821 2001:db8::/32:us:-" || fail "a refused geo command changed the rules"
ok "bad CIDRs (host bits, /33, a name), bad region, bad location, an existing rule: exit 2 or 1, named"

expect_rc 0 mctl "$N1" geo rm 2001:db8:0:0::/32
expect_in "$WORK/out" "geo rule 2001:db8::/32 removed"
for d in "$N1" "$N2"; do wait_for 10 "geo rm at $d" geos_are "$d" "10.1.0.0/16:eu:50.1109,8.6821"; done
ok "geo rm (any spelling of the CIDR) replicates to both"

# ---- node drain ----
bad 1 "no PoP named 'pop-9'" "$N1" node drain pop-9
bad 2 "invalid" "$N1" node drain Pop_2
expect_rc 0 mctl "$N1" node drain pop-2
expect_in "$WORK/out" "PoP pop-2 draining"
wait_for 10 "pop-2 draining at pop-2" member_is "$N2" pop-2 "m['draining'] is True"
mctl "$N2" members >"$WORK/members.txt"
grep -E '^pop-2 .* yes ' "$WORK/members.txt" >/dev/null || { cat "$WORK/members.txt" >&2; fail "the members table does not show pop-2 draining"; }
expect_rc 0 mctl "$N2" node drain pop-2
expect_in "$WORK/out" "PoP pop-2 already draining"
ok "node drain pop-2 at pop-1 shows at pop-2 (members, --json and table); again: already"

# A restart with new settings (popd run flags) keeps the drain and publishes the settings.
stop_popd "$P2"
start_popd "$N2" --public-address 198.51.100.9 --location -33.86882,151.209296 \
    --dns-listen "127.0.0.1:$(free_port)"
P2=$LAST_PID
wait_for 20 "pop-2's new settings at pop-1" member_is "$N1" pop-2 \
    "m['public4'] == '198.51.100.9' and m['public6'] == '' and m['location'] == '-33.86882,151.209296' and m['dns_addr'] != '' and m['draining'] is True"
ok "pop-2 restarted with popd run --public-address/--location/--dns-listen: pop-1 sees them, still draining"

expect_rc 0 mctl "$N2" --json node drain pop-2 --undo
"$PY" -c 'import json,sys; a = json.load(open(sys.argv[1])); sys.exit(0 if a["draining"] is False and a["changed"] is True and a["name"] == "pop-2" else 1)' "$WORK/out" ||
    fail "node drain --undo --json did not answer {draining: false, changed: true}"
wait_for 10 "pop-2 not draining at pop-1" member_is "$N1" pop-2 "m['draining'] is False"
ok "node drain --undo at pop-2 shows at pop-1"

# pop-1's settings did not move through all this.
member_is "$N2" pop-1 "m['public4'] == '203.0.113.7' and m['location'] == '48.8566,2.3522'" ||
    fail "pop-1's record changed"
stop_popd "$P1"
[ "$STOP_RC" = 0 ] || fail "pop-1 exited $STOP_RC on SIGTERM"
stop_popd "$P2"
[ "$STOP_RC" = 0 ] || fail "pop-2 exited $STOP_RC on SIGTERM"
ok "both PoPs stop cleanly"
done_testing
