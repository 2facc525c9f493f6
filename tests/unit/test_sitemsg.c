/* sitemsg (node/dataplane/sitemsg.h): every message round trips through its packer and decoder; the
 * encodings the packers produce are the documented layouts (a field-by-field builder here
 * produces the same bytes); every decoder refuses, with a reason, a wrong version, every
 * truncation, a trailing byte, a wrong type in any field (nested ones too), a bad string (NUL,
 * empty, one byte too long), a zero id where one is refused, a curve_pk that is not 32 bytes,
 * lists past their limits and ctl types the caller does not take; and skips extra trailing
 * fields of every record (forward compatibility). An INFO's PoP entry of 4 fields (an older
 * PoP, before region) still decodes, with region "", and a region that is not a valid name is
 * refused.
 *
 * With SITEMSG_CORPUS_DIR set, test_roundtrip also writes each valid encoding there: that is
 * how tests/fuzz/corpus/fuzz_sitemsg/ was made. */
#include "common/mp.h"
#include "node/dataplane/sitemsg.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* ---- a field-by-field builder: any one field can be replaced by a wrong value ------------ */

enum fkind { FK_UINT, FK_STR, FK_BOOL, FK_ARR, FK_BIN };

enum mut {
    M_NONE,
    M_NIL,
    M_NEG,
    M_STR,
    M_UINT,
    M_BOOL,
    M_ARR,
    M_MAP,
    M_BIN,
    M_FLOAT,
    M_STR_NUL,   /* a string with a NUL inside */
    M_STR_EMPTY, /* "" */
    M_STR_OVER,  /* exactly the buffer size (no room for the NUL) */
    M_STR_MAX,   /* one byte shorter: the longest accepted */
    M_ZERO,      /* an integer 0 */
    M_BIN31,
    M_BIN33,
    M_ADDR_NOPORT, /* a string that is not host:port where one is wanted */
    M_ADDR_PORT0,
    NMUT
};

#define F_ADDR     1u /* "host:port" */
#define F_EMPTY_OK 2u
#define F_NONZERO  4u /* 0 refused (ids, version, ctl type) */
#define F_ROLE     8u /* "site" | "pop": no longest valid value */
#define F_NIL_ABSENT 32u /* nil reads as "absent" (an unsealed OPEN's seal): not mutated to nil */
#define F_ZERO_DROPS 16u /* 0 is read as absent, and written back without the field: not
                          * mutated to 0 (the extra-fields test reads a 0) */

typedef struct ctx {
    msgpack_sbuffer sb;
    msgpack_packer pk;
    int idx;          /* fields packed so far */
    int target;       /* the field to mutate, or -1 */
    enum mut mut;     /* what to put there */
    bool applied;     /* the mutation applies to that field's kind */
    bool expect_ok;   /* and the decoder should still accept it */
    bool extra;       /* append an unknown field to every record */
    uint64_t version; /* what the version field holds */
} ctx_t;

static void ctx_init(ctx_t *c, int target, enum mut m)
{
    memset(c, 0, sizeof(*c));
    msgpack_sbuffer_init(&c->sb);
    msgpack_packer_init(&c->pk, &c->sb, msgpack_sbuffer_write);
    c->target = target;
    c->mut = m;
    c->version = SM_VERSION;
}

static void ctx_free(ctx_t *c)
{
    msgpack_sbuffer_destroy(&c->sb);
}

static void pack_long_str(msgpack_packer *pk, size_t len, bool addr)
{
    char *s = malloc(len + 1);
    assert_non_null(s);
    memset(s, 'a', len);
    if (addr) {
        assert_true(len > 6);
        memcpy(s + len - 5, ":4242", 5);
    }
    mpw_strn(pk, s, len);
    free(s);
}

/* Called at the start of every field: true when the field was replaced (caller packs nothing). */
static bool mutate(ctx_t *c, enum fkind k, unsigned flags, size_t cap)
{
    if (c->idx++ != c->target)
        return false;
    msgpack_packer *pk = &c->pk;
    static const uint8_t junk[33] = {1, 2, 3};
    bool ok = false;
    switch (c->mut) {
    case M_NIL:
        if (flags & F_NIL_ABSENT)
            return false;
        msgpack_pack_nil(pk);
        break;
    case M_NEG:
        msgpack_pack_int64(pk, -1);
        break;
    case M_STR:
        if (k == FK_STR)
            return false;
        mpw_str(pk, "1");
        break;
    case M_UINT:
        if (k == FK_UINT)
            return false;
        msgpack_pack_uint8(pk, 1);
        break;
    case M_BOOL:
        if (k == FK_BOOL)
            return false;
        msgpack_pack_true(pk);
        break;
    case M_ARR:
        if (k == FK_ARR)
            return false;
        msgpack_pack_array(pk, 0);
        break;
    case M_MAP:
        msgpack_pack_map(pk, 0);
        break;
    case M_BIN:
        if (k == FK_BIN)
            return false;
        mpw_bin(pk, "1", 1);
        break;
    case M_FLOAT:
        msgpack_pack_double(pk, 1.0);
        break;
    case M_STR_NUL:
        if (k != FK_STR)
            return false;
        mpw_strn(pk, (flags & F_ADDR) ? "h\0st:80" : "a\0b", (flags & F_ADDR) ? 7 : 3);
        break;
    case M_STR_EMPTY:
        if (k != FK_STR)
            return false;
        mpw_str(pk, "");
        ok = flags & F_EMPTY_OK;
        break;
    case M_STR_OVER:
        if (k != FK_STR)
            return false;
        pack_long_str(pk, cap, flags & F_ADDR);
        break;
    case M_STR_MAX:
        if (k != FK_STR || (flags & F_ROLE))
            return false;
        pack_long_str(pk, cap - 1, flags & F_ADDR);
        ok = true;
        break;
    case M_ZERO:
        if (k != FK_UINT || (flags & F_ZERO_DROPS))
            return false;
        msgpack_pack_uint8(pk, 0);
        ok = !(flags & F_NONZERO);
        break;
    case M_BIN31:
    case M_BIN33:
        if (k != FK_BIN)
            return false;
        mpw_bin(pk, junk, c->mut == M_BIN31 ? 31 : 33);
        break;
    case M_ADDR_NOPORT:
    case M_ADDR_PORT0:
        if (k != FK_STR || !(flags & F_ADDR))
            return false;
        mpw_str(pk, c->mut == M_ADDR_NOPORT ? "nohostport" : "host:0");
        break;
    default:
        return false;
    }
    c->applied = true;
    c->expect_ok = ok;
    return true;
}

static void f_uint(ctx_t *c, uint64_t v, unsigned flags)
{
    if (!mutate(c, FK_UINT, flags, 0))
        msgpack_pack_uint64(&c->pk, v);
}

static void f_str(ctx_t *c, const char *s, size_t cap, unsigned flags)
{
    if (!mutate(c, FK_STR, flags, cap))
        mpw_str(&c->pk, s);
}

static void f_bool(ctx_t *c, bool v)
{
    if (mutate(c, FK_BOOL, 0, 0))
        return;
    if (v)
        msgpack_pack_true(&c->pk);
    else
        msgpack_pack_false(&c->pk);
}

