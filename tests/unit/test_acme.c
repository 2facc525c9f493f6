/* Unit tests of node/acme's loop-free parts: keys, the JWS (verified with OpenSSL as a CA
 * would), the EAB binding, the CSR, key authorizations and DNS-01 values, the readers of the
 * CA's JSON (good documents and hostile ones), and the replicated records. */
#include "common/b64url.h"
#include "node/acme/acmeproto.h"
#include "node/acme/acmerec.h"
#include "node/dns/dnsanswer.h"
#include "node/records/resource.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/ec.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <ldns/ldns.h>

/* base64url text -> bytes (at most cap). */
static size_t unb64(const char *t, uint8_t *out, size_t cap)
{
    size_t n = 0;
    assert_int_equal(b64url_decode(t, strlen(t), out, cap, &n), 0);
    return n;
}

static json_t *unb64_json(const char *t)
{
    static uint8_t buf[8192];
    size_t n = unb64(t, buf, sizeof(buf));
    json_error_t e;
    json_t *j = json_loadb((const char *)buf, n, 0, &e);
    assert_non_null(j);
    return j;
}

/* Verifies a flattened ES256 JWS with key's public half: what the CA does. */
static bool verify_es256(EVP_PKEY *key, json_t *jws)
{
    const char *p = json_string_value(json_object_get(jws, "protected"));
    const char *pl = json_string_value(json_object_get(jws, "payload"));
    const char *sig = json_string_value(json_object_get(jws, "signature"));
    assert_non_null(p);
    assert_non_null(pl);
    assert_non_null(sig);
    uint8_t raw[64];
    assert_int_equal(unb64(sig, raw, sizeof(raw)), 64);
    ECDSA_SIG *s = ECDSA_SIG_new();
    ECDSA_SIG_set0(s, BN_bin2bn(raw, 32, NULL), BN_bin2bn(raw + 32, 32, NULL));
    uint8_t *der = NULL;
    int dl = i2d_ECDSA_SIG(s, &der);
    ECDSA_SIG_free(s);
    char msg[16384];
    snprintf(msg, sizeof(msg), "%s.%s", p, pl);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    bool ok = EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, key) == 1 &&
              EVP_DigestVerify(md, der, (size_t)dl, (const uint8_t *)msg, strlen(msg)) == 1;
    EVP_MD_CTX_free(md);
    OPENSSL_free(der);
    return ok;
}

static void test_jws_jwk_and_kid(void **state)
{
    (void)state;
    EVP_PKEY *k = acme_key_new();
    assert_non_null(k);
    char *s = acme_jws(k, NULL, "NONCE1", "https://ca.test/new-acct", "{\"a\":1}");
    assert_non_null(s);
    json_t *j = json_loads(s, 0, NULL);
    assert_true(verify_es256(k, j));
    json_t *prot = unb64_json(json_string_value(json_object_get(j, "protected")));
    assert_string_equal(json_string_value(json_object_get(prot, "alg")), "ES256");
    assert_string_equal(json_string_value(json_object_get(prot, "nonce")), "NONCE1");
    assert_string_equal(json_string_value(json_object_get(prot, "url")),
                        "https://ca.test/new-acct");
    json_t *jwk = json_object_get(prot, "jwk");
    assert_non_null(jwk);
    assert_null(json_object_get(prot, "kid"));
    assert_string_equal(json_string_value(json_object_get(jwk, "crv")), "P-256");
    assert_int_equal(strlen(json_string_value(json_object_get(jwk, "x"))), 43);
    json_t *payload = unb64_json(json_string_value(json_object_get(j, "payload")));
    assert_int_equal(json_integer_value(json_object_get(payload, "a")), 1);
    json_decref(payload), json_decref(prot), json_decref(j), free(s);

    /* kid, and POST-as-GET: the payload is the empty string */
    s = acme_jws(k, "https://ca.test/acct/1", "N2", "https://ca.test/order/1", NULL);
    j = json_loads(s, 0, NULL);
    assert_true(verify_es256(k, j));
    assert_string_equal(json_string_value(json_object_get(j, "payload")), "");
    prot = unb64_json(json_string_value(json_object_get(j, "protected")));
    assert_string_equal(json_string_value(json_object_get(prot, "kid")), "https://ca.test/acct/1");
    assert_null(json_object_get(prot, "jwk"));
    json_decref(prot), json_decref(j), free(s);

    /* another key's signature does not verify */
    EVP_PKEY *other = acme_key_new();
    s = acme_jws(k, "kid", "N3", "https://ca.test/x", "{}");
    j = json_loads(s, 0, NULL);
    assert_false(verify_es256(other, j));
    json_decref(j), free(s);
    EVP_PKEY_free(other);
    EVP_PKEY_free(k);
}

