/* nodecert (node/records/nodecert.h): node certificates, the root's endorsement, pinned roots,
 * capabilities, the root key file; and signed token records (registry.h). Tampered, expired,
 * not-yet-valid, wrong-root, wrong-capability and malformed inputs are refused. */
#include "node/records/nodecert.h"
#include "node/records/registry.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#define NOW 1800000000000ull

static rootkey_t root, other;
static trustroots_t roots;

static int setup(void **state)
{
    (void)state;
    if (sodium_init() < 0)
        return -1;
    rootkey_generate(&root);
    rootkey_generate(&other);
    memset(&roots, 0, sizeof(roots));
    memcpy(roots.cur, root.pk, 32);
    return 0;
}

static nodecert_t make_cert(const rootkey_t *r, uint32_t caps)
{
    nodecert_t c = {.node_id = 0x1122334455667788ull,
                    .caps = caps,
                    .not_before_ms = NOW - 1000,
                    .not_after_ms = NOW + 1000000};
    memset(c.sign_pk, 7, 32);
    nodecert_sign(&c, r);
    return c;
}

static size_t pack(const nodecert_t *c, uint8_t *out, size_t cap)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    nodecert_pack(&pk, c);
    assert_true(sb.size <= cap);
    memcpy(out, sb.data, sb.size);
    size_t n = sb.size;
    msgpack_sbuffer_destroy(&sb);
    return n;
}

static void test_round_trip(void **state)
{
    (void)state;
    nodecert_t c = make_cert(&root, CAP_VERIFY | CAP_ISSUE_SESSIONS), d;
    uint8_t buf[256];
    size_t n = pack(&c, buf, sizeof(buf));
    const char *why = "";
    assert_int_equal(nodecert_parse(buf, n, &d, &why), 0);
    assert_memory_equal(&c, &d, sizeof(c));
    assert_int_equal(nodecert_verify(&d, &roots, CAP_ISSUE_SESSIONS, NOW, &why), 0);
    assert_int_equal(nodecert_verify(&d, &roots, CAP_VERIFY | CAP_ISSUE_SESSIONS, NOW, &why), 0);
}

static void test_caps_expiry_root(void **state)
{
    (void)state;
    const char *why = "";
    nodecert_t c = make_cert(&root, CAP_VERIFY);
    assert_int_equal(nodecert_verify(&c, &roots, CAP_ISSUE_SESSIONS, NOW, &why), -EACCES);
    assert_string_equal(why, "certificate lacks the capability");
    assert_int_equal(nodecert_verify(&c, &roots, CAP_INVITE, NOW, &why), -EACCES);
    assert_int_equal(nodecert_verify(&c, &roots, CAP_ADMIN, NOW, &why), -EACCES);
    assert_int_equal(nodecert_verify(&c, &roots, 0, NOW + 1000000, &why), -EACCES);
    assert_string_equal(why, "certificate expired");
    assert_int_equal(nodecert_verify(&c, &roots, 0, NOW - 2000, &why), -EACCES);
    assert_string_equal(why, "certificate not valid yet");
    nodecert_t o = make_cert(&other, CAP_ALL);
    assert_int_equal(nodecert_verify(&o, &roots, 0, NOW, &why), -EACCES);
    assert_string_equal(why, "certificate issued by a root this PoP does not accept");
    /* Claiming the right issuer with another root's signature. */
    o.issuer = rootkey_id(root.pk);
    assert_int_equal(nodecert_verify(&o, &roots, 0, NOW, &why), -EACCES);
    assert_int_equal(nodecert_verify(&c, NULL, 0, NOW, &why), -EACCES);
}

