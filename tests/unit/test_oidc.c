/* Unit tests of node/oidc's loop-free parts: ID tokens signed here with OpenSSL (RS256 and
 * ES256) and checked as a PoP checks them, with every refusal the issue lists (alg none, HMAC,
 * wrong aud/azp/iss, expired, iat in the future, bad signature, missing or wrong nonce,
 * unknown kid, oversized); the discovery document, JWKS and token response readers on good
 * and hostile input; the callback query; the sealed state cookie (round trip, tampering,
 * expiry, another mesh's key); who may enter; provider user names; the idp/ record and its
 * sealed client secret. */
#include "node/oidc/idprec.h"
#include "node/oidc/oidcproto.h"
#include "node/records/user.h"

#include <errno.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <setjmp.h>
#include <sodium.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define ISS    "https://idp.example.com"
#define CLIENT "popmesh-client"
#define NONCE  "n-0S6_WzA2Mj0S6_WzA2Mj0S6_WzA2Mj0S6_WzA2Mj"
#define NOW_MS 1800000000000ull

static EVP_PKEY *rsa, *ec;
static char jwks_json[8192];

static void b64(const uint8_t *in, size_t len, char *out, size_t cap)
{
    sodium_bin2base64(out, cap, in, len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

static void bn_b64(const BIGNUM *bn, size_t width, char *out, size_t cap)
{
    uint8_t buf[1024];
    size_t n = width ? width : (size_t)BN_num_bytes(bn);
    BN_bn2binpad(bn, buf, (int)n);
    b64(buf, n, out, cap);
}

static int setup(void **state)
{
    (void)state;
    assert_true(sodium_init() >= 0);
    rsa = EVP_RSA_gen(2048);
    ec = EVP_EC_gen("P-256");
    assert_non_null(rsa);
    assert_non_null(ec);
    BIGNUM *n = NULL, *e = NULL, *x = NULL, *y = NULL;
    assert_true(EVP_PKEY_get_bn_param(rsa, OSSL_PKEY_PARAM_RSA_N, &n));
    assert_true(EVP_PKEY_get_bn_param(rsa, OSSL_PKEY_PARAM_RSA_E, &e));
    assert_true(EVP_PKEY_get_bn_param(ec, OSSL_PKEY_PARAM_EC_PUB_X, &x));
    assert_true(EVP_PKEY_get_bn_param(ec, OSSL_PKEY_PARAM_EC_PUB_Y, &y));
    char nb[700], eb[16], xb[64], yb[64];
    bn_b64(n, 0, nb, sizeof(nb));
    bn_b64(e, 0, eb, sizeof(eb));
    bn_b64(x, 32, xb, sizeof(xb));
    bn_b64(y, 32, yb, sizeof(yb));
    snprintf(jwks_json, sizeof(jwks_json),
             "{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"r1\",\"use\":\"sig\",\"alg\":\"RS256\","
             "\"n\":\"%s\",\"e\":\"%s\"},{\"kty\":\"EC\",\"kid\":\"e1\",\"crv\":\"P-256\","
             "\"x\":\"%s\",\"y\":\"%s\"},{\"kty\":\"oct\",\"kid\":\"h1\",\"k\":\"c2VjcmV0\"}]}",
             nb, eb, xb, yb);
    BN_free(n);
    BN_free(e);
    BN_free(x);
    BN_free(y);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(ec);
    return 0;
}

/* header.payload.signature with key (NULL: alg none, empty signature). */
static char *jwt(const char *header, const char *payload, EVP_PKEY *key)
{
    static char out[20000];
    char h[2048], p[8192];
    b64((const uint8_t *)header, strlen(header), h, sizeof(h));
    b64((const uint8_t *)payload, strlen(payload), p, sizeof(p));
    int n = snprintf(out, sizeof(out), "%s.%s.", h, p);
    if (!key)
        return out;
    uint8_t sig[600];
    size_t sl = sizeof(sig);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, key), 1);
    assert_int_equal(EVP_DigestSign(ctx, sig, &sl, (const uint8_t *)out, (size_t)n - 1), 1);
    EVP_MD_CTX_free(ctx);
    if (EVP_PKEY_base_id(key) == EVP_PKEY_EC) { /* DER -> r || s */
        const uint8_t *q = sig;
        ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &q, (long)sl);
        uint8_t rs[64];
        BN_bn2binpad(ECDSA_SIG_get0_r(es), rs, 32);
        BN_bn2binpad(ECDSA_SIG_get0_s(es), rs + 32, 32);
        ECDSA_SIG_free(es);
        memcpy(sig, rs, 64);
        sl = 64;
    }
    b64(sig, sl, out + n, sizeof(out) - (size_t)n);
    return out;
}