static void test_thumbprint_and_keyauth(void **state)
{
    (void)state;
    EVP_PKEY *k = acme_key_new();
    char *jwk = acme_jwk_json(k);
    /* RFC 7638: the required members only, sorted, no whitespace */
    static const char head[] = "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"";
    assert_int_equal(strncmp(jwk, head, sizeof(head) - 1), 0);
    assert_null(strchr(jwk, ' '));
    uint8_t h[32];
    SHA256((const uint8_t *)jwk, strlen(jwk), h);
    char *want = acme_b64url(h, 32);
    char th[ACME_THUMB_LEN + 1];
    assert_int_equal(acme_thumbprint(k, th), 0);
    assert_string_equal(th, want);
    char ka[ACME_KEYAUTH_MAX + 1], expect[200];
    assert_int_equal(acme_key_authorization("tok-EN_1", k, ka, sizeof(ka)), 0);
    snprintf(expect, sizeof(expect), "tok-EN_1.%s", want);
    assert_string_equal(ka, expect);
    assert_int_not_equal(acme_key_authorization("bad/token", k, ka, sizeof(ka)), 0);
    assert_int_not_equal(acme_key_authorization("", k, ka, sizeof(ka)), 0);
    /* DNS-01: base64url(SHA-256(key authorization)) */
    char v[ACME_THUMB_LEN + 1];
    acme_dns01_value(ka, v);
    SHA256((const uint8_t *)ka, strlen(ka), h);
    char *w2 = acme_b64url(h, 32);
    assert_string_equal(v, w2);
    free(w2), free(want), free(jwk);
    EVP_PKEY_free(k);
}

static void test_key_pem(void **state)
{
    (void)state;
    EVP_PKEY *k = acme_key_new();
    size_t len = 0;
    char *pem = acme_key_pem(k, &len);
    assert_non_null(pem);
    assert_int_equal(strlen(pem), len);
    EVP_PKEY *k2 = acme_key_from_pem(pem, len);
    assert_non_null(k2);
    assert_int_equal(EVP_PKEY_eq(k, k2), 1);
    assert_null(acme_key_from_pem("not a key", 9));
    /* a key of another kind is refused: the JWS would claim ES256 */
    EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    char *rpem = acme_key_pem(rsa, &len);
    assert_null(acme_key_from_pem(rpem, len));
    free(rpem), free(pem);
    EVP_PKEY_free(rsa), EVP_PKEY_free(k2), EVP_PKEY_free(k);
}

static void test_eab(void **state)
{
    (void)state;
    EVP_PKEY *k = acme_key_new();
    const uint8_t mac[32] = {1, 2, 3, 4, 5};
    char *s = acme_eab_jws(k, "kid-1", mac, sizeof(mac), "https://ca.test/new-acct");
    json_t *j = json_loads(s, 0, NULL);
    const char *p = json_string_value(json_object_get(j, "protected"));
    const char *pl = json_string_value(json_object_get(j, "payload"));
    char msg[4096];
    snprintf(msg, sizeof(msg), "%s.%s", p, pl);
    uint8_t h[32];
    unsigned hl;
    HMAC(EVP_sha256(), mac, sizeof(mac), (const uint8_t *)msg, strlen(msg), h, &hl);
    char *want = acme_b64url(h, hl);
    assert_string_equal(json_string_value(json_object_get(j, "signature")), want);
    json_t *prot = unb64_json(p);
    assert_string_equal(json_string_value(json_object_get(prot, "alg")), "HS256");
    assert_string_equal(json_string_value(json_object_get(prot, "kid")), "kid-1");
    assert_null(json_object_get(prot, "nonce")); /* RFC 8555 7.3.4: no nonce */
    char *jwk = acme_jwk_json(k);
    uint8_t pb[1024];
    size_t n = unb64(pl, pb, sizeof(pb));
    assert_int_equal(n, strlen(jwk));
    assert_memory_equal(pb, jwk, n);
    char *acct = acme_new_account_payload("ops@example.com", s);
    json_t *aj = json_loads(acct, 0, NULL);
    assert_true(json_is_object(json_object_get(aj, "externalAccountBinding")));
    assert_string_equal(json_string_value(json_array_get(json_object_get(aj, "contact"), 0)),
                        "mailto:ops@example.com");
    assert_true(json_is_true(json_object_get(aj, "termsOfServiceAgreed")));
    assert_null(acme_new_account_payload("x@y", "not json"));
    json_decref(aj), free(acct), free(jwk), json_decref(prot), free(want), json_decref(j);
    free(s);
    EVP_PKEY_free(k);
}

