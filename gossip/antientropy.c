#include "gossip/antientropy.h"

#include "common/xmalloc.h"

#include <errno.h>
#include <string.h>

void ae_entry_pack(msgpack_packer *pk, const store_entry_t *e)
{
    /* A signed entry carries its signature as a sixth element (store.h, "Signed entries"). */
    msgpack_pack_array(pk, e->has_sig ? 6 : 5);
    mpw_bin(pk, e->key, e->klen);
    msgpack_pack_uint64(pk, e->version);
    msgpack_pack_uint64(pk, e->origin);
    if (e->tombstone)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
    if (e->tombstone || !e->value)
        msgpack_pack_nil(pk);
    else
        mpw_raw(pk, e->value, e->vlen);
    if (e->has_sig)
        mpw_bin(pk, e->sig, STORE_SIG_BYTES);
}

int ae_entry_read(mpr_t *r, store_entry_t *e)
{
    uint32_t n, kl;
    const uint8_t *k, *v;
    size_t vl;
    bool tomb;
    memset(e, 0, sizeof(*e));
    if (mpr_array(r, &n) || (n != 5 && n != 6) || mpr_bin(r, &k, &kl) ||
        mpr_uint(r, &e->version) || mpr_uint(r, &e->origin) || mpr_bool(r, &tomb) ||
        mpr_object(r, &v, &vl))
        return -EBADMSG;
    if (n == 6) {
        const uint8_t *sig;
        uint32_t sl;
        if (mpr_bin(r, &sig, &sl) || sl != STORE_SIG_BYTES)
            return -EBADMSG;
        memcpy(e->sig, sig, STORE_SIG_BYTES);
        e->has_sig = true;
    }
    e->key = (char *)k;
    e->klen = kl;
    e->tombstone = tomb;
    if (!tomb) {
        e->value = (uint8_t *)v;
        e->vlen = vl;
    }
    return 0;
}

int ae_digest_msg(store_t *s, uint64_t seq, msgpack_sbuffer *out)
{
    uint64_t d[STORE_BUCKETS];
    uint8_t raw[STORE_BUCKETS * 8];
    int rc = store_digests(s, d);
    if (rc)
        return rc;
    for (int b = 0; b < STORE_BUCKETS; b++)
        for (int i = 0; i < 8; i++)
            raw[b * 8 + i] = (uint8_t)(d[b] >> (56 - 8 * i));
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 4);
    msgpack_pack_uint32(&pk, AE_VERSION);
    msgpack_pack_uint32(&pk, AE_DIGEST);
    msgpack_pack_uint64(&pk, seq);
    mpw_bin(&pk, raw, sizeof(raw));
    return 0;
}

/* Streams the entries of the chosen buckets as ENTRIES messages of bounded size. */
struct chunker {
    msgpack_sbuffer entries; /* packed entries of the current chunk */
    msgpack_packer pk;
    uint32_t count;
    uint64_t seq;
    const uint8_t *buckets;
    bool want; /* still to be sent on the first chunk */
    bool sent_any;
    ae_send_fn send;
    void *ctx;
    ae_stats_t *st;
};

static void chunk_flush(struct chunker *c, bool force)
{
    if (c->count == 0 && !force)
        return;
    msgpack_sbuffer msg;
    msgpack_packer pk;
    msgpack_sbuffer_init(&msg);
    msgpack_packer_init(&pk, &msg, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 6);
    msgpack_pack_uint32(&pk, AE_VERSION);
    msgpack_pack_uint32(&pk, AE_ENTRIES);
    msgpack_pack_uint64(&pk, c->seq);
    mpw_bin(&pk, c->buckets, STORE_BUCKETS / 8);
    if (c->want)
        msgpack_pack_true(&pk);
    else
        msgpack_pack_false(&pk);
    msgpack_pack_array(&pk, c->count);
    mpw_raw(&pk, c->entries.data, c->entries.size);
    c->send(c->ctx, (const uint8_t *)msg.data, msg.size);
    c->st->entries_sent += c->count;
    msgpack_sbuffer_destroy(&msg);
    msgpack_sbuffer_clear(&c->entries);
    c->count = 0;
    c->want = false;
    c->sent_any = true;
}