static void f_bin(ctx_t *c, const uint8_t *b, size_t n)
{
    if (!mutate(c, FK_BIN, 0, 0))
        mpw_bin(&c->pk, b, n);
}

/* A list (path, targets, checks, pops): false when replaced, so the caller skips the items. */
static bool f_list(ctx_t *c, uint32_t n)
{
    if (mutate(c, FK_ARR, 0, 0))
        return false;
    msgpack_pack_array(&c->pk, n);
    return true;
}

/* A record (a message, a check, a PoP): with extra, one unknown field more, packed by rec_end. */
static bool f_rec_flags(ctx_t *c, uint32_t n, unsigned flags)
{
    if (mutate(c, FK_ARR, flags, 0))
        return false;
    msgpack_pack_array(&c->pk, n + (c->extra ? 1 : 0));
    return true;
}

static bool f_rec(ctx_t *c, uint32_t n)
{
    if (mutate(c, FK_ARR, 0, 0))
        return false;
    msgpack_pack_array(&c->pk, n + (c->extra ? 1 : 0));
    return true;
}

static void rec_end(ctx_t *c)
{
    if (!c->extra)
        return;
    msgpack_pack_map(&c->pk, 1); /* something nested, to be skipped whole */
    mpw_str(&c->pk, "future");
    msgpack_pack_array(&c->pk, 2);
    msgpack_pack_uint8(&c->pk, 7);
    mpw_bin(&c->pk, "xy", 2);
}

/* ---- builders mirroring the packers ------------------------------------------------------ */

static void build_hello(ctx_t *c, const void *v)
{
    const sm_hello_t *h = v;
    bool seal_field = h->seal || c->extra;    /* an extra field needs the seal before it */
    bool probe_field = h->probe || seal_field; /* and the seal needs the probe */
    if (!f_rec(c, seal_field ? 5 : probe_field ? 4 : 3))
        return;
    f_uint(c, c->version, F_NONZERO);
    f_str(c, h->role, sizeof(h->role), F_ROLE);
    f_str(c, h->name, sizeof(h->name), 0);
    if (probe_field)
        f_bool(c, h->probe);
    if (seal_field)
        f_uint(c, h->seal, F_ZERO_DROPS);
    rec_end(c);
}

static void build_welcome(ctx_t *c, const void *v)
{
    const sm_welcome_t *w = v;
    bool seal_field = w->seal || c->extra;
    if (!f_rec(c, seal_field ? 4 : 3))
        return;
    f_uint(c, c->version, F_NONZERO);
    f_str(c, w->name, sizeof(w->name), 0);
    f_uint(c, w->id, 0);
    if (seal_field)
        f_uint(c, w->seal, F_ZERO_DROPS);
    rec_end(c);
}

static void build_open(ctx_t *c, const void *v)
{
    const sm_open_t *o = v;
    bool origin_field = o->proxy || o->tls || c->extra; /* an extra field needs the origin */
    bool seal_field = o->sealed || origin_field; /* and the origin the seal (or nil) */
    bool weights_field = seal_field; /* as the packer: when one is not 1, or sealed */
    for (uint32_t i = 0; i < o->ntargets; i++)
        weights_field |= o->weights[i] > 1;
    if (!f_rec(c, origin_field ? 11 : seal_field ? 10 : weights_field ? 9 : 8))
        return;
    f_uint(c, c->version, F_NONZERO);
    f_str(c, o->resource, sizeof(o->resource), 0);
    f_uint(c, o->site, F_NONZERO);
    if (f_list(c, o->npath))
        for (uint32_t i = 0; i < o->npath; i++)
            f_uint(c, o->path[i], F_NONZERO);
    f_str(c, o->client, sizeof(o->client), F_EMPTY_OK);
    if (f_list(c, o->ntargets))
        for (uint32_t i = 0; i < o->ntargets; i++)
            f_str(c, o->targets[i], sizeof(o->targets[i]), F_ADDR);
    f_bool(c, o->sticky);
    f_str(c, o->ingress, sizeof(o->ingress), F_EMPTY_OK);
    if (weights_field)
        if (f_list(c, o->ntargets))
            for (uint32_t i = 0; i < o->ntargets; i++)
                f_uint(c, o->weights[i] ? o->weights[i] : 1, F_NONZERO);
    if (seal_field && !o->sealed) {
        msgpack_pack_nil(&c->pk);
    } else if (seal_field && f_rec_flags(c, 5, F_NIL_ABSENT)) {
        f_uint(c, o->seal_from, F_NONZERO);
        f_bin(c, o->seal_epk, sizeof(o->seal_epk));
        f_bin(c, o->seal_salt, sizeof(o->seal_salt));
        f_uint(c, o->seal_suite, F_NONZERO);
        f_bin(c, o->seal_ipk, sizeof(o->seal_ipk));
        rec_end(c);
    }
    bool tls_fields = o->tls || c->extra; /* and, inside it, tls and ca before it */
    if (origin_field && f_rec(c, tls_fields ? 3 : 1)) {
        f_uint(c, o->proxy, F_ZERO_DROPS);
        if (tls_fields) {
            f_uint(c, o->tls, F_ZERO_DROPS);
            if (o->has_ca && !mutate(c, FK_BIN, F_NIL_ABSENT, 0)) /* nil: no CA */
                mpw_bin(&c->pk, o->ca, sizeof(o->ca));
            else if (!o->has_ca)
                msgpack_pack_nil(&c->pk);
        }
        rec_end(c);
    }
    rec_end(c);
}

static void build_check(ctx_t *c, const sm_check_t *k, bool full)
{
    /* An INFO check with health-check settings has 4 fields; an extra field needs them first
     * (after [target, health] it would be read as the resource). */
    bool hc = !full && (sm_check_has_hc(k) || k->resource[0] || c->extra);
    if (!f_rec(c, full || hc ? 4 : 2))
        return;
    f_str(c, k->target, sizeof(k->target), F_ADDR);
    f_str(c, k->health, sizeof(k->health), 0);
    if (full) {
        f_bool(c, k->healthy);
        f_str(c, k->why, sizeof(k->why), F_EMPTY_OK);
    }
    if (hc) {
        f_str(c, k->resource, sizeof(k->resource), F_EMPTY_OK);
        if (f_rec(c, 6)) {
            f_uint(c, k->hc.interval_ms, 0);
            f_uint(c, k->hc.timeout_ms, 0);
            f_uint(c, k->hc.rise, 0);
            f_uint(c, k->hc.fall, 0);
            f_str(c, k->hc.status, sizeof(k->hc.status), F_EMPTY_OK);
            f_str(c, k->hc.host, sizeof(k->hc.host), F_EMPTY_OK);
            rec_end(c);
        }
    }
    rec_end(c);
}

