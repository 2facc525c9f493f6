/* Fuzzes the decoders of node/dataplane/sitemsg.h: the HELLO/WELCOME payloads, the OPEN target
 * descriptor and the STATUS/INFO control messages, all read from a tunnel peer. Every decoder
 * runs on the same bytes. Any input must be refused cleanly (-EBADMSG with a reason) or decode
 * to a value that obeys the documented limits, re-encodes, and decodes again to the same value
 * (round trip). The seed corpus (tests/fuzz/corpus/fuzz_sitemsg/) holds a valid encoding of
 * each message, written by tests/unit/test_sitemsg.c with SITEMSG_CORPUS_DIR set, and
 * info_pop4: an INFO from a PoP that predates the region field (4-field PoP entries). */
#include "node/nodecfg.h"
#include "node/dataplane/sitemsg.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef int (*decode_fn)(const uint8_t *, size_t, void *, const char **);
typedef void (*pack_fn)(msgpack_packer *, const void *);

static void *zalloc(size_t n)
{
    void *p = calloc(1, n);
    if (!p)
        abort();
    return p;
}

static void check_refusal(int rc, const char *why)
{
    if (rc != -EBADMSG || !why || !*why)
        abort();
}

/* A NUL-terminated string inside its buffer (the decoders' promise). */
static void check_str(const char *s, size_t cap, bool allow_empty)
{
    size_t n = strnlen(s, cap);
    if (n >= cap || (!n && !allow_empty))
        abort();
}

/* Decoded value: re-encode it, decode again, and compare the whole struct (both decodes start
 * from a zeroed struct, so unused slots and padding are zero in both). */
