/* certadmin: the operator commands on certificates.
 *
 *   cert.import {chain, key}  -> {id, names, issuer, not_before_ms, not_after_ms, source,
 *                                 obtained_by, created_ms, state, error, renew_after_ms,
 *                                 replaced}
 *   cert.list {}              -> {certs: [the same without replaced, and ocsp: {state,
 *                                 responder, reason, status, this_update_ms, next_update_ms,
 *                                 revoked_ms, fetched_by, fetched_ms} (those that apply)]}
 *   cert.rm {cert}            -> {id, names}      cert: an id, or a name the certificate holds
 *   tls.status {}             -> {certs, certs_valid, tickets: ticketkeys_pack_status | nil}
 *
 * BACKGROUND
 *
 * cert.import checks everything a PoP will need to serve the certificate before anything is
 * written (cert_from_pem: the PEM, the key against the leaf, names, expiry), so a refused
 * import changes nothing and an accepted one can be served everywhere. The record's id comes
 * from the certificate's first name, so importing a newer certificate for the same names
 * replaces the old one at every PoP (the answer says so with replaced: true), whichever way
 * the old one was obtained.
 *
 * cert.list shows the state as it stands now: a record written "valid" whose not-after has
 * passed is shown "expired". A record that does not parse here is listed as "unreadable" with
 * the reason, not hidden: an operator must see what the PoPs will refuse to serve.
 *
 * Its ocsp state is what this PoP staples for the certificate, decided by the rule ocspfetch
 * and tlsctx apply (ocsp_target, then ocsp_judge_record on the stored ocsp/<id>; ocsprec.h):
 * none, pending, good (stapled until next_update_ms), stale, revoked (revoked_ms), unknown or
 * unusable (with the check that failed as reason). Every PoP holds the same records, so every
 * PoP shows the same state, give or take a replication delay. */
#include "node/tls/certadmin.h"

#include "common/clock.h"
#include "common/log.h"
#include "common/mp.h"
#include "common/xmalloc.h"
#include "node/membership/meshnode.h"
#include "node/tls/ocsprec.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- helpers ------------------------------------------------------------------------------ */

/* The state to show: "expired" for a valid record past its not-after. */
static const char *shown_state(const cert_rec_t *c, uint64_t now)
{
    if (!strcmp(c->state, "valid") && c->chain_pem && c->chain_pem[0] && c->not_after_ms <= now)
        return "expired";
    return c->state;
}

static void pack_summary(msgpack_packer *pk, const cert_rec_t *c, uint64_t now, int extra)
{
    msgpack_pack_map(pk, 11 + extra);
    mpw_kv_str(pk, "id", c->id);
    mpw_str(pk, "names");
    msgpack_pack_array(pk, c->nnames);
    for (size_t i = 0; i < c->nnames; i++)
        mpw_str(pk, c->names[i]);
    mpw_kv_str(pk, "issuer", c->issuer);
    mpw_kv_u64(pk, "not_before_ms", c->not_before_ms);
    mpw_kv_u64(pk, "not_after_ms", c->not_after_ms);
    mpw_kv_str(pk, "source", c->source);
    mpw_kv_str(pk, "obtained_by", c->obtained_by);
    mpw_kv_u64(pk, "created_ms", c->created_ms);
    mpw_kv_str(pk, "state", shown_state(c, now));
    mpw_kv_str(pk, "error", c->error);
    /* renew_after_ms 0 means two thirds of the lifetime: answer the time it stands for. */
    uint64_t renew = c->renew_after_ms;
    if (!renew && c->not_after_ms > c->not_before_ms)
        renew = c->not_before_ms + (c->not_after_ms - c->not_before_ms) / 3 * 2;
    mpw_kv_u64(pk, "renew_after_ms", renew);
}

static void fmt_day(uint64_t ms, char *buf, size_t len)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    strftime(buf, len, "%Y-%m-%d %H:%M UTC", &tm);
}

