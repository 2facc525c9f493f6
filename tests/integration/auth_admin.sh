#!/usr/bin/env bash
# Edge authentication's operator commands on two real popd nodes: user add reads the password
# from stdin and stores only an argon2id hash; the user replicates to the other node, whose
# user list shows no hash; bad input is refused with a message that says what is wrong and the
# documented exit code; apikey create prints the token once and the record holds no secret;
# rule add/list/rm replicate; session revoke bumps the epoch everywhere; share create refuses
# an unknown resource and makes a verifiable token for a known one. No password or secret ever
# reaches a log.
source "$(dirname "$0")/lib.sh"

start_mesh 2
N1="$WORK/n1"
N2="$WORK/n2"
wait_for 20 "2 alive members on both nodes" all_see "$N1" "$N2" "pop-1=alive pop-2=alive"
ok "2 nodes up (${WAITED}s)"

PW='correct horse battery'
# with_pw PW CMD...: CMD with PW and a newline on stdin (not a terminal)
with_pw() {
    local pw=$1
    shift
    printf '%s\n' "$pw" | "$@"
}

# ---- users ----
expect_rc 0 with_pw "$PW" mctl "$N1" user add alice --group ops --group dev
expect_in "$WORK/out" "user alice added (2 group(s))"
# user_field DIR NAME FIELD: the field of NAME in DIR's user list --json ("absent" if no user)
user_field() {
    mctl "$1" --json user list | "$PY" -c '
import json, sys
users = {u["name"]: u for u in json.load(sys.stdin)["users"]}
u = users.get(sys.argv[1])
print("absent" if u is None else json.dumps(u.get(sys.argv[2])))' "$2" "$3"
}
# field_is DIR NAME FIELD VALUE: for wait_for
field_is() { [ "$(user_field "$1" "$2" "$3")" = "$4" ]; }
wait_for 10 "alice on pop-2" field_is "$N2" alice name '"alice"'
[ "$(user_field "$N2" alice groups)" = '["ops", "dev"]' ] || fail "alice's groups on pop-2: $(user_field "$N2" alice groups)"
[ "$(user_field "$N2" alice session_epoch)" = 0 ] || fail "a new user's epoch is not 0"
mctl "$N2" --json user list >"$WORK/ul.json"
mctl "$N2" user list >"$WORK/ul.txt"
for f in "$WORK/ul.json" "$WORK/ul.txt"; do
    if grep -q -e pwhash -e argon2 -e "$PW" "$f"; then fail "user list shows a password hash"; fi
done
expect_in "$WORK/ul.txt" "ops,dev"
mctl "$N2" --json config get user/alice >"$WORK/rec.json"
expect_in "$WORK/rec.json" '$argon2id$'
grep -qF "$PW" "$WORK/rec.json" && fail "the user record holds the password"
ok "user add (password on stdin) replicates; user list shows no hash; the record holds argon2id"

# ---- bad user input ----
expect_rc 1 with_pw "$PW" mctl "$N2" user add alice
expect_in "$WORK/err" "user 'alice' already exists"
expect_rc 2 with_pw "$PW" mctl "$N1" user add Bad_Name
expect_in "$WORK/err" "user name 'Bad_Name' is invalid"
expect_rc 2 with_pw "short" mctl "$N1" user add bob
expect_in "$WORK/err" "at least 8 bytes"
expect_rc 2 mctl "$N1" user add bob </dev/null
expect_in "$WORK/err" "no password given"
expect_rc 2 with_pw "$PW" mctl "$N1" user add bob --group "No Good"
expect_in "$WORK/err" "group 'No Good' is invalid"
expect_rc 2 with_pw "$PW" mctl "$N1" user add bob --group ops --group ops
expect_in "$WORK/err" "listed twice"
expect_rc 2 with_pw "$PW" mctl "$N1" user add
expect_in "$WORK/err" "takes one user NAME"
expect_rc 1 mctl "$N1" user rm nobody
expect_in "$WORK/err" "no user 'nobody'"
expect_rc 1 with_pw "$PW" mctl "$N1" user passwd nobody
[ "$(user_field "$N1" bob name)" = absent ] || fail "a refused user add left a user"
ok "bad user input refused with reasons (exit 1 refused/not found, 2 usage)"

