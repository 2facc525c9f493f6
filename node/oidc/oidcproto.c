/* oidcproto: see oidcproto.h.
 *
 * JSON is jansson's (duplicate keys refused: two "aud" or two "nonce" must not let a reader
 * and a checker see different values); base64url is common/b64url's strict decoder (one
 * spelling per value); keys and signatures are OpenSSL's. Sizes are checked before anything is
 * parsed, every string before it is copied. */
#include "node/oidc/oidcproto.h"

#include "common/b64url.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- small helpers ------------------------------------------------------------------------ */

static json_t *load(const char *json, size_t len, const char **why)
{
    if (len == 0 || len > OIDC_DOC_MAX) {
        *why = "the document is empty or larger than 64 KiB";
        return NULL;
    }
    json_error_t e;
    json_t *j = json_loadb(json, len, JSON_REJECT_DUPLICATES, &e);
    if (!j || !json_is_object(j)) {
        json_decref(j);
        *why = "the document is not a JSON object";
        return NULL;
    }
    return j;
}

/* A string member that fits cap bytes with its NUL and holds no NUL: its value, else NULL. */
static const char *str_member(json_t *o, const char *name, size_t cap)
{
    json_t *v = json_object_get(o, name);
    if (!json_is_string(v))
        return NULL;
    size_t l = json_string_length(v);
    const char *s = json_string_value(v);
    if (l + 1 > cap || memchr(s, '\0', l))
        return NULL;
    return s;
}

bool oidc_url_ok(const char *url, bool allow_http)
{
    size_t l = strlen(url);
    size_t pre = !strncmp(url, "https://", 8) ? 8 : allow_http && !strncmp(url, "http://", 7) ? 7 : 0;
    if (!pre || l <= pre || l > OIDC_URL_MAX)
        return false;
    for (size_t i = 0; i < l; i++) {
        unsigned char c = (unsigned char)url[i];
        if (c <= 0x20 || c >= 0x7f || c == '"' || c == '<' || c == '>' || c == '\\' ||
            c == '`')
            return false;
    }
    return url[pre] != '/';
}

/* ---- discovery ---------------------------------------------------------------------------- */

int oidc_discovery_parse(const char *json, size_t len, const char *issuer, bool allow_http,
                         oidc_discovery_t *d, const char **why)
{
    memset(d, 0, sizeof(*d));
    json_t *j = load(json, len, why);
    if (!j)
        return -EBADMSG;
    int rc = -EBADMSG;
    const char *iss = str_member(j, "issuer", OIDC_URL_MAX + 1);
    const char *az = str_member(j, "authorization_endpoint", sizeof(d->authorization_endpoint));
    const char *tk = str_member(j, "token_endpoint", sizeof(d->token_endpoint));
    const char *jw = str_member(j, "jwks_uri", sizeof(d->jwks_uri));
    if (!iss || strcmp(iss, issuer)) {
        *why = "the discovery document's issuer is not the configured issuer";
    } else if (!az || !oidc_url_ok(az, allow_http)) {
        *why = "authorization_endpoint is missing or not an acceptable URL";
    } else if (!tk || !oidc_url_ok(tk, allow_http)) {
        *why = "token_endpoint is missing or not an acceptable URL";
    } else if (!jw || !oidc_url_ok(jw, allow_http)) {
        *why = "jwks_uri is missing or not an acceptable URL";
    } else {
        snprintf(d->authorization_endpoint, sizeof(d->authorization_endpoint), "%s", az);
        snprintf(d->token_endpoint, sizeof(d->token_endpoint), "%s", tk);
        snprintf(d->jwks_uri, sizeof(d->jwks_uri), "%s", jw);
        rc = 0;
    }
    json_decref(j);
    return rc;
}

/* ---- keys --------------------------------------------------------------------------------- */

enum kty { KTY_RSA = 1, KTY_EC };