/* Reads and parses cert/<id>: 0, -ENOENT, -EBADMSG (why set) or the store's error. */
static int get_cert(certadmin_t *a, const char *id, cert_rec_t *c, const char **why)
{
    char key[sizeof(CERT_PREFIX) + CERT_ID_MAX];
    if (cert_key(id, key, sizeof(key)))
        return -ENOENT;
    store_entry_t e;
    int rc = store_get(meshnode_store(a->mesh), key, strlen(key), &e);
    if (rc)
        return rc;
    rc = cert_parse(e.value, e.vlen, id, c, why);
    store_entry_free(&e);
    return rc;
}

/* ---- cert.import -------------------------------------------------------------------------- */

static int cmd_cert_import(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    certadmin_t *a = ctx;
    const char *chain, *key;
    uint32_t chain_len, key_len;
    int rc = ctl_arg_str(req, "chain", &chain, &chain_len);
    if (rc <= 0)
        return control_error(pk, CTL_BAD_REQUEST,
                             rc ? "argument 'chain' must be a string (the PEM certificate chain)"
                                : "missing argument 'chain' (the PEM certificate chain)");
    rc = ctl_arg_str(req, "key", &key, &key_len);
    if (rc <= 0)
        return control_error(pk, CTL_BAD_REQUEST,
                             rc ? "argument 'key' must be a string (the PEM private key)"
                                : "missing argument 'key' (the PEM private key)");
    uint64_t now = clock_wall_ms();
    cert_rec_t c;
    char err[512];
    if (cert_from_pem(a->seal, chain, chain_len, key, key_len, now, &c, err, sizeof(err)))
        return control_error(pk, CTL_REFUSED, "certificate refused: %s", err);
    snprintf(c.source, sizeof(c.source), "import");
    snprintf(c.obtained_by, sizeof(c.obtained_by), "%s", a->node_name ? a->node_name : "");

    msgpack_sbuffer sb;
    msgpack_packer rp;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&rp, &sb, msgpack_sbuffer_write);
    cert_pack(&rp, &c);
    if (sb.size > STORE_VALUE_MAX) {
        rc = control_error(pk, CTL_REFUSED,
                           "certificate refused: its record would be %zu bytes, over the %d a "
                           "record holds (drop the root and extra certificates from the chain)",
                           sb.size, STORE_VALUE_MAX);
        goto out;
    }
    char rkey[sizeof(CERT_PREFIX) + CERT_ID_MAX];
    cert_key(c.id, rkey, sizeof(rkey));
    cert_rec_t old;
    const char *why;
    bool replaced = get_cert(a, c.id, &old, &why) != -ENOENT;
    if (replaced)
        cert_rec_free(&old);
    if (meshnode_put_record(a->mesh, rkey, &sb)) {
        rc = control_error(pk, CTL_FAILED, "cannot store the certificate for %s: %s", c.names[0],
                           store_last_error(meshnode_store(a->mesh)));
        goto out;
    }
    pack_summary(pk, &c, now, 1);
    mpw_kv_bool(pk, "replaced", replaced);
    char until[40];
    fmt_day(c.not_after_ms, until, sizeof(until));
    log_info("tls: certificate %s %s (%zu name%s, not after %s, issuer %s)", c.id,
             replaced ? "replaced by an import" : "imported", c.nnames, c.nnames == 1 ? "" : "s",
             until, c.issuer);
    rc = CTL_OK;
out:
    msgpack_sbuffer_destroy(&sb);
    cert_rec_free(&c);
    return rc;
}

/* ---- cert.list ---------------------------------------------------------------------------- */

/* A stored ocsp/<id> value, copied out of the store's iteration (a callback may not read the
 * store again). */
struct ocsp_held {
    char id[CERT_ID_MAX + 1];
    uint8_t *val; /* malloc'd, vlen bytes */
    size_t vlen;
};

struct list_ctx {
    msgpack_sbuffer sb;
    msgpack_packer pk;
    size_t n, valid;
    uint64_t now;
    bool with_ocsp;          /* cert.list: each certificate's OCSP state */
    struct ocsp_held *ocsp;  /* malloc'd, nocsp entries */
    size_t nocsp;
};