# ---- session revoke and passwd bump the epoch everywhere ----
expect_rc 0 mctl "$N2" session revoke alice
expect_in "$WORK/out" "sessions of alice revoked (session epoch 1)"
wait_for 10 "epoch 1 on pop-1" field_is "$N1" alice session_epoch 1
expect_rc 0 with_pw "another long password" mctl "$N1" user passwd alice
expect_in "$WORK/out" "password of alice changed"
[ "$(user_field "$N1" alice session_epoch)" = 2 ] || fail "user passwd did not bump the epoch"
expect_rc 1 mctl "$N1" session revoke nobody
expect_in "$WORK/err" "no user 'nobody'"
ok "session revoke (pop-2) reaches pop-1; user passwd revokes too"

# ---- API keys ----
expect_rc 0 mctl "$N1" apikey create --user alice --ttl 30d
KEY=$(cat "$WORK/out")
[ "$(wc -l <"$WORK/out")" = 1 ] || fail "apikey create printed more than the key on stdout"
case "$KEY" in pmk1.????????????????.*) ;; *) fail "apikey create did not print a key: $KEY" ;; esac
[ ${#KEY} = 65 ] || fail "the key is ${#KEY} characters, not 65"
expect_in "$WORK/err" "only time the key is shown"
KEY_ID=${KEY:5:16}
SECRET=${KEY:22}
wait_for 10 "the key on pop-2" bash -c "'$MESHCTL' -d '$N2' apikey list | grep -q '$KEY_ID.*active'"
mctl "$N2" --json apikey list >"$WORK/kl.json"
mctl "$N2" --json config get "apikey/$KEY_ID" >>"$WORK/kl.json"
grep -qF "$SECRET" "$WORK/kl.json" && fail "the secret of an API key is stored or listed"
expect_rc 1 mctl "$N1" apikey create --user nobody
expect_in "$WORK/err" "no user 'nobody'"
expect_rc 2 mctl "$N1" apikey create
expect_in "$WORK/err" "--user USER is required"
expect_rc 2 mctl "$N1" apikey create --user alice --ttl forever
expect_in "$WORK/err" "is not a duration"
expect_rc 0 mctl "$N2" apikey revoke "$KEY_ID"
expect_in "$WORK/out" "revoked"
wait_for 10 "the key revoked on pop-1" bash -c "'$MESHCTL' -d '$N1' apikey list | grep -q '$KEY_ID.*revoked'"
expect_rc 2 mctl "$N1" apikey revoke nothex
expect_in "$WORK/err" "16 lowercase hex digits"
expect_rc 1 mctl "$N1" apikey revoke 0123456789abcdef
expect_in "$WORK/err" "no API key 0123456789abcdef"
ok "apikey create prints the key once, stores no secret; list/revoke replicate; bad input refused"

# ---- a resource to hang rules and share links on ----
expect_rc 0 mctl "$N1" site add branch-1
expect_rc 0 mctl "$N1" resource add web --site branch-1 --target 10.0.0.5:80 --tcp-port "$(free_port)"
wait_for 10 "resource web on pop-2" bash -c "'$MESHCTL' -d '$N2' resource list | grep -q '^web '"

# ---- share links ----
expect_rc 1 mctl "$N1" share create nothing
expect_in "$WORK/err" "there is no resource 'nothing'"
expect_rc 2 mctl "$N1" share create web --ttl 0
expect_rc 0 mctl "$N2" share create web --ttl 2h
case "$(cat "$WORK/out")" in pmsh2.*) ;; *) fail "share create did not print a token" ;; esac
expect_in "$WORK/err" "share link for resource web"
SHARE=$(cat "$WORK/out")
# The token verifies with the signing PoP's own key (node.pub's sign-public), and names that
# PoP, as docs/security.md describes it (the key hierarchy: share links are signed by the PoP
# that made them, certified by the mesh's root).
"$PY" - "$SHARE" "$N2/node.pub" <<'EOF' || fail "the share token does not verify as documented"
import base64, sys, msgpack
tok, pubfile = sys.argv[1], sys.argv[2]
body = base64.urlsafe_b64decode(tok[len("pmsh2."):] + "=" * (-len(tok[6:]) % 4))
payload, sig = body[:-64], body[-64:]
v = msgpack.unpackb(payload, raw=False)
import re
pub = open(pubfile).read()
assert v[0] == 2 and v[1] == "web" and len(v[3]) == 8, v
assert "%016x" % v[4] == re.search(r"node-id = ([0-9a-f]{16})", pub).group(1), v
import nacl.signing
pk = bytes.fromhex(re.search(r"sign-public = ([0-9a-f]{64})", pub).group(1))
nacl.signing.VerifyKey(pk).verify(b"popmesh share v2\0" + payload, sig)  # raises if bad
EOF
ok "share create refuses an unknown resource; its token is [2, resource, expires, nonce, signer] signed by the signing node key"