static void test_csr(void **state)
{
    (void)state;
    EVP_PKEY *k = acme_key_new();
    char names[2][ACME_NAME_MAX + 1] = {"*.apps.example.com", "apps.example.com"};
    char *p = acme_finalize_payload(k, names, 2);
    assert_non_null(p);
    json_t *j = json_loads(p, 0, NULL);
    uint8_t der[4096];
    size_t n = unb64(json_string_value(json_object_get(j, "csr")), der, sizeof(der));
    const uint8_t *q = der;
    X509_REQ *req = d2i_X509_REQ(NULL, &q, (long)n);
    assert_non_null(req);
    assert_int_equal(X509_REQ_verify(req, k), 1);
    STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(req);
    GENERAL_NAMES *gens = NULL;
    for (int i = 0; i < sk_X509_EXTENSION_num(exts); i++) {
        X509_EXTENSION *e = sk_X509_EXTENSION_value(exts, i);
        if (OBJ_obj2nid(X509_EXTENSION_get_object(e)) == NID_subject_alt_name)
            gens = X509V3_EXT_d2i(e);
    }
    assert_non_null(gens);
    assert_int_equal(sk_GENERAL_NAME_num(gens), 2);
    for (int i = 0; i < 2; i++) {
        GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        assert_int_equal(g->type, GEN_DNS);
        assert_string_equal((const char *)ASN1_STRING_get0_data(g->d.dNSName), names[i]);
    }
    char cn[256];
    X509_NAME_get_text_by_NID(X509_REQ_get_subject_name(req), NID_commonName, cn, sizeof(cn));
    assert_string_equal(cn, "*.apps.example.com");
    GENERAL_NAMES_free(gens);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    X509_REQ_free(req);
    json_decref(j);
    free(p);
    char *o = acme_new_order_payload(names, 2);
    assert_string_equal(o, "{\"identifiers\":[{\"type\":\"dns\",\"value\":\"*.apps.example.com\"},"
                           "{\"type\":\"dns\",\"value\":\"apps.example.com\"}]}");
    free(o);
    EVP_PKEY_free(k);
}

static const char dir_json[] =
    "{\"keyChange\":\"https://127.0.0.1:14000/rollover-account-key\","
    "\"meta\":{\"externalAccountRequired\":false,\"termsOfService\":\"data:text/plain,Do what "
    "thou wilt\"},\"newAccount\":\"https://127.0.0.1:14000/sign-me-up\",\"newNonce\":"
    "\"https://127.0.0.1:14000/nonce-plz\",\"newOrder\":\"https://127.0.0.1:14000/order-plz\","
    "\"revokeCert\":\"https://127.0.0.1:14000/revoke-cert\"}";

static void test_directory(void **state)
{
    (void)state;
    acme_directory_t d;
    char err[256];
    assert_int_equal(acme_directory_parse(dir_json, strlen(dir_json), &d, err, sizeof(err)), 0);
    assert_string_equal(d.new_nonce, "https://127.0.0.1:14000/nonce-plz");
    assert_string_equal(d.new_order, "https://127.0.0.1:14000/order-plz");
    assert_string_equal(d.renewal_info, "");
    assert_false(d.eab_required);
    const char *bad[] = {
        "",
        "[]",
        "{\"newNonce\":\"http://x/n\",\"newAccount\":\"https://x/a\",\"newOrder\":"
        "\"https://x/o\"}",
        "{\"newNonce\":\"https://x/n\",\"newAccount\":\"https://x/a\"}",
        "{\"newNonce\":\"https://x/n\",\"newNonce\":\"https://x/n\",\"newAccount\":\"https://x/a\","
        "\"newOrder\":\"https://x/o\"}",
        "{\"newNonce\":\"https://x/n "
        "x\",\"newAccount\":\"https://x/a\",\"newOrder\":\"https://x/o\"}",
        "{\"newNonce\":7,\"newAccount\":\"https://x/a\",\"newOrder\":\"https://x/o\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(acme_directory_parse(bad[i], strlen(bad[i]), &d, err, sizeof(err)),
                         -EBADMSG);
}

