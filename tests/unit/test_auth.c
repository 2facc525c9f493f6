/* Edge authentication (node/auth/): password hashing; session cookies made, verified and
 * refused when tampered (every byte), truncated, expired, signed by another mesh or scoped to
 * another resource; revocation through the user record's epoch on a real store; share links;
 * API keys (good, wrong secret, expired, revoked, removed user); rule order and path globs;
 * the login rate limiter (burst, refill, eviction). The record codecs and CIDRs they rest on
 * are test_authrec's. */
#include "common/mp.h"
#include "node/auth/auth.h"
#include "storage/store.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <sodium.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#define NOW  1700000000000ull /* ms */
#define HOUR (3600ull * 1000)

static meshkey_t key_a, key_b;

/* ---- a store in a temp dir --------------------------------------------------------------- */

struct fixture {
    char dir[64];
    store_t *s;
};

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

static int store_setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/popmesh-test-auth-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    store_opts_t o = {.node_id = 42, .nosync = true};
    if (store_open(f->dir, &o, &f->s))
        return -1;
    *state = f;
    return 0;
}

static int store_teardown(void **state)
{
    struct fixture *f = *state;
    store_close(&f->s);
    nftw(f->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static void put_packed(store_t *s, const char *key, void (*pack)(msgpack_packer *, const void *),
                       const void *rec)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    pack(&pk, rec);
    assert_int_equal(store_put(s, key, strlen(key), sb.data, sb.size, NOW, NULL), 0);
    msgpack_sbuffer_destroy(&sb);
}

static void pack_user(msgpack_packer *pk, const void *u)
{
    auth_user_pack(pk, u);
}

static void pack_apikey(msgpack_packer *pk, const void *a)
{
    auth_apikey_pack(pk, a);
}

static void pack_rule(msgpack_packer *pk, const void *r)
{
    auth_rule_pack(pk, r);
}

/* A user with a real (but cheap to make once) hash. */
static char alice_hash[AUTH_PWHASH_MAX + 1];

static void put_user(store_t *s, const char *name, uint64_t epoch, bool removed)
{
    auth_user_t u = {.session_epoch = epoch, .removed = removed, .created_ms = NOW, .ngroups = 1};
    char key[AUTH_KEY_MAX];
    snprintf(u.name, sizeof(u.name), "%s", name);
    snprintf(u.groups[0], sizeof(u.groups[0]), "staff");
    if (!removed)
        snprintf(u.pwhash, sizeof(u.pwhash), "%s", alice_hash);
    assert_int_equal(auth_user_key(name, key, sizeof(key)), 0);
    put_packed(s, key, pack_user, &u);
}

/* ---- passwords --------------------------------------------------------------------------- */

static void test_password(void **state)
{
    char h[AUTH_PWHASH_MAX + 1];
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(auth_password_hash("correct horse", 13, h, sizeof(h)), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    print_message("argon2id interactive hash: %.0f ms\n",
                  (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6);
    assert_true(strncmp(h, "$argon2id$", 10) == 0);
    assert_true(auth_password_verify(h, "correct horse", 13));
    assert_false(auth_password_verify(h, "correct horsE", 13));
    assert_false(auth_password_verify(h, "correct hors", 12));
    assert_false(auth_password_verify("$argon2id$garbage", "correct horse", 13));
    assert_false(auth_password_verify("", "correct horse", 13));
    assert_int_equal(auth_password_hash("short", 5, h, sizeof(h)), -EINVAL);
    char big[AUTH_PASSWORD_MAX + 2];
    memset(big, 'x', sizeof(big));
    assert_int_equal(auth_password_hash(big, AUTH_PASSWORD_MAX + 1, h, sizeof(h)), -EINVAL);
    assert_int_equal(auth_password_hash(big, 12, h, 64), -EINVAL); /* out too small */
}

/* ---- sessions ---------------------------------------------------------------------------- */

static void test_session_roundtrip(void **state)
{
    char c1[AUTH_TOKEN_MAX + 1], c2[AUTH_TOKEN_MAX + 1];
    auth_session_t s;
    const char *why = NULL;
    assert_int_equal(auth_session_make(&key_a, "alice", 7, NOW, HOUR, "", c1, sizeof(c1)), 0);
    assert_int_equal(auth_session_make(&key_a, "alice", 7, NOW, HOUR, "", c2, sizeof(c2)), 0);
    assert_true(strncmp(c1, AUTH_SESSION_PREFIX, 5) == 0);
    assert_string_not_equal(c1, c2); /* the nonce */
    assert_int_equal(auth_session_verify(key_a.pk, c1, strlen(c1), NOW + 1, &s, &why), 0);
    assert_string_equal(s.user, "alice");
    assert_int_equal(s.epoch, 7);
    assert_int_equal(s.issued_ms, NOW);
    assert_int_equal(s.expires_ms, NOW + HOUR);
    assert_string_equal(s.scope, "");

    /* expiry: valid until the last ms before expires_ms */
    assert_int_equal(auth_session_verify(key_a.pk, c1, strlen(c1), NOW + HOUR - 1, &s, &why), 0);
    assert_int_equal(auth_session_verify(key_a.pk, c1, strlen(c1), NOW + HOUR, &s, &why), -EACCES);
    assert_string_equal(why, "session expired");
    /* issued far in the future */
    assert_int_equal(
        auth_session_verify(key_a.pk, c1, strlen(c1), NOW - AUTH_CLOCK_SKEW_MS - 1, &s, &why),
        -EACCES);
    /* another mesh's key */
    assert_int_equal(auth_session_verify(key_b.pk, c1, strlen(c1), NOW, &s, &why), -EACCES);
    assert_non_null(strstr(why, "signature"));

    /* bad arguments */
    assert_int_equal(auth_session_make(&key_a, "Alice", 0, NOW, HOUR, "", c1, sizeof(c1)), -EINVAL);
    assert_int_equal(auth_session_make(&key_a, "", 0, NOW, HOUR, "", c1, sizeof(c1)), -EINVAL);
    assert_int_equal(auth_session_make(&key_a, "alice", 0, NOW, 0, "", c1, sizeof(c1)), -EINVAL);
    assert_int_equal(
        auth_session_make(&key_a, "alice", 0, NOW, AUTH_SESSION_TTL_MAX + 1, "", c1, sizeof(c1)),
        -EINVAL);
    assert_int_equal(auth_session_make(&key_a, "alice", 0, NOW, HOUR, "", c1, 20), -EINVAL);
}

static void test_session_tampered(void **state)
{
    char c[AUTH_TOKEN_MAX + 1], t[AUTH_TOKEN_MAX + 1];
    auth_session_t s;
    const char *why;
    assert_int_equal(auth_session_make(&key_a, "alice", 3, NOW, HOUR, "web", c, sizeof(c)), 0);
    size_t len = strlen(c);
    /* Every byte, every one of a few flips: never accepted. */
    static const uint8_t flips[] = {0x01, 0x02, 0x04, 0x20, 0x80};
    for (size_t i = 0; i < len; i++) {
        for (size_t f = 0; f < sizeof(flips); f++) {
            memcpy(t, c, len + 1);
            t[i] = (char)(t[i] ^ flips[f]);
            why = NULL;
            assert_int_equal(auth_session_verify(key_a.pk, t, len, NOW, &s, &why), -EACCES);
            assert_non_null(why);
            assert_string_equal(s.user, ""); /* nothing leaks out of a refused cookie */
        }
    }
    /* every truncation, and one byte more */
    for (size_t l = 0; l < len; l++)
        assert_int_equal(auth_session_verify(key_a.pk, c, l, NOW, &s, &why), -EACCES);
    memcpy(t, c, len);
    t[len] = 'A';
    t[len + 1] = '\0';
    assert_int_equal(auth_session_verify(key_a.pk, t, len + 1, NOW, &s, &why), -EACCES);
    /* a share token is not a session, even with the prefix changed */
    char sh[AUTH_TOKEN_MAX + 1];
    assert_int_equal(auth_share_make(&key_a, "web", NOW + HOUR, sh, sizeof(sh)), 0);
    snprintf(t, sizeof(t), "pms1.%s", sh + strlen(AUTH_SHARE_PREFIX));
    assert_int_equal(auth_session_verify(key_a.pk, t, strlen(t), NOW, &s, &why), -EACCES);
    /* junk */
    assert_int_equal(auth_session_verify(key_a.pk, "pms1.", 5, NOW, &s, &why), -EACCES);
    assert_int_equal(auth_session_verify(key_a.pk, "pms1.====", 9, NOW, &s, &why), -EACCES);
    assert_int_equal(auth_session_verify(key_a.pk, "hello", 5, NOW, &s, &why), -EACCES);
}

static void test_session_check(void **state)
{
    struct fixture *f = *state;
    char c[AUTH_TOKEN_MAX + 1], share[AUTH_TOKEN_MAX + 1];
    auth_user_t u;
    const char *why = NULL;
    put_user(f->s, "alice", 4, false);
    assert_int_equal(auth_session_make(&key_a, "alice", 4, NOW, HOUR, "", c, sizeof(c)), 0);
    assert_int_equal(auth_session_check(f->s, key_a.pk, c, strlen(c), NOW, "web", &u, &why), 0);
    assert_string_equal(u.name, "alice");
    assert_string_equal(u.groups[0], "staff");
    /* session revoke: the record's epoch moves on */
    put_user(f->s, "alice", 5, false);
    assert_int_equal(auth_session_check(f->s, key_a.pk, c, strlen(c), NOW, "web", &u, &why),
                     -EACCES);
    assert_non_null(strstr(why, "revoked"));
    assert_string_equal(u.name, "");
    /* removed, then unknown */
    assert_int_equal(auth_session_make(&key_a, "alice", 5, NOW, HOUR, "", c, sizeof(c)), 0);
    assert_int_equal(auth_session_check(f->s, key_a.pk, c, strlen(c), NOW, "web", NULL, &why), 0);
    put_user(f->s, "alice", 6, true);
    assert_int_equal(auth_session_check(f->s, key_a.pk, c, strlen(c), NOW, "web", &u, &why),
                     -EACCES);
    assert_int_equal(auth_session_make(&key_a, "bob", 0, NOW, HOUR, "", c, sizeof(c)), 0);
    assert_int_equal(auth_session_check(f->s, key_a.pk, c, strlen(c), NOW, "web", &u, &why),
                     -EACCES);
    assert_non_null(strstr(why, "does not exist"));

    /* scope: a user session scoped to one resource */
    put_user(f->s, "carol", 0, false);
    assert_int_equal(auth_session_make(&key_a, "carol", 0, NOW, HOUR, "web", c, sizeof(c)), 0);
    assert_int_equal(auth_session_check(f->s, key_a.pk, c, strlen(c), NOW, "web", &u, &why), 0);
    assert_int_equal(auth_session_check(f->s, key_a.pk, c, strlen(c), NOW, "ssh", &u, &why),
                     -EACCES);
    assert_non_null(strstr(why, "scoped"));

    /* a share link turned into a session: only its resource, not past the link's expiry */
    auth_share_t sh;
    auth_session_t s;
    assert_int_equal(auth_share_make(&key_a, "web", NOW + 10000, share, sizeof(share)), 0);
    assert_int_equal(auth_share_verify(key_a.pk, share, strlen(share), NOW, &sh, &why), 0);
    assert_int_equal(auth_session_from_share(&key_a, &sh, NOW, HOUR, c, sizeof(c)), 0);
    assert_int_equal(auth_session_verify(key_a.pk, c, strlen(c), NOW, &s, &why), 0);
    assert_string_equal(s.user, "");
    assert_string_equal(s.scope, "web");
    assert_int_equal(s.expires_ms, NOW + 10000);
    assert_int_equal(auth_session_check(f->s, key_a.pk, c, strlen(c), NOW, "web", &u, &why), 0);
    assert_string_equal(u.name, "");
    assert_int_equal(auth_session_check(f->s, key_a.pk, c, strlen(c), NOW, "ssh", &u, &why),
                     -EACCES);
    assert_int_equal(auth_session_check(f->s, key_a.pk, c, strlen(c), NOW + 10000, "web", &u, &why),
                     -EACCES);
    /* no user and no scope: never made, never accepted */
    assert_int_equal(auth_session_make(&key_a, "", 0, NOW, HOUR, "", c, sizeof(c)), -EINVAL);
}

/* ---- share links ------------------------------------------------------------------------- */

static void test_share(void **state)
{
    char t[AUTH_TOKEN_MAX + 16], x[AUTH_TOKEN_MAX + 1];
    auth_share_t s;
    const char *why;
    assert_int_equal(auth_share_make(&key_a, "web", NOW + HOUR, t, sizeof(t)), 0);
    assert_true(strncmp(t, AUTH_SHARE_PREFIX, 6) == 0);
    assert_int_equal(auth_share_verify(key_a.pk, t, strlen(t), NOW, &s, &why), 0);
    assert_string_equal(s.resource, "web");
    assert_int_equal(s.expires_ms, NOW + HOUR);
    assert_int_equal(auth_share_verify(key_a.pk, t, strlen(t), NOW + HOUR, &s, &why), -EACCES);
    assert_string_equal(why, "share link expired");
    assert_int_equal(auth_share_verify(key_b.pk, t, strlen(t), NOW, &s, &why), -EACCES);
    size_t len = strlen(t);
    for (size_t i = 0; i < len; i++) {
        memcpy(x, t, len + 1);
        x[i] ^= 0x01;
        assert_int_equal(auth_share_verify(key_a.pk, x, len, NOW, &s, &why), -EACCES);
    }
    for (size_t l = 0; l < len; l++)
        assert_int_equal(auth_share_verify(key_a.pk, t, l, NOW, &s, &why), -EACCES);
    /* a session cookie is not a share link */
    assert_int_equal(auth_session_make(&key_a, "alice", 0, NOW, HOUR, "web", x, sizeof(x)), 0);
    snprintf(t, sizeof(t), "pmsh1.%s", x + 5);
    assert_int_equal(auth_share_verify(key_a.pk, t, strlen(t), NOW, &s, &why), -EACCES);
    assert_int_equal(auth_share_make(&key_a, "Web", NOW + HOUR, t, sizeof(t)), -EINVAL);
}

/* ---- API keys ---------------------------------------------------------------------------- */

static void test_apikey(void **state)
{
    struct fixture *f = *state;
    char text[AUTH_APIKEY_TEXT + 1], bad[AUTH_APIKEY_TEXT + 1], key[AUTH_KEY_MAX];
    auth_apikey_t k, back;
    auth_user_t u;
    const char *why = NULL;
    put_user(f->s, "alice", 0, false);
    assert_int_equal(auth_apikey_new("alice", NOW, HOUR, &k, text, sizeof(text)), 0);
    assert_int_equal(strlen(text), AUTH_APIKEY_TEXT);
    assert_true(strncmp(text, "pmk1.", 5) == 0);
    assert_int_equal(k.expires_ms, NOW + HOUR);
    /* the record never holds the secret */
    const char *secret = text + 22;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    auth_apikey_pack(&pk, &k);
    assert_null(memmem(sb.data, sb.size, secret, 10));
    assert_int_equal(auth_apikey_parse((const uint8_t *)sb.data, sb.size, k.id, &back, &why), 0);
    assert_memory_equal(back.hash, k.hash, 32);
    assert_string_equal(back.user, "alice");
    msgpack_sbuffer_destroy(&sb);

    /* unknown until stored */
    assert_int_equal(auth_apikey_check(f->s, text, strlen(text), NOW, &u, &why), -EACCES);
    assert_string_equal(why, "unknown API key");
    auth_apikey_key(k.id, key, sizeof(key));
    put_packed(f->s, key, pack_apikey, &k);
    assert_int_equal(auth_apikey_check(f->s, text, strlen(text), NOW, &u, &why), 0);
    assert_string_equal(u.name, "alice");
    /* wrong secret: change one character of the secret part (kept canonical) */
    memcpy(bad, text, sizeof(bad));
    bad[30] = bad[30] == 'A' ? 'B' : 'A';
    assert_int_equal(auth_apikey_check(f->s, bad, strlen(bad), NOW, &u, &why), -EACCES);
    assert_string_equal(why, "wrong API key secret");
    /* every byte flipped */
    for (size_t i = 0; i < AUTH_APIKEY_TEXT; i++) {
        memcpy(bad, text, sizeof(bad));
        bad[i] ^= 0x01;
        assert_int_equal(auth_apikey_check(f->s, bad, strlen(bad), NOW, NULL, &why), -EACCES);
    }
    for (size_t l = 0; l < AUTH_APIKEY_TEXT; l++)
        assert_int_equal(auth_apikey_check(f->s, text, l, NOW, NULL, &why), -EACCES);
    /* expired */
    assert_int_equal(auth_apikey_check(f->s, text, strlen(text), NOW + HOUR, &u, &why), -EACCES);
    assert_string_equal(why, "API key expired");
    /* revoked */
    k.revoked = true;
    put_packed(f->s, key, pack_apikey, &k);
    assert_int_equal(auth_apikey_check(f->s, text, strlen(text), NOW, &u, &why), -EACCES);
    assert_string_equal(why, "API key revoked");
    /* no expiry, but the user is removed */
    auth_apikey_t k2;
    char text2[AUTH_APIKEY_TEXT + 1];
    assert_int_equal(auth_apikey_new("alice", NOW, 0, &k2, text2, sizeof(text2)), 0);
    assert_int_equal(k2.expires_ms, 0);
    auth_apikey_key(k2.id, key, sizeof(key));
    put_packed(f->s, key, pack_apikey, &k2);
    assert_int_equal(auth_apikey_check(f->s, text2, strlen(text2), NOW + 1000 * HOUR, &u, &why), 0);
    put_user(f->s, "alice", 1, true);
    assert_int_equal(auth_apikey_check(f->s, text2, strlen(text2), NOW, &u, &why), -EACCES);
    assert_non_null(strstr(why, "user"));
    assert_int_equal(auth_apikey_new("Alice", NOW, 0, &k2, text2, sizeof(text2)), -EINVAL);
}

/* ---- rules ------------------------------------------------------------------------------- */

static void addr(const char *text, auth_addr_t *a)
{
    assert_int_equal(auth_addr_parse(text, a), 0);
}

static auth_rule_t rule(const char *res, uint64_t id, enum auth_action act, const char *cidr,
                        const char *path, int64_t prio)
{
    auth_rule_t r = {.id = id, .action = act, .priority = prio, .created_ms = NOW};
    const char *why = NULL;
    snprintf(r.resource, sizeof(r.resource), "%s", res);
    snprintf(r.cidr, sizeof(r.cidr), "%s", cidr ? cidr : "");
    snprintf(r.path, sizeof(r.path), "%s", path ? path : "");
    assert_int_equal(auth_rule_check(&r, &why), 0);
    return r;
}

static void store_rule(store_t *s, const auth_rule_t *r)
{
    char key[AUTH_KEY_MAX];
    assert_int_equal(auth_rule_key(r->resource, r->id, key, sizeof(key)), 0);
    put_packed(s, key, pack_rule, r);
}

static void test_rules(void **state)
{
    struct fixture *f = *state;
    auth_addr_t office, home, v6;
    enum auth_decision d;
    uint64_t id;
    addr("198.51.100.20", &office);
    addr("203.0.113.9", &home);
    addr("2001:db8::5", &v6);
    /* stored out of order: the order comes from (priority, id) */
    /* unreadable records are skipped */
    assert_int_equal(store_put(f->s, "rule/web/zz", 11, "\x90", 1, NOW, NULL), 0);
    assert_int_equal(store_put(f->s, "rule/web/0000000000000099", 25, "\x80", 1, NOW, NULL), 0);
    auth_rule_t rs[] = {
        rule("web", 0x30, AUTH_DENY, NULL, "/admin/*", 10),
        rule("web", 0x20, AUTH_ALLOW, "198.51.100.0/24", NULL, 5),
        rule("web", 0x10, AUTH_ALLOW, NULL, "/public/*", 10),
        rule("web", 0x40, AUTH_DENY, "2001:db8::/32", NULL, -1),
        rule("ssh", 0x50, AUTH_DENY, "0.0.0.0/0", NULL, 0),
    };
    for (size_t i = 0; i < sizeof(rs) / sizeof(rs[0]); i++)
        store_rule(f->s, &rs[i]);
    auth_rule_t *all;
    size_t n;
    assert_int_equal(auth_rules_load(f->s, "web", &all, &n), 0);
    assert_int_equal(n, 4);
    assert_int_equal(all[0].id, 0x40);
    assert_int_equal(all[1].id, 0x20);
    assert_int_equal(all[2].id, 0x10); /* priority tie: smaller id first */
    assert_int_equal(all[3].id, 0x30);
    free(all);
    assert_int_equal(auth_rules_load(f->s, NULL, &all, &n), 0);
    assert_int_equal(n, 5);
    assert_string_equal(all[0].resource, "ssh");
    free(all);

    /* office network: allowed before the /admin deny (priority 5 < 10) */
    assert_int_equal(auth_rules_eval(f->s, "web", &office, "/admin/x", &d, &id), 0);
    assert_int_equal(d, AUTH_DECISION_ALLOW);
    assert_int_equal(id, 0x20);
    assert_int_equal(auth_rules_eval(f->s, "web", &home, "/admin/x", &d, &id), 0);
    assert_int_equal(d, AUTH_DECISION_DENY);
    assert_int_equal(id, 0x30);
    /* '*' crosses '/' (FNM_PATHNAME off) */
    assert_int_equal(auth_rules_eval(f->s, "web", &home, "/admin/a/b/c", &d, &id), 0);
    assert_int_equal(d, AUTH_DECISION_DENY);
    assert_int_equal(auth_rules_eval(f->s, "web", &home, "/public/css/site.css", &d, &id), 0);
    assert_int_equal(d, AUTH_DECISION_ALLOW);
    assert_int_equal(auth_rules_eval(f->s, "web", &home, "/admin", &d, &id), 0);
    assert_int_equal(d, AUTH_DECISION_NONE); /* the glob /admin/STAR needs the slash */
    assert_int_equal(id, 0);
    assert_int_equal(auth_rules_eval(f->s, "web", &home, "/", &d, &id), 0);
    assert_int_equal(d, AUTH_DECISION_NONE);
    assert_int_equal(auth_rules_eval(f->s, "web", &v6, "/public/x", &d, &id), 0);
    assert_int_equal(d, AUTH_DECISION_DENY); /* priority -1 first */
    assert_int_equal(auth_rules_eval(f->s, "web", NULL, "/", &d, &id), 0);
    assert_int_equal(d, AUTH_DECISION_NONE);
    assert_int_equal(auth_rules_eval(f->s, "ssh", &home, "/", &d, &id), 0);
    assert_int_equal(d, AUTH_DECISION_DENY);
    assert_int_equal(auth_rules_eval(f->s, "ssh", &v6, "/", &d, &id), 0);
    assert_int_equal(d, AUTH_DECISION_NONE);
    assert_int_equal(auth_rules_eval(f->s, "nothing", &home, "/", &d, &id), 0);
    assert_int_equal(d, AUTH_DECISION_NONE);
    assert_int_equal(auth_rules_eval(f->s, "BAD", &home, "/", &d, &id), 0);
    assert_int_equal(d, AUTH_DECISION_NONE);

    /* glob classes and '?' */
    auth_rule_t g[] = {rule("x", 1, AUTH_DENY, NULL, "*.php", 0),
                       rule("x", 2, AUTH_ALLOW, NULL, "/v[0-9]/?ealth", 0)};
    assert_int_equal(auth_rules_match(g, 2, &home, "/a/b/index.php", &id), AUTH_DECISION_DENY);
    assert_int_equal(auth_rules_match(g, 2, &home, "/v2/health", &id), AUTH_DECISION_ALLOW);
    assert_int_equal(auth_rules_match(g, 2, &home, "/vx/health", &id), AUTH_DECISION_NONE);
    assert_int_equal(auth_rules_match(g, 2, &home, NULL, &id), AUTH_DECISION_NONE);
}

/* ---- rate limiter ------------------------------------------------------------------------ */

static void test_ratelimit(void **state)
{
    auth_ratelimit_t *rl = auth_ratelimit_new(AUTH_RL_BURST, AUTH_RL_REFILL_MS, 4);
    assert_non_null(rl);
    uint64_t t = 1000;
    for (int i = 0; i < AUTH_RL_BURST; i++)
        assert_true(auth_ratelimit_allow(rl, "ip:1.2.3.4", t));
    assert_false(auth_ratelimit_allow(rl, "ip:1.2.3.4", t));
    assert_true(auth_ratelimit_allow(rl, "user:alice", t)); /* keys are independent */
    /* refill: one every 10 s, however often it is asked in between */
    for (uint64_t dt = 1; dt < AUTH_RL_REFILL_MS; dt += 7)
        assert_false(auth_ratelimit_allow(rl, "ip:1.2.3.4", t + dt));
    assert_true(auth_ratelimit_allow(rl, "ip:1.2.3.4", t + AUTH_RL_REFILL_MS));
    assert_false(auth_ratelimit_allow(rl, "ip:1.2.3.4", t + AUTH_RL_REFILL_MS));
    /* a long pause refills to the burst, not beyond */
    t += 1000 * AUTH_RL_REFILL_MS;
    for (int i = 0; i < AUTH_RL_BURST; i++)
        assert_true(auth_ratelimit_allow(rl, "ip:1.2.3.4", t));
    assert_false(auth_ratelimit_allow(rl, "ip:1.2.3.4", t));
    /* a clock that goes back regains nothing */
    assert_false(auth_ratelimit_allow(rl, "ip:1.2.3.4", 5));
    /* eviction: the table holds 4 keys; ip:1.2.3.4 is the least recently used after 3 more */
    assert_int_equal(auth_ratelimit_size(rl), 2);
    assert_true(auth_ratelimit_allow(rl, "k1", t));
    assert_true(auth_ratelimit_allow(rl, "k2", t));
    assert_true(auth_ratelimit_allow(rl, "user:alice", t)); /* touched: now most recent */
    assert_int_equal(auth_ratelimit_size(rl), 4);
    assert_true(auth_ratelimit_allow(rl, "k3", t)); /* evicts ip:1.2.3.4 */
    assert_int_equal(auth_ratelimit_size(rl), 4);
    assert_true(auth_ratelimit_allow(rl, "ip:1.2.3.4", t)); /* a fresh bucket: evicts k1 */
    for (int i = 1; i < AUTH_RL_BURST; i++)
        assert_true(auth_ratelimit_allow(rl, "user:alice", t));
    assert_false(auth_ratelimit_allow(rl, "user:alice", t)); /* kept its state */
    /* many keys through a small table: bounded, and every lookup still works */
    for (int i = 0; i < 10000; i++) {
        char k[32];
        snprintf(k, sizeof(k), "ip:%d", i);
        assert_true(auth_ratelimit_allow(rl, k, t));
    }
    assert_int_equal(auth_ratelimit_size(rl), 4);
    auth_ratelimit_destroy(&rl);
    assert_null(rl);
    auth_ratelimit_destroy(&rl);
    assert_null(auth_ratelimit_new(0, 1, 1));
    assert_null(auth_ratelimit_new(1, 0, 1));
    assert_null(auth_ratelimit_new(1, 1, 0));
    rl = auth_ratelimit_new(AUTH_RL_BURST, AUTH_RL_REFILL_MS, AUTH_RL_ENTRIES);
    assert_non_null(rl);
    auth_ratelimit_destroy(&rl);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    meshkey_generate(&key_a);
    meshkey_generate(&key_b);
    if (auth_password_hash("alice's password", 16, alice_hash, sizeof(alice_hash)))
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_password),
        cmocka_unit_test(test_session_roundtrip),
        cmocka_unit_test(test_session_tampered),
        cmocka_unit_test_setup_teardown(test_session_check, store_setup, store_teardown),
        cmocka_unit_test(test_share),
        cmocka_unit_test_setup_teardown(test_apikey, store_setup, store_teardown),
        cmocka_unit_test_setup_teardown(test_rules, store_setup, store_teardown),
        cmocka_unit_test(test_ratelimit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