static char *claims(const char *extra)
{
    static char p[4096];
    snprintf(p, sizeof(p),
             "{\"iss\":\"" ISS "\",\"aud\":\"" CLIENT "\",\"sub\":\"alice\",\"exp\":%llu,"
             "\"iat\":%llu,\"nonce\":\"" NONCE "\",\"email\":\"alice@example.com\","
             "\"email_verified\":true,\"name\":\"Alice A.\",\"groups\":[\"staff\",\"admins\","
             "\"Not A Name\"]%s}",
             (unsigned long long)(NOW_MS / 1000 + 300), (unsigned long long)(NOW_MS / 1000 - 5),
             extra ? extra : "");
    return p;
}

static int verify(const char *tok, oidc_claims_t *c, const char **why)
{
    oidc_jwks_t *k = oidc_jwks_parse(jwks_json, strlen(jwks_json), why);
    assert_non_null(k);
    oidc_expect_t ex = {
        .issuer = ISS, .client_id = CLIENT, .nonce = NONCE, .groups_claim = "groups",
        .now_ms = NOW_MS};
    int rc = oidc_idtoken_verify(tok, strlen(tok), k, &ex, c, why);
    oidc_jwks_free(&k);
    assert_null(k);
    return rc;
}

static void test_idtoken_good(void **state)
{
    (void)state;
    oidc_claims_t c;
    const char *why = "";
    assert_int_equal(verify(jwt("{\"alg\":\"RS256\",\"kid\":\"r1\"}", claims(NULL), rsa), &c, &why),
                     0);
    assert_string_equal(c.sub, "alice");
    assert_string_equal(c.email, "alice@example.com");
    assert_true(c.email_verified);
    assert_string_equal(c.name, "Alice A.");
    assert_int_equal(c.ngroups, 2);
    assert_string_equal(c.groups[0], "staff");
    assert_string_equal(c.groups[1], "admins");
    assert_int_equal(c.groups_dropped, 1);
    assert_int_equal(verify(jwt("{\"alg\":\"ES256\",\"kid\":\"e1\"}", claims(NULL), ec), &c, &why),
                     0);
    /* no kid: the one key of the type */
    assert_int_equal(verify(jwt("{\"alg\":\"ES256\"}", claims(NULL), ec), &c, &why), 0);
    /* several audiences with azp = us */
    char extra[200];
    assert_int_equal(verify(jwt("{\"alg\":\"RS256\",\"kid\":\"r1\"}",
                                "{\"iss\":\"" ISS "\",\"aud\":[\"other\",\"" CLIENT
                                "\"],\"azp\":\"" CLIENT "\",\"sub\":\"bob\",\"exp\":1800000100,"
                                "\"iat\":1800000000,\"nonce\":\"" NONCE "\"}",
                                rsa),
                            &c, &why),
                     0);
    (void)extra;
}

static void expect_refused(const char *tok, int want, const char *why_has)
{
    oidc_claims_t c;
    const char *why = "";
    int rc = verify(tok, &c, &why);
    if (rc != want || !strstr(why, why_has))
        fail_msg("got %d '%s', want %d '%s'", rc, why, want, why_has);
    if (rc)
        assert_string_equal(c.sub, "");
}

