/* reseal: see reseal.h. */
#include "node/tls/reseal.h"

#include "common/clock.h"
#include "common/log.h"
#include "common/xmalloc.h"
#include "node/acme/acmerec.h"
#include "node/tls/certstore.h"

#include <errno.h>
#include <msgpack.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

/* One record read by the walk (the list callback may not write). */
struct todo {
    char *key;
    size_t klen;
    uint8_t *value;
    size_t vlen;
    uint64_t version;
};

struct walk {
    struct todo *v;
    size_t n, cap;
};

static int collect(const store_entry_t *e, void *ctx)
{
    struct walk *w = ctx;
    if (e->tombstone || !e->value)
        return 0;
    if (w->n == w->cap) {
        w->cap = w->cap ? w->cap * 2 : 16;
        w->v = xrealloc(w->v, w->cap * sizeof(*w->v));
    }
    struct todo *t = &w->v[w->n++];
    t->key = xmalloc(e->klen + 1);
    memcpy(t->key, e->key, e->klen);
    t->key[e->klen] = '\0';
    t->klen = e->klen;
    t->value = xmemdup(e->value, e->vlen);
    t->vlen = e->vlen;
    t->version = e->version;
    return 0;
}

/* What one field's open said: counted, logged when it fails. Returns true to rewrite. */
static bool note(reseal_stats_t *st, const struct todo *t, const char *field, int rc, bool legacy,
                 const storeseal_t *k, const uint8_t *sealed, size_t len)
{
    if (rc == 0 && !legacy) {
        st->current++;
        return false;
    }
    if (rc == 0) {
        st->legacy++;
        return true;
    }
    st->unreadable++;
    storeseal_hdr_t h;
    if (rc == -EBADMSG && storeseal_parse(sealed, len, &h) == 0 && k->have_key &&
        h.key_id == k->key_id)
        st->bad_current++;
    log_error("store: the %s of record %s is unreadable: %s; the record is skipped", field,
              t->key, storeseal_strerror(rc));
    return false;
}

/* cert/<id>: the private key. *out: the record to write back, or NULL. */
static void do_cert(const storeseal_t *k, const struct todo *t, reseal_stats_t *st,
                    msgpack_sbuffer *out, bool *write)
{
    char id[CERT_ID_MAX + 1];
    cert_rec_t c;
    const char *why = "";
    if (cert_key_id(t->key, t->klen, id, sizeof(id)) ||
        cert_parse(t->value, t->vlen, id, &c, &why))
        return; /* not ours to judge here: tlsctx logs records that do not parse */
    if (c.key_sealed_len) {
        uint8_t *pem = NULL;
        size_t pl = 0;
        bool legacy = false;
        int rc = cert_open_key(k, &c, &pem, &pl, &legacy);
        if (note(st, t, "private key", rc, legacy, k, c.key_sealed, c.key_sealed_len) &&
            cert_seal_key(k, &c, pem, pl) == 0) {
            msgpack_packer pk;
            msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
            cert_pack(&pk, &c);
            *write = true;
        }
        if (pem) {
            sodium_memzero(pem, pl);
            free(pem);
        }
    }
    cert_rec_free(&c);
}

static void do_ticket(const storeseal_t *k, const struct todo *t, reseal_stats_t *st,
                      msgpack_sbuffer *out, bool *write)
{
    uint64_t epoch;
    tlsticket_rec_t r;
    const char *why = "";
    if (tlsticket_key_epoch(t->key, t->klen, &epoch) ||
        tlsticket_parse(t->value, t->vlen, epoch, &r, &why))
        return; /* ticketkeys logs these */
    uint8_t key[TLSTICKET_KEY_LEN];
    bool legacy = false;
    int rc = tlsticket_open_key(k, &r, key, &legacy);
    if (note(st, t, "ticket key", rc, legacy, k, r.key_sealed, r.key_sealed_len) &&
        tlsticket_seal_key(k, &r, key) == 0) {
        msgpack_packer pk;
        msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
        tlsticket_pack(&pk, &r);
        *write = true;
    }
    sodium_memzero(key, sizeof(key));
    sodium_memzero(&r, sizeof(r));
}