static void build_status(ctx_t *c, const void *v)
{
    const sm_status_t *s = v;
    bool seal_field = s->seal || c->extra;               /* an extra field needs the seal first */
    bool host_field = s->host[0] || seal_field;          /* the seal needs the host first */
    bool draining_field = s->draining || host_field; /* and the host needs draining first */
    if (!f_rec(c, seal_field ? 7 : host_field ? 6 : draining_field ? 5 : 4))
        return;
    f_uint(c, c->version, F_NONZERO);
    f_uint(c, SM_CTL_STATUS, F_NONZERO);
    f_bool(c, s->primary);
    if (f_list(c, s->n))
        for (uint32_t i = 0; i < s->n; i++)
            build_check(c, &s->checks[i], true);
    if (draining_field)
        f_bool(c, s->draining);
    if (host_field)
        f_str(c, s->host, sizeof(s->host), F_EMPTY_OK);
    if (seal_field)
        f_uint(c, s->seal, F_ZERO_DROPS);
    rec_end(c);
}

static void build_info(ctx_t *c, const void *v)
{
    const sm_info_t *in = v;
    bool cas_field = in->ncas || c->extra; /* an extra field needs the cas before it */
    if (!f_rec(c, cas_field ? 5 : 4))
        return;
    f_uint(c, c->version, F_NONZERO);
    f_uint(c, SM_CTL_INFO, F_NONZERO);
    if (f_list(c, in->npops))
        for (uint32_t i = 0; i < in->npops; i++) {
            const sm_pop_t *p = &in->pops[i];
            bool avoid_field = p->avoid || c->extra; /* an extra field needs avoid first */
            if (!f_rec(c, avoid_field ? 6 : 5))
                continue;
            f_uint(c, p->id, 0);
            f_str(c, p->name, sizeof(p->name), 0);
            f_str(c, p->tunnel_addr, sizeof(p->tunnel_addr), F_ADDR);
            f_bin(c, p->curve_pk, sizeof(p->curve_pk));
            f_str(c, p->region, sizeof(p->region), F_EMPTY_OK);
            if (avoid_field)
                f_bool(c, p->avoid);
            rec_end(c);
        }
    if (f_list(c, in->nchecks))
        for (uint32_t i = 0; i < in->nchecks; i++)
            build_check(c, &in->checks[i], false);
    if (cas_field && f_list(c, in->ncas))
        for (uint32_t i = 0; i < in->ncas; i++)
            f_str(c, in->cas[i], sizeof(in->cas[i]), 0);
    rec_end(c);
}

/* ---- decoders and packers behind one signature ------------------------------------------ */

static sm_status_t scratch_st;
static sm_info_t scratch_in;

static int dec_hello(const uint8_t *b, size_t n, void *out, const char **why)
{
    return sm_decode_hello(b, n, out, why);
}
static int dec_welcome(const uint8_t *b, size_t n, void *out, const char **why)
{
    return sm_decode_welcome(b, n, out, why);
}
static int dec_open(const uint8_t *b, size_t n, void *out, const char **why)
{
    return sm_decode_open(b, n, out, why);
}
static int dec_status(const uint8_t *b, size_t n, void *out, const char **why)
{
    int type = -1;
    int rc = sm_decode_ctl(b, n, &type, out, &scratch_in, why);
    if (rc == 0)
        assert_int_equal(type, SM_CTL_STATUS);
    return rc;
}
static int dec_info(const uint8_t *b, size_t n, void *out, const char **why)
{
    int type = -1;
    int rc = sm_decode_ctl(b, n, &type, &scratch_st, out, why);
    if (rc == 0)
        assert_int_equal(type, SM_CTL_INFO);
    return rc;
}
static void pk_hello(msgpack_packer *pk, const void *v)
{
    sm_pack_hello(pk, v);
}
static void pk_welcome(msgpack_packer *pk, const void *v)
{
    sm_pack_welcome(pk, v);
}
static void pk_open(msgpack_packer *pk, const void *v)
{
    sm_pack_open(pk, v);
}
static void pk_status(msgpack_packer *pk, const void *v)
{
    sm_pack_status(pk, v);
}
static void pk_info(msgpack_packer *pk, const void *v)
{
    sm_pack_info(pk, v);
}

struct msgdef {
    const char *name; /* also the corpus file name */
    void (*build)(ctx_t *, const void *);
    void (*pack)(msgpack_packer *, const void *);
    int (*decode)(const uint8_t *, size_t, void *, const char **);
    size_t size;
    const void *val;
};

static sm_hello_t hello_site, hello_probe, hello_seal;
static sm_welcome_t welcome, welcome_seal;
static sm_open_t open_min, open_max, open_sealed, open_proxy, open_tls;
static sm_status_t status_empty, status_checks, status_full, status_seal;
static sm_info_t info_empty, info_full, info_max, info_cas;

#define MSG(n, kind, v)                                                                            \
    {                                                                                              \
        n, build_##kind, pk_##kind, dec_##kind, sizeof(v), &v                                      \
    }
static const struct msgdef MSGS[] = {
    MSG("hello_site", hello, hello_site),
    MSG("hello_probe", hello, hello_probe),
    MSG("hello_seal", hello, hello_seal),
    MSG("welcome", welcome, welcome),
    MSG("welcome_seal", welcome, welcome_seal),
    MSG("open_min", open, open_min),
    MSG("open_max", open, open_max),
    MSG("open_sealed", open, open_sealed),
    MSG("open_proxy", open, open_proxy),
    MSG("open_tls", open, open_tls),
    MSG("status_empty", status, status_empty),
    MSG("status_checks", status, status_checks),
    MSG("status_seal", status, status_seal),
    MSG("info_empty", info, info_empty),
    MSG("info_full", info, info_full),
    MSG("info_cas", info, info_cas),
};
#define NMSGS (sizeof(MSGS) / sizeof(MSGS[0]))
/* Too big to mutate field by field in every way (round trip and limits only). */
static const struct msgdef BIGMSGS[] = {
    MSG("status_max", status, status_full),
    MSG("info_max", info, info_max),
};

static void fill_check(sm_check_t *k, unsigned i, bool full)
{
    snprintf(k->target, sizeof(k->target), i % 2 ? "[fd00::%x]:%u" : "10.0.%u.1:%u", i, 1 + i);
    snprintf(k->health, sizeof(k->health), i % 3 ? "tcp" : "http:/healthz/%u", i);
    if (!full && i % 4 == 1) { /* a resource with health-check settings */
        snprintf(k->resource, sizeof(k->resource), "res-%u", i);
        k->hc.interval_ms = 200 + i;
        k->hc.rise = 1;
        if (i % 3 == 0) {
            snprintf(k->hc.status, sizeof(k->hc.status), "200,503,5xx");
            snprintf(k->hc.host, sizeof(k->hc.host), "app%u.example.com:8443", i);
        }
    }
    if (full) {
        k->healthy = i % 2;
        if (!k->healthy)
            snprintf(k->why, sizeof(k->why), "connect: refused (%u)", i);
    }
}

static void fill_pop(sm_pop_t *p, unsigned i)
{
    p->id = 0x1000000000000000ull + i;
    snprintf(p->name, sizeof(p->name), "pop-%u", i);
    snprintf(p->tunnel_addr, sizeof(p->tunnel_addr), "pop%u.example.net:7443", i);
    for (unsigned j = 0; j < 32; j++)
        p->curve_pk[j] = (uint8_t)(i * 31 + j);
    if (i % 3) /* and every third without a region */
        snprintf(p->region, sizeof(p->region), i % 3 == 1 ? "eu-west" : "us-east-%u", i);
    p->avoid = i % 4 == 3; /* some to avoid (a resource's transit labels) */
}