static int hold_ocsp(const store_entry_t *e, void *ctx)
{
    struct list_ctx *l = ctx;
    char id[CERT_ID_MAX + 1];
    if (ocsp_key_id(e->key, e->klen, id, sizeof(id)) || !e->value)
        return 0; /* a stray key or a deletion: no record */
    l->ocsp = xrealloc(l->ocsp, (l->nocsp + 1) * sizeof(*l->ocsp));
    struct ocsp_held *h = &l->ocsp[l->nocsp++];
    memcpy(h->id, id, sizeof(id));
    h->val = xmemdup(e->value, e->vlen);
    h->vlen = e->vlen;
    return 0;
}

static void list_ctx_free(struct list_ctx *l)
{
    msgpack_sbuffer_destroy(&l->sb);
    for (size_t i = 0; i < l->nocsp; i++)
        free(l->ocsp[i].val);
    free(l->ocsp);
    l->ocsp = NULL;
    l->nocsp = 0;
}

/* "ocsp": what this PoP staples for c, and why not when it does not. */
static void pack_ocsp(msgpack_packer *pk, const cert_rec_t *c, const struct list_ctx *l)
{
    X509 *leaf, *issuer;
    char url[OCSP_URL_MAX + 1] = "";
    const char *why = NULL;
    ocsp_rec_t r = {0};
    ocsp_info_t info = {0};
    enum ocsp_state state = OCSP_STATE_NONE;
    if (ocsp_target(c->chain_pem, &leaf, &issuer, url, sizeof(url), &why) == 0) {
        const struct ocsp_held *h = NULL;
        for (size_t i = 0; i < l->nocsp && !h; i++)
            if (!strcmp(l->ocsp[i].id, c->id))
                h = &l->ocsp[i];
        state = ocsp_judge_record(h ? h->val : NULL, h ? h->vlen : 0, leaf, issuer, l->now, &r,
                                  &info, &why);
        X509_free(leaf);
        X509_free(issuer);
    }
    bool has_reason = state == OCSP_STATE_NONE || state == OCSP_STATE_STALE ||
                      state == OCSP_STATE_UNUSABLE;
    bool verified = state == OCSP_STATE_GOOD || state == OCSP_STATE_STALE ||
                    state == OCSP_STATE_REVOKED || state == OCSP_STATE_UNKNOWN;
    bool revoked = verified && info.status == OCSP_ST_REVOKED;
    bool parsed = r.der != NULL; /* fetched_by and fetched_ms are the record's */
    mpw_str(pk, "ocsp");
    msgpack_pack_map(pk, 1 + (url[0] ? 1 : 0) + (has_reason ? 1 : 0) + (verified ? 3 : 0) +
                             (revoked ? 1 : 0) + (parsed ? 2 : 0));
    mpw_kv_str(pk, "state", ocsp_state_name(state));
    if (url[0])
        mpw_kv_str(pk, "responder", url);
    if (has_reason)
        mpw_kv_str(pk, "reason", why ? why : "");
    if (verified) { /* from the DER, never from the record's own fields */
        mpw_kv_str(pk, "status", ocsp_status_name(info.status));
        mpw_kv_u64(pk, "this_update_ms", info.this_update_ms);
        mpw_kv_u64(pk, "next_update_ms", info.next_update_ms);
    }
    if (revoked)
        mpw_kv_u64(pk, "revoked_ms", info.revoked_ms);
    if (parsed) {
        mpw_kv_str(pk, "fetched_by", r.fetched_by);
        mpw_kv_u64(pk, "fetched_ms", r.fetched_ms);
    }
    ocsp_rec_free(&r);
}

static int list_one(const store_entry_t *e, void *ctx)
{
    struct list_ctx *l = ctx;
    char id[CERT_ID_MAX + 1];
    cert_rec_t c;
    const char *why = "the key is not cert/<id>";
    l->n++;
    if (cert_key_id(e->key, e->klen, id, sizeof(id)) == 0 &&
        cert_parse(e->value, e->vlen, id, &c, &why) == 0) {
        pack_summary(&l->pk, &c, l->now, l->with_ocsp ? 1 : 0);
        if (l->with_ocsp)
            pack_ocsp(&l->pk, &c, l);
        if (!strcmp(shown_state(&c, l->now), "valid"))
            l->valid++;
        cert_rec_free(&c);
        return 0;
    }
    /* Listed, not hidden: this is what no PoP will serve. */
    msgpack_pack_map(&l->pk, 3);
    mpw_str(&l->pk, "id");
    mpw_strn(&l->pk, e->key + strlen(CERT_PREFIX), e->klen - strlen(CERT_PREFIX));
    mpw_kv_str(&l->pk, "state", "unreadable");
    mpw_kv_str(&l->pk, "error", why);
    return 0;
}