/* One sealed field of acme/config, opened and (when legacy) sealed afresh in place. */
static bool acme_field(const storeseal_t *k, const struct todo *t, reseal_stats_t *st,
                       const char *field, uint8_t *sealed, size_t cap, size_t *len)
{
    uint8_t *p = NULL;
    size_t pl = 0;
    bool legacy = false, again = false;
    int rc = acme_config_open(k, field, sealed, *len, &p, &pl, &legacy);
    if (note(st, t, field, rc, legacy, k, sealed, *len))
        again = acme_config_seal(k, field, p, pl, sealed, cap, len) == 0;
    if (p) {
        sodium_memzero(p, pl);
        free(p);
    }
    return again;
}

static void do_acme(const storeseal_t *k, const struct todo *t, reseal_stats_t *st,
                    msgpack_sbuffer *out, bool *write)
{
    if (strcmp(t->key, ACME_CONFIG_KEY))
        return;
    acme_config_t c;
    const char *why = "";
    if (acme_config_parse(t->value, t->vlen, &c, &why))
        return; /* acme logs it */
    bool again = acme_field(k, t, st, "account_key", c.account_key_sealed,
                            sizeof(c.account_key_sealed), &c.account_key_sealed_len);
    if (c.eab_hmac_sealed_len)
        again |= acme_field(k, t, st, "eab_hmac", c.eab_hmac_sealed, sizeof(c.eab_hmac_sealed),
                            &c.eab_hmac_sealed_len);
    if (again) {
        msgpack_packer pk;
        msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
        acme_config_pack(&pk, &c);
        *write = true;
    }
    acme_config_free(&c);
}

static const struct kind {
    const char *prefix;
    void (*fn)(const storeseal_t *, const struct todo *, reseal_stats_t *, msgpack_sbuffer *,
               bool *);
} kinds[] = {
    {CERT_PREFIX, do_cert},
    {TLSTICKET_PREFIX, do_ticket},
    {ACME_CONFIG_KEY, do_acme},
};

int reseal_run(store_t *store, meshnode_t *mesh, const storeseal_t *k, uint64_t self_id,
               bool rewrite, reseal_stats_t *st)
{
    memset(st, 0, sizeof(*st));
    int rc = 0;
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]) && rc == 0; i++) {
        struct walk w = {0};
        rc = store_list(store, kinds[i].prefix, strlen(kinds[i].prefix), collect, &w);
        for (size_t j = 0; j < w.n; j++) {
            struct todo *t = &w.v[j];
            msgpack_sbuffer sb;
            msgpack_sbuffer_init(&sb);
            bool write = false;
            if (rc == 0)
                kinds[i].fn(k, t, st, &sb, &write);
            if (write && rewrite) {
                /* Version + 1: reseal.h says why not a fresh one. */
                store_entry_t e = {.key = t->key,
                                   .klen = t->klen,
                                   .value = (uint8_t *)sb.data,
                                   .vlen = sb.size,
                                   .version = t->version + 1,
                                   .origin = self_id};
                int n = store_merge(store, &e, 1, clock_wall_ms());
                if (n == 1) {
                    st->rewritten++;
                    log_info("store: %s sealed afresh under the store key", t->key);
                    if (mesh)
                        meshnode_published(mesh, &e);
                } else {
                    log_warn("store: cannot write %s back sealed under the store key: %s",
                             t->key, n < 0 ? store_last_error(store) : "a newer write won");
                }
            }
            if (sb.data)
                sodium_memzero(sb.data, sb.size);
            msgpack_sbuffer_destroy(&sb);
            free(t->key);
            free(t->value);
        }
        free(w.v);
    }
    return rc;
}
