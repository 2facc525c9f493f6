#!/usr/bin/env bash
# Login rate limits hold across the mesh (node/auth/loginshare.h, docs/security.md "Rate
# limits"): three real popd, wrong passwords for one user spread round-robin over their HTTP
# ingresses. Each PoP alone would admit its burst (AUTH_RL_BURST = 5), 15 in all; sharing
# attempt counts by gossip, the mesh refuses (429) after about one PoP's burst, at every PoP.
# Then: another user is not held back, the right password works once the bucket refills
# (not exercised: 10 s per attempt), and what the PoPs shared shows in `meshctl status`.
source "$(dirname "$0")/lib.sh"

BURST=5   # AUTH_RL_BURST (node/auth/ratelimit.h)
GUESSES=15 # three PoPs' bursts: every one admitted without sharing
SLACK=1   # the bound's term for guesses in flight (one refill may also fall in the run)

declare -a HP=()
for i in 1 2 3; do HP[$i]=$(free_port); done
init_node "$WORK/n1" pop-1 --http-listen "127.0.0.1:${HP[1]}"
start_popd "$WORK/n1"
TOKEN=$(mctl "$WORK/n1" token create --uses 2 --ttl 10m 2>/dev/null)
for i in 2 3; do
    "$POPD" join --data "$WORK/n$i" --name "pop-$i" --mesh-listen "127.0.0.1:$(free_port)" \
        --tunnel-listen "127.0.0.1:$(free_port)" --http-listen "127.0.0.1:${HP[$i]}" \
        "$TOKEN" >/dev/null
    start_popd "$WORK/n$i"
done
echo "correct-horse-battery" | mctl "$WORK/n1" user add alice >/dev/null
echo "another-long-secret" | mctl "$WORK/n1" user add bob >/dev/null
wait_for 20 "three PoPs alive at each" all_see "$WORK/n1" "$WORK/n2" "$WORK/n3" \
    "pop-1=alive pop-2=alive pop-3=alive"
has_users() { for i in 1 2 3; do mctl "$WORK/n$i" user list | grep -q bob || return 1; done; }
wait_for 20 "the users at every PoP" has_users
ok "three PoPs with HTTP ingresses; alice and bob known at each"

# login POP USER PASSWORD: prints the HTTP status of a sign-in at pop POP.
login() {
    curl -s -m 10 -o /dev/null -w '%{http_code}' -H "Host: app.test" \
        --data "username=$2&password=$3&rd=/" "http://127.0.0.1:${HP[$1]}/.popmesh/login"
}

# One guess every 0.4 s at least, round-robin: slower than the gossip delay (about 0.1-0.5 s
# here), as a guesser waiting for each answer is.
CODES=()
ADMITTED=0
START=$(date +%s%N)
for g in $(seq 1 "$GUESSES"); do
    pop=$(((g - 1) % 3 + 1))
    t0=$(date +%s%N)
    c=$(login "$pop" alice "guess-$g")
    CODES+=("$pop:$c")
    case "$c" in
    401) ADMITTED=$((ADMITTED + 1)) ;;
    429) ;;
    *) fail "guess $g at pop-$pop gave $c (want 401 or 429): ${CODES[*]}" ;;
    esac
    left=$((400000000 - ($(date +%s%N) - t0)))
    [ "$left" -gt 0 ] && sleep "0.$(printf '%09d' "$left")"
done
SECS=$(awk "BEGIN{printf \"%.1f\", ($(date +%s%N)-$START)/1e9}")
echo "# $GUESSES guesses in ${SECS}s, round-robin over 3 PoPs: ${CODES[*]}"
# shared_stats: each PoP's login sharing counters (meshctl status, "http" map), one line.
shared_stats() {
    for i in 1 2 3; do
        mctl "$WORK/n$i" --json status | "$PY" -c '
import json, sys
h = json.load(sys.stdin)["http"]
print("pop-%s: shared %d heard %d charged %d malformed %d limited %d" % (sys.argv[1],
      h["logins_shared"], h["logins_heard"], h["logins_charged"], h["logins_malformed"],
      h["login_limited"]), end="; ")' "$i"
    done
}
echo "# $(shared_stats)"
[ "$ADMITTED" -ge "$BURST" ] || fail "only $ADMITTED guesses were admitted, fewer than one PoP's burst: ${CODES[*]}"
[ "$ADMITTED" -le $((BURST + SLACK)) ] ||
    fail "$ADMITTED of $GUESSES guesses spread over 3 PoPs were admitted (one PoP allows $BURST): the PoPs do not share their counts: ${CODES[*]}"
ok "$ADMITTED of $GUESSES wrong passwords spread over 3 PoPs were checked, the rest refused (429): the mesh allows one PoP's burst ($BURST), not three"
# The bucket regains one attempt every 10 s: a slow run (a loaded machine) may have earned one
# back by now, and then one of these is checked (401), no more than the time allows.
AGAIN=0
for i in 1 2 3; do
    c=$(login "$i" alice "guess-again")
    case "$c" in 429) ;; 401) AGAIN=$((AGAIN + 1)) ;; *) fail "pop-$i gave $c to alice's next guess" ;; esac
done
EARNED=$((($(date +%s%N) - START) / 10000000000))
[ "$AGAIN" -le $((EARNED > ADMITTED - BURST ? EARNED - (ADMITTED - BURST) : 0)) ] ||
    fail "$AGAIN of 3 PoPs checked alice's next guess after the mesh-wide burst (attempts regained since the first guess: $EARNED, used beyond the burst: $((ADMITTED - BURST)))"
ok "every PoP refuses alice's next guess (429), but for the $AGAIN attempt(s) regained with time"
c=$(login 2 bob another-long-secret)
[ "$c" = 302 ] || fail "bob's right password at pop-2 gave $c: another user must not be held back"
ok "another user (bob) still signs in"

# what was shared: every PoP heard the others' counts and charged them
for i in 1 2 3; do
    mctl "$WORK/n$i" --json status >"$WORK/status$i.json"
    read -r heard charged malformed < <("$PY" -c '
import json, sys
h = json.load(open(sys.argv[1]))["http"]
print(h["logins_heard"], h["logins_charged"], h["logins_malformed"])' "$WORK/status$i.json")
    [ "$heard" -ge 1 ] && [ "$charged" -ge 1 ] ||
        fail "pop-$i heard $heard summaries and charged $charged attempts from its peers"
    [ "$malformed" = 0 ] || fail "pop-$i refused $malformed summaries"
done
ok "each PoP heard its peers' summaries and charged their attempts; none malformed"

done_testing
