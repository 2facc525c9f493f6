/* idprec: see idprec.h. Shapes are checked by common/mpfields; URLs, scopes and domains are
 * checked here byte by byte, as idp.add checks them. */
#include "node/oidc/idprec.h"

#include "common/mp.h"
#include "common/mpfields.h"
#include "common/xmalloc.h"

#include <ctype.h>
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int idp_key(const char *name, char *out, size_t len)
{
    if (nodecfg_check_name(name))
        return -EINVAL;
    int n = snprintf(out, len, IDP_PREFIX "%s", name);
    return n < 0 || (size_t)n >= len ? -EINVAL : 0;
}

bool idp_issuer_ok(const char *issuer, bool allow_http)
{
    if (!oidc_url_ok(issuer, allow_http) || strchr(issuer, '?') || strchr(issuer, '#'))
        return false;
    if (!strncmp(issuer, "https://", 8))
        return true;
    /* plain http: only to this machine (a test provider) */
    const char *h = issuer + 7;
    return !strncmp(h, "127.", 4) || !strncmp(h, "[::1]", 5) || !strncmp(h, "localhost:", 10) ||
           !strcmp(h, "localhost") || !strncmp(h, "localhost/", 10);
}

bool idp_scopes_ok(const char *s)
{
    size_t l = strlen(s);
    if (!l || l > IDP_SCOPES_MAX)
        return false;
    bool openid = false;
    const char *p = s;
    while (*p) {
        size_t w = strcspn(p, " ");
        if (!w)
            return false; /* two spaces, or a leading one */
        for (size_t i = 0; i < w; i++)
            if (p[i] <= 0x20 || p[i] >= 0x7f || p[i] == '"' || p[i] == '\\')
                return false;
        if (w == 6 && !memcmp(p, "openid", 6))
            openid = true;
        p += w;
        if (*p == ' ' && !*++p)
            return false; /* a trailing space */
    }
    return openid;
}

bool idp_domain_ok(const char *d)
{
    size_t l = strlen(d);
    if (!l || l > OIDC_DOMAIN_MAX || d[0] == '.' || d[l - 1] == '.' || !strchr(d, '.'))
        return false;
    for (size_t i = 0; i < l; i++)
        if (!(islower((unsigned char)d[i]) || isdigit((unsigned char)d[i]) || d[i] == '-' ||
              (d[i] == '.' && d[i + 1] != '.')))
            return false;
    return true;
}

void idp_pack(msgpack_packer *pk, const idp_rec_t *r)
{
    msgpack_pack_map(pk, 9 + !!r->ca_pem + !!r->secret_sealed_len);
    mpw_kv_str(pk, "name", r->name);
    mpw_kv_str(pk, "issuer", r->issuer);
    mpw_kv_str(pk, "client_id", r->client_id);
    if (r->secret_sealed_len)
        mpw_kv_bin(pk, "client_secret", r->secret_sealed, r->secret_sealed_len);
    mpw_kv_str(pk, "scopes", r->scopes);
    mpw_kv_str(pk, "groups_claim", r->groups_claim);
    mpw_str(pk, "allowed_domains");
    msgpack_pack_array(pk, r->ndomains);
    for (unsigned i = 0; i < r->ndomains; i++)
        mpw_str(pk, r->domains[i]);
    mpw_kv_bool(pk, "auto_create", r->auto_create);
    mpw_kv_bool(pk, "allow_http", r->allow_http);
    if (r->ca_pem)
        mpw_kv_str(pk, "ca_pem", r->ca_pem);
    mpw_kv_u64(pk, "created_ms", r->created_ms);
}

static int read_secret(mpr_t *r, void *dst, const char **why)
{
    idp_rec_t *x = dst;
    const uint8_t *b;
    uint32_t bl;
    if (mpr_bin(r, &b, &bl) || bl == 0 || bl > sizeof(x->secret_sealed)) {
        *why = "client_secret is not 1..557 bytes of binary";
        return -EBADMSG;
    }
    memcpy(x->secret_sealed, b, bl);
    x->secret_sealed_len = bl;
    return 0;
}

static int read_domains(mpr_t *r, void *dst, const char **why)
{
    idp_rec_t *x = dst;
    uint32_t n;
    if (mpr_array(r, &n) || n > OIDC_DOMAINS_MAX) {
        *why = "allowed_domains is not an array of at most 16 domains";
        return -EBADMSG;
    }
    for (uint32_t i = 0; i < n; i++) {
        const char *s;
        uint32_t sl;
        if (mpr_str(r, &s, &sl) || sl > OIDC_DOMAIN_MAX) {
            *why = "an allowed domain is not a string of at most 253 bytes";
            return -EBADMSG;
        }
        memcpy(x->domains[i], s, sl);
        x->domains[i][sl] = '\0';
        if (!idp_domain_ok(x->domains[i])) {
            *why = "an allowed domain is not a lower-case domain name";
            return -EBADMSG;
        }
    }
    x->ndomains = n;
    return 0;
}

