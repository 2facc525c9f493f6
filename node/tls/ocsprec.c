/* ocsprec: see ocsprec.h. */
#include "node/tls/ocsprec.h"

#include "common/mp.h"
#include "common/mpfields.h"
#include "common/xmalloc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

/* ---- the record ---------------------------------------------------------------------------- */

void ocsp_rec_free(ocsp_rec_t *r)
{
    if (!r)
        return;
    free(r->der);
    memset(r, 0, sizeof(*r));
}

int ocsp_key(const char *id, char *out, size_t len)
{
    char ck[CERT_ID_MAX + 8];
    if (cert_key(id, ck, sizeof(ck))) /* the same ids as cert/ */
        return -EINVAL;
    int n = snprintf(out, len, OCSP_PREFIX "%s", id);
    return n < 0 || (size_t)n >= len ? -EINVAL : 0;
}

int ocsp_key_id(const char *key, size_t klen, char *id, size_t len)
{
    size_t pl = strlen(OCSP_PREFIX);
    if (klen <= pl || memcmp(key, OCSP_PREFIX, pl) || klen - pl > CERT_ID_MAX)
        return -EINVAL;
    char ck[CERT_ID_MAX + 8];
    int n = snprintf(ck, sizeof(ck), CERT_PREFIX "%.*s", (int)(klen - pl), key + pl);
    if (n < 0 || (size_t)n >= sizeof(ck))
        return -EINVAL;
    return cert_key_id(ck, (size_t)n, id, len);
}

static const char *const status_names[] = {"good", "revoked", "unknown"};

const char *ocsp_status_name(enum ocsp_status s)
{
    return (unsigned)s < 3 ? status_names[s] : "?";
}

void ocsp_pack(msgpack_packer *pk, const ocsp_rec_t *r)
{
    msgpack_pack_map(pk, 6);
    mpw_kv_bin(pk, "der", r->der, r->der_len);
    mpw_kv_str(pk, "status", ocsp_status_name(r->status));
    mpw_kv_u64(pk, "this_update_ms", r->this_update_ms);
    mpw_kv_u64(pk, "next_update_ms", r->next_update_ms);
    mpw_kv_str(pk, "fetched_by", r->fetched_by);
    mpw_kv_u64(pk, "fetched_ms", r->fetched_ms);
}

static int read_der(mpr_t *r, void *dst, const char **why)
{
    ocsp_rec_t *o = dst;
    const uint8_t *b;
    uint32_t bl;
    if (mpr_bin(r, &b, &bl) || bl == 0 || bl > OCSP_DER_MAX) {
        *why = "der is not binary of 1 byte to 64 KiB";
        return -EBADMSG;
    }
    free(o->der); /* mpf refuses a key seen twice, but stay safe */
    o->der = xmemdup(b, bl);
    o->der_len = bl;
    return 0;
}

int ocsp_parse(const uint8_t *buf, size_t len, ocsp_rec_t *r, const char **why)
{
    memset(r, 0, sizeof(*r));
    char st[16];
    mpf_t fs[] = {
        {"der", MPF_CUSTOM, r, 0, true, false, read_der},
        {"status", MPF_STR, st, sizeof(st), true, false, NULL},
        {"this_update_ms", MPF_U64, &r->this_update_ms, 0, true, false, NULL},
        {"next_update_ms", MPF_U64, &r->next_update_ms, 0, true, false, NULL},
        {"fetched_by", MPF_STR, r->fetched_by, sizeof(r->fetched_by), true, false, NULL},
        {"fetched_ms", MPF_U64, &r->fetched_ms, 0, true, false, NULL},
    };
    if (mpf_parse(buf, len, fs, sizeof(fs) / sizeof(fs[0]), why))
        goto fail;
    unsigned i;
    for (i = 0; i < 3 && strcmp(st, status_names[i]); i++)
        ;
    if (i == 3) {
        *why = "status is not \"good\", \"revoked\" or \"unknown\"";
        goto fail;
    }
    r->status = (enum ocsp_status)i;
    if (r->this_update_ms >= r->next_update_ms) {
        *why = "this_update_ms is not before next_update_ms";
        goto fail;
    }
    return 0;
fail:
    ocsp_rec_free(r);
    return -EBADMSG;
}

uint64_t ocsp_refresh_at(uint64_t this_update_ms, uint64_t next_update_ms)
{
    if (next_update_ms <= this_update_ms)
        return this_update_ms;
    return this_update_ms + (next_update_ms - this_update_ms) / 2;
}

/* ---- the certificate side ------------------------------------------------------------------ */

