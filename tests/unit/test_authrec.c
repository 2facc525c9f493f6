/* The records of edge authentication (node/records/user.h, apikey.h, rule.h, cidr.h): each
 * codec round-trips and refuses every truncation and each broken rule a replicated record
 * could carry (a name that is not its key's, duplicate or invalid groups, a live user without
 * a hash, a rule with both or neither of cidr and path, host bits); user records read back from
 * a real store, unreadable ones skipped; CIDR edges, IPv4-mapped clients, refused spellings.
 * Links popmesh_records only: the records never need node/auth. */
#include "common/mp.h"
#include "node/records/apikey.h"
#include "node/records/authrec.h"
#include "node/records/cidr.h"
#include "node/records/rule.h"
#include "node/records/user.h"
#include "storage/store.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define NOW 1700000000000ull /* ms */

/* Decoding only checks the argon2id prefix; the hash itself is node/auth/password's. */
static const char alice_hash[] = "$argon2id$v=19$m=65536,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$"
                                 "aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g";

static void pack(msgpack_sbuffer *sb, msgpack_packer *pk)
{
    msgpack_sbuffer_init(sb);
    msgpack_packer_init(pk, sb, msgpack_sbuffer_write);
}

/* ---- user record codec ------------------------------------------------------------------- */

static void test_user_record(void **state)
{
    auth_user_t u = {.created_ms = NOW, .session_epoch = 9, .ngroups = 2}, back;
    const char *why = NULL;
    snprintf(u.name, sizeof(u.name), "alice");
    snprintf(u.groups[0], sizeof(u.groups[0]), "ops");
    snprintf(u.groups[1], sizeof(u.groups[1]), "dev");
    snprintf(u.pwhash, sizeof(u.pwhash), "%s", alice_hash);
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    auth_user_pack(&pk, &u);
    assert_int_equal(auth_user_parse((const uint8_t *)sb.data, sb.size, "alice", &back, &why), 0);
    assert_int_equal(back.ngroups, 2);
    assert_string_equal(back.groups[1], "dev");
    assert_string_equal(back.pwhash, alice_hash);
    assert_int_equal(back.session_epoch, 9);
    assert_int_equal(auth_user_parse((const uint8_t *)sb.data, sb.size, "bob", &back, &why),
                     -EBADMSG);
    /* truncations never decode */
    for (size_t l = 0; l < sb.size; l++)
        assert_int_equal(auth_user_parse((const uint8_t *)sb.data, l, "alice", &back, &why),
                         -EBADMSG);
    msgpack_sbuffer_clear(&sb);
    /* a duplicate group, a bad group, a live user without a hash */
    snprintf(u.groups[1], sizeof(u.groups[1]), "ops");
    auth_user_pack(&pk, &u);
    assert_int_equal(auth_user_parse((const uint8_t *)sb.data, sb.size, "alice", &back, &why),
                     -EBADMSG);
    msgpack_sbuffer_clear(&sb);
    snprintf(u.groups[1], sizeof(u.groups[1]), "Bad_Group");
    auth_user_pack(&pk, &u);
    assert_int_equal(auth_user_parse((const uint8_t *)sb.data, sb.size, "alice", &back, &why),
                     -EBADMSG);
    msgpack_sbuffer_clear(&sb);
    snprintf(u.groups[1], sizeof(u.groups[1]), "dev");
    u.pwhash[0] = '\0';
    auth_user_pack(&pk, &u);
    assert_int_equal(auth_user_parse((const uint8_t *)sb.data, sb.size, "alice", &back, &why),
                     -EBADMSG);
    msgpack_sbuffer_clear(&sb);
    u.removed = true; /* a removed user has no hash */
    auth_user_pack(&pk, &u);
    assert_int_equal(auth_user_parse((const uint8_t *)sb.data, sb.size, "alice", &back, &why), 0);
    msgpack_sbuffer_destroy(&sb);
}

/* ---- user records in a store ------------------------------------------------------------- */

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void put_user(store_t *s, const char *name, bool removed)
{
    auth_user_t u = {.created_ms = NOW, .removed = removed};
    char key[AUTH_KEY_MAX];
    msgpack_sbuffer sb;
    msgpack_packer pk;
    snprintf(u.name, sizeof(u.name), "%s", name);
    if (!removed)
        snprintf(u.pwhash, sizeof(u.pwhash), "%s", alice_hash);
    assert_int_equal(auth_user_key(name, key, sizeof(key)), 0);
    pack(&sb, &pk);
    auth_user_pack(&pk, &u);
    assert_int_equal(store_put(s, key, strlen(key), sb.data, sb.size, NOW, NULL), 0);
    msgpack_sbuffer_destroy(&sb);
}