/* Every field changed, every bit of the encoding flipped: refused or a parse error. */
static void test_tampered(void **state)
{
    (void)state;
    const char *why = "";
    nodecert_t c = make_cert(&root, CAP_VERIFY), d;
    nodecert_t t = c;
    t.caps |= CAP_ADMIN;
    assert_int_equal(nodecert_verify(&t, &roots, 0, NOW, &why), -EACCES);
    assert_string_equal(why, "certificate signature does not verify (tampered)");
    t = c;
    t.not_after_ms++;
    assert_int_equal(nodecert_verify(&t, &roots, 0, NOW, &why), -EACCES);
    t = c;
    t.node_id ^= 1;
    assert_int_equal(nodecert_verify(&t, &roots, 0, NOW, &why), -EACCES);
    t = c;
    t.sign_pk[31] ^= 1;
    assert_int_equal(nodecert_verify(&t, &roots, 0, NOW, &why), -EACCES);
    uint8_t buf[256];
    size_t n = pack(&c, buf, sizeof(buf));
    unsigned passed = 0;
    for (size_t i = 0; i < n * 8; i++) {
        buf[i / 8] ^= (uint8_t)(1u << (i % 8));
        if (nodecert_parse(buf, n, &d, &why) == 0 && nodecert_verify(&d, &roots, 0, NOW, &why) == 0)
            passed++;
        buf[i / 8] ^= (uint8_t)(1u << (i % 8));
    }
    assert_int_equal(passed, 0);
    for (size_t len = 0; len < n; len++)
        assert_int_not_equal(nodecert_parse(buf, len, &d, &why), 0);
    uint8_t longer[300];
    memcpy(longer, buf, n);
    longer[n] = 0xc0;
    assert_int_equal(nodecert_parse(longer, n + 1, &d, &why), -EBADMSG);
}

static void test_trust_root(void **state)
{
    (void)state;
    uint8_t mesh_pk[32], mesh_sk[64];
    crypto_sign_keypair(mesh_pk, mesh_sk);
    trustroot_rec_t r = {.created_ms = NOW, .legacy_until_ms = 5}, p;
    memcpy(r.root_pk, root.pk, 32);
    trustroot_sign(&r, mesh_sk);
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    trustroot_pack(&pk, &r);
    const char *why = "";
    assert_int_equal(trustroot_parse((uint8_t *)sb.data, sb.size, &p, &why), 0);
    trustroots_t t = {0};
    /* A PoP with nothing pinned takes the mesh key's endorsement... */
    assert_int_equal(trustroots_apply(&t, false, &p, mesh_pk, &why), 1);
    assert_memory_equal(t.cur, root.pk, 32);
    assert_int_equal(t.legacy_until_ms, 5);
    /* ...but not an endorsement by anyone else. */
    trustroot_rec_t q = r;
    trustroot_sign(&q, other.sk);
    trustroots_t u = {0};
    assert_int_equal(trustroots_apply(&u, false, &q, mesh_pk, &why), -EACCES);
    /* With a root pinned, the mesh key cannot replace it (a stolen PoP disk has the mesh key). */
    trustroot_rec_t evil = {.created_ms = NOW};
    memcpy(evil.root_pk, other.pk, 32);
    trustroot_sign(&evil, mesh_sk);
    assert_int_equal(trustroots_apply(&t, true, &evil, mesh_pk, &why), -EACCES);
    /* Rotation: the current root endorses the next; the old one is accepted until then. */
    trustroot_rec_t rot = {.created_ms = NOW, .prev_until_ms = NOW + 100};
    memcpy(rot.root_pk, other.pk, 32);
    trustroot_sign(&rot, root.sk);
    assert_int_equal(trustroots_apply(&t, true, &rot, mesh_pk, &why), 1);
    assert_memory_equal(t.cur, other.pk, 32);
    assert_non_null(trustroots_find(&t, rootkey_id(root.pk), NOW + 99));
    assert_null(trustroots_find(&t, rootkey_id(root.pk), NOW + 100));
    assert_non_null(trustroots_find(&t, rootkey_id(other.pk), NOW + 1000000));
    /* A signature flip or trailing bytes: refused. */
    ((uint8_t *)sb.data)[sb.size - 1] ^= 1;
    assert_int_equal(trustroot_parse((uint8_t *)sb.data, sb.size, &p, &why), -EACCES);
    msgpack_sbuffer_destroy(&sb);
    sodium_memzero(mesh_sk, sizeof(mesh_sk));
}