int ocsp_chain(const char *chain_pem, X509 **leaf, X509 **issuer)
{
    *leaf = *issuer = NULL;
    size_t n = strlen(chain_pem);
    if (n == 0 || n > CERT_CHAIN_MAX)
        return -EINVAL;
    BIO *b = BIO_new_mem_buf(chain_pem, (int)n);
    if (!b)
        return -ENOMEM;
    int rc = -EINVAL;
    *leaf = PEM_read_bio_X509(b, NULL, NULL, NULL);
    if (*leaf) {
        *issuer = PEM_read_bio_X509(b, NULL, NULL, NULL);
        if (!*issuer)
            rc = -ENOENT;
        else if (X509_check_issued(*issuer, *leaf) == X509_V_OK && /* names, key ids */
                 X509_verify(*leaf, X509_get0_pubkey(*issuer)) == 1) /* and the signature */
            rc = 0;
    }
    BIO_free(b);
    ERR_clear_error();
    if (rc) {
        X509_free(*leaf);
        X509_free(*issuer);
        *leaf = *issuer = NULL;
    }
    return rc;
}

int ocsp_responder(X509 *leaf, char *url, size_t len)
{
    STACK_OF(OPENSSL_STRING) *l = X509_get1_ocsp(leaf);
    int rc = -ENOENT;
    if (l && sk_OPENSSL_STRING_num(l) > 0) {
        const char *u = sk_OPENSSL_STRING_value(l, 0);
        size_t ul = strlen(u);
        rc = -EINVAL;
        if ((strncasecmp(u, "http://", 7) == 0 || strncasecmp(u, "https://", 8) == 0) &&
            ul <= OCSP_URL_MAX && ul < len) {
            rc = 0;
            for (size_t i = 0; i < ul; i++)
                if ((unsigned char)u[i] <= 0x20 || (unsigned char)u[i] >= 0x7f)
                    rc = -EINVAL; /* no spaces or control bytes into libcurl or a log */
            if (rc == 0)
                memcpy(url, u, ul + 1);
        }
    }
    X509_email_free(l);
    return rc;
}

int ocsp_request(X509 *leaf, X509 *issuer, uint8_t **der, size_t *len)
{
    *der = NULL;
    *len = 0;
    OCSP_REQUEST *req = OCSP_REQUEST_new();
    OCSP_CERTID *cid = OCSP_cert_to_id(NULL, leaf, issuer);
    int rc = -ENOMEM;
    if (req && cid && OCSP_request_add0_id(req, cid)) {
        cid = NULL; /* the request owns it */
        unsigned char *p = NULL;
        int n = i2d_OCSP_REQUEST(req, &p);
        if (n > 0) {
            *der = p;
            *len = (size_t)n;
            rc = 0;
        }
    }
    OCSP_CERTID_free(cid);
    OCSP_REQUEST_free(req);
    ERR_clear_error();
    return rc;
}

static int gt_to_ms(const ASN1_GENERALIZEDTIME *t, uint64_t *ms)
{
    struct tm tm;
    if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
        return -1;
    time_t s = timegm(&tm);
    if (s < 0)
        return -1;
    *ms = (uint64_t)s * 1000;
    return 0;
}

static const char *const state_names[] = {"none",    "pending", "good",    "stale",
                                           "revoked", "unknown", "unusable"};

const char *ocsp_state_name(enum ocsp_state s)
{
    return (unsigned)s < sizeof(state_names) / sizeof(state_names[0]) ? state_names[s] : "?";
}

int ocsp_target(const char *chain_pem, X509 **leaf, X509 **issuer, char *url, size_t len,
                const char **why)
{
    *leaf = *issuer = NULL;
    if (!chain_pem || !chain_pem[0]) {
        *why = "no certificate yet";
        return -ENOENT;
    }
    int rc = ocsp_chain(chain_pem, leaf, issuer);
    if (rc == -ENOENT) {
        *why = "the chain holds no issuer certificate to name in an OCSP request";
        return rc;
    }
    if (rc) {
        *why = "the chain does not parse, or its second certificate did not issue the first";
        return -EINVAL;
    }
    rc = ocsp_responder(*leaf, url, len);
    if (rc) {
        *why = rc == -ENOENT ? "the certificate names no OCSP responder"
                             : "the certificate's OCSP responder is not an http(s) URL of at "
                               "most 1024 bytes";
        X509_free(*leaf);
        X509_free(*issuer);
        *leaf = *issuer = NULL;
        return rc == -ENOENT ? -ENOENT : -EINVAL;
    }
    return 0;
}