static void test_order_and_authz(void **state)
{
    (void)state;
    const char *o = "{\"status\":\"pending\",\"expires\":\"2026-12-08T06:00:00Z\",\"identifiers\":"
                    "[{\"type\":\"dns\",\"value\":\"a.example.com\"}],\"finalize\":"
                    "\"https://ca/finalize/1\",\"authorizations\":[\"https://ca/authz/1\","
                    "\"https://ca/authz/2\"]}";
    acme_order_t ord;
    char err[256];
    assert_int_equal(acme_order_parse(o, strlen(o), &ord, err, sizeof(err)), 0);
    assert_string_equal(ord.status, "pending");
    assert_int_equal(ord.nauthz, 2);
    assert_string_equal(ord.authz[1], "https://ca/authz/2");
    assert_string_equal(ord.certificate, "");
    acme_order_free(&ord);
    const char *inv = "{\"status\":\"invalid\",\"finalize\":\"https://ca/f\",\"authorizations\":"
                      "[\"https://ca/a\"],\"error\":{\"type\":\"urn:ietf:params:acme:error:"
                      "unauthorized\",\"detail\":\"no\\u0001way\"}}";
    assert_int_equal(acme_order_parse(inv, strlen(inv), &ord, err, sizeof(err)), 0);
    assert_string_equal(ord.error, "no?way (urn:ietf:params:acme:error:unauthorized)");
    acme_order_free(&ord);
    const char *bad_orders[] = {
        "{\"status\":\"weird\",\"finalize\":\"https://ca/f\",\"authorizations\":[\"https://ca/"
        "a\"]}",
        "{\"status\":\"valid\",\"finalize\":\"https://ca/f\",\"authorizations\":[]}",
        "{\"status\":\"valid\",\"finalize\":\"https://ca/f\",\"authorizations\":[3]}",
        "{\"status\":\"valid\",\"finalize\":\"https://ca/f\",\"certificate\":\"ftp://x\","
        "\"authorizations\":[\"https://ca/a\"]}",
    };
    for (size_t i = 0; i < sizeof(bad_orders) / sizeof(bad_orders[0]); i++) {
        assert_int_equal(
            acme_order_parse(bad_orders[i], strlen(bad_orders[i]), &ord, err, sizeof(err)),
            -EBADMSG);
        acme_order_free(&ord);
    }

    const char *az = "{\"status\":\"pending\",\"identifier\":{\"type\":\"dns\",\"value\":"
                     "\"apps.example.com\"},\"wildcard\":true,\"challenges\":[{\"type\":"
                     "\"tls-alpn-01\",\"url\":\"https://ca/c/0\",\"token\":\"t0\",\"status\":"
                     "\"pending\"},{\"type\":\"dns-01\",\"url\":\"https://ca/c/1\",\"token\":"
                     "\"AbC-_9\",\"status\":\"pending\"}]}";
    acme_authz_t a;
    assert_int_equal(acme_authz_parse(az, strlen(az), &a, err, sizeof(err)), 0);
    assert_true(a.wildcard);
    assert_string_equal(a.identifier, "apps.example.com");
    assert_int_equal(a.nchallenges, 1); /* tls-alpn-01 is not ours */
    const acme_challenge_t *ch = acme_authz_challenge(&a, "dns-01");
    assert_non_null(ch);
    assert_string_equal(ch->token, "AbC-_9");
    assert_null(acme_authz_challenge(&a, "http-01"));
    const char *bad_az[] = {
        /* a token that would walk out of the challenge path or the store key */
        "{\"status\":\"pending\",\"identifier\":{\"type\":\"dns\",\"value\":\"a.b\"},"
        "\"challenges\":[{\"type\":\"http-01\",\"url\":\"https://ca/c\",\"token\":\"../x\","
        "\"status\":\"pending\"}]}",
        "{\"status\":\"pending\",\"identifier\":{\"type\":\"ip\",\"value\":\"1.2.3.4\"},"
        "\"challenges\":[]}",
        "{\"status\":\"pending\",\"identifier\":{\"type\":\"dns\",\"value\":\"A.B\"},"
        "\"challenges\":[]}",
        "{\"status\":\"pending\",\"identifier\":{\"type\":\"dns\",\"value\":\"a.b\"}}",
    };
    for (size_t i = 0; i < sizeof(bad_az) / sizeof(bad_az[0]); i++)
        assert_int_equal(acme_authz_parse(bad_az[i], strlen(bad_az[i]), &a, err, sizeof(err)),
                         -EBADMSG);

    char prob[128];
    const char *pj = "{\"type\":\"urn:ietf:params:acme:error:badNonce\",\"detail\":\"JWS has an "
                     "invalid anti-replay nonce\",\"status\":400}";
    acme_problem_str(pj, strlen(pj), prob, sizeof(prob));
    assert_string_equal(prob, "JWS has an invalid anti-replay nonce "
                              "(urn:ietf:params:acme:error:badNonce)");
    acme_problem_str("<html>\n", 7, prob, sizeof(prob));
    assert_string_equal(prob, "<html>?");
}

