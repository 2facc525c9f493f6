/* acmerec: see acmerec.h. Shapes are checked by common/mpfields; the values that end up in a
 * URL path (tokens), a DNS owner name or a TXT string are checked here, byte by byte. */
#include "node/acme/acmerec.h"

#include "common/mp.h"
#include "common/mpfields.h"
#include "common/xmalloc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- custom field readers ---------------------------------------------------------------- */

struct bin_dst {
    uint8_t *buf;
    size_t cap;
    size_t *len;
};

static int read_bin(mpr_t *r, void *dst, const char **why)
{
    struct bin_dst *d = dst;
    const uint8_t *b;
    uint32_t bl;
    if (mpr_bin(r, &b, &bl) || bl == 0 || bl > d->cap) {
        *why = "a sealed field is not 1..4096 bytes of binary";
        return -EBADMSG;
    }
    memcpy(d->buf, b, bl);
    *d->len = bl;
    return 0;
}

static int read_ca_pem(mpr_t *r, void *dst, const char **why)
{
    char **out = dst;
    const char *s;
    uint32_t sl;
    if (mpr_str(r, &s, &sl) || sl == 0 || sl > ACME_CA_PEM_MAX || memchr(s, '\0', sl)) {
        *why = "ca_pem is not 1..32768 bytes of text";
        return -EBADMSG;
    }
    *out = xmalloc(sl + 1);
    memcpy(*out, s, sl);
    (*out)[sl] = '\0';
    return 0;
}

static bool txt_ok(const char *s, size_t len)
{
    if (len == 0 || len > ACME_TXT_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (s[i] < 0x21 || s[i] > 0x7e || s[i] == '"' || s[i] == '\\')
            return false;
    return true;
}

static int read_values(mpr_t *r, void *dst, const char **why)
{
    acmedns_rec_t *d = dst;
    uint32_t n;
    if (mpr_array(r, &n) || n == 0 || n > ACME_TXT_VALUES_MAX) {
        *why = "values is not an array of 1..8 strings";
        return -EBADMSG;
    }
    for (uint32_t i = 0; i < n; i++) {
        const char *s;
        uint32_t sl;
        if (mpr_str(r, &s, &sl) || !txt_ok(s, sl)) {
            *why = "a TXT value is not 1..64 printable bytes";
            return -EBADMSG;
        }
        memcpy(d->values[i], s, sl);
        d->values[i][sl] = '\0';
    }
    d->nvalues = n;
    return 0;
}

/* ---- acme/config -------------------------------------------------------------------------- */

void acme_config_free(acme_config_t *c)
{
    if (!c)
        return;
    free(c->ca_pem);
    c->ca_pem = NULL;
}

void acme_config_pack(msgpack_packer *pk, const acme_config_t *c)
{
    msgpack_pack_map(pk, 5 + !!c->ca_pem + (c->eab_kid[0] ? 2 : 0));
    mpw_kv_str(pk, "directory", c->directory);
    mpw_kv_str(pk, "email", c->email);
    if (c->ca_pem)
        mpw_kv_str(pk, "ca_pem", c->ca_pem);
    if (c->eab_kid[0]) {
        mpw_kv_str(pk, "eab_kid", c->eab_kid);
        mpw_kv_bin(pk, "eab_hmac", c->eab_hmac_sealed, c->eab_hmac_sealed_len);
    }
    mpw_kv_bin(pk, "account_key", c->account_key_sealed, c->account_key_sealed_len);
    mpw_kv_u64(pk, "created_ms", c->created_ms);
    mpw_kv_str(pk, "set_by", c->set_by);
}

int acme_config_parse(const uint8_t *buf, size_t len, acme_config_t *c, const char **why)
{
    memset(c, 0, sizeof(*c));
    struct bin_dst eab = {c->eab_hmac_sealed, sizeof(c->eab_hmac_sealed), &c->eab_hmac_sealed_len};
    struct bin_dst ak = {c->account_key_sealed, sizeof(c->account_key_sealed),
                         &c->account_key_sealed_len};
    mpf_t fs[] = {
        {"directory", MPF_STR, c->directory, sizeof(c->directory), true, false, NULL},
        {"email", MPF_STR, c->email, sizeof(c->email), true, false, NULL},
        {"ca_pem", MPF_CUSTOM, &c->ca_pem, 0, false, false, read_ca_pem},
        {"eab_kid", MPF_STR, c->eab_kid, sizeof(c->eab_kid), false, false, NULL},
        {"eab_hmac", MPF_CUSTOM, &eab, 0, false, false, read_bin},
        {"account_key", MPF_CUSTOM, &ak, 0, true, false, read_bin},
        {"created_ms", MPF_U64, &c->created_ms, 0, true, false, NULL},
        {"set_by", MPF_STR, c->set_by, sizeof(c->set_by), false, false, NULL},
    };
    int rc = mpf_parse(buf, len, fs, sizeof(fs) / sizeof(fs[0]), why);
    if (rc == 0 && strncmp(c->directory, "https://", 8) != 0) {
        *why = "directory is not an https:// URL";
        rc = -EBADMSG;
    }
    if (rc == 0 && !!c->eab_kid[0] != (c->eab_hmac_sealed_len > 0)) {
        *why = "eab_kid and eab_hmac come together";
        rc = -EBADMSG;
    }
    if (rc)
        acme_config_free(c);
    return rc;
}

/* ---- acmechal/<token> --------------------------------------------------------------------- */

bool acme_token_ok(const char *t, size_t len)
{
    if (len == 0 || len > ACME_TOKEN_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char ch = t[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '_'))
            return false;
    }
    return true;
}