enum ocsp_state ocsp_judge(const uint8_t *der, size_t len, X509 *leaf, X509 *issuer,
                           uint64_t now_ms, ocsp_info_t *out, const char **why)
{
    memset(out, 0, sizeof(*out));
    if (!der || len == 0 || len > OCSP_DER_MAX) {
        *why = "the response is empty or larger than 64 KiB";
        return OCSP_STATE_UNUSABLE;
    }
    const unsigned char *p = der;
    OCSP_RESPONSE *resp = d2i_OCSP_RESPONSE(NULL, &p, (long)len);
    OCSP_BASICRESP *bs = NULL;
    OCSP_CERTID *cid = NULL;
    X509_STORE *st = NULL;
    STACK_OF(X509) *certs = NULL;
    enum ocsp_state state = OCSP_STATE_UNUSABLE;
    int status = -1, reason = 0;
    ASN1_GENERALIZEDTIME *rev = NULL, *thisupd = NULL, *nextupd = NULL;
    if (!resp || p != der + len) {
        *why = "not one DER OCSPResponse";
        goto out;
    }
    if (OCSP_response_status(resp) != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
        *why = "the responder did not answer successful (malformed, internal error, try later, "
               "unauthorized)";
        goto out;
    }
    if (!(bs = OCSP_response_get1_basic(resp))) {
        *why = "not a basic OCSP response";
        goto out;
    }
    /* The issuer is the only trust anchor: the response must be signed by it, or by a
     * responder certificate it issued for OCSP signing (OCSP_basic_verify's issuer check).
     * PARTIAL_CHAIN lets an intermediate (not self-signed) be that anchor. */
    st = X509_STORE_new();
    certs = sk_X509_new_null();
    if (!st || !certs || !X509_STORE_add_cert(st, issuer) || !sk_X509_push(certs, issuer)) {
        *why = "out of memory";
        goto out;
    }
    X509_STORE_set_flags(st, X509_V_FLAG_PARTIAL_CHAIN);
    if (OCSP_basic_verify(bs, certs, st, 0) != 1) {
        *why = "the response's signature does not verify against the certificate's issuer";
        goto out;
    }
    if (!(cid = OCSP_cert_to_id(NULL, leaf, issuer))) {
        *why = "out of memory";
        goto out;
    }
    if (OCSP_resp_find_status(bs, cid, &status, &reason, &rev, &thisupd, &nextupd) != 1) {
        *why = "the response is not about this certificate";
        goto out;
    }
    if (!nextupd) {
        *why = "the response has no nextUpdate (cannot tell how long to staple it)";
        goto out;
    }
    if (gt_to_ms(thisupd, &out->this_update_ms) || gt_to_ms(nextupd, &out->next_update_ms)) {
        *why = "unreadable thisUpdate or nextUpdate";
        goto out;
    }
    if (out->this_update_ms > now_ms + OCSP_SKEW_MS) {
        *why = "thisUpdate is in the future";
        goto out;
    }
    if (out->next_update_ms <= out->this_update_ms) {
        *why = "nextUpdate is not after thisUpdate";
        goto out;
    }
    switch (status) {
    case V_OCSP_CERTSTATUS_GOOD:
        out->status = OCSP_ST_GOOD;
        state = OCSP_STATE_GOOD;
        break;
    case V_OCSP_CERTSTATUS_REVOKED:
        out->status = OCSP_ST_REVOKED;
        state = OCSP_STATE_REVOKED;
        if (gt_to_ms(rev, &out->revoked_ms))
            out->revoked_ms = 0; /* required by RFC 6960; shown as unknown when absent */
        break;
    default:
        out->status = OCSP_ST_UNKNOWN;
        state = OCSP_STATE_UNKNOWN;
        break;
    }
    /* Past nextUpdate whatever it says: the answer is no longer the responder's word. */
    if (out->next_update_ms <= now_ms) {
        *why = "nextUpdate has passed (a stale response)";
        state = OCSP_STATE_STALE;
    }
out:
    sk_X509_free(certs); /* the certificates are borrowed */
    X509_STORE_free(st);
    OCSP_CERTID_free(cid);
    OCSP_BASICRESP_free(bs);
    OCSP_RESPONSE_free(resp);
    ERR_clear_error();
    if (state == OCSP_STATE_UNUSABLE)
        memset(out, 0, sizeof(*out));
    return state;
}

int ocsp_check(const uint8_t *der, size_t len, X509 *leaf, X509 *issuer, uint64_t now_ms,
               ocsp_info_t *out, const char **why)
{
    switch (ocsp_judge(der, len, leaf, issuer, now_ms, out, why)) {
    case OCSP_STATE_GOOD:
    case OCSP_STATE_REVOKED:
    case OCSP_STATE_UNKNOWN:
        return 0;
    default: /* stale or unusable, *why set */
        memset(out, 0, sizeof(*out));
        return -EBADMSG;
    }
}

enum ocsp_state ocsp_judge_record(const uint8_t *val, size_t vlen, X509 *leaf, X509 *issuer,
                                  uint64_t now_ms, ocsp_rec_t *rec, ocsp_info_t *info,
                                  const char **why)
{
    memset(rec, 0, sizeof(*rec));
    memset(info, 0, sizeof(*info));
    if (!val)
        return OCSP_STATE_PENDING;
    if (ocsp_parse(val, vlen, rec, why))
        return OCSP_STATE_UNUSABLE; /* *rec zeroed by ocsp_parse */
    return ocsp_judge(rec->der, rec->der_len, leaf, issuer, now_ms, info, why);
}
