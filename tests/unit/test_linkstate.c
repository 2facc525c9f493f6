/* Link-state records and database (mesh/linkstate.h): the codec round-trips small and
 * maximal records, refuses every truncation, every trailing byte and every rule violation
 * (and lsdb_receive counts those), skips unknown trailing fields; the builder keeps the best
 * LS_LINKS_MAX links; the database keeps only newer records, tells a refresh from a change,
 * remembers removed origins' seq, holds penalties, and merges the two ends of a link.
 *
 * With LS_CORPUS_DIR set, the round-trip records are also written there: that is how
 * tests/fuzz/corpus/fuzz_linkstate/ was made. */
#include "common/mp.h"
#include "mesh/linkstate.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* ---- helpers ---------------------------------------------------------------------------- */

static void write_corpus(const char *name, const void *buf, size_t len)
{
    const char *dir = getenv("LS_CORPUS_DIR");
    if (!dir)
        return;
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, len, f), len);
    fclose(f);
}

static void assert_records_equal(const ls_record_t *a, const ls_record_t *b)
{
    assert_int_equal(a->origin, b->origin);
    assert_int_equal(a->seq, b->seq);
    assert_int_equal(a->n_links, b->n_links);
    assert_int_equal(a->n_sites, b->n_sites);
    for (uint32_t i = 0; i < a->n_links; i++) {
        assert_int_equal(a->links[i].peer, b->links[i].peer);
        assert_int_equal(a->links[i].rtt_us, b->links[i].rtt_us);
        assert_int_equal(a->links[i].loss_permille, b->links[i].loss_permille);
    }
    for (uint32_t i = 0; i < a->n_sites; i++) {
        assert_int_equal(a->sites[i].site, b->sites[i].site);
        assert_int_equal(a->sites[i].rtt_us, b->sites[i].rtt_us);
        assert_int_equal(a->sites[i].state, b->sites[i].state);
    }
}

static ls_record_t *small_record(void)
{
    ls_record_t *r = calloc(1, sizeof(*r));
    ls_record_init(r, 0x1001, 1700000000123ull);
    assert_int_equal(ls_record_add_link(r, 0x1003, 12000, 0), 0);
    assert_int_equal(ls_record_add_link(r, 0x1002, 800, 3), 0);
    assert_int_equal(ls_record_add_site(r, 77, 4500, LS_SITE_ONLINE), 0);
    assert_int_equal(ls_record_add_site(r, 9, 30000, LS_SITE_DEGRADED), 0);
    assert_int_equal(ls_record_add_site(r, 1u << 20, 100, LS_SITE_OFFLINE), 0);
    return r;
}

/* Every field at its widest encoding, every list at its cap. */
static ls_record_t *full_record(void)
{
    ls_record_t *r = calloc(1, sizeof(*r));
    ls_record_init(r, UINT64_MAX, UINT64_MAX);
    for (uint32_t i = 0; i < LS_LINKS_MAX; i++)
        assert_int_equal(ls_record_add_link(r, UINT64_MAX - 1 - i, LS_RTT_MAX_US - i, LS_LOSS_MAX),
                         0);
    for (uint32_t i = 0; i < LS_SITES_MAX; i++)
        assert_int_equal(ls_record_add_site(r, UINT64_MAX - i, LS_RTT_MAX_US, 255), 0);
    return r;
}

static size_t encode(const ls_record_t *r, uint8_t *buf, size_t cap)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    assert_int_equal(ls_record_encode(r, &sb), 0);
    assert_true(sb.size <= cap);
    memcpy(buf, sb.data, sb.size);
    size_t n = sb.size;
    msgpack_sbuffer_destroy(&sb);
    return n;
}

/* ---- codec ------------------------------------------------------------------------------ */