static size_t pack(void (*fn)(msgpack_packer *, const void *), const void *rec, uint8_t *out)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    fn(&pk, rec);
    memcpy(out, sb.data, sb.size);
    size_t n = sb.size;
    msgpack_sbuffer_destroy(&sb);
    return n;
}

static void pack_chal(msgpack_packer *pk, const void *r)
{
    acmechal_pack(pk, r);
}
static void pack_dns(msgpack_packer *pk, const void *r)
{
    acmedns_pack(pk, r);
}
static void pack_lease(msgpack_packer *pk, const void *r)
{
    acme_lease_pack(pk, r);
}
static void pack_cfg(msgpack_packer *pk, const void *r)
{
    acme_config_pack(pk, r);
}

static void test_records(void **state)
{
    (void)state;
    uint8_t buf[65536];
    const char *why;
    char key[300];
    acmechal_rec_t c = {.expires_ms = 99}, c2;
    snprintf(c.key_authorization, sizeof(c.key_authorization), "tok.thumb");
    size_t n = pack(pack_chal, &c, buf);
    assert_int_equal(acmechal_parse(buf, n, "tok", &c2, &why), 0);
    assert_string_equal(c2.key_authorization, "tok.thumb");
    assert_int_equal(c2.expires_ms, 99);
    /* the record answers only for its own token */
    assert_int_equal(acmechal_parse(buf, n, "other", &c2, &why), -EBADMSG);
    assert_int_equal(acmechal_key("tok", key, sizeof(key)), 0);
    assert_string_equal(key, "acmechal/tok");
    assert_int_equal(acmechal_key("a/b", key, sizeof(key)), -EINVAL);

    acmedns_rec_t d = {.nvalues = 2, .expires_ms = 5}, d2;
    snprintf(d.values[0], sizeof(d.values[0]), "v1");
    snprintf(d.values[1], sizeof(d.values[1]), "v2");
    n = pack(pack_dns, &d, buf);
    assert_int_equal(acmedns_parse(buf, n, &d2, &why), 0);
    assert_int_equal(d2.nvalues, 2);
    assert_string_equal(d2.values[1], "v2");
    snprintf(d.values[1], sizeof(d.values[1]), "a\"b");
    n = pack(pack_dns, &d, buf);
    assert_int_equal(acmedns_parse(buf, n, &d2, &why), -EBADMSG);
    assert_int_equal(acmedns_key("apps.example.com", key, sizeof(key)), 0);
    assert_int_equal(acmedns_key("*.example.com", key, sizeof(key)), -EINVAL);
    assert_int_equal(acmedns_key("Example.com", key, sizeof(key)), -EINVAL);

    acme_lease_t l = {.holder_id = 7, .expires_ms = 1000, .version = 3, .failures = 2}, l2;
    snprintf(l.holder, sizeof(l.holder), "pop1");
    snprintf(l.error, sizeof(l.error), "HTTP 403: no");
    n = pack(pack_lease, &l, buf);
    assert_int_equal(acme_lease_parse(buf, n, &l2, &why), 0);
    assert_string_equal(l2.holder, "pop1");
    assert_int_equal(l2.version, 3);
    assert_int_equal(l2.failures, 2);
    assert_string_equal(l2.error, "HTTP 403: no");
    assert_int_equal(acme_lease_key("_wild.example.com", key, sizeof(key)), 0);
    assert_string_equal(key, "lease/acme/_wild.example.com");

    acme_config_t cfg, cfg2;
    memset(&cfg, 0, sizeof(cfg));
    snprintf(cfg.directory, sizeof(cfg.directory), "https://ca/dir");
    snprintf(cfg.email, sizeof(cfg.email), "a@b");
    cfg.ca_pem = (char *)"-----BEGIN CERTIFICATE-----\n";
    cfg.account_key_sealed_len = 40;
    cfg.created_ms = 1;
    n = pack(pack_cfg, &cfg, buf);
    assert_int_equal(acme_config_parse(buf, n, &cfg2, &why), 0);
    assert_string_equal(cfg2.ca_pem, cfg.ca_pem);
    assert_int_equal(cfg2.account_key_sealed_len, 40);
    acme_config_free(&cfg2);
    snprintf(cfg.directory, sizeof(cfg.directory), "http://ca/dir");
    n = pack(pack_cfg, &cfg, buf);
    assert_int_equal(acme_config_parse(buf, n, &cfg2, &why), -EBADMSG);
}

