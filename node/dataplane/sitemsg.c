/* sitemsg: codecs (see sitemsg.h). Decoders check every length before reading and refuse on
 * the first inconsistency. */
#include "node/dataplane/sitemsg.h"

#include "common/mp.h"

#include <errno.h>
#include <sodium.h>
#include <string.h>

#define BAD(msg)                                                                                   \
    do {                                                                                           \
        *why = (msg);                                                                              \
        return -EBADMSG;                                                                           \
    } while (0)

/* A NUL-free string that fits out (cap bytes with the NUL); empty allowed when allow_empty. */
static int get_str(mpr_t *r, char *out, size_t cap, bool allow_empty)
{
    const char *s;
    uint32_t n;
    if (mpr_str(r, &s, &n) || n >= cap || (!n && !allow_empty) || memchr(s, 0, n))
        return -EBADMSG;
    memcpy(out, s, n);
    out[n] = '\0';
    return 0;
}

static int skip_rest(mpr_t *r, uint32_t count, uint32_t known)
{
    for (uint32_t i = known; i < count; i++)
        if (mpr_skip(r))
            return -EBADMSG;
    return 0;
}

static int head(mpr_t *r, uint32_t *n, uint32_t min)
{
    uint64_t v;
    if (mpr_array(r, n) || *n < min || mpr_uint(r, &v) || v != SM_VERSION)
        return -EBADMSG;
    return 0;
}

void sm_pack_hello(msgpack_packer *pk, const sm_hello_t *h)
{
    msgpack_pack_array(pk, h->seal ? 5 : h->probe ? 4 : 3);
    msgpack_pack_uint8(pk, SM_VERSION);
    mpw_str(pk, h->role);
    mpw_str(pk, h->name);
    if (h->probe)
        msgpack_pack_true(pk);
    else if (h->seal)
        msgpack_pack_false(pk);
    if (h->seal)
        msgpack_pack_uint8(pk, h->seal);
}

/* A seal field: a suite mask, 0..255 (0, as absent: none; a writer that has a later field to
 * send after it writes 0). */
static int get_seal(mpr_t *r, uint8_t *out)
{
    uint64_t v;
    if (mpr_uint(r, &v) || v > 255)
        return -EBADMSG;
    *out = (uint8_t)v;
    return 0;
}

int sm_decode_hello(const uint8_t *buf, size_t len, sm_hello_t *h, const char **why)
{
    mpr_t r;
    uint32_t n;
    mpr_init(&r, buf, len);
    memset(h, 0, sizeof(*h));
    if (head(&r, &n, 3))
        BAD("hello: not [1, role, name]");
    if (get_str(&r, h->role, sizeof(h->role), false) ||
        get_str(&r, h->name, sizeof(h->name), false))
        BAD("hello: bad role or name");
    if (strcmp(h->role, "site") && strcmp(h->role, "pop"))
        BAD("hello: role is neither site nor pop");
    if (n >= 4 && mpr_bool(&r, &h->probe))
        BAD("hello: probe is not a bool");
    if (n >= 5 && get_seal(&r, &h->seal))
        BAD("hello: seal is not a suite mask");
    if (skip_rest(&r, n, 5) || r.left)
        BAD("hello: trailing bytes");
    return 0;
}

void sm_pack_welcome(msgpack_packer *pk, const sm_welcome_t *w)
{
    msgpack_pack_array(pk, w->seal ? 4 : 3);
    msgpack_pack_uint8(pk, SM_VERSION);
    mpw_str(pk, w->name);
    msgpack_pack_uint64(pk, w->id);
    if (w->seal)
        msgpack_pack_uint8(pk, w->seal);
}