struct jwk {
    enum kty kty;
    char kid[OIDC_KID_MAX + 1]; /* "" = none */
    EVP_PKEY *pkey;
};

struct oidc_jwks {
    struct jwk k[OIDC_JWKS_KEYS_MAX];
    size_t n;
};

/* A base64url member decoded into out (cap bytes): its length, or 0 when absent or bad. */
static size_t b64_member(json_t *o, const char *name, uint8_t *out, size_t cap)
{
    const char *s = str_member(o, name, 2 * cap);
    size_t n = 0;
    if (!s || b64url_decode(s, strlen(s), out, cap, &n))
        return 0;
    return n;
}

static EVP_PKEY *rsa_key(json_t *o)
{
    uint8_t n[1024], e[8];
    size_t nl = b64_member(o, "n", n, sizeof(n)), el = b64_member(o, "e", e, sizeof(e));
    if (nl < 256 || !el) /* 2048 bits at least */
        return NULL;
    EVP_PKEY *pkey = NULL;
    BIGNUM *bn = BN_bin2bn(n, (int)nl, NULL), *be = BN_bin2bn(e, (int)el, NULL);
    OSSL_PARAM_BLD *b = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    if (bn && be && b && ctx && OSSL_PARAM_BLD_push_BN(b, OSSL_PKEY_PARAM_RSA_N, bn) &&
        OSSL_PARAM_BLD_push_BN(b, OSSL_PKEY_PARAM_RSA_E, be) &&
        (params = OSSL_PARAM_BLD_to_param(b)) && EVP_PKEY_fromdata_init(ctx) == 1 &&
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
        pkey = NULL;
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(b);
    EVP_PKEY_CTX_free(ctx);
    BN_free(bn);
    BN_free(be);
    return pkey;
}

static EVP_PKEY *ec_key(json_t *o)
{
    const char *crv = str_member(o, "crv", 16);
    uint8_t pt[65], x[33], y[33];
    if (!crv || strcmp(crv, "P-256") || b64_member(o, "x", x, sizeof(x)) != 32 ||
        b64_member(o, "y", y, sizeof(y)) != 32)
        return NULL;
    pt[0] = 0x04; /* uncompressed point */
    memcpy(pt + 1, x, 32);
    memcpy(pt + 33, y, 32);
    EVP_PKEY *pkey = NULL;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)"prime256v1", 0),
        OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof(pt)),
        OSSL_PARAM_construct_end(),
    };
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    if (!ctx || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
        pkey = NULL;
    EVP_PKEY_CTX_free(ctx);
    return pkey; /* OpenSSL checks the point is on the curve when it is used */
}

oidc_jwks_t *oidc_jwks_parse(const char *json, size_t len, const char **why)
{
    json_t *j = load(json, len, why);
    if (!j)
        return NULL;
    json_t *keys = json_object_get(j, "keys");
    if (!json_is_array(keys)) {
        *why = "the JWKS has no keys array";
        json_decref(j);
        return NULL;
    }
    oidc_jwks_t *ks = calloc(1, sizeof(*ks));
    if (!ks) {
        json_decref(j);
        *why = "out of memory";
        return NULL;
    }
    size_t i;
    json_t *k;
    json_array_foreach(keys, i, k)
    {
        if (ks->n == OIDC_JWKS_KEYS_MAX)
            break;
        if (!json_is_object(k))
            continue;
        const char *kty = str_member(k, "kty", 8), *use = str_member(k, "use", 16);
        const char *alg = str_member(k, "alg", 16), *kid = str_member(k, "kid", OIDC_KID_MAX + 1);
        if (!kty || (use && strcmp(use, "sig")) || (json_object_get(k, "kid") && !kid))
            continue;
        struct jwk *w = &ks->k[ks->n];
        if (!strcmp(kty, "RSA") && (!alg || !strcmp(alg, "RS256"))) {
            w->kty = KTY_RSA;
            w->pkey = rsa_key(k);
        } else if (!strcmp(kty, "EC") && (!alg || !strcmp(alg, "ES256"))) {
            w->kty = KTY_EC;
            w->pkey = ec_key(k);
        }
        if (!w->pkey)
            continue;
        snprintf(w->kid, sizeof(w->kid), "%s", kid ? kid : "");
        ks->n++;
    }
    json_decref(j);
    if (!ks->n) {
        *why = "the JWKS holds no RS256 or ES256 signing key";
        free(ks);
        return NULL;
    }
    return ks;
}