static int chunk_add(const store_entry_t *e, void *ctx)
{
    struct chunker *c = ctx;
    ae_entry_pack(&c->pk, e);
    c->count++;
    if (c->entries.size >= AE_CHUNK_BYTES)
        chunk_flush(c, false);
    return 0;
}

static int send_buckets(store_t *s, uint64_t seq, const uint8_t buckets[STORE_BUCKETS / 8],
                        bool want, ae_send_fn send, void *ctx, ae_stats_t *st)
{
    struct chunker c = {
        .seq = seq, .buckets = buckets, .want = want, .send = send, .ctx = ctx, .st = st};
    msgpack_sbuffer_init(&c.entries);
    msgpack_packer_init(&c.pk, &c.entries, msgpack_sbuffer_write);
    int rc = store_export(s, buckets, chunk_add, &c);
    /* Even with no entries of its own, the responder must ask for the initiator's. */
    if (rc == 0)
        chunk_flush(&c, !c.sent_any);
    msgpack_sbuffer_destroy(&c.entries);
    return rc;
}

static int handle_digest(store_t *s, mpr_t *r, uint64_t seq, ae_send_fn send, void *ctx,
                         ae_stats_t *st)
{
    const uint8_t *raw;
    uint32_t n;
    if (mpr_bin(r, &raw, &n) || n != STORE_BUCKETS * 8 || r->left != 0)
        return -EBADMSG;
    st->digests_received++;
    uint64_t mine[STORE_BUCKETS];
    int rc = store_digests(s, mine);
    if (rc)
        return rc;
    uint8_t diff[STORE_BUCKETS / 8] = {0};
    int ndiff = 0;
    for (int b = 0; b < STORE_BUCKETS; b++) {
        uint64_t theirs = 0;
        for (int i = 0; i < 8; i++)
            theirs = (theirs << 8) | raw[b * 8 + i];
        if (theirs != mine[b]) {
            diff[b / 8] |= (uint8_t)(1u << (b % 8));
            ndiff++;
        }
    }
    if (ndiff == 0) {
        st->digests_equal++;
        return 0;
    }
    return send_buckets(s, seq, diff, true, send, ctx, st);
}

static int handle_entries(store_t *s, mpr_t *r, uint64_t seq, uint64_t now_ms, ae_send_fn send,
                          void *ctx, ae_stats_t *st)
{
    const uint8_t *buckets;
    uint32_t bl, n;
    bool want;
    if (mpr_bin(r, &buckets, &bl) || bl != STORE_BUCKETS / 8 || mpr_bool(r, &want) ||
        mpr_array(r, &n) || n > AE_MAX_ENTRIES)
        return -EBADMSG;
    /* Decode everything before merging anything: a malformed tail must not leave half a
     * message applied (harmless for a join, but it would hide the malformation). */
    store_entry_t *es = n ? xcalloc(n, sizeof(*es)) : NULL;
    int rc = 0;
    for (uint32_t i = 0; i < n && rc == 0; i++)
        rc = ae_entry_read(r, &es[i]);
    if (rc == 0 && r->left != 0)
        rc = -EBADMSG;
    if (rc == 0) {
        st->entries_received += n;
        int applied = n ? store_merge(s, es, n, now_ms) : 0;
        if (applied < 0)
            rc = applied;
        else
            st->entries_applied += (uint64_t)applied;
    }
    free(es);
    if (rc == 0 && want)
        rc = send_buckets(s, seq, buckets, false, send, ctx, st);
    return rc;
}

int ae_handle(store_t *s, const uint8_t *msg, size_t len, uint64_t now_ms, ae_send_fn send,
              void *ctx, ae_stats_t *st)
{
    mpr_t r;
    uint32_t n;
    uint64_t version, type, seq;
    mpr_init(&r, msg, len);
    int rc = -EBADMSG;
    if (mpr_array(&r, &n) || mpr_uint(&r, &version) || version != AE_VERSION ||
        mpr_uint(&r, &type) || mpr_uint(&r, &seq))
        goto out;
    if (type == AE_DIGEST && n == 4)
        rc = handle_digest(s, &r, seq, send, ctx, st);
    else if (type == AE_ENTRIES && n == 6)
        rc = handle_entries(s, &r, seq, now_ms, send, ctx, st);
out:
    if (rc == -EBADMSG)
        st->malformed++;
    return rc;
}