int sm_decode_welcome(const uint8_t *buf, size_t len, sm_welcome_t *w, const char **why)
{
    mpr_t r;
    uint32_t n;
    mpr_init(&r, buf, len);
    memset(w, 0, sizeof(*w));
    if (head(&r, &n, 3) || get_str(&r, w->name, sizeof(w->name), false) || mpr_uint(&r, &w->id))
        BAD("welcome: not [1, name, id]");
    if (n >= 4 && get_seal(&r, &w->seal))
        BAD("welcome: seal is not a suite mask");
    if (skip_rest(&r, n, 4) || r.left)
        BAD("welcome: trailing bytes");
    return 0;
}

int sm_target_parse(const char *t, bool *udp, const char **addr)
{
    bool u = !strncmp(t, SM_UDP_SCHEME, sizeof(SM_UDP_SCHEME) - 1);
    const char *a = u ? t + sizeof(SM_UDP_SCHEME) - 1 : t;
    if (nodecfg_check_addr(a, 0))
        return -EINVAL;
    if (udp)
        *udp = u;
    if (addr)
        *addr = a;
    return 0;
}

void sm_pack_open(msgpack_packer *pk, const sm_open_t *o)
{
    bool w = false; /* weights only when one is not 1: what the version before sent */
    for (uint32_t i = 0; i < o->ntargets; i++)
        w |= o->weights[i] > 1;
    bool origin = o->proxy != 0 || o->tls != 0; /* the 11th field, only when set */
    w |= o->sealed || origin; /* the seal field is the 10th: the weights come before it */
    msgpack_pack_array(pk, origin ? 11 : o->sealed ? 10 : w ? 9 : 8); /* a site that predates
                                                                       * ingress (or weights)
                                                                       * skips it */
    msgpack_pack_uint8(pk, SM_VERSION);
    mpw_str(pk, o->resource);
    msgpack_pack_uint64(pk, o->site);
    msgpack_pack_array(pk, o->npath);
    for (uint32_t i = 0; i < o->npath; i++)
        msgpack_pack_uint64(pk, o->path[i]);
    mpw_str(pk, o->client);
    msgpack_pack_array(pk, o->ntargets);
    for (uint32_t i = 0; i < o->ntargets; i++)
        mpw_str(pk, o->targets[i]);
    if (o->sticky)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
    mpw_str(pk, o->ingress);
    if (w) {
        msgpack_pack_array(pk, o->ntargets);
        for (uint32_t i = 0; i < o->ntargets; i++)
            msgpack_pack_uint32(pk, o->weights[i] ? o->weights[i] : 1);
    }
    if (o->sealed) {
        msgpack_pack_array(pk, 5);
        msgpack_pack_uint64(pk, o->seal_from);
        mpw_bin(pk, o->seal_epk, sizeof(o->seal_epk));
        mpw_bin(pk, o->seal_salt, sizeof(o->seal_salt));
        msgpack_pack_uint8(pk, o->seal_suite);
        mpw_bin(pk, o->seal_ipk, sizeof(o->seal_ipk));
    } else if (origin) {
        msgpack_pack_nil(pk); /* not sealed */
    }
    if (origin) {
        msgpack_pack_array(pk, o->tls ? 3 : 1);
        msgpack_pack_uint8(pk, o->proxy);
        if (o->tls) {
            msgpack_pack_uint8(pk, o->tls);
            if (o->has_ca)
                mpw_bin(pk, o->ca, sizeof(o->ca));
            else
                msgpack_pack_nil(pk);
        }
    }
}

/* A fixed-size bin. */
static int get_bin(mpr_t *r, uint8_t *out, size_t want)
{
    const uint8_t *b;
    uint32_t n;
    if (mpr_bin(r, &b, &n) || n != want)
        return -EBADMSG;
    memcpy(out, b, n);
    return 0;
}

