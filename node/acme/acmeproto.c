/* acmeproto: see acmeproto.h. OpenSSL 3 for keys, signatures and the CSR; jansson for every
 * byte of JSON, in and out; libsodium for base64url. */
#include "node/acme/acmeproto.h"

#include "common/xmalloc.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *acme_b64url(const void *buf, size_t n)
{
    size_t cap = sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    char *out = xmalloc(cap);
    sodium_bin2base64(out, cap, buf, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    return out;
}

/* ---- keys ---------------------------------------------------------------------------- */

EVP_PKEY *acme_key_new(void)
{
    return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
}

char *acme_key_pem(EVP_PKEY *key, size_t *len)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *out = NULL;
    if (b && PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL) == 1) {
        char *p;
        long n = BIO_get_mem_data(b, &p);
        if (n > 0) {
            out = xmalloc((size_t)n + 1);
            memcpy(out, p, (size_t)n);
            out[n] = '\0';
            if (len)
                *len = (size_t)n;
        }
    }
    BIO_free(b);
    return out;
}

static bool is_p256(EVP_PKEY *k)
{
    char group[32];
    size_t gl = 0;
    return EVP_PKEY_is_a(k, "EC") &&
           EVP_PKEY_get_utf8_string_param(k, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                          &gl) == 1 &&
           strcmp(group, "prime256v1") == 0;
}

EVP_PKEY *acme_key_from_pem(const char *pem, size_t len)
{
    if (len > INT32_MAX)
        return NULL;
    BIO *b = BIO_new_mem_buf(pem, (int)len);
    EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    if (k && !is_p256(k)) {
        EVP_PKEY_free(k);
        k = NULL;
    }
    return k;
}

static char *coord(EVP_PKEY *key, const char *param)
{
    BIGNUM *bn = NULL;
    uint8_t b[32];
    if (EVP_PKEY_get_bn_param(key, param, &bn) != 1)
        return NULL;
    int ok = BN_bn2binpad(bn, b, sizeof(b)) == (int)sizeof(b);
    BN_free(bn);
    return ok ? acme_b64url(b, sizeof(b)) : NULL;
}

static json_t *jwk_obj(EVP_PKEY *key)
{
    char *x = coord(key, OSSL_PKEY_PARAM_EC_PUB_X), *y = coord(key, OSSL_PKEY_PARAM_EC_PUB_Y);
    json_t *j = NULL;
    if (x && y)
        j = json_pack("{s:s, s:s, s:s, s:s}", "crv", "P-256", "kty", "EC", "x", x, "y", y);
    free(x);
    free(y);
    return j;
}

static char *dump(json_t *j)
{
    if (!j)
        return NULL;
    char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(j);
    return s;
}

char *acme_jwk_json(EVP_PKEY *key)
{
    return dump(jwk_obj(key));
}

int acme_thumbprint(EVP_PKEY *key, char *out)
{
    char *jwk = acme_jwk_json(key);
    if (!jwk)
        return -EINVAL;
    uint8_t h[32];
    crypto_hash_sha256(h, (const uint8_t *)jwk, strlen(jwk));
    free(jwk);
    sodium_bin2base64(out, ACME_THUMB_LEN + 1, h, sizeof(h),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    return 0;
}

int acme_key_authorization(const char *token, EVP_PKEY *key, char *out, size_t len)
{
    char th[ACME_THUMB_LEN + 1];
    if (!acme_token_ok(token, strlen(token)) || acme_thumbprint(key, th))
        return -EINVAL;
    int n = snprintf(out, len, "%s.%s", token, th);
    return n < 0 || (size_t)n >= len ? -EINVAL : 0;
}

void acme_dns01_value(const char *key_authorization, char *out)
{
    uint8_t h[32];
    crypto_hash_sha256(h, (const uint8_t *)key_authorization, strlen(key_authorization));
    sodium_bin2base64(out, ACME_THUMB_LEN + 1, h, sizeof(h),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

/* ---- JWS ----------------------------------------------------------------------------- */

/* ES256 over msg: DER from OpenSSL, turned into r||s (RFC 7518 section 3.4). */
static char *sign_es256(EVP_PKEY *key, const char *msg)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    uint8_t der[80], raw[64];
    size_t dl = sizeof(der);
    char *out = NULL;
    if (md && EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) == 1 &&
        EVP_DigestSign(md, der, &dl, (const uint8_t *)msg, strlen(msg)) == 1) {
        const uint8_t *p = der;
        ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)dl);
        if (sig && BN_bn2binpad(ECDSA_SIG_get0_r(sig), raw, 32) == 32 &&
            BN_bn2binpad(ECDSA_SIG_get0_s(sig), raw + 32, 32) == 32)
            out = acme_b64url(raw, sizeof(raw));
        ECDSA_SIG_free(sig);
    }
    EVP_MD_CTX_free(md);
    return out;
}

