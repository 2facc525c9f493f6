/* Join handshake codec (node/membership/joinmsg.h): JOIN, JOIN_OK (with and without the mesh key,
 * with registry entries) and JOIN_ERR (control characters, overlong text) round trips; every
 * truncation, wrong version/type/count and lying entry count refused. FORWARD and VERDICT (seed
 * and join arbiter): round trips, every truncation refused, a token entry under another key, an
 * admission without a record and a refusal with one refused. */
#include "common/mp.h"
#include "gossip/antientropy.h"
#include "node/membership/joinmsg.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static void make_node(reg_node_t *n)
{
    memset(n, 0, sizeof(*n));
    strcpy(n->name, "site-ams-4");
    strcpy(n->region, "eu-west");
    strcpy(n->addr, "192.0.2.10:7946");
    for (int i = 0; i < 32; i++) {
        n->curve_pk[i] = (uint8_t)i;
        n->sign_pk[i] = (uint8_t)(255 - i);
    }
    n->role = ROLE_SITE;
}

/* n registry-like entries packed back to back; keys and values live in static storage. */
#define MAX_TEST_ENTRIES 64
static char keys[MAX_TEST_ENTRIES][32];
static uint8_t values[MAX_TEST_ENTRIES][64];

static void make_entries(store_entry_t *es, uint32_t n, msgpack_sbuffer *packed)
{
    msgpack_packer pk;
    msgpack_sbuffer_init(packed);
    msgpack_packer_init(&pk, packed, msgpack_sbuffer_write);
    for (uint32_t i = 0; i < n; i++) {
        store_entry_t *e = &es[i];
        memset(e, 0, sizeof(*e));
        e->klen = (size_t)snprintf(keys[i], sizeof(keys[i]), "node/%016x", i * 7919u);
        e->key = keys[i];
        e->version = 0x18c0000000000000ull + i;
        e->origin = 1000 + i;
        e->tombstone = i % 5 == 3;
        if (!e->tombstone) {
            /* one msgpack object: a fixmap {"n": i} */
            values[i][0] = 0x81;
            values[i][1] = 0xa1;
            values[i][2] = 'n';
            values[i][3] = (uint8_t)(i & 0x7f);
            e->value = values[i];
            e->vlen = 4;
        }
        ae_entry_pack(&pk, e);
    }
}