static int setup(void **state)
{
    (void)state;
    strcpy(hello_site.role, "site");
    strcpy(hello_site.name, "branch-1");
    strcpy(hello_probe.role, "site");
    strcpy(hello_probe.name, "branch-1");
    hello_probe.probe = true;
    strcpy(welcome.name, "pop-fra");
    welcome.id = 0xfedcba9876543210ull;
    hello_seal = hello_site;
    hello_seal.seal = 6;
    welcome_seal = welcome;
    welcome_seal.seal = 2;

    strcpy(open_min.resource, "web");
    open_min.site = 1;
    open_min.ntargets = 1;
    strcpy(open_min.targets[0], "10.0.0.5:22");

    strcpy(open_max.resource, "ssh-bastion");
    open_max.site = UINT64_MAX;
    open_max.npath = SM_PATH_MAX;
    for (unsigned i = 0; i < SM_PATH_MAX; i++)
        open_max.path[i] = 1000 + i;
    strcpy(open_max.client, "[2001:db8::7]:51234");
    strcpy(open_max.ingress, "[2001:db8::1]:443");
    open_max.ntargets = SM_TARGETS_MAX;
    for (unsigned i = 0; i < SM_TARGETS_MAX; i++)
        snprintf(open_max.targets[i], sizeof(open_max.targets[i]),
                 i % 2 ? "[fd00::%u]:8080" : "host-%u.lan:443", i);
    open_max.sticky = true;
    for (unsigned i = 0; i < SM_TARGETS_MAX; i++) /* 0 is how a weight of 1 decodes */
        open_max.weights[i] = i % 3 ? (uint16_t)(i % 3 + 1) : 0;
    open_max.weights[SM_TARGETS_MAX - 1] = SM_WEIGHT_MAX;

    open_sealed = open_min;
    open_sealed.sealed = true;
    open_sealed.seal_from = 0x1234567890abcdefull;
    for (unsigned i = 0; i < 32; i++)
        open_sealed.seal_epk[i] = (uint8_t)(i + 1);
    for (unsigned i = 0; i < 16; i++)
        open_sealed.seal_salt[i] = (uint8_t)(0xa0 + i);
    open_sealed.seal_suite = 1;
    for (unsigned i = 0; i < 32; i++)
        open_sealed.seal_ipk[i] = (uint8_t)(0x40 + i);
    status_seal.seal = 6;
    open_tls = open_sealed; /* sealed, TLS to the target with a CA, and a PROXY header */
    open_tls.proxy = 1;
    open_tls.tls = 1;
    open_tls.has_ca = true;
    for (unsigned i = 0; i < 32; i++)
        open_tls.ca[i] = (uint8_t)(0x80 + i);
    info_cas.ncas = 2;
    strcpy(info_cas.cas[0], "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
    memset(info_cas.cas[1], 'x', SM_CA_MAX);
    open_proxy = open_min; /* unsealed: nil in the seal's place */
    open_proxy.proxy = 2;
    strcpy(open_proxy.client, "192.0.2.7:51234");
    strcpy(open_proxy.ingress, "198.51.100.1:8080");

    status_checks.primary = true;
    status_full.draining = true;
    strcpy(status_full.host, "connector-1.branch.example");
    status_checks.n = 3;
    for (unsigned i = 0; i < 3; i++)
        fill_check(&status_checks.checks[i], i, true);
    status_full.n = SM_CHECKS_MAX;
    for (unsigned i = 0; i < SM_CHECKS_MAX; i++)
        fill_check(&status_full.checks[i], i, true);

    info_full.npops = 2;
    for (unsigned i = 0; i < 2; i++)
        fill_pop(&info_full.pops[i], i);
    info_full.nchecks = 2;
    for (unsigned i = 0; i < 2; i++)
        fill_check(&info_full.checks[i], i, false);
    info_max.npops = SM_POPS_MAX;
    for (unsigned i = 0; i < SM_POPS_MAX; i++)
        fill_pop(&info_max.pops[i], i);
    info_max.nchecks = SM_CHECKS_MAX;
    for (unsigned i = 0; i < SM_CHECKS_MAX; i++)
        fill_check(&info_max.checks[i], i, false);
    return 0;
}

static void *out_alloc(const struct msgdef *m)
{
    void *p = calloc(1, m->size);
    assert_non_null(p);
    return p;
}

static void expect_refused(const struct msgdef *m, const uint8_t *b, size_t n, const char *what)
{
    void *out = out_alloc(m);
    const char *why = NULL;
    int rc = m->decode(b, n, out, &why);
    if (rc != -EBADMSG || !why)
        fail_msg("%s: %s: rc %d (want -EBADMSG with a reason)", m->name, what, rc);
    free(out);
}

/* Decodes b and checks the result equals m->val exactly. */
static void expect_decodes_to(const struct msgdef *m, const uint8_t *b, size_t n, const char *what)
{
    void *out = out_alloc(m);
    const char *why = NULL;
    int rc = m->decode(b, n, out, &why);
    if (rc != 0)
        fail_msg("%s: %s: refused: %s", m->name, what, why ? why : "(no reason)");
    if (memcmp(out, m->val, m->size))
        fail_msg("%s: %s: decoded value differs", m->name, what);
    free(out);
}

/* ---- tests ------------------------------------------------------------------------------- */

static void roundtrip_one(const struct msgdef *m, const char *dir)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    m->pack(&pk, m->val);
    expect_decodes_to(m, (const uint8_t *)sb.data, sb.size, "round trip");
    /* The packer writes the documented layout: the same bytes as the field builder. */
    ctx_t c;
    ctx_init(&c, -1, M_NONE);
    m->build(&c, m->val);
    assert_int_equal(c.sb.size, sb.size);
    assert_memory_equal(c.sb.data, sb.data, sb.size);
    ctx_free(&c);
    if (dir) {
        char path[512];
        snprintf(path, sizeof(path), "%s/%s", dir, m->name);
        FILE *fp = fopen(path, "wb");
        assert_non_null(fp);
        assert_int_equal(fwrite(sb.data, 1, sb.size, fp), sb.size);
        fclose(fp);
    }
    msgpack_sbuffer_destroy(&sb);
}

static void test_roundtrip(void **state)
{
    (void)state;
    const char *dir = getenv("SITEMSG_CORPUS_DIR");
    for (size_t k = 0; k < NMSGS; k++)
        roundtrip_one(&MSGS[k], dir);
    for (size_t k = 0; k < sizeof(BIGMSGS) / sizeof(BIGMSGS[0]); k++)
        roundtrip_one(&BIGMSGS[k], NULL);
}