static char *sign_hs256(const uint8_t *mac, size_t maclen, const char *msg)
{
    uint8_t h[EVP_MAX_MD_SIZE];
    unsigned hl = 0;
    if (!HMAC(EVP_sha256(), mac, (int)maclen, (const uint8_t *)msg, strlen(msg), h, &hl))
        return NULL;
    return acme_b64url(h, hl);
}

/* The flattened JSON of protected (a JSON object, consumed) and payload, signed by key (ES256)
 * or mac (HS256). */
static char *flatten(json_t *prot, const char *payload, EVP_PKEY *key, const uint8_t *mac,
                     size_t maclen)
{
    char *ph = dump(prot);
    if (!ph)
        return NULL;
    char *p64 = acme_b64url(ph, strlen(ph));
    char *pl64 = acme_b64url(payload, strlen(payload));
    free(ph);
    size_t ml = strlen(p64) + 1 + strlen(pl64) + 1;
    char *msg = xmalloc(ml);
    snprintf(msg, ml, "%s.%s", p64, pl64);
    char *sig = key ? sign_es256(key, msg) : sign_hs256(mac, maclen, msg);
    char *out = NULL;
    if (sig)
        out =
            dump(json_pack("{s:s, s:s, s:s}", "protected", p64, "payload", pl64, "signature", sig));
    free(p64), free(pl64), free(msg), free(sig);
    return out;
}

char *acme_jws(EVP_PKEY *key, const char *kid, const char *nonce, const char *url,
               const char *payload)
{
    json_t *prot = json_pack("{s:s, s:s, s:s}", "alg", "ES256", "nonce", nonce, "url", url);
    if (!prot)
        return NULL;
    if (kid) {
        json_object_set_new(prot, "kid", json_string(kid));
    } else {
        json_t *jwk = jwk_obj(key);
        if (!jwk) {
            json_decref(prot);
            return NULL;
        }
        json_object_set_new(prot, "jwk", jwk);
    }
    return flatten(prot, payload ? payload : "", key, NULL, 0);
}

char *acme_eab_jws(EVP_PKEY *account, const char *eab_kid, const uint8_t *mac, size_t maclen,
                   const char *url)
{
    char *jwk = acme_jwk_json(account);
    if (!jwk)
        return NULL;
    json_t *prot = json_pack("{s:s, s:s, s:s}", "alg", "HS256", "kid", eab_kid, "url", url);
    char *out = prot ? flatten(prot, jwk, NULL, mac, maclen) : NULL;
    free(jwk);
    return out;
}

char *acme_new_account_payload(const char *email, const char *eab)
{
    char contact[ACME_EMAIL_MAX + 8];
    snprintf(contact, sizeof(contact), "mailto:%s", email);
    json_t *j = json_pack("{s:b, s:[s]}", "termsOfServiceAgreed", 1, "contact", contact);
    if (j && eab) {
        json_error_t e;
        json_t *b = json_loads(eab, 0, &e);
        if (!json_is_object(b)) {
            json_decref(b);
            json_decref(j);
            return NULL;
        }
        json_object_set_new(j, "externalAccountBinding", b);
    }
    return dump(j);
}