/* ARI (RFC 9773): the certID of the RFC's example (AKI 69:88:5B:..., serial 0x87654321 whose
 * DER content has a leading zero), the window, and RFC 3339 times. */
static void test_ari(void **state)
{
    (void)state;
    static const uint8_t kid[20] = {0x69, 0x88, 0x5B, 0x6B, 0x87, 0x46, 0x40, 0x41, 0xE1, 0xB3,
                                    0x7B, 0x84, 0x7B, 0xA0, 0xAE, 0x2C, 0xDE, 0x01, 0xC8, 0xD4};
    EVP_PKEY *k = acme_key_new();
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set_uint64(X509_get_serialNumber(x), 0x87654321);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, k);
    AUTHORITY_KEYID *ak = AUTHORITY_KEYID_new();
    ak->keyid = ASN1_OCTET_STRING_new();
    ASN1_OCTET_STRING_set(ak->keyid, kid, sizeof(kid));
    assert_int_equal(X509_add1_ext_i2d(x, NID_authority_key_identifier, ak, 0, X509V3_ADD_DEFAULT),
                     1);
    AUTHORITY_KEYID_free(ak);
    assert_true(X509_sign(x, k, EVP_sha256()) > 0);
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(b, x);
    char *pem;
    long pl = BIO_get_mem_data(b, &pem);
    char id[128];
    assert_int_equal(acme_ari_cert_id(pem, (size_t)pl, id, sizeof(id)), 0);
    assert_string_equal(id, "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE");
    assert_int_equal(acme_ari_cert_id(pem, (size_t)pl, id, 10), -EINVAL);
    assert_int_equal(acme_ari_cert_id("junk", 4, id, sizeof(id)), -EINVAL);
    BIO_free(b);
    X509_free(x);
    EVP_PKEY_free(k);

    uint64_t ms = 0;
    assert_int_equal(acme_time_parse("1970-01-01T00:00:00Z", &ms), 0);
    assert_int_equal(ms, 0);
    assert_int_equal(acme_time_parse("2026-12-07T06:00:00.25Z", &ms), 0);
    assert_int_equal(ms, 1796623200250ULL);
    assert_int_equal(acme_time_parse("2026-12-07T08:00:00+02:00", &ms), 0);
    assert_int_equal(ms, 1796623200000ULL);
    assert_int_equal(acme_time_parse("2024-02-29T00:00:00z", &ms), 0);
    const char *bad[] = {"",
                         "2026-12-07",
                         "2026-13-07T06:00:00Z",
                         "2026-12-07T06:00:00",
                         "2026-12-07T06:00:00Zx",
                         "1969-12-31T23:59:59Z",
                         "2026-02-30T00:00:00Z",
                         "2026-12-07T06:00:00.Z",
                         "2026-12-07T06:00:00+2:00"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(acme_time_parse(bad[i], &ms), -EINVAL);
    uint64_t st, en;
    char err[128];
    const char *w = "{\"suggestedWindow\":{\"start\":\"2026-12-07T06:00:00Z\",\"end\":"
                    "\"2026-12-08T06:00:00Z\"},\"explanationURL\":\"https://ca/why\"}";
    assert_int_equal(acme_ari_parse(w, strlen(w), &st, &en, err, sizeof(err)), 0);
    assert_int_equal(en - st, 86400000);
    const char *rev = "{\"suggestedWindow\":{\"start\":\"2026-12-08T06:00:00Z\",\"end\":"
                      "\"2026-12-07T06:00:00Z\"}}";
    assert_int_equal(acme_ari_parse(rev, strlen(rev), &st, &en, err, sizeof(err)), -EBADMSG);
    assert_int_equal(acme_ari_parse("{}", 2, &st, &en, err, sizeof(err)), -EBADMSG);
}

/* DNS-01 at the name server: _acme-challenge.NAME answers TXT from the view; other types
 * NODATA; its parent is an empty non-terminal, not NXDOMAIN; outside the zone REFUSED. */
static ldns_pkt *ask(const dns_view_t *v, const char *name, ldns_rr_type type)
{
    ldns_pkt *q = ldns_pkt_query_new(ldns_dname_new_frm_str(name), type, LDNS_RR_CLASS_IN, 0);
    uint8_t *wire, out[1232];
    size_t qlen;
    assert_int_equal(ldns_pkt2wire(&wire, q, &qlen), LDNS_STATUS_OK);
    size_t n = dnsanswer(v, wire, qlen, NULL, false, out, sizeof(out), NULL);
    free(wire);
    ldns_pkt_free(q);
    ldns_pkt *r = NULL;
    assert_true(n > 0);
    assert_int_equal(ldns_wire2pkt(&r, out, n), LDNS_STATUS_OK);
    return r;
}