/* The decoded optional probe: absent is false, an explicit false reads the same. */
static void test_hello_probe_false(void **state)
{
    (void)state;
    ctx_t c;
    ctx_init(&c, -1, M_NONE);
    msgpack_pack_array(&c.pk, 4);
    msgpack_pack_uint8(&c.pk, 1);
    mpw_str(&c.pk, "site");
    mpw_str(&c.pk, "branch-1");
    msgpack_pack_false(&c.pk);
    expect_decodes_to(&MSGS[0], (const uint8_t *)c.sb.data, c.sb.size, "probe false");
    ctx_free(&c);
    /* role "pop" is the other accepted one; anything else is refused */
    sm_hello_t h;
    const char *why = NULL;
    static const char *const roles[] = {"pop", "site"};
    for (int i = 0; i < 2; i++) {
        ctx_init(&c, -1, M_NONE);
        msgpack_pack_array(&c.pk, 3);
        msgpack_pack_uint8(&c.pk, 1);
        mpw_str(&c.pk, roles[i]);
        mpw_str(&c.pk, "x");
        assert_int_equal(sm_decode_hello((const uint8_t *)c.sb.data, c.sb.size, &h, &why), 0);
        assert_string_equal(h.role, roles[i]);
        ctx_free(&c);
    }
    static const char *const bad[] = {"Site", "pops", "sit", "client"};
    for (int i = 0; i < 4; i++) {
        ctx_init(&c, -1, M_NONE);
        msgpack_pack_array(&c.pk, 3);
        msgpack_pack_uint8(&c.pk, 1);
        mpw_str(&c.pk, bad[i]);
        mpw_str(&c.pk, "x");
        expect_refused(&MSGS[0], (const uint8_t *)c.sb.data, c.sb.size, bad[i]);
        ctx_free(&c);
    }
}

static void test_version(void **state)
{
    (void)state;
    static const uint64_t versions[] = {0, 2, 255, 1ull << 40};
    for (size_t k = 0; k < NMSGS; k++)
        for (size_t v = 0; v < sizeof(versions) / sizeof(versions[0]); v++) {
            ctx_t c;
            ctx_init(&c, -1, M_NONE);
            c.version = versions[v];
            MSGS[k].build(&c, MSGS[k].val);
            expect_refused(&MSGS[k], (const uint8_t *)c.sb.data, c.sb.size, "version");
            ctx_free(&c);
        }
}

static void test_truncated_and_trailing(void **state)
{
    (void)state;
    for (size_t k = 0; k < NMSGS; k++) {
        const struct msgdef *m = &MSGS[k];
        ctx_t c;
        ctx_init(&c, -1, M_NONE);
        m->build(&c, m->val);
        size_t n = c.sb.size;
        /* each prefix in a buffer of its own size, so ASan sees any read past it */
        for (size_t len = 0; len < n; len++) {
            uint8_t *p = malloc(len ? len : 1);
            assert_non_null(p);
            memcpy(p, c.sb.data, len);
            char what[64];
            snprintf(what, sizeof(what), "prefix of %zu/%zu bytes", len, n);
            expect_refused(m, p, len, what);
            free(p);
        }
        static const uint8_t tails[] = {0xc0, 0x00, 0xc3, 0x90};
        for (size_t t = 0; t < sizeof(tails); t++) {
            uint8_t *p = malloc(n + 1);
            assert_non_null(p);
            memcpy(p, c.sb.data, n);
            p[n] = tails[t];
            expect_refused(m, p, n + 1, "one trailing byte");
            free(p);
        }
        ctx_free(&c);
    }
}

/* Every field of every message (nested ones included), each mutation that applies to it. */
static void test_each_field(void **state)
{
    (void)state;
    static const char *const names[NMUT] = {
        "none", "nil",    "negative", "str",           "uint",      "bool",     "array",
        "map",  "bin",    "float",    "str NUL",       "str empty", "str over", "str longest",
        "zero", "bin 31", "bin 33",   "not host:port", "port 0"};
    unsigned refused = 0, accepted = 0;
    for (size_t k = 0; k < NMSGS; k++) {
        const struct msgdef *m = &MSGS[k];
        ctx_t c;
        ctx_init(&c, -1, M_NONE);
        m->build(&c, m->val);
        int nfields = c.idx;
        ctx_free(&c);
        for (int f = 0; f < nfields; f++)
            for (int mu = M_NIL; mu < NMUT; mu++) {
                ctx_init(&c, f, (enum mut)mu);
                m->build(&c, m->val);
                if (!c.applied) {
                    ctx_free(&c);
                    continue;
                }
                char what[80];
                snprintf(what, sizeof(what), "field %d: %s", f, names[mu]);
                const uint8_t *b = (const uint8_t *)c.sb.data;
                if (!c.expect_ok) {
                    expect_refused(m, b, c.sb.size, what);
                    refused++;
                } else {
                    /* accepted, and the packer writes back exactly these bytes */
                    void *out = out_alloc(m);
                    const char *why = NULL;
                    if (m->decode(b, c.sb.size, out, &why))
                        fail_msg("%s: %s: refused: %s", m->name, what, why);
                    msgpack_sbuffer sb;
                    msgpack_packer pk;
                    msgpack_sbuffer_init(&sb);
                    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
                    m->pack(&pk, out);
                    if (sb.size != c.sb.size || memcmp(sb.data, b, sb.size))
                        fail_msg("%s: %s: re-encoded differently", m->name, what);
                    msgpack_sbuffer_destroy(&sb);
                    free(out);
                    accepted++;
                }
                ctx_free(&c);
            }
    }
    print_message("%u mutations refused, %u accepted\n", refused, accepted);
    /* the builder really walked the fields: hundreds of refusals, some longest strings */
    assert_true(refused > 500);
    assert_true(accepted > 20);
}

static void test_extra_fields_skipped(void **state)
{
    (void)state;
    for (size_t k = 0; k < NMSGS; k++) {
        const struct msgdef *m = &MSGS[k];
        ctx_t c;
        ctx_init(&c, -1, M_NONE);
        c.extra = true;
        m->build(&c, m->val);
        expect_decodes_to(m, (const uint8_t *)c.sb.data, c.sb.size, "extra fields");
        ctx_free(&c);
    }
    /* an extra field of hello without the probe is read as the probe: refused */
    ctx_t c;
    ctx_init(&c, -1, M_NONE);
    msgpack_pack_array(&c.pk, 4);
    msgpack_pack_uint8(&c.pk, 1);
    mpw_str(&c.pk, "site");
    mpw_str(&c.pk, "branch-1");
    mpw_str(&c.pk, "future");
    expect_refused(&MSGS[0], (const uint8_t *)c.sb.data, c.sb.size, "non-bool probe");
    ctx_free(&c);
}