int sm_decode_open(const uint8_t *buf, size_t len, sm_open_t *o, const char **why)
{
    mpr_t r;
    uint32_t n, c;
    mpr_init(&r, buf, len);
    memset(o, 0, sizeof(*o));
    if (head(&r, &n, 7))
        BAD("open: not [1, resource, site, path, client, targets, sticky]");
    if (get_str(&r, o->resource, sizeof(o->resource), false))
        BAD("open: bad resource name");
    if (mpr_uint(&r, &o->site) || o->site == 0)
        BAD("open: bad site id");
    if (mpr_array(&r, &c) || c > SM_PATH_MAX)
        BAD("open: path too long (hop limit)");
    o->npath = c;
    for (uint32_t i = 0; i < c; i++)
        if (mpr_uint(&r, &o->path[i]) || o->path[i] == 0)
            BAD("open: bad PoP id in the path");
    if (get_str(&r, o->client, sizeof(o->client), true))
        BAD("open: bad client address");
    if (mpr_array(&r, &c) || c == 0 || c > SM_TARGETS_MAX)
        BAD("open: need 1 to 16 targets");
    o->ntargets = c;
    for (uint32_t i = 0; i < c; i++)
        if (get_str(&r, o->targets[i], sizeof(o->targets[i]), false) ||
            sm_target_parse(o->targets[i], NULL, NULL))
            BAD("open: a target is not host:port");
    if (mpr_bool(&r, &o->sticky))
        BAD("open: sticky is not a bool");
    if (n >= 8 && get_str(&r, o->ingress, sizeof(o->ingress), true))
        BAD("open: bad ingress address");
    if (n >= 9) {
        if (mpr_array(&r, &c) || c != o->ntargets)
            BAD("open: weights do not match the targets");
        for (uint32_t i = 0; i < c; i++) {
            uint64_t wv;
            if (mpr_uint(&r, &wv) || wv == 0 || wv > SM_WEIGHT_MAX)
                BAD("open: a weight is not from 1 to 1000");
            o->weights[i] = wv == 1 ? 0 : (uint16_t)wv; /* 0 is how 1 is kept (not sent) */
        }
    }
    if (n >= 10 && r.left && r.p[0] == 0xc0) { /* nil: not sealed (a later field follows) */
        mpr_nil(&r);
    } else if (n >= 10) {
        uint64_t suite;
        if (mpr_array(&r, &c) || c < 5 || mpr_uint(&r, &o->seal_from) || o->seal_from == 0 ||
            get_bin(&r, o->seal_epk, sizeof(o->seal_epk)) ||
            get_bin(&r, o->seal_salt, sizeof(o->seal_salt)) || mpr_uint(&r, &suite) ||
            suite == 0 || suite > 255 || get_bin(&r, o->seal_ipk, sizeof(o->seal_ipk)) ||
            skip_rest(&r, c, 5))
            BAD("open: seal is not [ingress id, key 32 bytes, salt 16 bytes, suite, ingress key 32 "
                "bytes]");
        o->seal_suite = (uint8_t)suite;
        o->sealed = true;
    }
    if (n >= 11) {
        uint64_t proxy;
        if (mpr_array(&r, &c) || c < 1 || mpr_uint(&r, &proxy) || proxy > 2)
            BAD("open: origin is not [proxy protocol 0, 1 or 2]");
        o->proxy = (uint8_t)proxy;
        if (c >= 2) {
            uint64_t tls;
            if (mpr_uint(&r, &tls) || tls > 2)
                BAD("open: origin's tls is not 0, 1 or 2");
            o->tls = (uint8_t)tls;
        }
        if (c >= 3 && r.left && r.p[0] == 0xc0) {
            mpr_nil(&r);
        } else if (c >= 3) {
            if (get_bin(&r, o->ca, sizeof(o->ca)))
                BAD("open: origin's ca is not a 32-byte id");
            o->has_ca = true;
        }
        if (skip_rest(&r, c, c >= 3 ? 3 : c))
            BAD("open: bad origin");
    }
    if (skip_rest(&r, n, n >= 11 ? 11 : n >= 10 ? 10 : n >= 9 ? 9 : n >= 8 ? 8 : 7) || r.left)
        BAD("open: trailing bytes");
    return 0;
}