static void test_dns01_txt(void **state)
{
    (void)state;
    dns_view_t *v = dnsview_new();
    dns_zone_t z = {.name = "mesh.test", .ttl = 5};
    assert_int_equal(dnsview_add_zone(v, &z), 0);
    assert_int_equal(dnsview_add_txt(v, "_acme-challenge.apps.mesh.test", "v2"), 0);
    assert_int_equal(dnsview_add_txt(v, "_acme-challenge.apps.mesh.test", "v1"), 0);
    assert_int_equal(dnsview_add_txt(v, "_acme-challenge.app.mesh.test", "w"), 0);
    assert_int_not_equal(dnsview_add_txt(v, "Bad Name", "x"), 0);
    assert_int_not_equal(dnsview_add_txt(v, "a.mesh.test", ""), 0);
    dnsview_finish(v, 0);
    size_t first;
    assert_int_equal(dnsview_txt(v, "_acme-challenge.apps.mesh.test", &first), 2);
    assert_string_equal(v->txts[first].value, "v1");
    assert_int_equal(dnsview_txt(v, "apps.mesh.test", &first), 0);

    ldns_pkt *r = ask(v, "_acme-challenge.APPS.mesh.test.", LDNS_RR_TYPE_TXT);
    assert_int_equal(ldns_pkt_get_rcode(r), LDNS_RCODE_NOERROR);
    assert_true(ldns_pkt_aa(r));
    ldns_rr_list *an = ldns_pkt_answer(r);
    assert_int_equal(ldns_rr_list_rr_count(an), 2);
    char *txt = ldns_rdf2str(ldns_rr_rdf(ldns_rr_list_rr(an, 0), 0));
    assert_string_equal(txt, "\"v1\"");
    free(txt);
    ldns_pkt_free(r);
    r = ask(v, "_acme-challenge.apps.mesh.test.", LDNS_RR_TYPE_A);
    assert_int_equal(ldns_pkt_get_rcode(r), LDNS_RCODE_NOERROR);
    assert_int_equal(ldns_pkt_ancount(r), 0);
    ldns_pkt_free(r);
    r = ask(v, "apps.mesh.test.", LDNS_RR_TYPE_A); /* empty non-terminal */
    assert_int_equal(ldns_pkt_get_rcode(r), LDNS_RCODE_NOERROR);
    ldns_pkt_free(r);
    r = ask(v, "_acme-challenge.other.mesh.test.", LDNS_RR_TYPE_TXT);
    assert_int_equal(ldns_pkt_get_rcode(r), LDNS_RCODE_NXDOMAIN);
    ldns_pkt_free(r);
    r = ask(v, "_acme-challenge.apps.elsewhere.test.", LDNS_RR_TYPE_TXT);
    assert_int_equal(ldns_pkt_get_rcode(r), LDNS_RCODE_REFUSED);
    ldns_pkt_free(r);
    dnsview_free(&v);
}

/* A wildcard host answers A for any name one label below it (exact hosts first), its parent is
 * an empty non-terminal, and two labels below is NXDOMAIN. */