static void pack_ok(msgpack_sbuffer *sb, const uint8_t pk32[32], const uint8_t *sk,
                    const msgpack_sbuffer *entries, uint32_t count)
{
    msgpack_packer pk;
    msgpack_sbuffer_init(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    joinmsg_pack_ok(&pk, pk32, sk, entries ? entries->data : NULL, entries ? entries->size : 0,
                    count, NULL);
}

static void pack_err(msgpack_sbuffer *sb, const char *code, const char *message)
{
    msgpack_packer pk;
    msgpack_sbuffer_init(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    joinmsg_pack_err(&pk, code, message);
}

static int reply(const msgpack_sbuffer *sb, joinmsg_reply_t *r, const char **why)
{
    *why = NULL;
    return joinmsg_decode_reply((const uint8_t *)sb->data, sb->size, r, why);
}

/* Every strict prefix of buf is refused by the decoder chosen by which (0 JOIN, 1 reply). */
static void assert_truncations_refused(const void *buf, size_t size, int which)
{
    for (size_t len = 0; len < size; len++) {
        uint8_t *cut = malloc(len ? len : 1);
        memcpy(cut, buf, len);
        const char *why = NULL;
        int rc;
        if (which == 0) {
            reg_node_t n;
            rc = joinmsg_decode_join(cut, len, &n, &why);
        } else {
            joinmsg_reply_t r;
            rc = joinmsg_decode_reply(cut, len, &r, &why);
            if (rc == 0)
                free(r.entries);
            else
                assert_null(r.entries);
        }
        if (rc != -EBADMSG)
            fail_msg("message cut to %zu of %zu bytes accepted", len, size);
        assert_non_null(why);
        free(cut);
    }
}

/* ---- JOIN ------------------------------------------------------------------------------- */

static void test_join_roundtrip(void **state)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    for (int variant = 0; variant < 2; variant++) {
        reg_node_t n, back;
        const char *why = NULL;
        make_node(&n);
        if (variant == 1) { /* empty region, every other string at its largest */
            n.region[0] = '\0';
            memset(n.name, 'n', NODECFG_NAME_MAX);
            n.name[NODECFG_NAME_MAX] = '\0';
            memset(n.addr, 'a', NODECFG_ADDR_MAX);
            n.addr[NODECFG_ADDR_MAX] = '\0';
            n.role = ROLE_POP;
        }
        /* What the joiner does not choose is not sent. */
        n.id = 77;
        n.joined_ms = 88;
        n.removed = true;
        msgpack_sbuffer_clear(&sb);
        joinmsg_pack_join(&pk, &n);
        memset(&back, 0xee, sizeof(back));
        assert_int_equal(joinmsg_decode_join((uint8_t *)sb.data, sb.size, &back, &why), 0);
        assert_string_equal(back.name, n.name);
        assert_string_equal(back.region, n.region);
        assert_string_equal(back.addr, n.addr);
        assert_memory_equal(back.curve_pk, n.curve_pk, 32);
        assert_memory_equal(back.sign_pk, n.sign_pk, 32);
        assert_int_equal(back.role, n.role);
        assert_true(back.id == 0 && back.joined_ms == 0 && !back.removed);
        assert_truncations_refused(sb.data, sb.size, 0);
    }
    msgpack_sbuffer_destroy(&sb);
}

/* A JOIN built by hand: fields in order, with one of them replaced. */
static int decode_join_variant(int variant)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    uint8_t key[33] = {0};
    char longname[NODECFG_NAME_MAX + 2];
    memset(longname, 'x', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    msgpack_pack_array(&pk, variant == 1 ? 7 : variant == 2 ? 9 : 8);
    msgpack_pack_uint32(&pk, variant == 3 ? 2 : 1);
    msgpack_pack_uint32(&pk, variant == 4 ? MESH_MSG_JOIN_OK : MESH_MSG_JOIN);
    if (variant == 5)
        mpw_str(&pk, longname);
    else if (variant == 6)
        mpw_strn(&pk, "a\0b", 3);
    else if (variant == 7)
        msgpack_pack_uint32(&pk, 5);
    else
        mpw_str(&pk, "name");
    mpw_str(&pk, "region");
    mpw_str(&pk, "h:1");
    mpw_bin(&pk, key, variant == 8 ? 31 : 32);
    if (variant == 9)
        mpw_str(&pk, "0123456789abcdef0123456789abcdef");
    else
        mpw_bin(&pk, key, 32);
    if (variant == 1)
        ; /* role missing */
    else
        mpw_str(&pk, variant == 11 ? "relay" : "pop"); /* 11: a role that is not one */
    if (variant == 2 || variant == 10)
        msgpack_pack_nil(&pk); /* a ninth element, or a byte after the array */
    reg_node_t n;
    const char *why = NULL;
    int rc = joinmsg_decode_join((uint8_t *)sb.data, sb.size, &n, &why);
    if (rc)
        assert_non_null(why);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

static void test_join_malformed(void **state)
{
    assert_int_equal(decode_join_variant(0), 0); /* the builder itself is right */
    for (int v = 1; v <= 11; v++)
        if (decode_join_variant(v) != -EBADMSG)
            fail_msg("JOIN variant %d accepted", v);
    reg_node_t n;
    const char *why;
    assert_int_equal(joinmsg_decode_join(NULL, 0, &n, &why), -EBADMSG);
    /* A reply is not a JOIN. */
    msgpack_sbuffer sb;
    pack_err(&sb, "x", "y");
    assert_int_equal(joinmsg_decode_join((uint8_t *)sb.data, sb.size, &n, &why), -EBADMSG);
    msgpack_sbuffer_destroy(&sb);
}

/* ---- JOIN_OK ---------------------------------------------------------------------------- */

static void check_ok(const uint8_t mesh_pk[32], const uint8_t *mesh_sk, uint32_t count)
{
    store_entry_t es[MAX_TEST_ENTRIES];
    msgpack_sbuffer entries, sb;
    make_entries(es, count, &entries);
    pack_ok(&sb, mesh_pk, mesh_sk, &entries, count);
    joinmsg_reply_t r;
    const char *why;
    assert_int_equal(reply(&sb, &r, &why), 0);
    assert_int_equal(r.type, MESH_MSG_JOIN_OK);
    assert_memory_equal(r.mesh_pk, mesh_pk, 32);
    assert_int_equal(r.has_mesh_sk, mesh_sk != NULL);
    if (mesh_sk) {
        assert_memory_equal(r.mesh_sk, mesh_sk, 64);
    } else {
        static const uint8_t zero[64];
        assert_memory_equal(r.mesh_sk, zero, 64);
    }
    assert_int_equal(r.nentries, count);
    assert_non_null(r.entries);
    const uint8_t *lo = (const uint8_t *)sb.data, *hi = lo + sb.size;
    for (uint32_t i = 0; i < count; i++) {
        const store_entry_t *a = &es[i], *b = &r.entries[i];
        assert_int_equal(b->klen, a->klen);
        assert_memory_equal(b->key, a->key, a->klen);
        assert_true(b->version == a->version);
        assert_true(b->origin == a->origin);
        assert_int_equal(b->tombstone, a->tombstone);
        if (a->tombstone) {
            assert_null(b->value);
            assert_int_equal(b->vlen, 0);
        } else {
            assert_int_equal(b->vlen, a->vlen);
            assert_memory_equal(b->value, a->value, a->vlen);
            assert_true(b->value >= lo && b->value + b->vlen <= hi); /* borrowed */
        }
        assert_true((const uint8_t *)b->key >= lo && (const uint8_t *)b->key + b->klen <= hi);
    }
    free(r.entries);
    if (count <= 8)
        assert_truncations_refused(sb.data, sb.size, 1);
    msgpack_sbuffer_destroy(&sb);
    msgpack_sbuffer_destroy(&entries);
}

static void test_ok_roundtrip(void **state)
{
    uint8_t pk[32], sk[64];
    for (int i = 0; i < 32; i++)
        pk[i] = (uint8_t)(0x40 + i);
    for (int i = 0; i < 64; i++)
        sk[i] = (uint8_t)(0x90 + i);
    check_ok(pk, sk, 0);
    check_ok(pk, NULL, 0);
    check_ok(pk, sk, 1);
    check_ok(pk, NULL, 7);
    check_ok(pk, sk, MAX_TEST_ENTRIES);
}

/* JOIN_OK built by hand with one part wrong. */
static int decode_ok_variant(int variant)
{
    msgpack_sbuffer sb, entries;
    msgpack_packer pk;
    store_entry_t es[3];
    make_entries(es, 3, &entries);
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    uint8_t key[65] = {0};
    msgpack_pack_array(&pk, variant == 1 ? 4 : variant == 2 ? 6 : 5);
    msgpack_pack_uint32(&pk, variant == 3 ? 0 : 1);
    msgpack_pack_uint32(&pk, variant == 4 ? 51 : variant == 5 ? MESH_MSG_JOIN : MESH_MSG_JOIN_OK);
    mpw_bin(&pk, key, variant == 6 ? 31 : 32);
    if (variant == 7)
        mpw_bin(&pk, key, 32); /* a mesh_sk of the wrong size */
    else if (variant == 8)
        mpw_str(&pk, "secret");
    else
        mpw_bin(&pk, key, 64);
    if (variant == 9) {
        msgpack_pack_map(&pk, 0); /* registry not an array */
    } else {
        /* 10: one more entry announced than sent; 11: one fewer */
        msgpack_pack_array(&pk, variant == 10 ? 4 : variant == 11 ? 2 : 3);
        mpw_raw(&pk, entries.data, entries.size);
    }
    if (variant == 2 || variant == 12)
        msgpack_pack_nil(&pk);
    joinmsg_reply_t r;
    const char *why = NULL;
    int rc = reply(&sb, &r, &why);
    if (rc == 0)
        free(r.entries);
    else
        assert_non_null(why);
    msgpack_sbuffer_destroy(&sb);
    msgpack_sbuffer_destroy(&entries);
    return rc;
}

/* The store key: a sixth element for PoPs, absent for sites; a malformed one refused. */
static void test_ok_store_key(void **state)
{
    (void)state;
    uint8_t pk32[32], sk[64];
    memset(pk32, 1, sizeof(pk32));
    memset(sk, 2, sizeof(sk));
    storekey_t key = {.id = 3};
    memset(key.key, 0x5a, sizeof(key.key));
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    joinmsg_pack_ok(&pk, pk32, sk, NULL, 0, 0, &key);
    joinmsg_reply_t r;
    const char *why = NULL;
    assert_int_equal(joinmsg_decode_reply((uint8_t *)sb.data, sb.size, &r, &why), 0);
    assert_true(r.has_store_key);
    assert_int_equal(r.store_key.id, 3);
    assert_memory_equal(r.store_key.key, key.key, 32);
    free(r.entries);
    /* Every truncation is refused. */
    for (size_t n = 0; n < sb.size; n++)
        assert_int_equal(joinmsg_decode_reply((uint8_t *)sb.data, n, &r, &why), -EBADMSG);
    /* Key id 0, and a short key. */
    for (int bad = 0; bad < 2; bad++) {
        msgpack_sbuffer b2;
        msgpack_sbuffer_init(&b2);
        msgpack_packer_init(&pk, &b2, msgpack_sbuffer_write);
        msgpack_pack_array(&pk, 6);
        msgpack_pack_uint32(&pk, 1);
        msgpack_pack_uint32(&pk, 49);
        msgpack_pack_bin(&pk, 32);
        msgpack_pack_bin_body(&pk, pk32, 32);
        msgpack_pack_nil(&pk);
        msgpack_pack_array(&pk, 0);
        msgpack_pack_array(&pk, 2);
        msgpack_pack_uint32(&pk, bad == 0 ? 0 : 1);
        msgpack_pack_bin(&pk, bad == 0 ? 32 : 31);
        msgpack_pack_bin_body(&pk, key.key, bad == 0 ? 32 : 31);
        assert_int_equal(joinmsg_decode_reply((uint8_t *)b2.data, b2.size, &r, &why), -EBADMSG);
        assert_string_equal(why, "malformed store key");
        msgpack_sbuffer_destroy(&b2);
    }
    msgpack_sbuffer_destroy(&sb);
    /* Without it (a site; a seed of an older version): 5 elements, no key. */
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    joinmsg_pack_ok(&pk, pk32, NULL, NULL, 0, 0, NULL);
    assert_int_equal((uint8_t)sb.data[0], 0x95);
    assert_int_equal(joinmsg_decode_reply((uint8_t *)sb.data, sb.size, &r, &why), 0);
    assert_false(r.has_store_key);
    free(r.entries);
    msgpack_sbuffer_destroy(&sb);
}

static void test_ok_malformed(void **state)
{
    assert_int_equal(decode_ok_variant(0), 0);
    for (int v = 1; v <= 12; v++)
        if (decode_ok_variant(v) != -EBADMSG)
            fail_msg("JOIN_OK variant %d accepted", v);
}

static void test_ok_bad_entry(void **state)
{
    /* Entries that are not [bin, uint, uint, bool, any] make the whole reply fail. */
    static const char *const bad_entries[] = {
        "\x95\xa1k\x01\x01\xc2\xc0",     /* key is a str */
        "\x94\xc4\x01k\x01\x01\xc2",     /* four elements */
        "\x95\xc4\x01k\xff\x01\xc2\xc0", /* negative version */
        "\x95\xc4\x01k\x01\x01\x01\xc0", /* tombstone flag not a bool */
        "\x95\xc4\x01k\x01\x01\xc2\xc1", /* value 0xc1 (never used) */
        "\x95\xc4\x05k\x01\x01\xc2\xc0", /* key length past the end */
    };
    static const size_t lens[] = {7, 7, 8, 8, 8, 8};
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        msgpack_sbuffer raw, sb;
        msgpack_sbuffer_init(&raw);
        msgpack_sbuffer_write(&raw, bad_entries[i], lens[i]);
        uint8_t pk[32] = {1};
        pack_ok(&sb, pk, NULL, &raw, 1);
        joinmsg_reply_t r;
        const char *why;
        if (reply(&sb, &r, &why) != -EBADMSG)
            fail_msg("JOIN_OK with bad entry %zu accepted", i);
        assert_null(r.entries);
        msgpack_sbuffer_destroy(&sb);
        msgpack_sbuffer_destroy(&raw);
    }
}

static void test_ok_count_bounded(void **state)
{
    /* A count larger than the bytes left is refused before anything is allocated (ASan
     * would abort on a calloc of 0xffffffff entries). */
    uint8_t pk[32] = {2};
    msgpack_sbuffer sb;
    pack_ok(&sb, pk, NULL, NULL, 0);
    sb.size--; /* replace the empty array header with an array32 of 2^32 - 1 */
    msgpack_sbuffer_write(&sb, "\xdd\xff\xff\xff\xff\xc0\xc0", 7);
    joinmsg_reply_t r;
    const char *why;
    assert_int_equal(reply(&sb, &r, &why), -EBADMSG);
    assert_null(r.entries);

    /* More than JOINMSG_MAX_ENTRIES, with enough bytes behind it: refused by the limit. */
    sb.size -= 7;
    uint32_t n = JOINMSG_MAX_ENTRIES + 1;
    uint8_t hdr[5] = {0xdd, (uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
    msgpack_sbuffer_write(&sb, (const char *)hdr, 5);
    char *fill = malloc(n);
    memset(fill, 0xc0, n);
    msgpack_sbuffer_write(&sb, fill, n);
    free(fill);
    assert_int_equal(reply(&sb, &r, &why), -EBADMSG);
    assert_string_equal(why, "malformed registry");
    assert_null(r.entries);
    msgpack_sbuffer_destroy(&sb);
}

/* ---- JOIN_ERR --------------------------------------------------------------------------- */

static void test_err(void **state)
{
    msgpack_sbuffer sb;
    joinmsg_reply_t r;
    const char *why;

    pack_err(&sb, "expired", "the token expired 12 s ago");
    assert_int_equal(reply(&sb, &r, &why), 0);
    assert_int_equal(r.type, MESH_MSG_JOIN_ERR);
    assert_string_equal(r.code, "expired");
    assert_string_equal(r.message, "the token expired 12 s ago");
    assert_null(r.entries);
    assert_truncations_refused(sb.data, sb.size, 1);
    msgpack_sbuffer_destroy(&sb);

    /* Control characters from the peer never reach the terminal. */
    char msg[17];
    memcpy(msg, "a\x1b[2Jb\nc\rd\te\x07\x01\x1f\0z", 17);
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 4);
    msgpack_pack_uint32(&pk, 1);
    msgpack_pack_uint32(&pk, MESH_MSG_JOIN_ERR);
    mpw_str(&pk, "bad\x1b[31m");
    mpw_strn(&pk, msg, 17); /* with a NUL inside too */
    assert_int_equal(reply(&sb, &r, &why), 0);
    assert_string_equal(r.message, "a [2Jb c d e    z");
    assert_int_equal(strlen(r.message), 17);
    assert_string_equal(r.code, "bad [31m");
    for (size_t i = 0; r.message[i]; i++)
        assert_true((unsigned char)r.message[i] >= 0x20);
    msgpack_sbuffer_destroy(&sb);

    /* An overlong message is cut to fit, still NUL-terminated. */
    char big[1000];
    memset(big, 'm', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    big[sizeof(r.message) - 2] = 'Z'; /* the last character kept */
    pack_err(&sb, "long", big);
    memset(&r, 0xee, sizeof(r));
    assert_int_equal(reply(&sb, &r, &why), 0);
    assert_int_equal(strlen(r.message), sizeof(r.message) - 1);
    assert_int_equal(r.message[sizeof(r.message) - 2], 'Z');
    assert_memory_equal(r.message, big, sizeof(r.message) - 1);
    msgpack_sbuffer_destroy(&sb);

    /* Empty strings are fine; a code that does not fit is refused. */
    pack_err(&sb, "", "");
    assert_int_equal(reply(&sb, &r, &why), 0);
    assert_string_equal(r.code, "");
    assert_string_equal(r.message, "");
    msgpack_sbuffer_destroy(&sb);
    char code[sizeof(r.code) + 1];
    memset(code, 'c', sizeof(code) - 1);
    code[sizeof(code) - 1] = '\0';
    pack_err(&sb, code, "m");
    assert_int_equal(reply(&sb, &r, &why), -EBADMSG);
    msgpack_sbuffer_destroy(&sb);
    code[sizeof(r.code) - 1] = '\0'; /* 31 characters: fits */
    pack_err(&sb, code, "m");
    assert_int_equal(reply(&sb, &r, &why), 0);
    assert_string_equal(r.code, code);
    msgpack_sbuffer_destroy(&sb);
}

static void test_err_malformed(void **state)
{
    for (int variant = 1; variant <= 7; variant++) {
        msgpack_sbuffer sb;
        msgpack_packer pk;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_array(&pk, variant == 1 ? 3 : variant == 2 ? 5 : 4);
        msgpack_pack_uint32(&pk, variant == 3 ? 2 : 1);
        msgpack_pack_uint32(&pk, MESH_MSG_JOIN_ERR);
        if (variant == 4)
            mpw_strn(&pk, "a\0b", 3); /* NUL in the code */
        else if (variant == 5)
            msgpack_pack_uint32(&pk, 7);
        else
            mpw_str(&pk, "code");
        if (variant == 6)
            mpw_bin(&pk, "msg", 3);
        else if (variant != 1)
            mpw_str(&pk, "msg");
        if (variant == 2 || variant == 7)
            msgpack_pack_nil(&pk);
        joinmsg_reply_t r;
        const char *why;
        if (reply(&sb, &r, &why) != -EBADMSG)
            fail_msg("JOIN_ERR variant %d accepted", variant);
        assert_non_null(why);
        msgpack_sbuffer_destroy(&sb);
    }
    /* Not an array at all; a negative version. */
    static const uint8_t junk[] = {0x81, 0xa1, 'a', 0x01};
    static const uint8_t neg[] = {0x94, 0xff, 0x32, 0xa0, 0xa0};
    joinmsg_reply_t r;
    const char *why;
    assert_int_equal(joinmsg_decode_reply(junk, sizeof(junk), &r, &why), -EBADMSG);
    assert_int_equal(joinmsg_decode_reply(neg, sizeof(neg), &r, &why), -EBADMSG);
    assert_int_equal(joinmsg_decode_reply(NULL, 0, &r, &why), -EBADMSG);
}

/* ---- FORWARD and VERDICT ------------------------------------------------------------------ */

static const uint8_t tok_value[] = {0x81, 0xa4, 'r', 'o', 'l', 'e', 0xa3, 'p', 'o', 'p'};
static const uint8_t node_value[] = {0x81, 0xa4, 'n', 'a', 'm', 'e', 0xa3, 'k', '-', '1'};

static void pack_forward(msgpack_sbuffer *sb, uint64_t tid, const char *key, bool tombstone)
{
    reg_node_t n;
    make_node(&n);
    msgpack_sbuffer join;
    msgpack_packer pk;
    msgpack_sbuffer_init(&join);
    msgpack_packer_init(&pk, &join, msgpack_sbuffer_write);
    joinmsg_pack_join(&pk, &n);
    store_entry_t t = {.key = (char *)key, .klen = strlen(key), .version = 77, .origin = 9};
    if (tombstone)
        t.tombstone = true;
    else
        t.value = (uint8_t *)tok_value, t.vlen = sizeof(tok_value);
    msgpack_sbuffer_init(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    joinmsg_pack_forward(&pk, 42, tid, &t, (const uint8_t *)join.data, join.size, false);
    msgpack_sbuffer_destroy(&join);
}

static void test_forward(void **state)
{
    msgpack_sbuffer sb;
    joinmsg_forward_t f;
    const char *why = NULL;
    pack_forward(&sb, 0x1234, "token/0000000000001234", false);
    assert_int_equal(joinmsg_decode_forward((const uint8_t *)sb.data, sb.size, &f, &why), 0);
    assert_false(f.relayed);
    assert_int_equal(f.seq, 42);
    assert_int_equal(f.token_id, 0x1234);
    assert_int_equal(f.token.version, 77);
    assert_int_equal(f.token.vlen, sizeof(tok_value));
    assert_memory_equal(f.token.value, tok_value, sizeof(tok_value));
    reg_node_t n, want;
    make_node(&want);
    assert_int_equal(joinmsg_decode_join(f.join, f.join_len, &n, &why), 0);
    assert_string_equal(n.name, want.name);
    /* Every truncation refused. */
    for (size_t cut = 0; cut < sb.size; cut++)
        if (joinmsg_decode_forward((const uint8_t *)sb.data, cut, &f, &why) != -EBADMSG)
            fail_msg("FORWARD cut at %zu accepted", cut);
    msgpack_sbuffer_destroy(&sb);
    /* The token record must be the token's, and not a deletion. */
    pack_forward(&sb, 0x1234, "token/0000000000001235", false);
    assert_int_equal(joinmsg_decode_forward((const uint8_t *)sb.data, sb.size, &f, &why), -EBADMSG);
    msgpack_sbuffer_destroy(&sb);
    pack_forward(&sb, 0x1234, "node/0000000000001234", false);
    assert_int_equal(joinmsg_decode_forward((const uint8_t *)sb.data, sb.size, &f, &why), -EBADMSG);
    msgpack_sbuffer_destroy(&sb);
    pack_forward(&sb, 0x1234, "token/0000000000001234", true);
    assert_int_equal(joinmsg_decode_forward((const uint8_t *)sb.data, sb.size, &f, &why), -EBADMSG);
    assert_non_null(why);
    msgpack_sbuffer_destroy(&sb);
    /* Relayed: a 7th field, true; a plain one decodes as not relayed (above: f.relayed). */
    {
        store_entry_t t = {.key = (char *)"token/0000000000001234", .klen = 22, .version = 1,
                           .value = (uint8_t *)tok_value, .vlen = sizeof(tok_value)};
        msgpack_packer pk;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        static const uint8_t j[] = {0x90};
        joinmsg_pack_forward(&pk, 7, 0x1234, &t, j, sizeof(j), true);
        assert_int_equal(joinmsg_decode_forward((const uint8_t *)sb.data, sb.size, &f, &why), 0);
        assert_true(f.relayed);
        assert_int_equal(f.seq, 7);
        for (size_t cut = 0; cut < sb.size; cut++)
            if (joinmsg_decode_forward((const uint8_t *)sb.data, cut, &f, &why) != -EBADMSG)
                fail_msg("relayed FORWARD cut at %zu accepted", cut);
        /* the 7th field must be a bool */
        ((uint8_t *)sb.data)[sb.size - 1] = 0x01;
        assert_int_equal(joinmsg_decode_forward((const uint8_t *)sb.data, sb.size, &f, &why),
                         -EBADMSG);
        msgpack_sbuffer_destroy(&sb);
    }
    /* Another message type, a trailing byte. */
    pack_err(&sb, "x", "y");
    assert_int_equal(joinmsg_decode_forward((const uint8_t *)sb.data, sb.size, &f, &why), -EBADMSG);
    msgpack_sbuffer_destroy(&sb);
    pack_forward(&sb, 1, "token/0000000000000001", false);
    msgpack_sbuffer_write(&sb, "\xc0", 1);
    assert_int_equal(joinmsg_decode_forward((const uint8_t *)sb.data, sb.size, &f, &why), -EBADMSG);
    msgpack_sbuffer_destroy(&sb);
}

static int verdict(const char *code, const char *message, const store_entry_t *node,
                   joinmsg_verdict_t *v, msgpack_sbuffer *sb)
{
    msgpack_packer pk;
    const char *why = NULL;
    msgpack_sbuffer_init(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    joinmsg_pack_verdict(&pk, 7, code, message, node);
    int rc = joinmsg_decode_verdict((const uint8_t *)sb->data, sb->size, v, &why);
    assert_true(rc == 0 || why != NULL);
    return rc;
}

static void test_verdict(void **state)
{
    store_entry_t node = {.key = "node/00000000000000ab", .klen = 21, .version = 5,
                          .value = (uint8_t *)node_value, .vlen = sizeof(node_value)};
    joinmsg_verdict_t v;
    msgpack_sbuffer sb;
    /* Admitted: the record comes back. */
    assert_int_equal(verdict("", "", &node, &v, &sb), 0);
    assert_int_equal(v.seq, 7);
    assert_string_equal(v.code, "");
    assert_true(v.has_node);
    assert_int_equal(v.node.klen, 21);
    assert_memory_equal(v.node.value, node_value, sizeof(node_value));
    const char *why;
    for (size_t cut = 0; cut < sb.size; cut++)
        if (joinmsg_decode_verdict((const uint8_t *)sb.data, cut, &v, &why) != -EBADMSG)
            fail_msg("VERDICT cut at %zu accepted", cut);
    msgpack_sbuffer_destroy(&sb);
    /* Refused: code and message, control characters replaced, a long message cut. */
    char longmsg[1000];
    memset(longmsg, 'x', sizeof(longmsg) - 1);
    longmsg[sizeof(longmsg) - 1] = '\0';
    longmsg[3] = '\033';
    assert_int_equal(verdict("used-up", longmsg, NULL, &v, &sb), 0);
    assert_string_equal(v.code, "used-up");
    assert_false(v.has_node);
    assert_int_equal(strlen(v.message), JOINMSG_MESSAGE_MAX);
    assert_int_equal(v.message[3], ' ');
    msgpack_sbuffer_destroy(&sb);
    /* An admission without a record, a refusal with one, a record under another prefix, a
     * deletion, a code that does not fit. */
    assert_int_equal(verdict("", "", NULL, &v, &sb), -EBADMSG);
    msgpack_sbuffer_destroy(&sb);
    assert_int_equal(verdict("used-up", "no", &node, &v, &sb), -EBADMSG);
    msgpack_sbuffer_destroy(&sb);
    store_entry_t other = node;
    other.key = "token/00000000000000ab";
    other.klen = 22;
    assert_int_equal(verdict("", "", &other, &v, &sb), -EBADMSG);
    msgpack_sbuffer_destroy(&sb);
    store_entry_t del = {.key = node.key, .klen = node.klen, .version = 6, .tombstone = true};
    assert_int_equal(verdict("", "", &del, &v, &sb), -EBADMSG);
    msgpack_sbuffer_destroy(&sb);
    char code[JOINMSG_CODE_MAX + 2];
    memset(code, 'c', sizeof(code) - 1);
    code[sizeof(code) - 1] = '\0';
    assert_int_equal(verdict(code, "m", NULL, &v, &sb), -EBADMSG);
    msgpack_sbuffer_destroy(&sb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_join_roundtrip),
        cmocka_unit_test(test_join_malformed),
        cmocka_unit_test(test_ok_roundtrip),
        cmocka_unit_test(test_ok_malformed),
        cmocka_unit_test(test_ok_store_key),
        cmocka_unit_test(test_ok_bad_entry),
        cmocka_unit_test(test_ok_count_bounded),
        cmocka_unit_test(test_err),
        cmocka_unit_test(test_err_malformed),
        cmocka_unit_test(test_forward),
        cmocka_unit_test(test_verdict),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