/* Missing fields: the record arrays one element short are refused (and not read past). */
static void test_short_records(void **state)
{
    (void)state;
    ctx_t c;
    /* [1, "site"] */
    ctx_init(&c, -1, M_NONE);
    msgpack_pack_array(&c.pk, 2);
    msgpack_pack_uint8(&c.pk, 1);
    mpw_str(&c.pk, "site");
    expect_refused(&MSGS[0], (const uint8_t *)c.sb.data, c.sb.size, "2 fields");
    ctx_free(&c);
    /* [1, "pop-fra"] */
    ctx_init(&c, -1, M_NONE);
    msgpack_pack_array(&c.pk, 2);
    msgpack_pack_uint8(&c.pk, 1);
    mpw_str(&c.pk, "pop-fra");
    expect_refused(&MSGS[2], (const uint8_t *)c.sb.data, c.sb.size, "2 fields");
    ctx_free(&c);
    /* [1, 1, true] and [1, 2, []] */
    ctx_init(&c, -1, M_NONE);
    msgpack_pack_array(&c.pk, 3);
    msgpack_pack_uint8(&c.pk, 1);
    msgpack_pack_uint8(&c.pk, 1);
    msgpack_pack_true(&c.pk);
    expect_refused(&MSGS[5], (const uint8_t *)c.sb.data, c.sb.size, "3 fields");
    ctx_free(&c);
    ctx_init(&c, -1, M_NONE);
    msgpack_pack_array(&c.pk, 3);
    msgpack_pack_uint8(&c.pk, 1);
    msgpack_pack_uint8(&c.pk, 2);
    msgpack_pack_array(&c.pk, 0);
    expect_refused(&MSGS[7], (const uint8_t *)c.sb.data, c.sb.size, "3 fields");
    ctx_free(&c);
    /* a check of 3 fields in a status, of 1 in an info; a PoP of 3 */
    ctx_init(&c, -1, M_NONE);
    msgpack_pack_array(&c.pk, 4);
    msgpack_pack_uint8(&c.pk, 1);
    msgpack_pack_uint8(&c.pk, 1);
    msgpack_pack_true(&c.pk);
    msgpack_pack_array(&c.pk, 1);
    msgpack_pack_array(&c.pk, 3);
    mpw_str(&c.pk, "h:1");
    mpw_str(&c.pk, "tcp");
    msgpack_pack_true(&c.pk);
    mpw_str(&c.pk, ""); /* the why, outside the check's array */
    expect_refused(&MSGS[5], (const uint8_t *)c.sb.data, c.sb.size, "3-field check");
    ctx_free(&c);
    ctx_init(&c, -1, M_NONE);
    msgpack_pack_array(&c.pk, 4);
    msgpack_pack_uint8(&c.pk, 1);
    msgpack_pack_uint8(&c.pk, 2);
    msgpack_pack_array(&c.pk, 1);
    msgpack_pack_array(&c.pk, 3);
    msgpack_pack_uint8(&c.pk, 5);
    mpw_str(&c.pk, "pop");
    mpw_str(&c.pk, "h:1");
    static const uint8_t pk32[32];
    mpw_bin(&c.pk, pk32, 32); /* the curve_pk, outside the PoP's array */
    msgpack_pack_array(&c.pk, 0);
    expect_refused(&MSGS[7], (const uint8_t *)c.sb.data, c.sb.size, "3-field PoP");
    ctx_free(&c);
    ctx_init(&c, -1, M_NONE);
    msgpack_pack_array(&c.pk, 4);
    msgpack_pack_uint8(&c.pk, 1);
    msgpack_pack_uint8(&c.pk, 2);
    msgpack_pack_array(&c.pk, 0);
    msgpack_pack_array(&c.pk, 1);
    msgpack_pack_array(&c.pk, 1);
    mpw_str(&c.pk, "h:1");
    mpw_str(&c.pk, "tcp"); /* the health, outside the check's array */
    expect_refused(&MSGS[7], (const uint8_t *)c.sb.data, c.sb.size, "1-field check");
    ctx_free(&c);
    /* every message with its field count one short, all the fields still there */
    for (size_t k = 0; k < NMSGS; k++) {
        ctx_init(&c, -1, M_NONE);
        MSGS[k].build(&c, MSGS[k].val);
        uint8_t *b = (uint8_t *)c.sb.data;
        assert_true(b[0] > 0x90 && b[0] <= 0x9f); /* a fixarray */
        b[0]--;
        expect_refused(&MSGS[k], b, c.sb.size, "count one short");
        ctx_free(&c);
    }
}

/* ---- list limits: at the limit accepted, one past refused --------------------------------- */

static int decode_open_n(uint32_t npath, uint32_t ntargets, sm_open_t *o, const char **why)
{
    ctx_t c;
    ctx_init(&c, -1, M_NONE);
    msgpack_pack_array(&c.pk, 7);
    msgpack_pack_uint8(&c.pk, 1);
    mpw_str(&c.pk, "web");
    msgpack_pack_uint8(&c.pk, 9);
    msgpack_pack_array(&c.pk, npath);
    for (uint32_t i = 0; i < npath; i++)
        msgpack_pack_uint32(&c.pk, 100 + i);
    mpw_str(&c.pk, "1.2.3.4:5");
    msgpack_pack_array(&c.pk, ntargets);
    for (uint32_t i = 0; i < ntargets; i++) {
        char t[32];
        snprintf(t, sizeof(t), "t%u:%u", i, 1 + i);
        mpw_str(&c.pk, t);
    }
    msgpack_pack_false(&c.pk);
    *why = NULL;
    int rc = sm_decode_open((const uint8_t *)c.sb.data, c.sb.size, o, why);
    ctx_free(&c);
    return rc;
}

static void test_open_limits(void **state)
{
    (void)state;
    sm_open_t o;
    const char *why;
    assert_int_equal(decode_open_n(0, 1, &o, &why), 0);
    assert_int_equal(o.npath, 0);
    assert_int_equal(decode_open_n(SM_PATH_MAX, SM_TARGETS_MAX, &o, &why), 0);
    assert_int_equal(o.npath, SM_PATH_MAX);
    assert_true(o.path[SM_PATH_MAX - 1] == 100 + SM_PATH_MAX - 1);
    assert_int_equal(o.ntargets, SM_TARGETS_MAX);
    assert_string_equal(o.targets[SM_TARGETS_MAX - 1], "t15:16");
    assert_int_equal(decode_open_n(SM_PATH_MAX + 1, 1, &o, &why), -EBADMSG);
    assert_non_null(why);
    assert_non_null(strstr(why, "hop limit"));
    assert_int_equal(decode_open_n(100, 1, &o, &why), -EBADMSG);
    assert_non_null(why);
    assert_int_equal(decode_open_n(0, 0, &o, &why), -EBADMSG);
    assert_non_null(why);
    assert_int_equal(decode_open_n(0, SM_TARGETS_MAX + 1, &o, &why), -EBADMSG);
    assert_non_null(why);
}

static void test_open_targets(void **state)
{
    (void)state;
    /* udp://: a UDP resource's target (sitemsg.h); the scheme once, then a host:port */
    static const char *const good[] = {"a:1",           "10.0.0.5:22",         "[fd00::1]:8080",
                                       "h.lan:65535",   "udp://127.0.0.1:53", "udp://[::1]:53"};
    static const char *const bad[] = {
        "nohostport", "host:",       ":80",   "host:0", "host:65536", "host:8o", "fd00::1:80",
        "a b:1",      "host:123456", "a/b:1", "",       "udp://",     "udp://udp://a:1",
        "udp:a:1",    "UDP://a:1",   "tcp://a:1", "udp://a:0"};
    for (int pass = 0; pass < 2; pass++) {
        const char *const *list = pass ? bad : good;
        size_t n = pass ? sizeof(bad) / sizeof(bad[0]) : sizeof(good) / sizeof(good[0]);
        for (size_t i = 0; i < n; i++) {
            ctx_t c;
            ctx_init(&c, -1, M_NONE);
            msgpack_pack_array(&c.pk, 7);
            msgpack_pack_uint8(&c.pk, 1);
            mpw_str(&c.pk, "web");
            msgpack_pack_uint8(&c.pk, 9);
            msgpack_pack_array(&c.pk, 0);
            mpw_str(&c.pk, "");
            msgpack_pack_array(&c.pk, 2);
            mpw_str(&c.pk, "ok:1");
            mpw_str(&c.pk, list[i]);
            msgpack_pack_true(&c.pk);
            sm_open_t o;
            const char *why = NULL;
            int rc = sm_decode_open((const uint8_t *)c.sb.data, c.sb.size, &o, &why);
            if (pass == 0) {
                if (rc)
                    fail_msg("target %s refused: %s", list[i], why);
                assert_string_equal(o.targets[1], list[i]);
            } else if (rc != -EBADMSG || !why) {
                fail_msg("target \"%s\" accepted", list[i]);
            }
            ctx_free(&c);
        }
    }
}