static void roundtrip_one(const ls_record_t *r, const char *corpus_name)
{
    static uint8_t buf[LS_RECORD_MAX];
    size_t n = encode(r, buf, sizeof(buf));
    assert_true(n <= LS_RECORD_MAX);
    ls_record_t *d = calloc(1, sizeof(*d));
    const char *why = NULL;
    assert_int_equal(ls_record_decode(buf, n, d, &why), 0);
    assert_records_equal(r, d);
    write_corpus(corpus_name, buf, n);

    /* Every proper prefix is refused, and so is one byte more. */
    for (size_t k = 0; k < n; k++) {
        uint8_t *copy = malloc(k ? k : 1); /* exact size: ASan sees any overread */
        memcpy(copy, buf, k);
        why = NULL;
        assert_int_equal(ls_record_decode(copy, k, d, &why), -EBADMSG);
        assert_non_null(why);
        free(copy);
    }
    uint8_t *longer = malloc(n + 1);
    memcpy(longer, buf, n);
    longer[n] = 0xc0;
    assert_int_equal(ls_record_decode(longer, n + 1, d, NULL), -EBADMSG);
    free(longer);
    free(d);
}

static void test_roundtrip(void **state)
{
    ls_record_t *r = small_record();
    /* The builder sorted what it was given. */
    assert_int_equal(r->links[0].peer, 0x1002);
    assert_int_equal(r->sites[0].site, 9);
    assert_int_equal(r->sites[2].site, 1u << 20);
    roundtrip_one(r, "small");

    ls_record_init(r, 5, 0); /* no links, no sites, seq 0 */
    roundtrip_one(r, "empty");

    /* A member of the fuzz harness's small mesh (PoPs 1..4, site 7), so mutations of it reach
     * the route computation with a connected graph. */
    ls_record_init(r, 9, 2);
    for (uint64_t p = 1; p <= 4; p++)
        assert_int_equal(ls_record_add_link(r, p, (uint32_t)p * 700, (uint16_t)(p * 3)), 0);
    assert_int_equal(ls_record_add_site(r, 7, 100, LS_SITE_ONLINE), 0);
    assert_int_equal(ls_record_add_site(r, 8, 100, LS_SITE_DEGRADED), 0);
    assert_int_equal(ls_record_add_site(r, 10, 100, LS_SITE_OFFLINE), 0);
    roundtrip_one(r, "mesh_member");
    free(r);

    r = full_record();
    roundtrip_one(r, "full");
    free(r);
}

/* A record packed by hand from raw values, so out-of-range values can be written. */
struct raw {
    uint64_t version, origin, seq;
    uint32_t n_links;
    uint64_t links[LS_LINKS_MAX + 2][3];
    uint32_t n_sites;
    uint64_t sites[LS_SITES_MAX + 2][3];
};

static void raw_init(struct raw *w)
{
    memset(w, 0, sizeof(*w));
    w->version = LS_VERSION;
    w->origin = 100;
    w->seq = 7;
    w->n_links = 2;
    w->links[0][0] = 101, w->links[0][1] = 1000, w->links[0][2] = 0;
    w->links[1][0] = 102, w->links[1][1] = 2000, w->links[1][2] = 10;
    w->n_sites = 2;
    w->sites[0][0] = 5, w->sites[0][1] = 3000, w->sites[0][2] = 1;
    w->sites[1][0] = 6, w->sites[1][1] = 3000, w->sites[1][2] = 2;
}

static size_t raw_pack(const struct raw *w, uint8_t *buf, size_t cap)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 5);
    msgpack_pack_uint64(&pk, w->version);
    msgpack_pack_uint64(&pk, w->origin);
    msgpack_pack_uint64(&pk, w->seq);
    msgpack_pack_array(&pk, w->n_links);
    for (uint32_t i = 0; i < w->n_links; i++) {
        msgpack_pack_array(&pk, 3);
        for (int k = 0; k < 3; k++)
            msgpack_pack_uint64(&pk, w->links[i][k]);
    }
    msgpack_pack_array(&pk, w->n_sites);
    for (uint32_t i = 0; i < w->n_sites; i++) {
        msgpack_pack_array(&pk, 3);
        for (int k = 0; k < 3; k++)
            msgpack_pack_uint64(&pk, w->sites[i][k]);
    }
    assert_true(sb.size <= cap);
    memcpy(buf, sb.data, sb.size);
    size_t n = sb.size;
    msgpack_sbuffer_destroy(&sb);
    return n;
}