char *acme_new_order_payload(char (*names)[ACME_NAME_MAX + 1], size_t n)
{
    json_t *ids = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(ids, json_pack("{s:s, s:s}", "type", "dns", "value", names[i]));
    return dump(json_pack("{s:o}", "identifiers", ids));
}

char *acme_finalize_payload(EVP_PKEY *key, char (*names)[ACME_NAME_MAX + 1], size_t n)
{
    if (n == 0)
        return NULL;
    X509_REQ *req = X509_REQ_new();
    X509_NAME *subj = X509_NAME_new();
    GENERAL_NAMES *gens = GENERAL_NAMES_new();
    STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
    char *out = NULL;
    uint8_t *der = NULL;
    bool ok = req && subj && gens && exts && X509_REQ_set_version(req, 0) == 1;
    /* The CN is at most 64 bytes (RFC 5280 ub-common-name); the SAN is what counts anyway
     * (CA/Browser Forum baseline requirements), so a longer first name goes without a CN. */
    if (ok && strlen(names[0]) <= 64)
        ok = X509_NAME_add_entry_by_txt(subj, "CN", MBSTRING_ASC, (const uint8_t *)names[0], -1, -1,
                                        0) == 1;
    ok = ok && X509_REQ_set_subject_name(req, subj) == 1;
    for (size_t i = 0; ok && i < n; i++) {
        GENERAL_NAME *g = GENERAL_NAME_new();
        ASN1_IA5STRING *s = ASN1_IA5STRING_new();
        ok = g && s && ASN1_STRING_set(s, names[i], (int)strlen(names[i])) == 1;
        if (ok) {
            GENERAL_NAME_set0_value(g, GEN_DNS, s);
            ok = sk_GENERAL_NAME_push(gens, g) > 0;
            if (!ok)
                GENERAL_NAME_free(g);
        } else {
            GENERAL_NAME_free(g);
            ASN1_IA5STRING_free(s);
        }
    }
    X509_EXTENSION *san = ok ? X509V3_EXT_i2d(NID_subject_alt_name, 0, gens) : NULL;
    ok = ok && san && sk_X509_EXTENSION_push(exts, san) > 0;
    if (!ok)
        X509_EXTENSION_free(san);
    ok = ok && X509_REQ_add_extensions(req, exts) == 1 && X509_REQ_set_pubkey(req, key) == 1 &&
         X509_REQ_sign(req, key, EVP_sha256()) > 0;
    int dl = ok ? i2d_X509_REQ(req, &der) : -1;
    if (dl > 0) {
        char *b = acme_b64url(der, (size_t)dl);
        out = dump(json_pack("{s:s}", "csr", b));
        free(b);
    }
    OPENSSL_free(der);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    GENERAL_NAMES_free(gens);
    X509_NAME_free(subj);
    X509_REQ_free(req);
    return out;
}

/* ---- reading the server's JSON --------------------------------------------------------- */

static json_t *load(const char *json, size_t len, char *err, size_t errlen)
{
    if (len > ACME_JSON_MAX) {
        snprintf(err, errlen, "the response is larger than %d bytes", ACME_JSON_MAX);
        return NULL;
    }
    json_error_t e;
    json_t *j = json_loadb(json, len, JSON_REJECT_DUPLICATES, &e);
    if (!j) {
        snprintf(err, errlen, "the response is not JSON: %s", e.text);
        return NULL;
    }
    if (!json_is_object(j)) {
        snprintf(err, errlen, "the response is not a JSON object");
        json_decref(j);
        return NULL;
    }
    return j;
}

/* obj[key] as a string of at most cap - 1 bytes, without NUL or control bytes, into out.
 * 0; -ENOENT when absent (out = ""); -EBADMSG when not such a string. */
static int get_str(json_t *obj, const char *key, char *out, size_t cap)
{
    out[0] = '\0';
    json_t *v = json_object_get(obj, key);
    if (!v)
        return -ENOENT;
    if (!json_is_string(v))
        return -EBADMSG;
    size_t n = json_string_length(v);
    const char *s = json_string_value(v);
    if (n >= cap)
        return -EBADMSG;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return -EBADMSG;
    memcpy(out, s, n);
    out[n] = '\0';
    return 0;
}