static void test_idtoken_refused(void **state)
{
    (void)state;
    const char *rh = "{\"alg\":\"RS256\",\"kid\":\"r1\"}";
    expect_refused(jwt("{\"alg\":\"none\"}", claims(NULL), NULL), -EACCES, "alg");
    expect_refused(jwt("{\"alg\":\"HS256\",\"kid\":\"h1\"}", claims(NULL), NULL), -EACCES, "alg");
    expect_refused(jwt("{\"alg\":\"RS256\",\"kid\":\"nope\"}", claims(NULL), rsa), -ENOKEY, "JWKS");
    /* signed by the EC key but claiming the RSA one, and an RSA token's signature flipped */
    expect_refused(jwt("{\"alg\":\"ES256\",\"kid\":\"e1\"}", claims(NULL), rsa), -EACCES,
                   "signature");
    char *t = jwt(rh, claims(NULL), rsa);
    size_t l = strlen(t);
    t[l - 5] = t[l - 5] == 'A' ? 'B' : 'A';
    expect_refused(t, -EACCES, "signature");
    /* the payload swapped after signing */
    char good[20000];
    snprintf(good, sizeof(good), "%s", jwt(rh, claims(NULL), rsa));
    char *other = jwt(rh, "{\"iss\":\"" ISS "\",\"aud\":\"" CLIENT "\",\"sub\":\"mallory\"}", rsa);
    char *d1 = strchr(good, '.'), *o1 = strchr(other, '.'), *o2 = strchr(o1 + 1, '.');
    char mixed[20000];
    snprintf(mixed, sizeof(mixed), "%.*s%.*s%s", (int)(d1 - good), good, (int)(o2 - o1), o1,
             strchr(d1 + 1, '.'));
    expect_refused(mixed, -EACCES, "signature");
    /* claims */
    char p[4096];
    snprintf(p, sizeof(p), "%s", claims(NULL));
    char *a = strstr(p, CLIENT);
    memcpy(a, "popmesh-clienX", 14);
    expect_refused(jwt(rh, p, rsa), -EACCES, "aud");
    snprintf(p, sizeof(p),
             "{\"iss\":\"" ISS "\",\"aud\":[\"" CLIENT "\",\"other\"],\"sub\":\"a\",\"exp\":%llu,"
             "\"iat\":%llu,\"nonce\":\"" NONCE "\"}",
             (unsigned long long)(NOW_MS / 1000 + 300), (unsigned long long)(NOW_MS / 1000));
    expect_refused(jwt(rh, p, rsa), -EACCES, "azp");
    expect_refused(jwt(rh, claims(",\"azp\":\"other\""), rsa), -EACCES, "azp");
    snprintf(p, sizeof(p), "%s", claims(NULL));
    memcpy(strstr(p, "idp.example"), "idq", 3);
    expect_refused(jwt(rh, p, rsa), -EACCES, "iss");
    snprintf(p, sizeof(p),
             "{\"iss\":\"" ISS "\",\"aud\":\"" CLIENT "\",\"sub\":\"a\",\"exp\":%llu,"
             "\"iat\":%llu,\"nonce\":\"" NONCE "\"}",
             (unsigned long long)(NOW_MS / 1000 - 600), (unsigned long long)(NOW_MS / 1000 - 900));
    expect_refused(jwt(rh, p, rsa), -EACCES, "expired");
    snprintf(p, sizeof(p),
             "{\"iss\":\"" ISS "\",\"aud\":\"" CLIENT "\",\"sub\":\"a\",\"exp\":%llu,"
             "\"iat\":%llu,\"nonce\":\"" NONCE "\"}",
             (unsigned long long)(NOW_MS / 1000 + 3600), (unsigned long long)(NOW_MS / 1000 + 600));
    expect_refused(jwt(rh, p, rsa), -EACCES, "iat");
    snprintf(p, sizeof(p),
             "{\"iss\":\"" ISS "\",\"aud\":\"" CLIENT "\",\"sub\":\"a\",\"exp\":%llu,"
             "\"iat\":%llu}",
             (unsigned long long)(NOW_MS / 1000 + 300), (unsigned long long)(NOW_MS / 1000));
    expect_refused(jwt(rh, p, rsa), -EACCES, "nonce");
    snprintf(p, sizeof(p), "%s", claims(NULL));
    memcpy(strstr(p, NONCE), "X", 1);
    expect_refused(jwt(rh, p, rsa), -EACCES, "nonce");
    /* a duplicated claim: the reader refuses rather than choose */
    expect_refused(jwt(rh, claims(",\"nonce\":\"x\""), rsa), -EACCES, "payload");
    /* shapes */
    expect_refused("", -EACCES, "empty");
    expect_refused("a.b", -EACCES, "three");
    expect_refused("a.b.c.d", -EACCES, "three");
    expect_refused("!!!.b.c", -EACCES, "header");
    char *big = malloc(OIDC_TOKEN_MAX + 10);
    memset(big, 'A', OIDC_TOKEN_MAX + 9);
    big[OIDC_TOKEN_MAX + 9] = '\0';
    expect_refused(big, -EACCES, "16 KiB");
    free(big);
    expect_refused(jwt("{\"alg\":\"RS256\",\"crit\":[\"x\"]}", claims(NULL), rsa), -EACCES, "crit");
}