static void expect_bad(const struct raw *w, const char *label)
{
    static uint8_t buf[16384];
    size_t n = raw_pack(w, buf, sizeof(buf));
    ls_record_t *d = malloc(sizeof(*d));
    const char *why = NULL;
    int rc = ls_record_decode(buf, n, d, &why);
    if (rc != -EBADMSG)
        fail_msg("accepted a bad record: %s", label);
    assert_non_null(why);
    free(d);
}

static void test_rule_violations(void **state)
{
    struct raw *w = malloc(sizeof(*w));
    uint8_t buf[256];
    ls_record_t *d = malloc(sizeof(*d));

    raw_init(w); /* the base is good */
    size_t n = raw_pack(w, buf, sizeof(buf));
    assert_int_equal(ls_record_decode(buf, n, d, NULL), 0);

#define BAD_CASE(label, ...)                                                                       \
    do {                                                                                           \
        raw_init(w);                                                                               \
        __VA_ARGS__;                                                                               \
        expect_bad(w, label);                                                                      \
    } while (0)
    BAD_CASE("version 0", w->version = 0);
    BAD_CASE("version 2", w->version = 2);
    BAD_CASE("origin 0", w->origin = 0);
    BAD_CASE("link peer 0", w->links[0][0] = 0);
    BAD_CASE("link to itself", w->links[0][0] = 100);
    BAD_CASE("links unsorted", (w->links[0][0] = 103));
    BAD_CASE("duplicate link", (w->links[1][0] = 101));
    BAD_CASE("link rtt too large", w->links[1][1] = (uint64_t)LS_RTT_MAX_US + 1);
    BAD_CASE("link rtt over 32 bits", w->links[1][1] = 1ull << 32);
    BAD_CASE("link loss 1001", w->links[1][2] = 1001);
    BAD_CASE("site id 0", w->sites[0][0] = 0);
    BAD_CASE("sites unsorted", w->sites[0][0] = 7);
    BAD_CASE("duplicate site", w->sites[1][0] = 5);
    BAD_CASE("site rtt too large", w->sites[0][1] = (uint64_t)LS_RTT_MAX_US + 1);
    BAD_CASE("site state 256", w->sites[0][2] = 256);
    BAD_CASE("17 links", {
        w->n_links = LS_LINKS_MAX + 1;
        for (uint32_t i = 0; i < w->n_links; i++)
            w->links[i][0] = 200 + i, w->links[i][1] = 1, w->links[i][2] = 0;
    });
    BAD_CASE("257 sites", {
        w->n_sites = LS_SITES_MAX + 1;
        for (uint32_t i = 0; i < w->n_sites; i++)
            w->sites[i][0] = 1 + i, w->sites[i][1] = 1, w->sites[i][2] = 1;
    });
#undef BAD_CASE

    /* Shapes and types, hand-written. */
    static const struct {
        const char *label;
        const char *bytes;
        size_t len;
    } shapes[] = {
        {"empty input", "", 0},
        {"nil", "\xc0", 1},
        {"map", "\x80", 1},
        {"array of 4", "\x94\x01\x64\x07\x90", 5},
        {"version as str", "\x95\xa1\x31\x64\x07\x90\x90", 7},
        {"negative origin", "\x95\x01\xff\x07\x90\x90", 6},
        {"seq as float", "\x95\x01\x64\xcb\x00\x00\x00\x00\x00\x00\x00\x00\x90\x90", 14},
        {"links is a map", "\x95\x01\x64\x07\x80\x90", 6},
        {"link of 2 fields", "\x95\x01\x64\x07\x91\x92\x65\x01\x90", 9},
        {"link peer as bin", "\x95\x01\x64\x07\x91\x93\xc4\x01\x65\x01\x00\x90", 12},
        {"site of 2 fields", "\x95\x01\x64\x07\x90\x91\x92\x05\x01", 9},
        {"site state nil", "\x95\x01\x64\x07\x90\x91\x93\x05\x01\xc0", 10},
        {"huge declared list", "\x95\x01\x64\x07\xdd\xff\xff\xff\xff", 9},
        {"reserved byte 0xc1 as extra field", "\x96\x01\x64\x07\x90\x90\xc1", 7},
        {"two records", "\x95\x01\x64\x07\x90\x90\x95\x01\x64\x07\x90\x90", 12},
    };
    lsdb_t *db = lsdb_new();
    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
        const char *why = NULL;
        uint8_t *copy = malloc(shapes[i].len + 1);
        memcpy(copy, shapes[i].bytes, shapes[i].len);
        if (ls_record_decode(copy, shapes[i].len, d, &why) != -EBADMSG)
            fail_msg("accepted: %s", shapes[i].label);
        assert_non_null(why);
        assert_int_equal(lsdb_receive(db, copy, shapes[i].len), -EBADMSG);
        free(copy);
    }
    lsdb_stats_t st;
    lsdb_get_stats(db, &st);
    assert_int_equal(st.malformed, sizeof(shapes) / sizeof(shapes[0]));
    assert_int_equal(lsdb_count(db), 0);
    assert_int_equal(lsdb_generation(db), 0);

    /* A well-formed record with a large extra field: fine up to LS_RECORD_MAX bytes, refused
     * past it. */
    int accepted = 0, refused = 0;
    for (size_t pad = LS_RECORD_MAX - 40; pad <= LS_RECORD_MAX; pad += 8) {
        msgpack_sbuffer sb;
        msgpack_packer pk;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_array(&pk, 6);
        msgpack_pack_uint64(&pk, LS_VERSION);
        msgpack_pack_uint64(&pk, 1);
        msgpack_pack_uint64(&pk, 1);
        msgpack_pack_array(&pk, 0);
        msgpack_pack_array(&pk, 0);
        uint8_t *junk = calloc(1, pad);
        mpw_bin(&pk, junk, pad);
        free(junk);
        int want = sb.size <= LS_RECORD_MAX ? 0 : -EBADMSG;
        accepted += want == 0;
        refused += want != 0;
        assert_int_equal(ls_record_decode(sb.data, sb.size, d, NULL), want);
        msgpack_sbuffer_destroy(&sb);
    }
    assert_true(accepted > 0 && refused > 0);

    lsdb_destroy(&db);
    assert_null(db);
    lsdb_destroy(&db); /* NULL is fine */
    free(d);
    free(w);
}