/* Lists cert/ into l->sb (with each one's OCSP state when with_ocsp). The caller frees l
 * (list_ctx_free) whatever this returns. */
static int list_certs(certadmin_t *a, struct list_ctx *l, bool with_ocsp)
{
    memset(l, 0, sizeof(*l));
    l->now = clock_wall_ms();
    l->with_ocsp = with_ocsp;
    msgpack_sbuffer_init(&l->sb);
    msgpack_packer_init(&l->pk, &l->sb, msgpack_sbuffer_write);
    store_t *st = meshnode_store(a->mesh);
    if (with_ocsp) {
        int rc = store_list(st, OCSP_PREFIX, strlen(OCSP_PREFIX), hold_ocsp, l);
        if (rc)
            return rc;
    }
    return store_list(st, CERT_PREFIX, strlen(CERT_PREFIX), list_one, l);
}

static int cmd_cert_list(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    (void)req;
    certadmin_t *a = ctx;
    struct list_ctx l;
    if (list_certs(a, &l, true)) {
        list_ctx_free(&l);
        return control_error(pk, CTL_FAILED, "cannot list certificates: %s",
                             store_last_error(meshnode_store(a->mesh)));
    }
    msgpack_pack_map(pk, 1);
    mpw_str(pk, "certs");
    msgpack_pack_array(pk, l.n);
    mpw_raw(pk, l.sb.data, l.sb.size);
    list_ctx_free(&l);
    return CTL_OK;
}

/* ---- cert.rm ------------------------------------------------------------------------------ */

struct by_name {
    const char *name;
    char ids[4][CERT_ID_MAX + 1];
    size_t n;
};

static int match_name(const store_entry_t *e, void *ctx)
{
    struct by_name *b = ctx;
    char id[CERT_ID_MAX + 1];
    cert_rec_t c;
    const char *why;
    if (cert_key_id(e->key, e->klen, id, sizeof(id)) || cert_parse(e->value, e->vlen, id, &c, &why))
        return 0;
    for (size_t i = 0; i < c.nnames; i++)
        if (!strcmp(c.names[i], b->name)) {
            if (b->n < sizeof(b->ids) / sizeof(b->ids[0]))
                memcpy(b->ids[b->n], id, sizeof(id));
            b->n++;
            break;
        }
    cert_rec_free(&c);
    return 0;
}