static void test_discovery(void **state)
{
    (void)state;
    oidc_discovery_t d;
    const char *why = "";
    const char *good = "{\"issuer\":\"" ISS "\",\"authorization_endpoint\":\"" ISS "/auth\","
                       "\"token_endpoint\":\"" ISS "/token\",\"jwks_uri\":\"" ISS "/jwks\"}";
    assert_int_equal(oidc_discovery_parse(good, strlen(good), ISS, false, &d, &why), 0);
    assert_string_equal(d.token_endpoint, ISS "/token");
    assert_int_equal(oidc_discovery_parse(good, strlen(good), ISS "/", false, &d, &why), -EBADMSG);
    const char *http = "{\"issuer\":\"" ISS "\",\"authorization_endpoint\":\"http://x/auth\","
                       "\"token_endpoint\":\"" ISS "/token\",\"jwks_uri\":\"" ISS "/jwks\"}";
    assert_int_equal(oidc_discovery_parse(http, strlen(http), ISS, false, &d, &why), -EBADMSG);
    assert_int_equal(oidc_discovery_parse(http, strlen(http), ISS, true, &d, &why), 0);
    const char *bad[] = {"", "[]", "{", "{\"issuer\":\"" ISS "\"}",
                         "{\"issuer\":\"" ISS "\",\"authorization_endpoint\":\"" ISS " /a\","
                         "\"token_endpoint\":\"" ISS "/t\",\"jwks_uri\":\"" ISS "/j\"}",
                         "{\"issuer\":\"" ISS "\",\"issuer\":\"" ISS "\"}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(oidc_discovery_parse(bad[i], strlen(bad[i]), ISS, false, &d, &why),
                         -EBADMSG);
    char *big = calloc(1, OIDC_DOC_MAX + 2);
    memset(big, ' ', OIDC_DOC_MAX + 1);
    big[0] = '{';
    assert_int_equal(oidc_discovery_parse(big, OIDC_DOC_MAX + 1, ISS, false, &d, &why), -EBADMSG);
    free(big);
}