/* A newer writer's record: extra fields in the record and in its entries are skipped. */
static void test_unknown_fields_skipped(void **state)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 8);
    msgpack_pack_uint64(&pk, LS_VERSION);
    msgpack_pack_uint64(&pk, 42);
    msgpack_pack_uint64(&pk, 9);
    msgpack_pack_array(&pk, 1);
    msgpack_pack_array(&pk, 5); /* a link with two later fields */
    msgpack_pack_uint64(&pk, 43);
    msgpack_pack_uint64(&pk, 1500);
    msgpack_pack_uint64(&pk, 2);
    msgpack_pack_double(&pk, 0.25);
    msgpack_pack_map(&pk, 1);
    mpw_str(&pk, "jitter_us");
    msgpack_pack_uint64(&pk, 300);
    msgpack_pack_array(&pk, 1);
    msgpack_pack_array(&pk, 5); /* a site with flags and a later field */
    msgpack_pack_uint64(&pk, 1234);
    msgpack_pack_uint64(&pk, 800);
    msgpack_pack_uint64(&pk, LS_SITE_ONLINE);
    msgpack_pack_uint64(&pk, LS_SITE_PRIMARY);
    mpw_str(&pk, "region-b");
    mpw_str(&pk, "record-level extra"); /* field 6 */
    msgpack_pack_array(&pk, 2);         /* field 7 */
    msgpack_pack_nil(&pk);
    msgpack_pack_true(&pk);
    msgpack_pack_int64(&pk, -5); /* field 8 */

    ls_record_t *d = calloc(1, sizeof(*d));
    assert_int_equal(ls_record_decode(sb.data, sb.size, d, NULL), 0);
    assert_int_equal(d->origin, 42);
    assert_int_equal(d->seq, 9);
    assert_int_equal(d->n_links, 1);
    assert_int_equal(d->links[0].peer, 43);
    assert_int_equal(d->links[0].rtt_us, 1500);
    assert_int_equal(d->links[0].loss_permille, 2);
    assert_int_equal(d->n_sites, 1);
    assert_int_equal(d->sites[0].site, 1234);
    assert_int_equal(d->sites[0].state, LS_SITE_ONLINE);
    assert_int_equal(d->sites[0].flags, LS_SITE_PRIMARY);
    write_corpus("extra_fields", sb.data, sb.size);
    /* ... and every truncation of it is still refused. */
    for (size_t k = 0; k < sb.size; k++)
        assert_int_equal(ls_record_decode(sb.data, k, d, NULL), -EBADMSG);
    free(d);
    msgpack_sbuffer_destroy(&sb);
}