/* STATUS with n checks, or INFO with npops PoPs and n checks (all valid). */
static void pack_ctl_n(ctx_t *c, int type, uint32_t npops, uint32_t n)
{
    msgpack_pack_array(&c->pk, 4);
    msgpack_pack_uint8(&c->pk, 1);
    msgpack_pack_uint8(&c->pk, (uint8_t)type);
    if (type == SM_CTL_STATUS)
        msgpack_pack_false(&c->pk);
    else {
        msgpack_pack_array(&c->pk, npops);
        for (uint32_t i = 0; i < npops; i++) {
            sm_pop_t p = {0};
            fill_pop(&p, i);
            msgpack_pack_array(&c->pk, 4);
            msgpack_pack_uint64(&c->pk, p.id);
            mpw_str(&c->pk, p.name);
            mpw_str(&c->pk, p.tunnel_addr);
            mpw_bin(&c->pk, p.curve_pk, 32);
        }
    }
    msgpack_pack_array(&c->pk, n);
    for (uint32_t i = 0; i < n; i++) {
        msgpack_pack_array(&c->pk, type == SM_CTL_STATUS ? 4 : 2);
        mpw_str(&c->pk, "h:1");
        mpw_str(&c->pk, "tcp");
        if (type == SM_CTL_STATUS) {
            msgpack_pack_true(&c->pk);
            mpw_str(&c->pk, "");
        }
    }
}

static int decode_ctl_n(int type, uint32_t npops, uint32_t n, int *got)
{
    ctx_t c;
    ctx_init(&c, -1, M_NONE);
    pack_ctl_n(&c, type, npops, n);
    const char *why = NULL;
    *got = -1;
    int rc =
        sm_decode_ctl((const uint8_t *)c.sb.data, c.sb.size, got, &scratch_st, &scratch_in, &why);
    if (rc)
        assert_non_null(why);
    ctx_free(&c);
    return rc;
}

static void test_ctl_limits(void **state)
{
    (void)state;
    int t;
    assert_int_equal(decode_ctl_n(SM_CTL_STATUS, 0, SM_CHECKS_MAX, &t), 0);
    assert_int_equal(t, SM_CTL_STATUS);
    assert_int_equal(scratch_st.n, SM_CHECKS_MAX);
    assert_int_equal(decode_ctl_n(SM_CTL_STATUS, 0, SM_CHECKS_MAX + 1, &t), -EBADMSG);
    assert_int_equal(decode_ctl_n(SM_CTL_INFO, SM_POPS_MAX, SM_CHECKS_MAX, &t), 0);
    assert_int_equal(t, SM_CTL_INFO);
    assert_int_equal(scratch_in.npops, SM_POPS_MAX);
    assert_int_equal(scratch_in.nchecks, SM_CHECKS_MAX);
    assert_int_equal(decode_ctl_n(SM_CTL_INFO, SM_POPS_MAX + 1, 0, &t), -EBADMSG);
    assert_int_equal(decode_ctl_n(SM_CTL_INFO, 0, SM_CHECKS_MAX + 1, &t), -EBADMSG);
    assert_int_equal(decode_ctl_n(SM_CTL_INFO, 1000, 0, &t), -EBADMSG);
}

static void test_ctl_types(void **state)
{
    (void)state;
    /* unknown types, with a body that would be a valid STATUS or INFO */
    static const uint64_t types[] = {0, 3, 255, 65536, 1ull << 33 | 1, UINT64_MAX};
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        for (int shape = SM_CTL_STATUS; shape <= SM_CTL_INFO; shape++) {
            ctx_t c;
            ctx_init(&c, -1, M_NONE);
            msgpack_pack_array(&c.pk, 4);
            msgpack_pack_uint8(&c.pk, 1);
            msgpack_pack_uint64(&c.pk, types[i]);
            if (shape == SM_CTL_STATUS)
                msgpack_pack_true(&c.pk);
            else
                msgpack_pack_array(&c.pk, 0);
            msgpack_pack_array(&c.pk, 0);
            int t = 77;
            const char *why = NULL;
            assert_int_equal(sm_decode_ctl((const uint8_t *)c.sb.data, c.sb.size, &t, &scratch_st,
                                           &scratch_in, &why),
                             -EBADMSG);
            assert_non_null(why);
            assert_int_equal(t, 77);
            ctx_free(&c);
        }
    /* the caller refuses a type by passing NULL for its output */
    for (int type = SM_CTL_STATUS; type <= SM_CTL_INFO; type++) {
        ctx_t c;
        ctx_init(&c, -1, M_NONE);
        pack_ctl_n(&c, type, 1, 1);
        const uint8_t *b = (const uint8_t *)c.sb.data;
        int t = 77;
        const char *why = NULL;
        sm_status_t *st = type == SM_CTL_STATUS ? NULL : &scratch_st;
        sm_info_t *in = type == SM_CTL_INFO ? NULL : &scratch_in;
        assert_int_equal(sm_decode_ctl(b, c.sb.size, &t, st, in, &why), -EBADMSG);
        assert_non_null(why);
        assert_int_equal(t, 77);
        why = NULL;
        assert_int_equal(sm_decode_ctl(b, c.sb.size, &t, NULL, NULL, &why), -EBADMSG);
        assert_non_null(why);
        /* and the other NULL is fine */
        st = type == SM_CTL_STATUS ? &scratch_st : NULL;
        in = type == SM_CTL_INFO ? &scratch_in : NULL;
        assert_int_equal(sm_decode_ctl(b, c.sb.size, &t, st, in, &why), 0);
        assert_int_equal(t, type);
        ctx_free(&c);
    }
}

/* The PoP entry of an INFO: an older PoP's has 4 fields (region ""), the region is "" or a
 * valid name (a-z, 0-9, '-', 1 to 63, not starting or ending with '-'). */
static void pack_info_pop(ctx_t *c, uint32_t fields, const char *region)
{
    sm_pop_t p = {0};
    fill_pop(&p, 1);
    msgpack_pack_array(&c->pk, 4);
    msgpack_pack_uint8(&c->pk, 1);
    msgpack_pack_uint8(&c->pk, SM_CTL_INFO);
    msgpack_pack_array(&c->pk, 1);
    msgpack_pack_array(&c->pk, fields);
    msgpack_pack_uint64(&c->pk, p.id);
    mpw_str(&c->pk, p.name);
    mpw_str(&c->pk, p.tunnel_addr);
    mpw_bin(&c->pk, p.curve_pk, 32);
    if (fields >= 5)
        mpw_str(&c->pk, region);
    if (fields >= 6)
        msgpack_pack_true(&c->pk); /* avoid */
    if (fields >= 7)
        msgpack_pack_uint8(&c->pk, 9); /* a field from the future */
    msgpack_pack_array(&c->pk, 0);
}