void sm_open_bind(const sm_open_t *o, uint8_t out[32])
{
    /* Each field with its length (or fixed size), so no two descriptors hash alike; the path
     * is left out: relays consume it on the way. */
    crypto_generichash_state h;
    crypto_generichash_init(&h, NULL, 0, 32);
    uint8_t b[8];
#define PUT_U64(v)                                                                                 \
    do {                                                                                           \
        for (int i_ = 0; i_ < 8; i_++)                                                             \
            b[i_] = (uint8_t)((uint64_t)(v) >> (8 * i_));                                          \
        crypto_generichash_update(&h, b, 8);                                                       \
    } while (0)
#define PUT_STR(s_)                                                                                \
    do {                                                                                           \
        size_t l_ = strlen(s_);                                                                    \
        PUT_U64(l_);                                                                               \
        crypto_generichash_update(&h, (const uint8_t *)(s_), l_);                                  \
    } while (0)
    crypto_generichash_update(&h, (const uint8_t *)"popmesh open v1", 15);
    PUT_STR(o->resource);
    PUT_U64(o->site);
    PUT_STR(o->client);
    PUT_STR(o->ingress);
    PUT_U64(o->ntargets);
    for (uint32_t i = 0; i < o->ntargets; i++) {
        PUT_STR(o->targets[i]);
        PUT_U64(o->weights[i] ? o->weights[i] : 1);
    }
    PUT_U64(o->sticky);
    PUT_U64(o->seal_from);
    crypto_generichash_update(&h, o->seal_epk, sizeof(o->seal_epk));
    crypto_generichash_update(&h, o->seal_salt, sizeof(o->seal_salt));
    PUT_U64(o->seal_suite);
    crypto_generichash_update(&h, o->seal_ipk, sizeof(o->seal_ipk));
    if (o->proxy) { /* only when set: the hash of a descriptor without it is unchanged */
        crypto_generichash_update(&h, (const uint8_t *)"origin", 6);
        PUT_U64(o->proxy);
    }
    if (o->tls) { /* likewise: a relay can neither turn TLS off nor swap the CA */
        crypto_generichash_update(&h, (const uint8_t *)"origin tls", 10);
        PUT_U64(o->tls);
        PUT_U64(o->has_ca);
        crypto_generichash_update(&h, o->ca, sizeof(o->ca));
    }
#undef PUT_U64
#undef PUT_STR
    crypto_generichash_final(&h, out, 32);
}

void sm_pack_status(msgpack_packer *pk, const sm_status_t *s)
{
    /* draining only when set, or when a host follows it */
    msgpack_pack_array(pk, s->seal ? 7 : s->host[0] ? 6 : s->draining ? 5 : 4);
    msgpack_pack_uint8(pk, SM_VERSION);
    msgpack_pack_uint8(pk, SM_CTL_STATUS);
    if (s->primary)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
    msgpack_pack_array(pk, s->n);
    for (uint32_t i = 0; i < s->n; i++) {
        const sm_check_t *k = &s->checks[i];
        msgpack_pack_array(pk, 4);
        mpw_str(pk, k->target);
        mpw_str(pk, k->health);
        if (k->healthy)
            msgpack_pack_true(pk);
        else
            msgpack_pack_false(pk);
        mpw_str(pk, k->why);
    }
    if (s->draining)
        msgpack_pack_true(pk);
    else if (s->host[0] || s->seal)
        msgpack_pack_false(pk);
    if (s->host[0] || s->seal)
        mpw_str(pk, s->host);
    if (s->seal)
        msgpack_pack_uint8(pk, s->seal);
}