static void test_encode_refuses_invalid(void **state)
{
    ls_record_t *r = small_record();
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    const char *why = NULL;

    r->links[0].peer = 0x1004; /* now unsorted */
    assert_int_equal(ls_record_validate(r, &why), -EINVAL);
    assert_non_null(why);
    assert_int_equal(ls_record_encode(r, &sb), -EINVAL);
    assert_int_equal(sb.size, 0); /* nothing packed */

    free(r);
    r = small_record();
    r->origin = 0;
    assert_int_equal(ls_record_encode(r, &sb), -EINVAL);
    lsdb_t *db = lsdb_new();
    assert_int_equal(lsdb_insert(db, r), -EINVAL);
    assert_int_equal(lsdb_count(db), 0);
    lsdb_destroy(&db);
    msgpack_sbuffer_destroy(&sb);
    free(r);
}

/* ---- builder ---------------------------------------------------------------------------- */

static void test_builder_keeps_best_links(void **state)
{
    ls_record_t *r = calloc(1, sizeof(*r));
    ls_record_init(r, 1, 1);
    /* 24 candidates: peer 100+i with rtt (24 - i) ms, so the higher peers are the better. */
    for (uint32_t i = 0; i < 24; i++)
        assert_int_equal(ls_record_add_link(r, 100 + i, (24 - i) * 1000, 0), 0);
    assert_int_equal(r->n_links, LS_LINKS_MAX);
    for (uint32_t i = 0; i < LS_LINKS_MAX; i++)
        assert_int_equal(r->links[i].peer, 108 + i); /* the 16 best, sorted */
    assert_int_equal(ls_record_validate(r, NULL), 0);

    /* Worse than all kept: refused, nothing changes. */
    assert_int_equal(ls_record_add_link(r, 50, 20000, 0), -ENOSPC);
    assert_int_equal(r->links[0].peer, 108);
    /* Fast but lossy ranks by rtt + loss * LS_RANK_LOSS_US: 1 ms + 20 permille = 21 ms. */
    assert_int_equal(ls_record_add_link(r, 51, 1000, 20), -ENOSPC);
    /* Better than the worst (108, 16 ms): evicts it, lands sorted at the front. */
    assert_int_equal(ls_record_add_link(r, 52, 1000, 1), 0);
    assert_int_equal(r->n_links, LS_LINKS_MAX);
    assert_int_equal(r->links[0].peer, 52);
    assert_int_equal(r->links[1].peer, 109);
    /* Equal rank to the worst (109, 15 ms): the lower id wins the tie. */
    assert_int_equal(ls_record_add_link(r, 110 + 100, 15000, 0), -ENOSPC);
    assert_int_equal(ls_record_add_link(r, 53, 15000, 0), 0);
    assert_int_equal(r->links[1].peer, 53);
    /* Update in place. */
    assert_int_equal(ls_record_add_link(r, 123, 1, 0), 0);
    assert_int_equal(r->n_links, LS_LINKS_MAX);
    assert_int_equal(r->links[LS_LINKS_MAX - 1].rtt_us, 1);
    assert_int_equal(ls_record_validate(r, NULL), 0);

    assert_int_equal(ls_record_add_link(r, 0, 1, 0), -EINVAL);
    assert_int_equal(ls_record_add_link(r, 1, 1, 0), -EINVAL); /* the origin */
    assert_int_equal(ls_record_add_link(r, 7, LS_RTT_MAX_US + 1, 0), -EINVAL);
    assert_int_equal(ls_record_add_link(r, 7, 1, 1001), -EINVAL);

    for (uint32_t i = 0; i < LS_SITES_MAX; i++)
        assert_int_equal(ls_record_add_site(r, (i * 7919u) % 1000 + 1, 1, 1), 0);
    assert_int_equal(r->n_sites, LS_SITES_MAX);
    assert_int_equal(ls_record_add_site(r, 5000, 1, 1), -ENOSPC);
    assert_int_equal(ls_record_add_site(r, r->sites[3].site, 9, 2), 0); /* update when full */
    assert_int_equal(r->sites[3].rtt_us, 9);
    assert_int_equal(ls_record_add_site(r, 0, 1, 1), -EINVAL);
    assert_int_equal(ls_record_validate(r, NULL), 0);
    free(r);
}