void oidc_jwks_free(oidc_jwks_t **kp)
{
    oidc_jwks_t *ks = kp ? *kp : NULL;
    if (!ks)
        return;
    for (size_t i = 0; i < ks->n; i++)
        EVP_PKEY_free(ks->k[i].pkey);
    free(ks);
    *kp = NULL;
}

size_t oidc_jwks_count(const oidc_jwks_t *k)
{
    return k ? k->n : 0;
}

/* ---- token response ----------------------------------------------------------------------- */

int oidc_token_response_parse(const char *json, size_t len, char *out, size_t cap,
                              const char **why)
{
    static const char *const errors[] = {"invalid_request", "invalid_client", "invalid_grant",
                                         "unauthorized_client", "unsupported_grant_type",
                                         "invalid_scope"};
    json_t *j = load(json, len, why);
    if (!j)
        return -EBADMSG;
    int rc = -EBADMSG;
    const char *err = str_member(j, "error", 64);
    const char *id = str_member(j, "id_token", OIDC_TOKEN_MAX + 1);
    if (err) {
        *why = "the token endpoint refused the code";
        for (size_t i = 0; i < sizeof(errors) / sizeof(errors[0]); i++)
            if (!strcmp(err, errors[i]))
                *why = errors[i];
        rc = -EACCES;
    } else if (!id || strlen(id) + 1 > cap) {
        *why = "the token response has no id_token (or one too large)";
    } else {
        snprintf(out, cap, "%s", id);
        rc = 0;
    }
    json_decref(j);
    return rc;
}

/* ---- the ID token ------------------------------------------------------------------------- */

static int verify_sig(EVP_PKEY *pkey, enum kty kty, const uint8_t *sig, size_t sl,
                      const char *data, size_t dl)
{
    uint8_t der[80];
    const uint8_t *s = sig;
    size_t l = sl;
    if (kty == KTY_EC) {
        /* JWS ES256 signatures are r || s, 32 bytes each (RFC 7518 3.4); OpenSSL wants DER. */
        if (sl != 64)
            return -1;
        ECDSA_SIG *es = ECDSA_SIG_new();
        BIGNUM *r = BN_bin2bn(sig, 32, NULL), *ss = BN_bin2bn(sig + 32, 32, NULL);
        if (!es || !r || !ss || !ECDSA_SIG_set0(es, r, ss)) {
            BN_free(r);
            BN_free(ss);
            ECDSA_SIG_free(es);
            return -1;
        }
        uint8_t *p = der;
        int n = i2d_ECDSA_SIG(es, NULL);
        if (n <= 0 || (size_t)n > sizeof(der)) {
            ECDSA_SIG_free(es);
            return -1;
        }
        n = i2d_ECDSA_SIG(es, &p);
        ECDSA_SIG_free(es);
        s = der;
        l = (size_t)n;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx && EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, pkey) == 1 &&
             EVP_DigestVerify(ctx, s, l, (const uint8_t *)data, dl) == 1;
    EVP_MD_CTX_free(ctx);
    return ok ? 0 : -1;
}