static void test_jwks_and_token_response(void **state)
{
    (void)state;
    const char *why = "";
    const char *bad[] = {"{}", "{\"keys\":{}}", "{\"keys\":[]}",
                         "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":\"AQAB\"}]}",
                         "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-384\",\"x\":\"AA\",\"y\":\"AA\"}]}",
                         "{\"keys\":[{\"kty\":\"oct\",\"k\":\"AA\"}]}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_null(oidc_jwks_parse(bad[i], strlen(bad[i]), &why));
    oidc_jwks_t *k = oidc_jwks_parse(jwks_json, strlen(jwks_json), &why);
    assert_int_equal(oidc_jwks_count(k), 2); /* the HMAC key is not one */
    oidc_jwks_free(&k);
    char out[100];
    const char *ok = "{\"access_token\":\"x\",\"id_token\":\"a.b.c\",\"token_type\":\"Bearer\"}";
    assert_int_equal(oidc_token_response_parse(ok, strlen(ok), out, sizeof(out), &why), 0);
    assert_string_equal(out, "a.b.c");
    const char *er = "{\"error\":\"invalid_grant\"}";
    assert_int_equal(oidc_token_response_parse(er, strlen(er), out, sizeof(out), &why), -EACCES);
    assert_string_equal(why, "invalid_grant");
    const char *none = "{\"access_token\":\"x\"}";
    assert_int_equal(oidc_token_response_parse(none, strlen(none), out, sizeof(out), &why),
                     -EBADMSG);
    assert_int_equal(oidc_token_response_parse(ok, strlen(ok), out, 3, &why), -EBADMSG);
}

static void test_callback(void **state)
{
    (void)state;
    oidc_callback_t cb;
    const char *why = "";
    const char *st = "abcdefghijabcdefghijabcdefghijabcdefghijabc";
    char q[300];
    snprintf(q, sizeof(q), "code=a%%2Fb+c&state=%s&iss=x", st);
    assert_int_equal(oidc_callback_parse(q, strlen(q), &cb, &why), 0);
    assert_string_equal(cb.code, "a/b c");
    assert_string_equal(cb.state, st);
    snprintf(q, sizeof(q), "error=access_denied&state=%s", st);
    assert_int_equal(oidc_callback_parse(q, strlen(q), &cb, &why), 0);
    assert_string_equal(cb.error, "access_denied");
    assert_string_equal(cb.code, "");
    const char *bad[] = {"", "code=x", "code=x&state=short", "state=abcdefghijabcdefghijabcdefghijabcdefghijabc",
                         "code=x&code=y&state=abcdefghijabcdefghijabcdefghijabcdefghijabc",
                         "code=%0a&state=abcdefghijabcdefghijabcdefghijabcdefghijabc",
                         "code=%zz&state=abcdefghijabcdefghijabcdefghijabcdefghijabc",
                         "code=%4&state=abcdefghijabcdefghijabcdefghijabcdefghijabc"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(oidc_callback_parse(bad[i], strlen(bad[i]), &cb, &why), -EBADMSG);
    char *big = malloc(OIDC_CODE_MAX + 200);
    int n = snprintf(big, 200, "state=%s&code=", st);
    memset(big + n, 'a', OIDC_CODE_MAX + 1);
    big[n + OIDC_CODE_MAX + 1] = '\0';
    assert_int_equal(oidc_callback_parse(big, strlen(big), &cb, &why), -EBADMSG);
    free(big);
}

static void test_state_cookie(void **state)
{
    (void)state;
    uint8_t sk[32], k[32], k2[32];
    randombytes_buf(sk, sizeof(sk));
    oidc_state_key(sk, k);
    sk[0] ^= 1;
    oidc_state_key(sk, k2);
    oidc_state_t s = {0}, back;
    oidc_state_fresh(&s);
    assert_int_equal(strlen(s.state), OIDC_RANDOM_LEN);
    snprintf(s.idp, sizeof(s.idp), "corp");
    memset(s.redirect_uri, 'u', OIDC_URL_MAX); /* the largest fits */
    memset(s.rd, 'r', OIDC_RD_MAX);
    s.expires_ms = NOW_MS + 1000;
    char cookie[OIDC_COOKIE_MAX + 1];
    const char *why = "";
    assert_int_equal(oidc_state_seal(k, &s, cookie, sizeof(cookie)), 0);
    assert_int_equal(oidc_state_open(k, cookie, strlen(cookie), NOW_MS, &back, &why), 0);
    assert_memory_equal(&s, &back, sizeof(s));
    assert_int_equal(oidc_state_open(k, cookie, strlen(cookie), NOW_MS + 1000, &back, &why),
                     -EACCES);
    assert_non_null(strstr(why, "expired"));
    assert_int_equal(oidc_state_open(k2, cookie, strlen(cookie), NOW_MS, &back, &why), -EACCES);
    for (size_t i = 0; i < strlen(cookie); i += 7) {
        char t[OIDC_COOKIE_MAX + 1];
        snprintf(t, sizeof(t), "%s", cookie);
        t[i] = t[i] == 'A' ? 'B' : 'A';
        assert_int_equal(oidc_state_open(k, t, strlen(t), NOW_MS, &back, &why), -EACCES);
    }
    assert_int_equal(oidc_state_open(k, cookie, 10, NOW_MS, &back, &why), -EACCES);
    assert_int_equal(oidc_state_open(k, "", 0, NOW_MS, &back, &why), -EACCES);
    char ch[44];
    /* RFC 7636 appendix B */
    oidc_pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk", ch);
    assert_string_equal(ch, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
}

static void test_admit_and_names(void **state)
{
    (void)state;
    const char dom[2][OIDC_DOMAIN_MAX + 1] = {"example.com", "corp.example"};
    oidc_claims_t c = {0};
    snprintf(c.email, sizeof(c.email), "alice@Example.com");
    c.email_verified = true;
    const char *why;
    oidc_policy_t p = {.domains = dom, .ndomains = 2};
    assert_int_equal(oidc_admit(&p, &c, false, &why), 0);
    c.email_verified = false;
    assert_int_equal(oidc_admit(&p, &c, true, &why), -EACCES);
    c.email_verified = true;
    snprintf(c.email, sizeof(c.email), "m@evil.test");
    assert_int_equal(oidc_admit(&p, &c, true, &why), -EACCES);
    snprintf(c.email, sizeof(c.email), "m@xexample.com");
    assert_int_equal(oidc_admit(&p, &c, false, &why), -EACCES);
    oidc_policy_t open = {.auto_create = true}, closed = {0};
    assert_int_equal(oidc_admit(&open, &c, false, &why), 0);
    assert_int_equal(oidc_admit(&closed, &c, false, &why), -EACCES);
    assert_int_equal(oidc_admit(&closed, &c, true, &why), 0);
    char n[64];
    assert_int_equal(oidc_user_name("corp", "auth0|abc.DEF-1", n, sizeof(n)), 0);
    assert_string_equal(n, "corp:auth0|abc.DEF-1");
    assert_true(auth_user_name_ok(n));
    assert_int_equal(oidc_user_name("corp", "a b", n, sizeof(n)), -ERANGE);
    assert_int_equal(oidc_user_name("corp", "", n, sizeof(n)), -ERANGE);
    char longsub[80];
    memset(longsub, 'a', 59);
    longsub[59] = '\0';
    assert_int_equal(oidc_user_name("corp", longsub, n, sizeof(n)), -ERANGE);
    assert_false(auth_user_name_ok("Corp:a"));
    assert_false(auth_user_name_ok(":a"));
    assert_false(auth_user_name_ok("corp:"));
    assert_false(auth_user_name_ok("corp:a\r\nb"));
    assert_true(auth_user_name_ok("alice"));
    /* a provider's user record: no password, email and name kept */
    auth_user_t u = {0}, back;
    snprintf(u.name, sizeof(u.name), "corp:alice");
    snprintf(u.email, sizeof(u.email), "alice@example.com");
    snprintf(u.display_name, sizeof(u.display_name), "Alice");
    u.session_epoch = 1;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    auth_user_pack(&pk, &u);
    assert_int_equal(auth_user_parse((uint8_t *)sb.data, sb.size, "corp:alice", &back, &why), 0);
    assert_string_equal(back.email, "alice@example.com");
    assert_string_equal(back.display_name, "Alice");
    msgpack_sbuffer_destroy(&sb);
    /* ... and one with a password hash is refused: it could sign in with a password */
    snprintf(u.pwhash, sizeof(u.pwhash), "$argon2id$v=19$m=1,t=1,p=1$x$y");
    msgpack_sbuffer_init(&sb);
    auth_user_pack(&pk, &u);
    assert_int_equal(auth_user_parse((uint8_t *)sb.data, sb.size, "corp:alice", &back, &why),
                     -EBADMSG);
    msgpack_sbuffer_destroy(&sb);
}

static void test_idp_record(void **state)
{
    (void)state;
    storeseal_t k = {.have_key = true, .key_id = 1};
    randombytes_buf(k.key, sizeof(k.key));
    idp_rec_t r = {0}, back;
    snprintf(r.name, sizeof(r.name), "corp");
    snprintf(r.issuer, sizeof(r.issuer), "http://127.0.0.1:4000");
    snprintf(r.client_id, sizeof(r.client_id), "popmesh");
    snprintf(r.scopes, sizeof(r.scopes), "openid email groups");
    snprintf(r.groups_claim, sizeof(r.groups_claim), "groups");
    snprintf(r.domains[0], sizeof(r.domains[0]), "example.com");
    r.ndomains = 1;
    r.allow_http = true;
    assert_int_equal(idp_secret_seal(&k, &r, "s3cret", 6), 0);
    assert_null(memmem(r.secret_sealed, r.secret_sealed_len, "s3cret", 6));
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    idp_pack(&pk, &r);
    const char *why = "";
    int prc = idp_parse((uint8_t *)sb.data, sb.size, "corp", &back, &why);
    if (prc)
        fail_msg("%s", why);
    assert_string_equal(back.domains[0], "example.com");
    char sec[64];
    assert_int_equal(idp_secret_open(&k, &back, sec, sizeof(sec)), 0);
    assert_string_equal(sec, "s3cret");
    /* moved to another name: the secret does not open there */
    snprintf(back.name, sizeof(back.name), "other");
    assert_int_not_equal(idp_secret_open(&k, &back, sec, sizeof(sec)), 0);
    idp_rec_free(&back);
    assert_int_equal(idp_parse((uint8_t *)sb.data, sb.size, "other", &back, &why), -EBADMSG);
    msgpack_sbuffer_destroy(&sb);
    /* plain http without allow_http, or to a non-loopback host, is refused */
    r.allow_http = false;
    msgpack_sbuffer_init(&sb);
    idp_pack(&pk, &r);
    assert_int_equal(idp_parse((uint8_t *)sb.data, sb.size, "corp", &back, &why), -EBADMSG);
    msgpack_sbuffer_destroy(&sb);
    assert_false(idp_issuer_ok("http://idp.example.com", true));
    assert_true(idp_issuer_ok("http://localhost:8080", true));
    assert_true(idp_issuer_ok("https://idp.example.com/realms/x", false));
    assert_false(idp_issuer_ok("https://idp.example.com/?a", false));
    assert_true(idp_scopes_ok("openid"));
    assert_false(idp_scopes_ok("email profile"));
    assert_false(idp_scopes_ok("openid  email"));
    assert_false(idp_scopes_ok("openid "));
    assert_false(idp_domain_ok("Example.com"));
    assert_false(idp_domain_ok("a..b"));
    assert_true(idp_domain_ok("a-b.example"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_idtoken_good),      cmocka_unit_test(test_idtoken_refused),
        cmocka_unit_test(test_discovery),         cmocka_unit_test(test_jwks_and_token_response),
        cmocka_unit_test(test_callback),          cmocka_unit_test(test_state_cookie),
        cmocka_unit_test(test_admit_and_names),   cmocka_unit_test(test_idp_record),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