/* ---- database --------------------------------------------------------------------------- */

static void test_lsdb_seq(void **state)
{
    lsdb_t *db = lsdb_new();
    ls_record_t *r = small_record();
    lsdb_entry_t e;
    uint64_t base = r->seq;

    assert_int_equal(lsdb_insert(db, r), LSDB_CHANGED);
    assert_int_equal(lsdb_generation(db), 1);
    r->seq = base - 1; /* older */
    r->links[0].rtt_us = 1;
    assert_int_equal(lsdb_insert(db, r), LSDB_STALE);
    r->seq = base; /* equal */
    assert_int_equal(lsdb_insert(db, r), LSDB_STALE);
    assert_int_equal(lsdb_get(db, r->origin, &e), 0);
    assert_int_equal(e.links[0].rtt_us, 800); /* still the first */
    assert_int_equal(lsdb_generation(db), 1);

    r->links[0].rtt_us = 800;
    r->seq = base + 1; /* newer, same content */
    assert_int_equal(lsdb_insert(db, r), LSDB_REFRESHED);
    assert_int_equal(lsdb_generation(db), 1);
    assert_int_equal(lsdb_get(db, r->origin, &e), 0);
    assert_int_equal(e.seq, base + 1);

    r->seq = base + 2; /* newer, a site changed state */
    r->sites[1].state = LS_SITE_OFFLINE;
    assert_int_equal(lsdb_insert(db, r), LSDB_CHANGED);
    assert_int_equal(lsdb_generation(db), 2);
    r->seq = base + 3; /* newer, one site fewer */
    r->n_sites--;
    assert_int_equal(lsdb_insert(db, r), LSDB_CHANGED);
    assert_int_equal(lsdb_get(db, r->origin, &e), 0);
    assert_int_equal(e.n_sites, 2);
    assert_int_equal(e.sites[1].state, LS_SITE_OFFLINE);
    assert_int_equal(e.seq, base + 3);
    assert_int_equal(lsdb_count(db), 1);

    lsdb_stats_t st;
    lsdb_get_stats(db, &st);
    assert_int_equal(st.stale, 2);
    assert_int_equal(st.refreshed, 1);
    assert_int_equal(st.changed, 3);
    assert_int_equal(st.malformed, 0);
    lsdb_destroy(&db);
    free(r);
}