static void test_files(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_nodecert-XXXXXX", path[256], err[400];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/%s", dir, ROOTKEY_FILE);
    assert_int_equal(rootkey_save(path, &root, err, sizeof(err)), 0);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_not_equal(rootkey_save(path, &root, err, sizeof(err)), 0); /* no overwrite */
    rootkey_t back;
    assert_int_equal(rootkey_load(path, &back, err, sizeof(err)), 0);
    assert_memory_equal(&back, &root, sizeof(root));
    chmod(path, 0644);
    assert_int_equal(rootkey_load(path, &back, err, sizeof(err)), -EPERM);
    unlink(path);
    trustroots_t t = {.has_prev = true, .prev_until_ms = 42, .legacy_until_ms = 7}, u;
    memcpy(t.cur, root.pk, 32);
    memcpy(t.prev, other.pk, 32);
    assert_int_equal(trustroots_load(dir, &u, err, sizeof(err)), -ENOENT);
    assert_int_equal(trustroots_save(dir, &t, err, sizeof(err)), 0);
    assert_int_equal(trustroots_save(dir, &t, err, sizeof(err)), 0); /* replaced */
    assert_int_equal(trustroots_load(dir, &u, err, sizeof(err)), 0);
    assert_memory_equal(&t, &u, sizeof(t));
    const char *bad = "root-public = 12\n";
    assert_int_equal(trustroots_parse(bad, strlen(bad), &u, err, sizeof(err)), -EINVAL);
    const char *none = "legacy-sessions-until-ms = 1\n";
    assert_int_equal(trustroots_parse(none, strlen(none), &u, err, sizeof(err)), -EINVAL);
    snprintf(path, sizeof(path), "%s/%s", dir, TRUSTROOTS_FILE);
    unlink(path);
    rmdir(dir);
}

/* Reads a whole small file into buf as a string. */
static void slurp(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(buf, 1, cap - 1, f);
    fclose(f);
    buf[n] = '\0';
}

/* The key files' bytes are a format: data directories written by earlier versions must load,
 * so what a fixed key saves is pinned here to the letter. */
static void test_file_format(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_nodecert-XXXXXX", path[256], err[400], text[1024];
    assert_non_null(mkdtemp(dir));
    uint8_t seed[32];
    for (int i = 0; i < 32; i++)
        seed[i] = (uint8_t)(0x40 + i);
    rootkey_t k, back;
    crypto_sign_seed_keypair(k.pk, k.sk, seed);
    snprintf(path, sizeof(path), "%s/%s", dir, ROOTKEY_FILE);
    assert_int_equal(rootkey_save(path, &k, err, sizeof(err)), 0);
    slurp(path, text, sizeof(text));
    assert_string_equal(
        text,
        "# popmesh root key: certifies PoPs. Keep it off-line or on one trusted PoP (mode 0600)\n"
        "# root-public = 2543b92ff1095511476adc8369db6ddc933665a11978dda1404ee1066ca9559d"
        " (id 701295e9e868ab49)\n"
        "root-sign-seed = 404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f\n");
    assert_int_equal(rootkey_load(path, &back, err, sizeof(err)), 0);
    assert_memory_equal(&back, &k, sizeof(k));
    unlink(path);

    /* A root file naming another field, or none, is refused with the file's name. */
    static const char *bad[] = {
        "mesh-sign-seed = 404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f\n",
        "root-sign-seed = 4041\n",
        "# nothing\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs(bad[i], f);
        fclose(f);
        chmod(path, 0600);
        assert_int_equal(rootkey_load(path, &back, err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, path));
        unlink(path);
    }

    trustroots_t t = {.has_prev = true, .prev_until_ms = 42, .legacy_until_ms = 7};
    memcpy(t.cur, k.pk, 32);
    for (int i = 0; i < 32; i++)
        seed[i] = (uint8_t)i;
    crypto_sign_seed_keypair(t.prev, back.sk, seed);
    assert_int_equal(trustroots_save(dir, &t, err, sizeof(err)), 0);
    snprintf(path, sizeof(path), "%s/%s", dir, TRUSTROOTS_FILE);
    slurp(path, text, sizeof(text));
    assert_string_equal(
        text, "# popmesh roots this PoP accepts (pinned; see docs/security.md)\n"
              "root-public = 2543b92ff1095511476adc8369db6ddc933665a11978dda1404ee1066ca9559d\n"
              "legacy-sessions-until-ms = 7\n"
              "root-previous = 03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8\n"
              "root-previous-until-ms = 42\n");
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0644);
    unlink(path);
    rmdir(dir);
}