# ---- rules ----
expect_rc 0 mctl "$N1" rule add web deny --path '/admin/*' --priority 10
RULE1=$(sed -n 's/^rule \([0-9a-f]\{16\}\):.*/\1/p' "$WORK/out")
[ -n "$RULE1" ] || fail "rule add did not print the rule id"
expect_rc 0 mctl "$N1" rule add web allow --cidr 10.0.0.0/8 --priority -5
expect_rc 0 mctl "$N1" rule add web allow --cidr 2001:db8::/32
wait_for 10 "3 rules on pop-2" bash -c "[ \"\$('$MESHCTL' -d '$N2' --json rule list web | '$PY' -c 'import json,sys; print(len(json.load(sys.stdin)[\"rules\"]))')\" = 3 ]"
mctl "$N2" --json rule list web | "$PY" -c '
import json, sys
r = json.load(sys.stdin)["rules"]
assert [x["priority"] for x in r] == [-5, 0, 10], r
assert r[0]["cidr"] == "10.0.0.0/8" and r[2]["path"] == "/admin/*" and r[2]["action"] == "deny", r
' || fail "rule list is not in priority order"
mctl "$N2" rule list >"$WORK/rl.txt"
expect_in "$WORK/rl.txt" "/admin/*"
expect_rc 2 mctl "$N1" rule add web allow --cidr 10.0.0.1/8
expect_in "$WORK/err" "host bits set"
expect_rc 2 mctl "$N1" rule add web allow --cidr 10.0.0.0/33
expect_in "$WORK/err" "larger than the address"
expect_rc 2 mctl "$N1" rule add web allow --cidr not-an-ip
expect_in "$WORK/err" "not an IPv4 or IPv6 address"
expect_rc 2 mctl "$N1" rule add web allow --path 'admin'
expect_in "$WORK/err" "starts with '/' or '*'"
expect_rc 2 mctl "$N1" rule add web permit --path '/x'
expect_in "$WORK/err" "allow or deny"
expect_rc 2 mctl "$N1" rule add web allow --path '/x' --cidr 10.0.0.0/8
expect_in "$WORK/err" "exactly one of"
expect_rc 2 mctl "$N1" rule add web allow --path '/x' --priority high
expect_rc 1 mctl "$N1" rule add nothing allow --path '/x'
expect_in "$WORK/err" "there is no resource 'nothing'"
expect_rc 0 mctl "$N2" rule rm "$RULE1"
expect_in "$WORK/out" "rule $RULE1 of web removed"
wait_for 10 "rule gone on pop-1" bash -c "! '$MESHCTL' -d '$N1' rule list | grep -q '$RULE1'"
expect_rc 1 mctl "$N1" rule rm "$RULE1"
expect_in "$WORK/err" "no rule $RULE1"
ok "rule add/list/rm replicate in priority order; bad CIDRs, globs, actions refused"

# ---- user rm ----
expect_rc 0 mctl "$N2" user rm alice
wait_for 10 "alice gone on pop-1" field_is "$N1" alice name absent
expect_rc 0 with_pw "$PW" mctl "$N1" user add alice
[ "$(user_field "$N1" alice session_epoch)" = 4 ] || fail "a re-added user does not start above the old epoch: $(user_field "$N1" alice session_epoch)"
ok "user rm replicates; a re-added name starts above its old epoch (old cookies stay dead)"

# ---- nothing secret in the logs ----
for f in "$WORK"/*.log; do
    for s in "$PW" "another long password" "$SECRET" "${SHARE:6:40}" argon2id; do
        grep -qF -- "$s" "$f" && fail "$f contains a secret ($s)"
    done
done
ok "no password, hash, API key secret or share token in the logs"

done_testing