/* A base64url part decoded and read as a JSON object. */
static json_t *json_part(const char *p, size_t len)
{
    if (len == 0 || len > OIDC_TOKEN_MAX)
        return NULL;
    uint8_t *buf = malloc(len);
    size_t n = 0;
    json_t *j = NULL;
    json_error_t e;
    if (buf && b64url_decode(p, len, buf, len, &n) == 0 && n > 0)
        j = json_loadb((const char *)buf, n, JSON_REJECT_DUPLICATES, &e);
    free(buf);
    if (j && !json_is_object(j)) {
        json_decref(j);
        j = NULL;
    }
    return j;
}

/* A NumericDate claim (seconds, possibly fractional) as Unix ms; false when absent or not a
 * plausible time. */
static bool time_claim(json_t *o, const char *name, uint64_t *ms)
{
    json_t *v = json_object_get(o, name);
    if (!json_is_number(v))
        return false;
    double s = json_number_value(v);
    if (!(s >= 0 && s < 1e11))
        return false;
    *ms = (uint64_t)(s * 1000.0);
    return true;
}

static bool group_ok(const char *g)
{
    return strlen(g) <= OIDC_GROUP_MAX && nodecfg_check_name(g) == 0;
}

static void take_groups(json_t *p, const char *claim, oidc_claims_t *c)
{
    if (!claim || !claim[0])
        return;
    json_t *v = json_object_get(p, claim);
    if (json_is_string(v)) {
        const char *g = json_string_value(v);
        if (group_ok(g))
            snprintf(c->groups[c->ngroups++], OIDC_GROUP_MAX + 1, "%s", g);
        else
            c->groups_dropped++;
        return;
    }
    if (!json_is_array(v))
        return;
    size_t i;
    json_t *x;
    json_array_foreach(v, i, x)
    {
        const char *g = json_is_string(x) ? json_string_value(x) : NULL;
        bool dup = false;
        for (unsigned k = 0; g && k < c->ngroups && !dup; k++)
            dup = !strcmp(c->groups[k], g);
        if (dup)
            continue;
        if (!g || !group_ok(g) || c->ngroups == OIDC_GROUPS_MAX) {
            c->groups_dropped++;
            continue;
        }
        snprintf(c->groups[c->ngroups++], OIDC_GROUP_MAX + 1, "%s", g);
    }
}