static void roundtrip(const void *v, size_t size, pack_fn pack, decode_fn decode)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    pack(&pk, v);
    void *back = zalloc(size);
    const char *why = NULL;
    if (decode((const uint8_t *)sb.data, sb.size, back, &why) != 0 || memcmp(v, back, size))
        abort();
    /* and the encoding is canonical: packing the copy gives the same bytes */
    msgpack_sbuffer sb2;
    msgpack_sbuffer_init(&sb2);
    msgpack_packer_init(&pk, &sb2, msgpack_sbuffer_write);
    pack(&pk, back);
    if (sb2.size != sb.size || memcmp(sb2.data, sb.data, sb.size))
        abort();
    msgpack_sbuffer_destroy(&sb2);
    msgpack_sbuffer_destroy(&sb);
    free(back);
}

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
    int t = -1;
    int rc = sm_decode_ctl(b, n, &t, out, NULL, why);
    if (rc == 0 && t != SM_CTL_STATUS)
        abort();
    return rc;
}
static int dec_info(const uint8_t *b, size_t n, void *out, const char **why)
{
    int t = -1;
    int rc = sm_decode_ctl(b, n, &t, NULL, out, why);
    if (rc == 0 && t != SM_CTL_INFO)
        abort();
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

static void check_check(const sm_check_t *k, bool full)
{
    check_str(k->target, sizeof(k->target), false);
    if (sm_target_parse(k->target, NULL, NULL)) /* host:port, or udp://host:port */
        abort();
    check_str(k->health, sizeof(k->health), false);
    if (full)
        check_str(k->why, sizeof(k->why), true);
    else if (k->healthy || k->why[0])
        abort();
    /* INFO's resource and settings: a valid name or "", strings in bounds; none in STATUS. */
    check_str(k->resource, sizeof(k->resource), true);
    if (k->resource[0] && nodecfg_check_name(k->resource))
        abort();
    check_str(k->hc.status, sizeof(k->hc.status), true);
    check_str(k->hc.host, sizeof(k->hc.host), true);
    if (full && (k->resource[0] || sm_check_has_hc(k)))
        abort();
}

static void fuzz_hello(const uint8_t *data, size_t size)
{
    sm_hello_t h;
    const char *why = NULL;
    int rc = sm_decode_hello(data, size, &h, &why);
    if (rc) {
        check_refusal(rc, why);
        return;
    }
    if (strcmp(h.role, "site") && strcmp(h.role, "pop"))
        abort();
    check_str(h.name, sizeof(h.name), false);
    roundtrip(&h, sizeof(h), pk_hello, dec_hello);
}

static void fuzz_welcome(const uint8_t *data, size_t size)
{
    sm_welcome_t w;
    const char *why = NULL;
    int rc = sm_decode_welcome(data, size, &w, &why);
    if (rc) {
        check_refusal(rc, why);
        return;
    }
    check_str(w.name, sizeof(w.name), false);
    roundtrip(&w, sizeof(w), pk_welcome, dec_welcome);
}

static void fuzz_open(const uint8_t *data, size_t size)
{
    sm_open_t *o = zalloc(sizeof(*o));
    const char *why = NULL;
    int rc = sm_decode_open(data, size, o, &why);
    if (rc) {
        check_refusal(rc, why);
        goto out;
    }
    check_str(o->resource, sizeof(o->resource), false);
    check_str(o->client, sizeof(o->client), true);
    if (o->site == 0 || o->npath > SM_PATH_MAX || o->ntargets == 0 || o->ntargets > SM_TARGETS_MAX)
        abort();
    for (uint32_t i = 0; i < o->npath; i++)
        if (o->path[i] == 0)
            abort();
    for (uint32_t i = 0; i < o->ntargets; i++)
        if (sm_target_parse(o->targets[i], NULL, NULL) || o->weights[i] == 1 ||
            o->weights[i] > SM_WEIGHT_MAX) /* a weight of 1 is kept as 0 */
            abort();
    for (uint32_t i = o->ntargets; i < SM_TARGETS_MAX; i++)
        if (o->weights[i])
            abort();
    roundtrip(o, sizeof(*o), pk_open, dec_open);
out:
    free(o);
}

static void fuzz_ctl(const uint8_t *data, size_t size)
{
    sm_status_t *st = zalloc(sizeof(*st));
    sm_info_t *in = zalloc(sizeof(*in));
    const char *why = NULL;
    int t = -1;
    int rc = sm_decode_ctl(data, size, &t, st, in, &why);
    if (rc) {
        check_refusal(rc, why);
        goto out;
    }
    if (t == SM_CTL_STATUS) {
        if (st->n > SM_CHECKS_MAX)
            abort();
        for (uint32_t i = 0; i < st->n; i++)
            check_check(&st->checks[i], true);
        check_str(st->host, sizeof(st->host), true);
        for (const char *h = st->host; *h; h++) /* shown as is: printable, no spaces */
            if (*h <= ' ' || *h > '~')
                abort();
        roundtrip(st, sizeof(*st), pk_status, dec_status);
        /* a caller that takes only INFO refuses it */
        why = NULL;
        rc = sm_decode_ctl(data, size, &t, NULL, in, &why);
        check_refusal(rc, why);
    } else if (t == SM_CTL_INFO) {
        if (in->npops > SM_POPS_MAX || in->nchecks > SM_CHECKS_MAX)
            abort();
        for (uint32_t i = 0; i < in->npops; i++) {
            check_str(in->pops[i].name, sizeof(in->pops[i].name), false);
            if (nodecfg_check_addr(in->pops[i].tunnel_addr, 0))
                abort();
            /* region: "" (none, or an older PoP's 4-field entry) or a valid name */
            check_str(in->pops[i].region, sizeof(in->pops[i].region), true);
            if (in->pops[i].region[0] && nodecfg_check_name(in->pops[i].region))
                abort();
        }
        for (uint32_t i = 0; i < in->nchecks; i++)
            check_check(&in->checks[i], false);
        roundtrip(in, sizeof(*in), pk_info, dec_info);
        why = NULL;
        rc = sm_decode_ctl(data, size, &t, st, NULL, &why);
        check_refusal(rc, why);
    } else {
        abort();
    }
out:
    free(st);
    free(in);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_hello(data, size);
    fuzz_welcome(data, size);
    fuzz_open(data, size);
    fuzz_ctl(data, size);
    return 0;
}