void sm_pack_info(msgpack_packer *pk, const sm_info_t *in)
{
    msgpack_pack_array(pk, in->ncas ? 5 : 4); /* cas only when there are some */
    msgpack_pack_uint8(pk, SM_VERSION);
    msgpack_pack_uint8(pk, SM_CTL_INFO);
    msgpack_pack_array(pk, in->npops);
    for (uint32_t i = 0; i < in->npops; i++) {
        const sm_pop_t *p = &in->pops[i];
        msgpack_pack_array(pk, p->avoid ? 6 : 5); /* an older site skips the fields it lacks */
        msgpack_pack_uint64(pk, p->id);
        mpw_str(pk, p->name);
        mpw_str(pk, p->tunnel_addr);
        mpw_bin(pk, p->curve_pk, 32);
        mpw_str(pk, p->region);
        if (p->avoid)
            msgpack_pack_true(pk);
    }
    msgpack_pack_array(pk, in->nchecks);
    for (uint32_t i = 0; i < in->nchecks; i++) {
        const sm_check_t *k = &in->checks[i];
        bool hc = sm_check_has_hc(k) || k->resource[0];
        msgpack_pack_array(pk, hc ? 4 : 2); /* without settings, what older PoPs sent */
        mpw_str(pk, k->target);
        mpw_str(pk, k->health);
        if (!hc)
            continue;
        mpw_str(pk, k->resource);
        msgpack_pack_array(pk, 6);
        msgpack_pack_uint32(pk, k->hc.interval_ms);
        msgpack_pack_uint32(pk, k->hc.timeout_ms);
        msgpack_pack_uint32(pk, k->hc.rise);
        msgpack_pack_uint32(pk, k->hc.fall);
        mpw_str(pk, k->hc.status);
        mpw_str(pk, k->hc.host);
    }
    if (in->ncas) {
        msgpack_pack_array(pk, in->ncas);
        for (uint32_t i = 0; i < in->ncas; i++)
            mpw_str(pk, in->cas[i]);
    }
}

bool sm_check_has_hc(const sm_check_t *k)
{
    return k->hc.interval_ms || k->hc.timeout_ms || k->hc.rise || k->hc.fall || k->hc.status[0] ||
           k->hc.host[0];
}

static int get_u32(mpr_t *r, uint32_t *out)
{
    uint64_t v;
    if (mpr_uint(r, &v) || v > UINT32_MAX)
        return -EBADMSG;
    *out = (uint32_t)v;
    return 0;
}

/* [interval_ms, timeout_ms, rise, fall, status, host, ...]; the site judges the values (it
 * skips a check its health checker refuses). */
static int decode_hc(mpr_t *r, sm_hc_t *hc)
{
    uint32_t n;
    if (mpr_array(r, &n) || n < 6 || get_u32(r, &hc->interval_ms) || get_u32(r, &hc->timeout_ms) ||
        get_u32(r, &hc->rise) || get_u32(r, &hc->fall) ||
        get_str(r, hc->status, sizeof(hc->status), true) ||
        get_str(r, hc->host, sizeof(hc->host), true))
        return -EBADMSG;
    return skip_rest(r, n, 6);
}

static int decode_check(mpr_t *r, sm_check_t *k, bool full)
{
    uint32_t n;
    if (mpr_array(r, &n) || n < (full ? 4u : 2u))
        return -EBADMSG;
    if (get_str(r, k->target, sizeof(k->target), false) || sm_target_parse(k->target, NULL, NULL) ||
        get_str(r, k->health, sizeof(k->health), false))
        return -EBADMSG;
    if (full && (mpr_bool(r, &k->healthy) || get_str(r, k->why, sizeof(k->why), true)))
        return -EBADMSG;
    if (full)
        return skip_rest(r, n, 4);
    /* INFO: the resource and its settings, when the PoP sent them. */
    if (n >= 3 && (get_str(r, k->resource, sizeof(k->resource), true) ||
                   (k->resource[0] && nodecfg_check_name(k->resource))))
        return -EBADMSG;
    if (n >= 4 && decode_hc(r, &k->hc))
        return -EBADMSG;
    return skip_rest(r, n, n >= 4 ? 4 : n >= 3 ? 3 : 2);
}