static void test_wildcard_dns(void **state)
{
    (void)state;
    dns_view_t *v = dnsview_new();
    dns_zone_t z = {.name = "mesh.test", .ttl = 5, .answers = 1};
    assert_int_equal(dnsview_add_zone(v, &z), 0);
    dns_pop_t p = {.id = 1,
                   .name = "ams",
                   .has_v4 = true,
                   .v4 = {192, 0, 2, 1},
                   .serves_dns = true,
                   .state = DNS_OK};
    assert_int_equal(dnsview_add_pop(v, &p), 0);
    assert_int_equal(dnsview_add_host(v, "*.apps.mesh.test", "s1"), 0);
    assert_int_equal(dnsview_add_host(v, "exact.apps.mesh.test", "s2"), 0); /* nobody reaches */
    assert_int_not_equal(dnsview_add_host(v, "*.test", "s1"), 0);
    assert_int_not_equal(dnsview_add_host(v, "a.*.mesh.test", "s1"), 0);
    dnsview_finish(v, 1);
    dnsview_set_reach(v, dnsview_host(v, "*.apps.mesh.test")->site, 0, true);
    assert_string_equal(dnsview_host(v, "x.apps.mesh.test")->name, "*.apps.mesh.test");
    assert_string_equal(dnsview_host(v, "exact.apps.mesh.test")->name, "exact.apps.mesh.test");
    assert_null(dnsview_host(v, "a.b.apps.mesh.test"));
    assert_null(dnsview_host(v, "apps.mesh.test"));

    ldns_pkt *r = ask(v, "X.apps.mesh.test.", LDNS_RR_TYPE_A);
    assert_int_equal(ldns_pkt_get_rcode(r), LDNS_RCODE_NOERROR);
    assert_int_equal(ldns_pkt_ancount(r), 1);
    char *a = ldns_rdf2str(ldns_rr_rdf(ldns_rr_list_rr(ldns_pkt_answer(r), 0), 0));
    assert_string_equal(a, "192.0.2.1");
    free(a);
    ldns_pkt_free(r);
    r = ask(v, "exact.apps.mesh.test.", LDNS_RR_TYPE_A); /* its own host: no route, no address */
    assert_int_equal(ldns_pkt_get_rcode(r), LDNS_RCODE_NOERROR);
    assert_int_equal(ldns_pkt_ancount(r), 0);
    ldns_pkt_free(r);
    r = ask(v, "apps.mesh.test.", LDNS_RR_TYPE_A);
    assert_int_equal(ldns_pkt_get_rcode(r), LDNS_RCODE_NOERROR);
    assert_int_equal(ldns_pkt_ancount(r), 0);
    ldns_pkt_free(r);
    r = ask(v, "a.b.apps.mesh.test.", LDNS_RR_TYPE_A);
    assert_int_equal(ldns_pkt_get_rcode(r), LDNS_RCODE_NXDOMAIN);
    ldns_pkt_free(r);
    dnsview_free(&v);
}

/* Wildcard resource hosts: "*." and two labels or more; matched one label deep, after every
 * exact host. */
static void test_wildcard_hosts(void **state)
{
    (void)state;
    resource_t r[3];
    memset(r, 0, sizeof(r));
    const char *hosts[] = {"*.apps.example.com", "exact.apps.example.com", "*.example.com"};
    for (int i = 0; i < 3; i++) {
        snprintf(r[i].name, sizeof(r[i].name), "r%d", i);
        snprintf(r[i].site, sizeof(r[i].site), "s");
        snprintf(r[i].targets[0], sizeof(r[i].targets[0]), "127.0.0.1:80");
        r[i].ntargets = 1;
        snprintf(r[i].host, sizeof(r[i].host), "%s", hosts[i]);
        snprintf(r[i].path_prefix, sizeof(r[i].path_prefix), "%s", i == 0 ? "/" : "/x");
        char buf[256];
        const char *why = "";
        assert_int_equal(resource_check(&r[i], buf, sizeof(buf), &why), 0);
    }
#define M(h, p) resource_match_http(r, 3, h, strlen(h), p, strlen(p))
    assert_int_equal(M("a.apps.example.com", "/"), 0);
    assert_int_equal(M("A.Apps.Example.com.:8443", "/y"), 0);
    assert_int_equal(M("exact.apps.example.com", "/x/1"), 1);
    /* a path no exact resource of the host serves falls to the wildcard */
    assert_int_equal(M("exact.apps.example.com", "/"), 0);
    assert_int_equal(M("a.b.apps.example.com", "/"), -1); /* one label only */
    assert_int_equal(M("apps.example.com", "/x"), 2);     /* *.example.com covers it */
    assert_int_equal(M("apps.example.com", "/"), -1);
    assert_int_equal(M(".apps.example.com", "/"), -1);
#undef M
    const char *bad[] = {"*.com", "*", "*.", "a.*.example.com", "**.example.com", "*a.example.com"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(r[0].host, sizeof(r[0].host), "%s", bad[i]);
        char buf[256];
        const char *why = "";
        assert_int_not_equal(resource_check(&r[0], buf, sizeof(buf), &why), 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jws_jwk_and_kid),
        cmocka_unit_test(test_thumbprint_and_keyauth),
        cmocka_unit_test(test_key_pem),
        cmocka_unit_test(test_eab),
        cmocka_unit_test(test_csr),
        cmocka_unit_test(test_directory),
        cmocka_unit_test(test_order_and_authz),
        cmocka_unit_test(test_records),
        cmocka_unit_test(test_ari),
        cmocka_unit_test(test_dns01_txt),
        cmocka_unit_test(test_wildcard_hosts),
        cmocka_unit_test(test_wildcard_dns),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