static int check_claims(json_t *p, const oidc_expect_t *ex, oidc_claims_t *c, const char **why)
{
    const char *iss = str_member(p, "iss", OIDC_URL_MAX + 1);
    if (!iss || strcmp(iss, ex->issuer)) {
        *why = "the ID token's iss is not the provider's issuer";
        return -EACCES;
    }
    json_t *aud = json_object_get(p, "aud");
    bool aud_ok = false;
    size_t naud = 0;
    if (json_is_string(aud)) {
        naud = 1;
        aud_ok = !strcmp(json_string_value(aud), ex->client_id);
    } else if (json_is_array(aud)) {
        size_t i;
        json_t *a;
        json_array_foreach(aud, i, a)
        {
            naud++;
            if (json_is_string(a) && !strcmp(json_string_value(a), ex->client_id))
                aud_ok = true;
        }
    }
    if (!aud_ok) {
        *why = "the ID token's aud is not this client";
        return -EACCES;
    }
    json_t *azpv = json_object_get(p, "azp");
    if ((azpv || naud > 1) &&
        (!json_is_string(azpv) || strcmp(json_string_value(azpv), ex->client_id))) {
        *why = "the ID token's azp is not this client";
        return -EACCES;
    }
    if (!time_claim(p, "exp", &c->exp_ms) || c->exp_ms + OIDC_SKEW_MS <= ex->now_ms) {
        *why = "the ID token has expired (or has no exp)";
        return -EACCES;
    }
    if (!time_claim(p, "iat", &c->iat_ms) || c->iat_ms > ex->now_ms + OIDC_SKEW_MS ||
        c->iat_ms + OIDC_IAT_MAX_AGE_MS < ex->now_ms) {
        *why = "the ID token's iat is missing, in the future or too old";
        return -EACCES;
    }
    const char *nonce = str_member(p, "nonce", OIDC_RANDOM_LEN + 1);
    if (!nonce || !ex->nonce || strlen(nonce) != strlen(ex->nonce) ||
        sodium_memcmp(nonce, ex->nonce, strlen(nonce))) {
        *why = "the ID token's nonce is missing or not this sign-in's";
        return -EACCES;
    }
    const char *sub = str_member(p, "sub", sizeof(c->sub));
    if (!sub || !sub[0]) {
        *why = "the ID token's sub is missing or longer than 255 bytes";
        return -EACCES;
    }
    snprintf(c->sub, sizeof(c->sub), "%s", sub);
    /* Optional claims: taken when well-formed, ignored otherwise. An email goes into a header
     * and a log line: printable ASCII only. */
    const char *email = str_member(p, "email", sizeof(c->email));
    bool email_ok = email && strchr(email, '@');
    for (const char *q = email; email_ok && *q; q++)
        email_ok = *q > 0x20 && *q < 0x7f && *q != ',' && *q != '"' && *q != '<' && *q != '>';
    if (email_ok)
        snprintf(c->email, sizeof(c->email), "%s", email);
    c->email_verified = json_is_true(json_object_get(p, "email_verified"));
    const char *name = str_member(p, "name", OIDC_DISPLAY_MAX * 4 + 1);
    if (name) {
        /* Control characters out; UTF-8 kept, a cut made on a character's start. */
        size_t o = 0;
        bool cut = false;
        for (const unsigned char *q = (const unsigned char *)name; *q; q++) {
            if (*q < 0x20 || *q == 0x7f)
                continue;
            if (o + 1 > OIDC_DISPLAY_MAX) {
                cut = ((*q & 0xc0) == 0x80);
                break;
            }
            c->name[o++] = (char)*q;
        }
        while (cut && o > 0 && ((unsigned char)c->name[o - 1] & 0xc0) == 0x80)
            o--;
        if (cut && o > 0)
            o--; /* the lead byte of the character cut */
        c->name[o] = '\0';
    }
    take_groups(p, ex->groups_claim, c);
    return 0;
}

int oidc_idtoken_verify(const char *token, size_t len, const oidc_jwks_t *keys,
                        const oidc_expect_t *ex, oidc_claims_t *c, const char **why)
{
    memset(c, 0, sizeof(*c));
    if (len == 0 || len > OIDC_TOKEN_MAX || memchr(token, '\0', len)) {
        *why = "the ID token is empty or larger than 16 KiB";
        return -EACCES;
    }
    const char *d1 = memchr(token, '.', len);
    const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token)) : NULL;
    if (!d1 || !d2 || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token))) {
        *why = "the ID token is not a signed JWT (three parts)";
        return -EACCES;
    }
    json_t *h = json_part(token, (size_t)(d1 - token));
    if (!h) {
        *why = "the ID token's header is not base64url JSON";
        return -EACCES;
    }
    const char *alg = str_member(h, "alg", 16);
    const char *kid = str_member(h, "kid", OIDC_KID_MAX + 1);
    enum kty kty = alg && !strcmp(alg, "RS256")   ? KTY_RSA
                   : alg && !strcmp(alg, "ES256") ? KTY_EC
                                                  : 0;
    bool has_kid = json_object_get(h, "kid") != NULL;
    bool crit = json_object_get(h, "crit") != NULL;
    char kidbuf[OIDC_KID_MAX + 1] = "";
    if (kid)
        snprintf(kidbuf, sizeof(kidbuf), "%s", kid);
    json_decref(h);
    if (!kty) {
        *why = "the ID token's alg is not RS256 or ES256 (alg none and HMAC are refused)";
        return -EACCES;
    }
    if (crit || (has_kid && !kid)) {
        *why = "the ID token's header has crit or a malformed kid";
        return -EACCES;
    }
    /* The key: by kid; without a kid, the one key of the type (several would be a guess). */
    const struct jwk *k = NULL;
    size_t candidates = 0;
    for (size_t i = 0; keys && i < keys->n; i++) {
        if (keys->k[i].kty != kty)
            continue;
        if (kidbuf[0] ? !strcmp(keys->k[i].kid, kidbuf) : true) {
            k = &keys->k[i];
            candidates++;
        }
    }
    if (!k) {
        *why = "the ID token's key is not in the provider's JWKS";
        return -ENOKEY;
    }
    if (candidates > 1) {
        *why = "the ID token names no kid and the JWKS has several keys of its type";
        return -EACCES;
    }
    size_t sl64 = len - (size_t)(d2 + 1 - token), sl = 0;
    uint8_t sig[1024];
    if (sl64 == 0 || b64url_decode(d2 + 1, sl64, sig, sizeof(sig), &sl) ||
        verify_sig(k->pkey, kty, sig, sl, token, (size_t)(d2 - token))) {
        *why = "the ID token's signature does not verify";
        return -EACCES;
    }
    json_t *p = json_part(d1 + 1, (size_t)(d2 - d1 - 1));
    if (!p) {
        *why = "the ID token's payload is not base64url JSON";
        return -EACCES;
    }
    int rc = check_claims(p, ex, c, why);
    json_decref(p);
    if (rc)
        memset(c, 0, sizeof(*c));
    return rc;
}