static void test_caps_text(void **state)
{
    (void)state;
    uint32_t caps;
    char err[200], out[CAPS_TEXT_MAX];
    assert_int_equal(nodecert_caps_parse("verify,issue-sessions", &caps, err, sizeof(err)), 0);
    assert_int_equal(caps, CAP_VERIFY | CAP_ISSUE_SESSIONS);
    assert_int_equal(nodecert_caps_parse("admin", &caps, err, sizeof(err)), 0);
    assert_int_equal(caps, CAP_VERIFY | CAP_ADMIN); /* every PoP verifies */
    assert_int_equal(nodecert_caps_parse("all", &caps, err, sizeof(err)), 0);
    assert_int_equal(caps, CAP_ALL);
    assert_int_equal(nodecert_caps_parse("verify,root", &caps, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "unknown capability 'root'"));
    assert_int_equal(nodecert_caps_parse("", &caps, err, sizeof(err)), -EINVAL);
    nodecert_caps_format(CAP_ALL, out, sizeof(out));
    assert_string_equal(out, "verify,issue-sessions,invite,admin");
    nodecert_caps_format(0, out, sizeof(out));
    assert_string_equal(out, "none");
}

static void test_keys(void **state)
{
    (void)state;
    char key[NODECERT_KEY_MAX];
    uint64_t id;
    nodecert_key(0xabcdef0123456789ull, key, sizeof(key));
    assert_string_equal(key, "nodecert/abcdef0123456789");
    assert_int_equal(nodecert_key_id(key, strlen(key), &id), 0);
    assert_true(id == 0xabcdef0123456789ull);
    assert_int_equal(nodecert_key_id("nodecert/ABCDEF0123456789", 25, &id), -EINVAL);
    assert_int_equal(nodecert_key_id("nodecert/abc", 12, &id), -EINVAL);
}

/* Token records signed by their minter: the fields that decide a join are covered. */
static void test_token_sig(void **state)
{
    (void)state;
    uint8_t pk[32], sk[64];
    crypto_sign_keypair(pk, sk);
    reg_token_t t = {.id = 9, .role = ROLE_POP, .expires_ms = NOW, .uses_max = 2, .caps = 3}, u;
    memset(t.join_pk, 5, 32);
    reg_token_sign(&t, 77, sk);
    assert_true(reg_token_sig_ok(&t, pk));
    msgpack_sbuffer sb;
    msgpack_packer mp;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&mp, &sb, msgpack_sbuffer_write);
    reg_token_pack(&mp, &t);
    const char *why = "";
    assert_int_equal(reg_token_parse((uint8_t *)sb.data, sb.size, 9, &u, &why), 0);
    assert_true(u.has_sig && u.minter == 77 && u.caps == 3);
    assert_true(reg_token_sig_ok(&u, pk));
    u.uses_max = 0; /* unlimited uses */
    assert_false(reg_token_sig_ok(&u, pk));
    u = t;
    u.caps = 15;
    assert_false(reg_token_sig_ok(&u, pk));
    u = t;
    u.minter = 78;
    assert_false(reg_token_sig_ok(&u, pk));
    u = t;
    u.has_sig = false;
    assert_false(reg_token_sig_ok(&u, pk));
    msgpack_sbuffer_destroy(&sb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip), cmocka_unit_test(test_caps_expiry_root),
        cmocka_unit_test(test_tampered),   cmocka_unit_test(test_trust_root),
        cmocka_unit_test(test_files),      cmocka_unit_test(test_file_format),
        cmocka_unit_test(test_caps_text),  cmocka_unit_test(test_keys),
        cmocka_unit_test(test_token_sig),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