static int cmd_cert_rm(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    certadmin_t *a = ctx;
    char arg[CERT_ID_MAX + 3];
    int rc = ctl_arg_copy(req, "cert", arg, sizeof(arg));
    if (rc == 0)
        return control_error(pk, CTL_BAD_REQUEST,
                             "missing argument 'cert' (an id or a name, from meshctl cert list)");
    if (rc < 0)
        return control_error(pk, CTL_BAD_REQUEST,
                             "cert must be an id or a name of at most %d bytes", CERT_ID_MAX);
    size_t len = strlen(arg);
    if (len > 1 && arg[len - 1] == '.')
        arg[--len] = '\0';
    for (size_t i = 0; i < len; i++)
        if (arg[i] >= 'A' && arg[i] <= 'Z')
            arg[i] = (char)(arg[i] - 'A' + 'a');

    /* An id first, then the id of a first name ("*.x" is "_wild.x"), then any name held. */
    char id[CERT_ID_MAX + 1] = "";
    char key[sizeof(CERT_PREFIX) + CERT_ID_MAX];
    store_entry_t e;
    if (len <= CERT_ID_MAX && cert_key(arg, key, sizeof(key)) == 0 &&
        store_get(meshnode_store(a->mesh), key, strlen(key), &e) == 0) {
        store_entry_free(&e);
        memcpy(id, arg, len + 1);
    } else if (cert_id_for(arg, id, sizeof(id)) == 0 && cert_key(id, key, sizeof(key)) == 0 &&
               store_get(meshnode_store(a->mesh), key, strlen(key), &e) == 0) {
        store_entry_free(&e);
    } else {
        struct by_name b = {.name = arg};
        if (store_list(meshnode_store(a->mesh), CERT_PREFIX, strlen(CERT_PREFIX), match_name, &b))
            return control_error(pk, CTL_FAILED, "cannot read the certificates: %s",
                                 store_last_error(meshnode_store(a->mesh)));
        if (b.n == 0)
            return control_error(pk, CTL_NOT_FOUND,
                                 "no certificate %s (meshctl cert list shows them)", arg);
        if (b.n > 1)
            return control_error(pk, CTL_REFUSED,
                                 "%zu certificates hold the name %s (%s, %s%s): give the id", b.n,
                                 arg, b.ids[0], b.ids[1], b.n > 2 ? ", ..." : "");
        snprintf(id, sizeof(id), "%s", b.ids[0]);
        cert_key(id, key, sizeof(key));
    }
    cert_rec_t c;
    const char *why = "";
    bool parsed = get_cert(a, id, &c, &why) == 0;
    rc = meshnode_del_record(a->mesh, key, strlen(key), NULL);
    if (rc == -ENOENT) {
        if (parsed)
            cert_rec_free(&c);
        return control_error(pk, CTL_NOT_FOUND, "no certificate %s (meshctl cert list shows them)",
                             arg);
    }
    if (rc) {
        if (parsed)
            cert_rec_free(&c);
        return control_error(pk, CTL_FAILED, "cannot remove certificate %s: %s", id,
                             store_last_error(meshnode_store(a->mesh)));
    }
    msgpack_pack_map(pk, 2);
    mpw_kv_str(pk, "id", id);
    mpw_str(pk, "names");
    msgpack_pack_array(pk, parsed ? c.nnames : 0);
    for (size_t i = 0; parsed && i < c.nnames; i++)
        mpw_str(pk, c.names[i]);
    if (parsed)
        cert_rec_free(&c);
    log_info("tls: certificate %s removed", id);
    return CTL_OK;
}

/* ---- tls.status --------------------------------------------------------------------------- */

static int cmd_tls_status(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    (void)req;
    certadmin_t *a = ctx;
    struct list_ctx l;
    int rc = list_certs(a, &l, false);
    list_ctx_free(&l);
    if (rc)
        return control_error(pk, CTL_FAILED, "cannot list certificates: %s",
                             store_last_error(meshnode_store(a->mesh)));
    msgpack_pack_map(pk, 3);
    mpw_kv_u64(pk, "certs", l.n);
    mpw_kv_u64(pk, "certs_valid", l.valid);
    mpw_str(pk, "tickets");
    if (a->tickets)
        ticketkeys_pack_status(a->tickets, pk);
    else
        msgpack_pack_nil(pk);
    return CTL_OK;
}

const control_command_t certadmin_commands[] = {
    {"cert.import", cmd_cert_import,
     "chain: str (PEM, leaf first), key: str (PEM) -> the certificate, replaced: bool"},
    {"cert.list", cmd_cert_list,
     "-> {certs: [{id, names, issuer, not_before_ms, not_after_ms, source, obtained_by, "
     "created_ms, state, error, renew_after_ms, ocsp: {state: none|pending|good|stale|revoked|"
     "unknown|unusable, responder, reason, status, this_update_ms, next_update_ms, revoked_ms, "
     "fetched_by, fetched_ms}}]}"},
    {"cert.rm", cmd_cert_rm, "cert: str (an id or a name) -> {id, names}"},
    {"tls.status", cmd_tls_status,
     "-> {certs, certs_valid, tickets: {period_ms, epoch, current (key name), keys, ...}}"},
    {NULL, NULL, NULL},
};

int certadmin_register_commands(certadmin_t *a, control_t *ctl)
{
    return control_add_commands(ctl, certadmin_commands, a);
}