/* ---- the callback ------------------------------------------------------------------------- */

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* Percent-decodes (and '+' as space) s (len bytes) into out (cap): printable ASCII only. */
static int pct_decode(const char *s, size_t len, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        int c = (unsigned char)s[i];
        if (c == '%') {
            int hi = i + 2 < len ? hexval(s[i + 1]) : -1, lo = i + 2 < len ? hexval(s[i + 2]) : -1;
            if (hi < 0 || lo < 0)
                return -1;
            c = hi * 16 + lo;
            i += 2;
        } else if (c == '+') {
            c = ' ';
        }
        if (c < 0x20 || c >= 0x7f || o + 1 >= cap)
            return -1;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return 0;
}

int oidc_callback_parse(const char *query, size_t len, oidc_callback_t *cb, const char **why)
{
    memset(cb, 0, sizeof(*cb));
    bool seen_code = false, seen_state = false, seen_error = false;
    size_t i = 0;
    while (i < len) {
        const char *p = query + i;
        const char *amp = memchr(p, '&', len - i);
        size_t pl = amp ? (size_t)(amp - p) : len - i;
        i += pl + 1;
        const char *eq = memchr(p, '=', pl);
        if (!eq)
            continue;
        size_t nl = (size_t)(eq - p), vl = pl - nl - 1;
        char *dst = NULL;
        size_t cap = 0;
        bool *seen = NULL;
        if (nl == 4 && !memcmp(p, "code", 4)) {
            dst = cb->code, cap = sizeof(cb->code), seen = &seen_code;
        } else if (nl == 5 && !memcmp(p, "state", 5)) {
            dst = cb->state, cap = sizeof(cb->state), seen = &seen_state;
        } else if (nl == 5 && !memcmp(p, "error", 5)) {
            dst = cb->error, cap = sizeof(cb->error), seen = &seen_error;
        } else {
            continue; /* iss, session_state, error_description...: not needed */
        }
        if (*seen) {
            *why = "a callback parameter appears twice";
            return -EBADMSG;
        }
        *seen = true;
        if (pct_decode(eq + 1, vl, dst, cap)) {
            *why = "a callback parameter is too long or not printable";
            return -EBADMSG;
        }
    }
    if (!seen_state || strlen(cb->state) != OIDC_RANDOM_LEN) {
        *why = "the callback has no state (or not one of ours)";
        return -EBADMSG;
    }
    if (seen_error) {
        if (!cb->error[0]) {
            *why = "the callback's error is empty";
            return -EBADMSG;
        }
        cb->code[0] = '\0';
        return 0;
    }
    if (!cb->code[0]) {
        *why = "the callback has no code";
        return -EBADMSG;
    }
    return 0;
}