int acmechal_key(const char *token, char *out, size_t len)
{
    if (!acme_token_ok(token, strlen(token)))
        return -EINVAL;
    int n = snprintf(out, len, ACMECHAL_PREFIX "%s", token);
    return n < 0 || (size_t)n >= len ? -EINVAL : 0;
}

void acmechal_pack(msgpack_packer *pk, const acmechal_rec_t *c)
{
    msgpack_pack_map(pk, 2);
    mpw_kv_str(pk, "key_authorization", c->key_authorization);
    mpw_kv_u64(pk, "expires_ms", c->expires_ms);
}

int acmechal_parse(const uint8_t *buf, size_t len, const char *token, acmechal_rec_t *c,
                   const char **why)
{
    memset(c, 0, sizeof(*c));
    mpf_t fs[] = {
        {"key_authorization", MPF_STR, c->key_authorization, sizeof(c->key_authorization), true,
         false, NULL},
        {"expires_ms", MPF_U64, &c->expires_ms, 0, true, false, NULL},
    };
    int rc = mpf_parse(buf, len, fs, sizeof(fs) / sizeof(fs[0]), why);
    if (rc)
        return rc;
    /* key authorization = token "." base64url(thumbprint) (RFC 8555 section 8.1) */
    size_t tl = strlen(token), kl = strlen(c->key_authorization);
    if (kl <= tl + 1 || strncmp(c->key_authorization, token, tl) != 0 ||
        c->key_authorization[tl] != '.' ||
        !acme_token_ok(c->key_authorization + tl + 1, kl - tl - 1)) {
        *why = "key_authorization is not '<token>.<thumbprint>'";
        return -EBADMSG;
    }
    return 0;
}

/* ---- acmedns/<name> ----------------------------------------------------------------------- */

bool acme_name_ok(const char *n, size_t len)
{
    if (len == 0 || len > ACME_NAME_MAX)
        return false;
    size_t label = 0;
    for (size_t i = 0; i <= len; i++) {
        char c = i < len ? n[i] : '.';
        if (c == '.') {
            if (label == 0 || label > 63 || n[i - 1] == '-' || n[i - label] == '-')
                return false;
            label = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-') {
            label++;
        } else {
            return false;
        }
    }
    return true;
}

int acmedns_key(const char *name, char *out, size_t len)
{
    if (!acme_name_ok(name, strlen(name)))
        return -EINVAL;
    int n = snprintf(out, len, ACMEDNS_PREFIX "%s", name);
    return n < 0 || (size_t)n >= len ? -EINVAL : 0;
}