static void test_user_store(void **state)
{
    char dir[64], key[AUTH_KEY_MAX];
    store_t *s;
    store_opts_t o = {.node_id = 42, .nosync = true};
    snprintf(dir, sizeof(dir), "/tmp/popmesh-test-authrec-XXXXXX");
    assert_non_null(mkdtemp(dir));
    assert_int_equal(store_open(dir, &o, &s), 0);
    put_user(s, "carol", false);
    put_user(s, "alice", false);
    put_user(s, "bob", true);
    /* unreadable: a name that is not the key's, garbage, a name too long for any user */
    assert_int_equal(store_put(s, "user/dave", 9, "\x80", 1, NOW, NULL), 0);
    assert_int_equal(store_put(s, "user/erin", 9, "\x90", 1, NOW, NULL), 0);
    memset(key, 'x', sizeof(key));
    memcpy(key, "user/", 5);
    assert_int_equal(store_put(s, key, sizeof(key), "\x80", 1, NOW, NULL), 0);

    auth_user_t u, *all;
    size_t n;
    assert_int_equal(auth_user_get(s, "alice", &u), 0);
    assert_string_equal(u.pwhash, alice_hash);
    assert_int_equal(auth_user_get(s, "bob", &u), 0);
    assert_true(u.removed);
    assert_int_equal(auth_user_get(s, "zed", &u), -ENOENT);
    assert_int_equal(auth_user_get(s, "Not A Name", &u), -ENOENT);
    assert_int_equal(auth_user_get(s, "dave", &u), -EBADMSG);
    assert_int_equal(auth_user_list(s, &all, &n), 0);
    assert_int_equal(n, 3);
    assert_string_equal(all[0].name, "alice");
    assert_string_equal(all[1].name, "bob");
    assert_string_equal(all[2].name, "carol");
    free(all);
    store_close(&s);
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- API key record codec ---------------------------------------------------------------- */

static void test_apikey_record(void **state)
{
    auth_apikey_t k = {.expires_ms = NOW + 1, .created_ms = NOW, .revoked = true}, back;
    const char *why = NULL;
    char key[AUTH_KEY_MAX];
    uint64_t id;
    snprintf(k.user, sizeof(k.user), "alice");
    for (int i = 0; i < 32; i++)
        k.hash[i] = (uint8_t)i;
    auth_apikey_key(0x00ab00000000cd01ull, key, sizeof(key));
    assert_string_equal(key, "apikey/00ab00000000cd01");
    assert_int_equal(authrec_id_parse(key + 7, 16, &id), 0);
    assert_true(id == 0x00ab00000000cd01ull);
    assert_int_equal(authrec_id_parse("00AB00000000CD01", 16, &id), -EINVAL); /* one spelling */
    assert_int_equal(authrec_id_parse("00ab00000000cd0", 15, &id), -EINVAL);
    assert_int_equal(authrec_id_parse("00ab00000000cd0g", 16, &id), -EINVAL);

    msgpack_sbuffer sb;
    msgpack_packer pk;
    pack(&sb, &pk);
    auth_apikey_pack(&pk, &k);
    assert_int_equal(auth_apikey_parse((const uint8_t *)sb.data, sb.size, 77, &back, &why), 0);
    assert_true(back.id == 77); /* the id is the key's, never the record's */
    assert_string_equal(back.user, "alice");
    assert_memory_equal(back.hash, k.hash, 32);
    assert_true(back.expires_ms == NOW + 1 && back.created_ms == NOW && back.revoked);
    for (size_t l = 0; l < sb.size; l++) {
        why = NULL;
        assert_int_equal(auth_apikey_parse((const uint8_t *)sb.data, l, 77, &back, &why), -EBADMSG);
        assert_non_null(why);
    }
    msgpack_sbuffer_clear(&sb);
    snprintf(k.user, sizeof(k.user), "Alice"); /* not a valid user name */
    auth_apikey_pack(&pk, &k);
    assert_int_equal(auth_apikey_parse((const uint8_t *)sb.data, sb.size, 77, &back, &why),
                     -EBADMSG);
    msgpack_sbuffer_clear(&sb);
    /* the hash is required */
    msgpack_pack_map(&pk, 2);
    mpw_kv_str(&pk, "user", "alice");
    mpw_kv_u64(&pk, "expires_ms", 0);
    assert_int_equal(auth_apikey_parse((const uint8_t *)sb.data, sb.size, 77, &back, &why),
                     -EBADMSG);
    msgpack_sbuffer_destroy(&sb);
}

/* ---- the admin flags ----------------------------------------------------------------------- */

/* admin on users and API keys: round-trips; a record written before the field existed (no
 * "admin" key) reads as not admin; anything but a bool there, or the key twice, is refused. */
static void test_admin_flags(void **state)
{
    auth_user_t u = {.created_ms = NOW, .admin = true}, ub;
    auth_apikey_t k = {.created_ms = NOW, .admin = true}, kb;
    const char *why = NULL;
    snprintf(u.name, sizeof(u.name), "alice");
    snprintf(u.pwhash, sizeof(u.pwhash), "%s", alice_hash);
    snprintf(k.user, sizeof(k.user), "alice");
    msgpack_sbuffer sb;
    msgpack_packer pk;
    pack(&sb, &pk);
    auth_user_pack(&pk, &u);
    assert_int_equal(auth_user_parse((const uint8_t *)sb.data, sb.size, "alice", &ub, &why), 0);
    assert_true(ub.admin);
    msgpack_sbuffer_clear(&sb);
    auth_apikey_pack(&pk, &k);
    assert_int_equal(auth_apikey_parse((const uint8_t *)sb.data, sb.size, 5, &kb, &why), 0);
    assert_true(kb.admin);
    msgpack_sbuffer_clear(&sb);
    /* the records as the previous release wrote them */
    msgpack_pack_map(&pk, 6);
    mpw_kv_str(&pk, "name", "alice");
    mpw_str(&pk, "groups");
    msgpack_pack_array(&pk, 0);
    mpw_kv_str(&pk, "pwhash", alice_hash);
    mpw_kv_u64(&pk, "created_ms", NOW);
    mpw_kv_u64(&pk, "session_epoch", 3);
    mpw_kv_bool(&pk, "removed", false);
    ub.admin = true;
    assert_int_equal(auth_user_parse((const uint8_t *)sb.data, sb.size, "alice", &ub, &why), 0);
    assert_false(ub.admin);
    assert_int_equal(ub.session_epoch, 3);
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_map(&pk, 5);
    mpw_kv_str(&pk, "user", "alice");
    mpw_kv_bin(&pk, "hash", k.hash, 32);
    mpw_kv_u64(&pk, "expires_ms", 0);
    mpw_kv_u64(&pk, "created_ms", NOW);
    mpw_kv_bool(&pk, "revoked", false);
    kb.admin = true;
    assert_int_equal(auth_apikey_parse((const uint8_t *)sb.data, sb.size, 5, &kb, &why), 0);
    assert_false(kb.admin);
    msgpack_sbuffer_clear(&sb);
    /* admin as a string ("true"), and twice */
    msgpack_pack_map(&pk, 5);
    mpw_kv_str(&pk, "name", "alice");
    mpw_kv_str(&pk, "pwhash", alice_hash);
    mpw_kv_u64(&pk, "session_epoch", 0);
    mpw_kv_str(&pk, "admin", "true");
    mpw_kv_bool(&pk, "removed", false);
    assert_int_equal(auth_user_parse((const uint8_t *)sb.data, sb.size, "alice", &ub, &why),
                     -EBADMSG);
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_map(&pk, 5);
    mpw_kv_str(&pk, "user", "alice");
    mpw_kv_bin(&pk, "hash", k.hash, 32);
    mpw_kv_u64(&pk, "expires_ms", 0);
    mpw_kv_bool(&pk, "admin", false);
    mpw_kv_bool(&pk, "admin", true);
    assert_int_equal(auth_apikey_parse((const uint8_t *)sb.data, sb.size, 5, &kb, &why),
                     -EBADMSG);
    msgpack_sbuffer_destroy(&sb);
}

/* ---- addresses and CIDRs ----------------------------------------------------------------- */

static void addr(const char *text, auth_addr_t *a)
{
    assert_int_equal(auth_addr_parse(text, a), 0);
}

static bool in(const char *cidr, const char *ip)
{
    auth_cidr_t c;
    auth_addr_t a;
    const char *why;
    assert_int_equal(auth_cidr_parse(cidr, &c, &why), 0);
    addr(ip, &a);
    return auth_cidr_contains(&c, &a);
}

static void test_cidr(void **state)
{
    auth_cidr_t c;
    const char *why;
    assert_true(in("0.0.0.0/0", "203.0.113.7"));
    assert_true(in("0.0.0.0/0", "0.0.0.0"));
    assert_false(in("0.0.0.0/0", "::1")); /* families never mix */
    assert_true(in("::/0", "2001:db8::1"));
    assert_false(in("::/0", "10.0.0.1"));
    assert_true(in("10.1.2.3/32", "10.1.2.3"));
    assert_false(in("10.1.2.3/32", "10.1.2.4"));
    assert_true(in("10.1.2.3", "10.1.2.3")); /* bare address */
    assert_true(in("10.0.0.0/8", "10.255.255.255"));
    assert_false(in("10.0.0.0/8", "11.0.0.0"));
    assert_true(in("192.168.0.0/23", "192.168.1.200"));
    assert_false(in("192.168.0.0/23", "192.168.2.0"));
    assert_true(in("2001:db8::1/128", "2001:db8::1"));
    assert_false(in("2001:db8::1/128", "2001:db8::2"));
    assert_true(in("2001:db8::/33", "2001:db8:7fff::1"));
    assert_false(in("2001:db8::/33", "2001:db8:8000::1"));
    /* an IPv4-mapped client is its IPv4 address */
    assert_true(in("10.0.0.0/8", "::ffff:10.9.8.7"));
    struct sockaddr_in6 s6 = {.sin6_family = AF_INET6};
    auth_addr_t a;
    inet_pton(AF_INET6, "::ffff:10.9.8.7", &s6.sin6_addr);
    assert_int_equal(auth_addr_from_sockaddr((struct sockaddr *)&s6, &a), 0);
    assert_int_equal(a.family, AF_INET);
    struct sockaddr_in s4 = {.sin_family = AF_INET};
    inet_pton(AF_INET, "10.9.8.7", &s4.sin_addr);
    assert_int_equal(auth_addr_from_sockaddr((struct sockaddr *)&s4, &a), 0);
    assert_int_equal(a.a[3], 7);
    /* refused */
    static const char *const bad[] = {"",
                                      "10.0.0.0/33",
                                      "::/129",
                                      "10.0.0.1/24",
                                      "2001:db8::1/64",
                                      "10.0.0.0/",
                                      "10.0.0.0/-1",
                                      "10.0.0.0/08",
                                      "10.0.0/8",
                                      "host/8",
                                      "10.0.0.0/8/8",
                                      "10.0.0.0 /8",
                                      "1.2.3.4/1x",
                                      "fe80::1%eth0/128",
                                      "010.0.0.0/8"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why = NULL;
        assert_int_equal(auth_cidr_parse(bad[i], &c, &why), -EINVAL);
        assert_non_null(why);
    }
    assert_int_equal(auth_addr_parse("nope", &a), -EINVAL);
    assert_false(auth_cidr_contains(&(auth_cidr_t){0}, &a));
}

/* ---- rule record codec ------------------------------------------------------------------- */

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

static void test_rule_record(void **state)
{
    auth_rule_t r = rule("web", 0xabc, AUTH_DENY, "10.0.0.0/8", NULL, -42), back;
    const char *why = NULL;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    auth_rule_pack(&pk, &r);
    assert_int_equal(auth_rule_parse((const uint8_t *)sb.data, sb.size, "web", 0xabc, &back, &why),
                     0);
    assert_int_equal(back.priority, -42);
    assert_int_equal(back.action, AUTH_DENY);
    assert_int_equal(back.net.prefix, 8);
    assert_int_equal(auth_rule_parse((const uint8_t *)sb.data, sb.size, "ssh", 0xabc, &back, &why),
                     -EBADMSG);
    for (size_t l = 0; l < sb.size; l++)
        assert_int_equal(auth_rule_parse((const uint8_t *)sb.data, l, "web", 1, &back, &why),
                         -EBADMSG);
    msgpack_sbuffer_destroy(&sb);

    /* rule_check refusals */
    auth_rule_t bad = r;
    bad.path[0] = '/'; /* both */
    assert_int_equal(auth_rule_check(&bad, &why), -EINVAL);
    bad = r;
    bad.cidr[0] = '\0'; /* neither */
    assert_int_equal(auth_rule_check(&bad, &why), -EINVAL);
    bad = r;
    bad.action = 0;
    assert_int_equal(auth_rule_check(&bad, &why), -EINVAL);
    bad = r;
    bad.priority = AUTH_PRIORITY_LIMIT + 1;
    assert_int_equal(auth_rule_check(&bad, &why), -EINVAL);
    bad = r;
    snprintf(bad.cidr, sizeof(bad.cidr), "10.0.0.1/8");
    assert_int_equal(auth_rule_check(&bad, &why), -EINVAL);
    assert_non_null(strstr(why, "host bits"));
    assert_int_equal(auth_glob_check("admin/*", &why), -EINVAL);
    assert_int_equal(auth_glob_check("/a b", &why), -EINVAL);
    assert_int_equal(auth_glob_check("", &why), -EINVAL);
    assert_int_equal(auth_glob_check("*", &why), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_user_record),   cmocka_unit_test(test_user_store),
        cmocka_unit_test(test_apikey_record), cmocka_unit_test(test_cidr),
        cmocka_unit_test(test_rule_record),   cmocka_unit_test(test_admin_flags),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