static void test_lsdb_remove(void **state)
{
    lsdb_t *db = lsdb_new();
    ls_record_t *r = calloc(1, sizeof(*r));
    lsdb_entry_t e;
    for (uint64_t id = 1; id <= 5; id++) {
        ls_record_init(r, id, 10);
        assert_int_equal(ls_record_add_site(r, 1000 + id, (uint32_t)id, 1), 0);
        assert_int_equal(lsdb_insert(db, r), LSDB_CHANGED);
    }
    assert_int_equal(lsdb_remove(db, 2), 1);
    assert_int_equal(lsdb_remove(db, 2), 0);
    assert_int_equal(lsdb_remove(db, 99), 0);
    assert_int_equal(lsdb_remove(db, 0), 0);
    assert_int_equal(lsdb_count(db), 4);
    assert_int_equal(lsdb_get(db, 2, &e), -ENOENT);
    /* The others are intact, each with its own sites, and iteration sees each once. */
    uint64_t seen = 0;
    for (size_t i = 0; i < lsdb_count(db); i++) {
        assert_int_equal(lsdb_entry_at(db, i, &e), 0);
        assert_int_equal(e.n_sites, 1);
        assert_int_equal(e.sites[0].site, 1000 + e.origin);
        seen |= 1ull << e.origin;
    }
    assert_int_equal(seen, (1 << 1) | (1 << 3) | (1 << 4) | (1 << 5));
    assert_int_equal(lsdb_entry_at(db, 4, &e), -ENOENT);

    /* A delayed copy of the removed record does not bring it back; a newer one does. */
    ls_record_init(r, 2, 10);
    assert_int_equal(lsdb_insert(db, r), LSDB_STALE);
    assert_int_equal(lsdb_get(db, 2, &e), -ENOENT);
    r->seq = 11;
    assert_int_equal(lsdb_insert(db, r), LSDB_CHANGED);
    assert_int_equal(lsdb_get(db, 2, &e), 0);
    assert_int_equal(e.n_sites, 0);

    /* Remove the last in the dense array and the first, then all. */
    for (uint64_t id = 1; id <= 5; id++)
        assert_int_equal(lsdb_remove(db, id), 1);
    assert_int_equal(lsdb_count(db), 0);
    lsdb_stats_t st;
    lsdb_get_stats(db, &st);
    assert_int_equal(st.removed, 6);
    lsdb_destroy(&db);
    free(r);
}

static void test_lsdb_penalty(void **state)
{
    lsdb_t *db = lsdb_new();
    ls_record_t *r = calloc(1, sizeof(*r));
    lsdb_entry_t e;
    /* Before the record arrives: kept. */
    assert_int_equal(lsdb_set_penalty(db, 7, 300, false), 1);
    assert_int_equal(lsdb_set_penalty(db, 7, 300, false), 0);
    uint64_t g = lsdb_generation(db);
    ls_record_init(r, 7, 1);
    assert_int_equal(lsdb_insert(db, r), LSDB_CHANGED);
    assert_int_equal(lsdb_get(db, 7, &e), 0);
    assert_int_equal(e.load_permille, 300);
    assert_false(e.healthy);
    assert_int_equal(lsdb_set_penalty(db, 7, 2000, true), 1); /* clamped */
    assert_int_equal(lsdb_get(db, 7, &e), 0);
    assert_int_equal(e.load_permille, 1000);
    assert_true(e.healthy);
    assert_true(lsdb_generation(db) == g + 2);
    assert_int_equal(lsdb_set_penalty(db, 0, 1, true), -EINVAL);
    /* Default for a node never given a penalty. */
    ls_record_init(r, 8, 1);
    assert_int_equal(lsdb_insert(db, r), LSDB_CHANGED);
    assert_int_equal(lsdb_get(db, 8, &e), 0);
    assert_int_equal(e.load_permille, 0);
    assert_true(e.healthy);
    lsdb_destroy(&db);
    free(r);
}