/* A URL we will fetch: https://, printable ASCII without spaces. */
static int get_url(json_t *obj, const char *key, char *out, bool required)
{
    int rc = get_str(obj, key, out, ACME_URL_MAX + 1);
    if (rc == -ENOENT)
        return required ? -EBADMSG : 0;
    if (rc || strncmp(out, "https://", 8) != 0 || strlen(out) == 8)
        return -EBADMSG;
    for (const char *p = out; *p; p++)
        if (*p <= 0x20 || *p >= 0x7f)
            return -EBADMSG;
    return 0;
}

/* A detail string kept for logs and records: control bytes and non-ASCII become '?'. */
static void get_detail(json_t *obj, char *out, size_t cap)
{
    out[0] = '\0';
    json_t *v = json_object_get(obj, "detail");
    const char *s = json_is_string(v) ? json_string_value(v) : NULL;
    json_t *t = json_object_get(obj, "type");
    const char *ty = json_is_string(t) ? json_string_value(t) : NULL;
    if (!s && !ty)
        return;
    snprintf(out, cap, "%s%s%s%s", s ? s : "", s && ty ? " (" : "", ty ? ty : "",
             s && ty ? ")" : "");
    for (char *p = out; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
            *p = '?';
}

static bool status_ok(const char *s)
{
    static const char *const known[] = {"pending", "ready",       "processing", "valid",
                                        "invalid", "deactivated", "expired",    "revoked"};
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (!strcmp(s, known[i]))
            return true;
    return false;
}

int acme_directory_parse(const char *json, size_t len, acme_directory_t *d, char *err,
                         size_t errlen)
{
    memset(d, 0, sizeof(*d));
    json_t *j = load(json, len, err, errlen);
    if (!j)
        return -EBADMSG;
    int rc = 0;
    if (get_url(j, "newNonce", d->new_nonce, true) ||
        get_url(j, "newAccount", d->new_account, true) ||
        get_url(j, "newOrder", d->new_order, true)) {
        snprintf(err, errlen,
                 "the directory lacks an https URL for newNonce, newAccount or "
                 "newOrder");
        rc = -EBADMSG;
    } else if (get_url(j, "renewalInfo", d->renewal_info, false)) {
        snprintf(err, errlen, "the directory's renewalInfo is not an https URL");
        rc = -EBADMSG;
    }
    json_t *meta = json_object_get(j, "meta");
    if (rc == 0 && json_is_object(meta))
        d->eab_required = json_is_true(json_object_get(meta, "externalAccountRequired"));
    json_decref(j);
    return rc;
}

void acme_order_free(acme_order_t *o)
{
    if (!o)
        return;
    free(o->authz);
    o->authz = NULL;
    o->nauthz = 0;
}

int acme_order_parse(const char *json, size_t len, acme_order_t *o, char *err, size_t errlen)
{
    memset(o, 0, sizeof(*o));
    o->authz = xcalloc(1, sizeof(*o->authz));
    json_t *j = load(json, len, err, errlen);
    if (!j)
        return -EBADMSG;
    int rc = -EBADMSG;
    json_t *az = json_object_get(j, "authorizations");
    json_t *pe = json_object_get(j, "error");
    if (get_str(j, "status", o->status, sizeof(o->status)) || !status_ok(o->status)) {
        snprintf(err, errlen, "the order has no known status");
    } else if (get_url(j, "finalize", o->finalize, true)) {
        snprintf(err, errlen, "the order has no https finalize URL");
    } else if (get_url(j, "certificate", o->certificate, false)) {
        snprintf(err, errlen, "the order's certificate is not an https URL");
    } else if (!json_is_array(az) || json_array_size(az) == 0 ||
               json_array_size(az) > ACME_AUTHZ_MAX) {
        snprintf(err, errlen, "the order does not list 1..%d authorizations", ACME_AUTHZ_MAX);
    } else {
        size_t n = json_array_size(az);
        o->authz = xrealloc(o->authz, n * sizeof(*o->authz));
        rc = 0;
        for (size_t i = 0; i < n && rc == 0; i++) {
            json_t *wrap = json_pack("{s:O}", "u", json_array_get(az, i));
            if (!wrap || get_url(wrap, "u", o->authz[i], true)) {
                snprintf(err, errlen, "authorization %zu is not an https URL", i);
                rc = -EBADMSG;
            }
            json_decref(wrap);
        }
        if (rc == 0)
            o->nauthz = n;
        if (json_is_object(pe))
            get_detail(pe, o->error, sizeof(o->error));
    }
    json_decref(j);
    return rc;
}

int acme_authz_parse(const char *json, size_t len, acme_authz_t *a, char *err, size_t errlen)
{
    memset(a, 0, sizeof(*a));
    json_t *j = load(json, len, err, errlen);
    if (!j)
        return -EBADMSG;
    int rc = -EBADMSG;
    json_t *id = json_object_get(j, "identifier");
    json_t *chs = json_object_get(j, "challenges");
    char type[8];
    if (!json_is_object(id) || get_str(id, "type", type, sizeof(type)) || strcmp(type, "dns") ||
        get_str(id, "value", a->identifier, sizeof(a->identifier)) ||
        !acme_name_ok(a->identifier, strlen(a->identifier))) {
        snprintf(err, errlen, "the authorization's identifier is not a DNS name");
    } else if (get_str(j, "status", a->status, sizeof(a->status)) || !status_ok(a->status)) {
        snprintf(err, errlen, "the authorization has no known status");
    } else if (!json_is_array(chs)) {
        snprintf(err, errlen, "the authorization has no challenges array");
    } else {
        json_t *w = json_object_get(j, "wildcard");
        a->wildcard = json_is_true(w);
        rc = 0;
        size_t i;
        json_t *c;
        json_array_foreach(chs, i, c)
        {
            if (a->nchallenges == ACME_CHALLENGES_MAX)
                break; /* more than we would ever pick from: the rest are ignored */
            acme_challenge_t *ch = &a->challenges[a->nchallenges];
            memset(ch, 0, sizeof(*ch));
            if (!json_is_object(c) || get_str(c, "type", ch->type, sizeof(ch->type)))
                continue; /* an unknown or odd challenge is not ours to judge */
            if (strcmp(ch->type, "http-01") && strcmp(ch->type, "dns-01"))
                continue;
            if (get_url(c, "url", ch->url, true) ||
                get_str(c, "token", ch->token, sizeof(ch->token)) ||
                !acme_token_ok(ch->token, strlen(ch->token)) ||
                get_str(c, "status", ch->status, sizeof(ch->status)) || !status_ok(ch->status)) {
                snprintf(err, errlen,
                         "a %s challenge lacks an https url, a base64url token or "
                         "a known status",
                         ch->type);
                rc = -EBADMSG;
                break;
            }
            json_t *e = json_object_get(c, "error");
            if (json_is_object(e))
                get_detail(e, ch->error, sizeof(ch->error));
            a->nchallenges++;
        }
    }
    json_decref(j);
    return rc;
}

void acme_problem_str(const char *json, size_t len, char *out, size_t outlen)
{
    char err[64];
    json_t *j = load(json, len, err, sizeof(err));
    out[0] = '\0';
    if (j)
        get_detail(j, out, outlen);
    json_decref(j);
    if (out[0])
        return;
    size_t n = len < outlen - 1 ? len : outlen - 1;
    for (size_t i = 0; i < n; i++)
        out[i] = (json[i] >= 0x20 && json[i] < 0x7f) ? json[i] : '?';
    out[n] = '\0';
}

/* ---- renewal information (ARI) ---------------------------------------------------------- */

int acme_ari_cert_id(const char *chain_pem, size_t len, char *out, size_t outlen)
{
    if (len > INT32_MAX)
        return -EINVAL;
    BIO *b = BIO_new_mem_buf(chain_pem, (int)len);
    X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    int rc = -EINVAL;
    const ASN1_OCTET_STRING *kid = x ? X509_get0_authority_key_id(x) : NULL;
    const ASN1_INTEGER *serial = x ? X509_get0_serialNumber(x) : NULL;
    if (kid && serial && ASN1_STRING_length(kid) > 0 && ASN1_STRING_length(serial) > 0) {
        /* The content octets of the INTEGER: OpenSSL keeps the magnitude without the leading
         * zero DER adds when the top bit is set, so it is put back (RFC 9773 section 4.1). */
        const uint8_t *sv = ASN1_STRING_get0_data(serial);
        size_t sl = (size_t)ASN1_STRING_length(serial);
        uint8_t der[64];
        size_t dl = 0;
        if (sl + 1 <= sizeof(der)) {
            if (sv[0] & 0x80)
                der[dl++] = 0;
            memcpy(der + dl, sv, sl);
            dl += sl;
            char *k = acme_b64url(ASN1_STRING_get0_data(kid), (size_t)ASN1_STRING_length(kid));
            char *sn = acme_b64url(der, dl);
            int n = snprintf(out, outlen, "%s.%s", k, sn);
            rc = n > 0 && (size_t)n < outlen ? 0 : -EINVAL;
            free(k);
            free(sn);
        }
    }
    X509_free(x);
    return rc;
}

static int digits(const char *s, int n, int *v)
{
    *v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        *v = *v * 10 + (s[i] - '0');
    }
    return 0;
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian; Howard Hinnant's days_from_civil). */
static int64_t days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

int acme_time_parse(const char *s, uint64_t *ms)
{
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y, mo, d, h, mi, se;
    size_t n = strlen(s);
    if (n < 20 || digits(s, 4, &y) || s[4] != '-' || digits(s + 5, 2, &mo) || s[7] != '-' ||
        digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't') || digits(s + 11, 2, &h) ||
        s[13] != ':' || digits(s + 14, 2, &mi) || s[16] != ':' || digits(s + 17, 2, &se))
        return -EINVAL;
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 ||
        se > 60)
        return -EINVAL;
    const char *p = s + 19;
    int frac_ms = 0, scale = 100;
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9')
            return -EINVAL;
        for (; *p >= '0' && *p <= '9'; p++) {
            frac_ms += (*p - '0') * scale;
            scale /= 10;
        }
    }
    int64_t off_s = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om;
        if (digits(p + 1, 2, &oh) || p[3] != ':' || digits(p + 4, 2, &om) || oh > 23 || om > 59)
            return -EINVAL;
        off_s = (int64_t)(oh * 3600 + om * 60) * (*p == '+' ? 1 : -1);
        p += 6;
    } else {
        return -EINVAL;
    }
    if (*p)
        return -EINVAL;
    int64_t t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + (se > 59 ? 59 : se) -
                off_s;
    if (t < 0)
        return -EINVAL;
    *ms = (uint64_t)t * 1000 + (uint64_t)frac_ms;
    return 0;
}

int acme_ari_parse(const char *json, size_t len, uint64_t *start_ms, uint64_t *end_ms, char *err,
                   size_t errlen)
{
    json_t *j = load(json, len, err, errlen);
    if (!j)
        return -EBADMSG;
    json_t *w = json_object_get(j, "suggestedWindow");
    char st[64], en[64];
    int rc = -EBADMSG;
    if (!json_is_object(w) || get_str(w, "start", st, sizeof(st)) ||
        get_str(w, "end", en, sizeof(en)) || acme_time_parse(st, start_ms) ||
        acme_time_parse(en, end_ms))
        snprintf(err, errlen, "renewalInfo has no suggestedWindow of two RFC 3339 times");
    else if (*start_ms > *end_ms)
        snprintf(err, errlen, "renewalInfo's window ends before it starts");
    else
        rc = 0;
    json_decref(j);
    return rc;
}

const acme_challenge_t *acme_authz_challenge(const acme_authz_t *a, const char *type)
{
    for (size_t i = 0; i < a->nchallenges; i++)
        if (!strcmp(a->challenges[i].type, type))
            return &a->challenges[i];
    return NULL;
}