static void test_info_pop_region(void **state)
{
    (void)state;
    const char *why = NULL;
    int t;
    ctx_t c;
    sm_pop_t want = {0};
    fill_pop(&want, 1);
    assert_string_equal(want.region, "eu-west");
    /* an older PoP's entry: region "" */
    ctx_init(&c, -1, M_NONE);
    pack_info_pop(&c, 4, NULL);
    memset(&scratch_in, 0xa5, sizeof(scratch_in));
    assert_int_equal(
        sm_decode_ctl((const uint8_t *)c.sb.data, c.sb.size, &t, NULL, &scratch_in, &why), 0);
    assert_int_equal(scratch_in.npops, 1);
    assert_string_equal(scratch_in.pops[0].region, "");
    assert_int_equal(scratch_in.pops[0].id, want.id);
    assert_string_equal(scratch_in.pops[0].tunnel_addr, want.tunnel_addr);
    assert_memory_equal(scratch_in.pops[0].curve_pk, want.curve_pk, 32);
    ctx_free(&c);
    /* 5, 6 and 7 fields (the sixth is avoid, the seventh skipped); good regions, up to 63
     * bytes */
    static const char *const good[] = {
        "",  "eu-west",   "a",
        "0", "us-east-2", "abcdefghijklmnopqrstuvwxyz0123456789-abcdefghijklmnopqrstuvwxy"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        for (uint32_t fields = 5; fields <= 7; fields++) {
            ctx_init(&c, -1, M_NONE);
            pack_info_pop(&c, fields, good[i]);
            why = NULL;
            if (sm_decode_ctl((const uint8_t *)c.sb.data, c.sb.size, &t, NULL, &scratch_in, &why))
                fail_msg("region '%s' (%u fields) refused: %s", good[i], fields, why);
            assert_string_equal(scratch_in.pops[0].region, good[i]);
            assert_int_equal(scratch_in.pops[0].avoid, fields >= 6);
            ctx_free(&c);
        }
    /* bad ones: refused with a reason */
    static const char *const bad[] = {
        "EU-west",
        "eu_west",
        "-eu",
        "eu-",
        "eu west",
        "eu.west",
        "abcdefghijklmnopqrstuvwxyz0123456789-abcdefghijklmnopqrstuvwxyz0"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ctx_init(&c, -1, M_NONE);
        pack_info_pop(&c, 5, bad[i]);
        why = NULL;
        int rc = sm_decode_ctl((const uint8_t *)c.sb.data, c.sb.size, &t, NULL, &scratch_in, &why);
        if (rc != -EBADMSG || !why)
            fail_msg("region '%s' accepted (rc %d)", bad[i], rc);
        ctx_free(&c);
    }
    /* a region that is not a string, NUL inside, too long: test_each_field */
}

/* The decoders take any msgpack shape at the top (not an array, a map, nothing). */
static void test_not_arrays(void **state)
{
    (void)state;
    static const uint8_t inputs[][3] = {{0xc0}, {0x01}, {0x80}, {0xa1, 'x'}, {0x90}, {0x91, 0x01}};
    static const size_t lens[] = {1, 1, 1, 2, 1, 2};
    for (size_t k = 0; k < NMSGS; k++)
        for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++)
            expect_refused(&MSGS[k], inputs[i], lens[i], "not a message");
}

/* sm_open_bind: what a sealed stream's keys are bound to covers every field the site acts on and
 * the seal, not the path (relays consume it). */
static void test_open_bind(void **state)
{
    (void)state;
    uint8_t a[32], b[32];
    sm_open_t o = open_max;
    o.sealed = true;
    o.seal_from = 7;
    o.seal_suite = 2;
    sm_open_bind(&o, a);
    sm_open_t p = o;
    p.npath = 1; /* a relay took hops off */
    sm_open_bind(&p, b);
    assert_memory_equal(a, b, 32);
    for (int k = 0; k < 14; k++) {
        p = o;
        switch (k) {
        case 0: strcpy(p.targets[3], "evil.lan:22"); break;
        case 1: p.client[0] ^= 1; break;
        case 2: p.ingress[1] ^= 1; break;
        case 3: p.resource[0] ^= 1; break;
        case 4: p.site ^= 1; break;
        case 5: p.weights[2]++; break;
        case 6: p.sticky = !p.sticky; break;
        case 7: p.seal_salt[5] ^= 1; break;
        case 8: p.seal_from++; break;
        case 9: p.seal_ipk[0] ^= 1; break;
        case 10: p.proxy = 1; break; /* a relay cannot add a PROXY header */
        case 11: p.proxy = 2; break;
        case 12: p.tls = 2; break; /* nor turn certificate checks off */
        case 13: p.tls = 1, p.has_ca = true; break;
        }
        sm_open_bind(&p, b);
        if (!memcmp(a, b, 32))
            fail_msg("change %d left the bind as it was", k);
    }
    /* origin: a proxy version a relay changes is caught too; a descriptor without one binds
     * as before the field existed (checked against the 10 changes above, which have none) */
    o.proxy = 1;
    sm_open_bind(&o, a);
    p = o;
    p.proxy = 2;
    sm_open_bind(&p, b);
    assert_memory_not_equal(a, b, 32);
    o.proxy = 0;
    /* proxy 3 and an origin that is not an array: refused */
    for (int k = 0; k < 2; k++) {
        sm_open_t q = open_proxy;
        msgpack_sbuffer sb;
        msgpack_packer pk;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        sm_pack_open(&pk, &q);
        /* the last bytes are [2] (0x91 0x02): make it [3], or 0x02 0x02 (uint, then junk) */
        assert_int_equal((uint8_t)sb.data[sb.size - 2], 0x91);
        if (k == 0)
            sb.data[sb.size - 1] = 3;
        else
            sb.data[sb.size - 2] = 2;
        sm_open_t out;
        const char *why = NULL;
        assert_int_equal(sm_decode_open((const uint8_t *)sb.data, sb.size, &out, &why), -EBADMSG);
        msgpack_sbuffer_destroy(&sb);
    }
    /* a weight of 1 kept as 0 (how the decoder keeps it) binds as 1 */
    p = o;
    o.weights[0] = 1;
    p.weights[0] = 0;
    sm_open_bind(&o, a);
    sm_open_bind(&p, b);
    assert_memory_equal(a, b, 32);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),       cmocka_unit_test(test_hello_probe_false),
        cmocka_unit_test(test_version),         cmocka_unit_test(test_truncated_and_trailing),
        cmocka_unit_test(test_each_field),      cmocka_unit_test(test_extra_fields_skipped),
        cmocka_unit_test(test_short_records),   cmocka_unit_test(test_open_limits),
        cmocka_unit_test(test_open_targets),    cmocka_unit_test(test_ctl_limits),
        cmocka_unit_test(test_ctl_types),       cmocka_unit_test(test_not_arrays),
        cmocka_unit_test(test_info_pop_region), cmocka_unit_test(test_open_bind),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