static void test_lsdb_link_merge(void **state)
{
    lsdb_t *db = lsdb_new();
    ls_record_t *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
    ls_record_t *c = calloc(1, sizeof(*c));
    ls_link_t l;

    ls_record_init(a, 1, 1);
    ls_record_init(b, 2, 1);
    ls_record_init(c, 3, 1);
    ls_record_add_link(a, 2, 10000, 5);
    ls_record_add_link(b, 1, 14000, 2);
    ls_record_add_link(a, 3, 7000, 0); /* c does not claim a, and has room */
    assert_int_equal(lsdb_insert(db, a), LSDB_CHANGED);
    /* b holds no record yet: no link. */
    assert_int_equal(lsdb_link(db, 1, 2, &l), -ENOENT);
    assert_int_equal(lsdb_insert(db, b), LSDB_CHANGED);
    assert_int_equal(lsdb_insert(db, c), LSDB_CHANGED);

    /* Both claim: the larger rtt and the larger loss, whichever way it is asked. */
    assert_int_equal(lsdb_link(db, 1, 2, &l), 0);
    assert_int_equal(l.peer, 2);
    assert_int_equal(l.rtt_us, 14000);
    assert_int_equal(l.loss_permille, 5);
    assert_int_equal(lsdb_link(db, 2, 1, &l), 0);
    assert_int_equal(l.peer, 1);
    assert_int_equal(l.rtt_us, 14000);
    assert_int_equal(l.loss_permille, 5);

    /* One-sided, the silent end has room: it does not reach the other. */
    assert_int_equal(lsdb_link(db, 1, 3, &l), -ENOENT);
    assert_int_equal(lsdb_link(db, 3, 1, &l), -ENOENT);
    /* Fill c with 16 better links elsewhere: its silence may be the cap, so a's claim counts. */
    c->seq = 2;
    for (uint64_t p = 0; p < LS_LINKS_MAX; p++)
        assert_int_equal(ls_record_add_link(c, 100 + p, 1000, 0), 0);
    assert_int_equal(lsdb_insert(db, c), LSDB_CHANGED);
    assert_int_equal(lsdb_link(db, 3, 1, &l), 0);
    assert_int_equal(l.peer, 1);
    assert_int_equal(l.rtt_us, 7000);
    assert_int_equal(lsdb_link(db, 1, 3, &l), 0);
    /* ... but not to a node with no record (100..115 have none). */
    assert_int_equal(lsdb_link(db, 3, 100, &l), -ENOENT);

    /* Gone when an end is removed; nonsense asks have no link. */
    assert_int_equal(lsdb_remove(db, 2), 1);
    assert_int_equal(lsdb_link(db, 1, 2, &l), -ENOENT);
    assert_int_equal(lsdb_link(db, 1, 1, &l), -ENOENT);
    assert_int_equal(lsdb_link(db, 0, 1, &l), -ENOENT);
    lsdb_destroy(&db);
    free(a);
    free(b);
    free(c);
}

static void test_lsdb_receive_and_growth(void **state)
{
    lsdb_t *db = lsdb_new();
    ls_record_t *r = calloc(1, sizeof(*r));
    uint8_t buf[LS_RECORD_MAX];
    /* Thousands of origins (the node table grows many times), all found again. */
    for (uint64_t id = 1; id <= 3000; id++) {
        ls_record_init(r, id * 0x9e3779b97f4a7c15ull, id);
        ls_record_add_site(r, id, 1, 1);
        size_t n = encode(r, buf, sizeof(buf));
        assert_int_equal(lsdb_receive(db, buf, n), LSDB_CHANGED);
        assert_int_equal(lsdb_receive(db, buf, n), LSDB_STALE);
    }
    assert_int_equal(lsdb_count(db), 3000);
    for (uint64_t id = 1; id <= 3000; id++) {
        lsdb_entry_t e;
        assert_int_equal(lsdb_get(db, id * 0x9e3779b97f4a7c15ull, &e), 0);
        assert_int_equal(e.seq, id);
        assert_int_equal(e.sites[0].site, id);
    }
    lsdb_stats_t st;
    lsdb_get_stats(db, &st);
    assert_int_equal(st.changed, 3000);
    assert_int_equal(st.stale, 3000);
    assert_int_equal(st.malformed, 0);
    lsdb_destroy(&db);
    free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_rule_violations),
        cmocka_unit_test(test_unknown_fields_skipped),
        cmocka_unit_test(test_encode_refuses_invalid),
        cmocka_unit_test(test_builder_keeps_best_links),
        cmocka_unit_test(test_lsdb_seq),
        cmocka_unit_test(test_lsdb_remove),
        cmocka_unit_test(test_lsdb_penalty),
        cmocka_unit_test(test_lsdb_link_merge),
        cmocka_unit_test(test_lsdb_receive_and_growth),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