void acmedns_pack(msgpack_packer *pk, const acmedns_rec_t *d)
{
    msgpack_pack_map(pk, 2);
    mpw_str(pk, "values");
    msgpack_pack_array(pk, d->nvalues);
    for (size_t i = 0; i < d->nvalues; i++)
        mpw_str(pk, d->values[i]);
    mpw_kv_u64(pk, "expires_ms", d->expires_ms);
}

int acmedns_parse(const uint8_t *buf, size_t len, acmedns_rec_t *d, const char **why)
{
    memset(d, 0, sizeof(*d));
    mpf_t fs[] = {
        {"values", MPF_CUSTOM, d, 0, true, false, read_values},
        {"expires_ms", MPF_U64, &d->expires_ms, 0, true, false, NULL},
    };
    return mpf_parse(buf, len, fs, sizeof(fs) / sizeof(fs[0]), why);
}

/* ---- lease/acme/<cert id> ----------------------------------------------------------------- */

int acme_lease_key(const char *cert_id, char *out, size_t len)
{
    size_t il = strlen(cert_id);
    if (il == 0 || il > ACME_NAME_MAX)
        return -EINVAL;
    for (size_t i = 0; i < il; i++)
        if (cert_id[i] < 0x21 || cert_id[i] > 0x7e)
            return -EINVAL;
    int n = snprintf(out, len, ACME_LEASE_PREFIX "%s", cert_id);
    return n < 0 || (size_t)n >= len ? -EINVAL : 0;
}

void acme_lease_pack(msgpack_packer *pk, const acme_lease_t *l)
{
    msgpack_pack_map(pk, 7);
    mpw_kv_str(pk, "holder", l->holder);
    mpw_kv_u64(pk, "holder_id", l->holder_id);
    mpw_kv_u64(pk, "expires_ms", l->expires_ms);
    mpw_kv_u64(pk, "version", l->version);
    mpw_kv_u64(pk, "failures", l->failures);
    mpw_kv_u64(pk, "retry_after_ms", l->retry_after_ms);
    mpw_kv_str(pk, "error", l->error);
}

int acme_lease_parse(const uint8_t *buf, size_t len, acme_lease_t *l, const char **why)
{
    memset(l, 0, sizeof(*l));
    mpf_t fs[] = {
        {"holder", MPF_STR, l->holder, sizeof(l->holder), true, false, NULL},
        {"holder_id", MPF_U64, &l->holder_id, 0, false, false, NULL},
        {"expires_ms", MPF_U64, &l->expires_ms, 0, true, false, NULL},
        {"version", MPF_U64, &l->version, 0, true, false, NULL},
        {"failures", MPF_U64, &l->failures, 0, false, false, NULL},
        {"retry_after_ms", MPF_U64, &l->retry_after_ms, 0, false, false, NULL},
        {"error", MPF_STR, l->error, sizeof(l->error), false, false, NULL},
    };
    return mpf_parse(buf, len, fs, sizeof(fs) / sizeof(fs[0]), why);
}

/* ---- sealing ------------------------------------------------------------------------------ */

int acme_config_seal(const storeseal_t *k, const char *field, const uint8_t *plain, size_t len,
                     uint8_t *out, size_t cap, size_t *outlen)
{
    uint8_t *s = NULL;
    size_t sl = 0;
    int rc = storeseal_seal(k, ACME_CONFIG_KEY, strlen(ACME_CONFIG_KEY), field, plain, len, &s,
                            &sl);
    if (rc)
        return rc;
    if (sl > cap) {
        free(s);
        return -E2BIG;
    }
    memcpy(out, s, sl);
    *outlen = sl;
    free(s);
    return 0;
}

int acme_config_open(const storeseal_t *k, const char *field, const uint8_t *sealed, size_t len,
                     uint8_t **plain, size_t *plainlen, bool *legacy)
{
    return storeseal_open(k, ACME_CONFIG_KEY, strlen(ACME_CONFIG_KEY), field, sealed, len, plain,
                          plainlen, legacy);
}