static int read_ca(mpr_t *r, void *dst, const char **why)
{
    char **out = dst;
    const char *s;
    uint32_t sl;
    if (mpr_str(r, &s, &sl) || sl == 0 || sl > IDP_CA_PEM_MAX || memchr(s, '\0', sl)) {
        *why = "ca_pem is not 1..32768 bytes of text";
        return -EBADMSG;
    }
    *out = xmalloc(sl + 1);
    memcpy(*out, s, sl);
    (*out)[sl] = '\0';
    return 0;
}

int idp_parse(const uint8_t *buf, size_t len, const char *name, idp_rec_t *r, const char **why)
{
    memset(r, 0, sizeof(*r));
    mpf_t fs[] = {
        {"name", MPF_STR, r->name, sizeof(r->name), true, false, NULL},
        {"issuer", MPF_STR, r->issuer, sizeof(r->issuer), true, false, NULL},
        {"client_id", MPF_STR, r->client_id, sizeof(r->client_id), true, false, NULL},
        {"client_secret", MPF_CUSTOM, r, 0, false, false, read_secret},
        {"scopes", MPF_STR, r->scopes, sizeof(r->scopes), true, false, NULL},
        {"groups_claim", MPF_STR, r->groups_claim, sizeof(r->groups_claim), false, false, NULL},
        {"allowed_domains", MPF_CUSTOM, r, 0, false, false, read_domains},
        {"auto_create", MPF_BOOL, &r->auto_create, 0, false, false, NULL},
        {"allow_http", MPF_BOOL, &r->allow_http, 0, false, false, NULL},
        {"ca_pem", MPF_CUSTOM, &r->ca_pem, 0, false, false, read_ca},
        {"created_ms", MPF_U64, &r->created_ms, 0, false, false, NULL},
    };
    int rc = mpf_parse(buf, len, fs, sizeof(fs) / sizeof(fs[0]), why);
    if (rc == 0 && (nodecfg_check_name(r->name) || strcmp(r->name, name))) {
        *why = "the record's name is not a valid name equal to the one in its key";
        rc = -EBADMSG;
    }
    if (rc == 0 && !idp_issuer_ok(r->issuer, r->allow_http)) {
        *why = "issuer is not an https:// URL (or http:// to a loopback address with allow_http)";
        rc = -EBADMSG;
    }
    if (rc == 0 && !r->client_id[0]) {
        *why = "client_id is empty";
        rc = -EBADMSG;
    }
    for (const char *p = r->client_id; rc == 0 && *p; p++)
        if (*p < 0x20 || *p >= 0x7f) {
            *why = "client_id is not printable ASCII";
            rc = -EBADMSG;
        }
    if (rc == 0 && !idp_scopes_ok(r->scopes)) {
        *why = "scopes is not a space-separated list holding openid";
        rc = -EBADMSG;
    }
    if (rc == 0 && r->groups_claim[0]) {
        for (const char *p = r->groups_claim; *p; p++)
            if (*p <= 0x20 || *p >= 0x7f) {
                *why = "groups_claim is not a printable claim name";
                rc = -EBADMSG;
                break;
            }
    }
    if (rc)
        idp_rec_free(r);
    return rc;
}

void idp_rec_free(idp_rec_t *r)
{
    if (!r)
        return;
    free(r->ca_pem);
    r->ca_pem = NULL;
}

int idp_secret_seal(const storeseal_t *k, idp_rec_t *r, const char *secret, size_t len)
{
    char key[STORESEAL_FIELD_MAX + NODECFG_NAME_MAX + 8];
    if (idp_key(r->name, key, sizeof(key)) || len > IDP_SECRET_MAX)
        return -EINVAL;
    uint8_t *s = NULL;
    size_t sl = 0;
    int rc = storeseal_seal(k, key, strlen(key), "client_secret", (const uint8_t *)secret, len,
                            &s, &sl);
    if (rc)
        return rc;
    if (sl > sizeof(r->secret_sealed)) {
        free(s);
        return -E2BIG;
    }
    memcpy(r->secret_sealed, s, sl);
    r->secret_sealed_len = sl;
    free(s);
    return 0;
}

int idp_secret_open(const storeseal_t *k, const idp_rec_t *r, char *out, size_t cap)
{
    out[0] = '\0';
    if (!r->secret_sealed_len)
        return 0;
    char key[STORESEAL_FIELD_MAX + NODECFG_NAME_MAX + 8];
    if (idp_key(r->name, key, sizeof(key)))
        return -EINVAL;
    uint8_t *p = NULL;
    size_t pl = 0;
    int rc = storeseal_open(k, key, strlen(key), "client_secret", r->secret_sealed,
                            r->secret_sealed_len, &p, &pl, NULL);
    if (rc)
        return rc;
    if (pl + 1 > cap || memchr(p, '\0', pl)) {
        sodium_memzero(p, pl);
        free(p);
        return -E2BIG;
    }
    memcpy(out, p, pl);
    out[pl] = '\0';
    sodium_memzero(p, pl);
    free(p);
    return 0;
}