int sm_decode_ctl(const uint8_t *buf, size_t len, int *type, sm_status_t *st, sm_info_t *in,
                  const char **why)
{
    mpr_t r;
    uint32_t n, c;
    uint64_t t;
    mpr_init(&r, buf, len);
    if (head(&r, &n, 2) || mpr_uint(&r, &t))
        BAD("ctl: not [1, type, ...]");
    if (t == SM_CTL_STATUS && st) {
        memset(st, 0, sizeof(*st));
        if (n < 4 || mpr_bool(&r, &st->primary))
            BAD("status: not [1, 1, primary, checks]");
        if (mpr_array(&r, &c) || c > SM_CHECKS_MAX)
            BAD("status: too many checks");
        st->n = c;
        for (uint32_t i = 0; i < c; i++)
            if (decode_check(&r, &st->checks[i], true))
                BAD("status: bad check");
        if (n >= 5 && mpr_bool(&r, &st->draining))
            BAD("status: draining is not a bool");
        if (n >= 6 && get_str(&r, st->host, sizeof(st->host), true))
            BAD("status: bad host name");
        for (const char *h = st->host; *h; h++) /* shown as is: printable, no spaces */
            if (*h <= ' ' || *h > '~')
                BAD("status: the host name is not printable ASCII without spaces");
        if (n >= 7 && get_seal(&r, &st->seal))
            BAD("status: seal is not a suite mask");
        if (skip_rest(&r, n, 7) || r.left)
            BAD("ctl: trailing bytes");
        *type = (int)t;
        return 0;
    } else if (t == SM_CTL_INFO && in) {
        memset(in, 0, sizeof(*in));
        if (n < 4 || mpr_array(&r, &c) || c > SM_POPS_MAX)
            BAD("info: bad PoP list");
        in->npops = c;
        for (uint32_t i = 0; i < c; i++) {
            sm_pop_t *p = &in->pops[i];
            uint32_t f, bl;
            const uint8_t *b;
            if (mpr_array(&r, &f) || f < 4 || mpr_uint(&r, &p->id) ||
                get_str(&r, p->name, sizeof(p->name), false) ||
                get_str(&r, p->tunnel_addr, sizeof(p->tunnel_addr), false) ||
                nodecfg_check_addr(p->tunnel_addr, 0) || mpr_bin(&r, &b, &bl) || bl != 32)
                BAD("info: bad PoP");
            memcpy(p->curve_pk, b, 32);
            /* region: "" or a valid name; absent from an older PoP's entry */
            if (f >= 5 && (get_str(&r, p->region, sizeof(p->region), true) ||
                           (p->region[0] && nodecfg_check_name(p->region))))
                BAD("info: bad PoP region");
            if (f >= 6 && mpr_bool(&r, &p->avoid))
                BAD("info: a PoP's avoid is not a bool");
            if (skip_rest(&r, f, f >= 6 ? 6 : f >= 5 ? 5 : 4))
                BAD("info: bad PoP");
        }
        if (mpr_array(&r, &c) || c > SM_CHECKS_MAX)
            BAD("info: too many checks");
        in->nchecks = c;
        for (uint32_t i = 0; i < c; i++)
            if (decode_check(&r, &in->checks[i], false))
                BAD("info: bad check");
        if (n >= 5) {
            if (mpr_array(&r, &c) || c > SM_CAS_MAX)
                BAD("info: too many CAs");
            in->ncas = c;
            for (uint32_t i = 0; i < c; i++)
                if (get_str(&r, in->cas[i], sizeof(in->cas[i]), false))
                    BAD("info: a CA is not a string of at most 8192 bytes");
        }
    } else {
        BAD("ctl: unexpected type");
    }
    if (skip_rest(&r, n, n >= 5 ? 5 : 4) || r.left)
        BAD("ctl: trailing bytes");
    *type = (int)t;
    return 0;
}