/* ---- the state cookie --------------------------------------------------------------------- */

#define STATE_VERSION 1
#define STATE_AD      "popmesh oidc state v1"
#define STATE_NFIELDS 6

void oidc_state_key(const uint8_t store_key[32], uint8_t out[32])
{
    static const char ctx[] = "popmesh oidc state key v1";
    crypto_generichash(out, 32, (const uint8_t *)ctx, sizeof(ctx) - 1, store_key, 32);
}

static void random_text(char out[OIDC_RANDOM_LEN + 1])
{
    uint8_t b[32];
    randombytes_buf(b, sizeof(b));
    sodium_bin2base64(out, OIDC_RANDOM_LEN + 1, b, sizeof(b),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_memzero(b, sizeof(b));
}

void oidc_state_fresh(oidc_state_t *s)
{
    random_text(s->state);
    random_text(s->nonce);
    random_text(s->verifier);
}

void oidc_pkce_challenge(const char *verifier, char out[44])
{
    uint8_t h[32];
    crypto_hash_sha256(h, (const uint8_t *)verifier, strlen(verifier));
    sodium_bin2base64(out, 44, h, sizeof(h), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

/* plain = version 1 | expires_ms 8 (big-endian) | STATE_NFIELDS x (length 2 | bytes) */
#define PLAIN_MAX                                                                             \
    (9 + 2 * STATE_NFIELDS + NODECFG_NAME_MAX + 3 * OIDC_RANDOM_LEN + OIDC_URL_MAX + OIDC_RD_MAX)
#define SEALED_MAX (crypto_aead_xchacha20poly1305_ietf_NPUBBYTES + PLAIN_MAX + \
                    crypto_aead_xchacha20poly1305_ietf_ABYTES)
_Static_assert(sodium_base64_ENCODED_LEN(SEALED_MAX, sodium_base64_VARIANT_URLSAFE_NO_PADDING) <=
                   OIDC_COOKIE_MAX + 1,
               "OIDC_COOKIE_MAX holds the largest state cookie");

static void state_fields(const oidc_state_t *s, const char *f[STATE_NFIELDS], size_t cap[STATE_NFIELDS])
{
    f[0] = s->idp, cap[0] = sizeof(s->idp);
    f[1] = s->state, cap[1] = sizeof(s->state);
    f[2] = s->nonce, cap[2] = sizeof(s->nonce);
    f[3] = s->verifier, cap[3] = sizeof(s->verifier);
    f[4] = s->redirect_uri, cap[4] = sizeof(s->redirect_uri);
    f[5] = s->rd, cap[5] = sizeof(s->rd);
}

int oidc_state_seal(const uint8_t key[32], const oidc_state_t *s, char *out, size_t cap)
{
    uint8_t plain[PLAIN_MAX], sealed[SEALED_MAX];
    size_t o = 0;
    plain[o++] = STATE_VERSION;
    for (int i = 7; i >= 0; i--)
        plain[o++] = (uint8_t)(s->expires_ms >> (8 * i));
    const char *f[STATE_NFIELDS];
    size_t fc[STATE_NFIELDS];
    state_fields(s, f, fc);
    for (int i = 0; i < STATE_NFIELDS; i++) {
        size_t l = strnlen(f[i], fc[i]);
        if (l == fc[i])
            return -E2BIG;
        plain[o++] = (uint8_t)(l >> 8);
        plain[o++] = (uint8_t)l;
        memcpy(plain + o, f[i], l);
        o += l;
    }
    uint8_t *nonce = sealed;
    randombytes_buf(nonce, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
    unsigned long long cl = 0;
    crypto_aead_xchacha20poly1305_ietf_encrypt(
        sealed + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, &cl, plain, o,
        (const uint8_t *)STATE_AD, sizeof(STATE_AD) - 1, NULL, nonce, key);
    sodium_memzero(plain, sizeof(plain));
    size_t total = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES + (size_t)cl;
    if (sodium_base64_ENCODED_LEN(total, sodium_base64_VARIANT_URLSAFE_NO_PADDING) > cap)
        return -E2BIG;
    sodium_bin2base64(out, cap, sealed, total, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    return 0;
}

int oidc_state_open(const uint8_t key[32], const char *cookie, size_t len, uint64_t now_ms,
                    oidc_state_t *s, const char **why)
{
    memset(s, 0, sizeof(*s));
    uint8_t sealed[SEALED_MAX], plain[PLAIN_MAX];
    size_t sl = 0;
    const size_t nb = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
    if (len > OIDC_COOKIE_MAX || b64url_decode(cookie, len, sealed, sizeof(sealed), &sl) ||
        sl < nb + crypto_aead_xchacha20poly1305_ietf_ABYTES + 9) {
        *why = "the sign-in cookie is malformed";
        return -EACCES;
    }
    unsigned long long pl = 0;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(plain, &pl, NULL, sealed + nb, sl - nb,
                                                   (const uint8_t *)STATE_AD,
                                                   sizeof(STATE_AD) - 1, sealed, key)) {
        *why = "the sign-in cookie does not open (tampered, or from another mesh)";
        return -EACCES;
    }
    size_t o = 0;
    int rc = -EACCES;
    *why = "the sign-in cookie's content is malformed";
    if (plain[o++] != STATE_VERSION)
        goto out;
    for (int i = 0; i < 8; i++)
        s->expires_ms = s->expires_ms << 8 | plain[o++];
    const char *f[STATE_NFIELDS];
    size_t fc[STATE_NFIELDS];
    state_fields(s, f, fc);
    for (int i = 0; i < STATE_NFIELDS; i++) {
        if (o + 2 > pl)
            goto out;
        size_t l = (size_t)plain[o] << 8 | plain[o + 1];
        o += 2;
        if (l >= fc[i] || o + l > pl || memchr(plain + o, '\0', l))
            goto out;
        memcpy((char *)f[i], plain + o, l);
        o += l;
    }
    if (o != pl)
        goto out;
    if (now_ms >= s->expires_ms) {
        *why = "the sign-in took too long (its cookie expired): start again";
        goto out;
    }
    rc = 0;
out:
    sodium_memzero(plain, sizeof(plain));
    if (rc)
        memset(s, 0, sizeof(*s));
    return rc;
}

/* ---- who may enter ------------------------------------------------------------------------ */

int oidc_admit(const oidc_policy_t *p, const oidc_claims_t *c, bool known, const char **why)
{
    if (p->ndomains) {
        const char *at = strrchr(c->email, '@');
        if (!at || !c->email_verified) {
            *why = "the provider gave no verified email, and only some domains may sign in";
            return -EACCES;
        }
        for (unsigned i = 0; i < p->ndomains; i++)
            if (!strcasecmp(at + 1, p->domains[i]))
                return 0;
        *why = "the user's email domain is not one of the provider's allowed domains";
        return -EACCES;
    }
    if (known || p->auto_create)
        return 0;
    *why = "the user is not known here and the provider does not create users (--auto-create)";
    return -EACCES;
}

int oidc_user_name(const char *idp, const char *sub, char *out, size_t cap)
{
    size_t il = strlen(idp), sl = strlen(sub);
    if (!sl || il + 1 + sl > NODECFG_NAME_MAX || il + 1 + sl + 1 > cap)
        return -ERANGE;
    for (size_t i = 0; i < sl; i++) {
        char c = sub[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr("._@|+=-", c)))
            return -ERANGE;
    }
    snprintf(out, cap, "%s:%s", idp, sub);
    return 0;
}
