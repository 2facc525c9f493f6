/* The certificate store (node/tls/certstore.h): sealing (round trip, every tampered byte
 * refused, another mesh's key refused, the derivation fixed), PEM import of certificates made
 * here with OpenSSL (SAN names lowercased and deduplicated, CN fallback, wildcard ids, the
 * chain re-encoded and junk dropped, the key sealed and opening to a key that matches), every
 * refusal with its message (a mismatched key, a chain in the wrong order, an expired
 * certificate, garbage, an encrypted key, swapped files, no names, sizes), wildcard matching,
 * cert/ and tlsticket/ record round trips, and records refused for each inconsistency. */
#include "common/mp.h"
#include "node/tls/certstore.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sodium.h>

#include <cmocka.h>

#define NOW 1800000000000ull /* ms: 2027-01-15 */
#define DAY (24ull * 3600 * 1000)

static certstore_seal_key_t seal, other_seal;

/* ---- certificates made here --------------------------------------------------------------- */

struct pem {
    char *cert; /* malloc'd */
    char *key;  /* malloc'd */
    EVP_PKEY *pkey;
};

static char *bio_text(BIO *b)
{
    char *p;
    long n = BIO_get_mem_data(b, &p);
    char *s = malloc((size_t)n + 1);
    memcpy(s, p, (size_t)n);
    s[n] = '\0';
    return s;
}

/* A certificate for cn (NULL: no subject CN) with SAN (a "DNS:a,DNS:b" string, NULL: none),
 * valid from nb to na (ms), signed by issuer_key (NULL: self-signed) with issuer_name. */
static struct pem make_cert(const char *cn, const char *san, uint64_t nb, uint64_t na,
                            EVP_PKEY *issuer_key, const char *issuer_cn)
{
    struct pem p = {0};
    p.pkey = EVP_EC_gen("P-256");
    assert_non_null(p.pkey);
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    ASN1_TIME_set(X509_getm_notBefore(x), (time_t)(nb / 1000));
    ASN1_TIME_set(X509_getm_notAfter(x), (time_t)(na / 1000));
    X509_set_pubkey(x, p.pkey);
    X509_NAME *subj = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(subj, "O", MBSTRING_ASC, (const unsigned char *)"popmesh test", -1,
                               -1, 0);
    if (cn)
        X509_NAME_add_entry_by_txt(subj, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_NAME *iss = X509_NAME_new();
    X509_NAME_add_entry_by_txt(iss, "CN", MBSTRING_ASC,
                               (const unsigned char *)(issuer_cn ? issuer_cn
                                                       : cn      ? cn
                                                                 : "self"),
                               -1, -1, 0);
    X509_set_issuer_name(x, iss);
    X509_NAME_free(iss);
    if (san) {
        X509V3_CTX ctx;
        X509V3_set_ctx_nodb(&ctx);
        X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
        X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_alt_name, san);
        assert_non_null(ext);
        X509_add_ext(x, ext, -1);
        X509_EXTENSION_free(ext);
    }
    assert_true(X509_sign(x, issuer_key ? issuer_key : p.pkey, EVP_sha256()) > 0);
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(b, x);
    p.cert = bio_text(b);
    BIO_free(b);
    b = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(b, p.pkey, NULL, NULL, 0, NULL, NULL);
    p.key = bio_text(b);
    BIO_free(b);
    X509_free(x);
    return p;
}

static void pem_free(struct pem *p)
{
    free(p->cert);
    free(p->key);
    EVP_PKEY_free(p->pkey);
}

static char *concat(const char *a, const char *b)
{
    char *s = malloc(strlen(a) + strlen(b) + 1);
    strcpy(s, a);
    strcat(s, b);
    return s;
}

static int import(const char *chain, const char *key, cert_rec_t *c, char *err, size_t errlen)
{
    return cert_from_pem(&seal, chain, strlen(chain), key, strlen(key), NOW, c, err, errlen);
}

/* Imports and expects a refusal whose message holds text. */
static void expect_refused(const char *chain, const char *key, const char *text)
{
    cert_rec_t c;
    char err[512] = "";
    assert_int_equal(import(chain, key, &c, err, sizeof(err)), -EINVAL);
    if (!strstr(err, text)) {
        fprintf(stderr, "message '%s' lacks '%s'\n", err, text);
        fail();
    }
    assert_null(c.names);
    assert_null(c.key_sealed);
    assert_null(c.chain_pem);
}

/* ---- sealing ------------------------------------------------------------------------------ */

/* The one place cert/ keys are sealed: bound to the record's key (the helpers themselves are
 * tested in test_storeseal). */
static void test_seal_open(void **state)
{
    (void)state;
    const char *msg = "-----BEGIN PRIVATE KEY-----\nsecret\n-----END PRIVATE KEY-----\n";
    cert_rec_t c;
    memset(&c, 0, sizeof(c));
    snprintf(c.id, sizeof(c.id), "www.example.com");
    assert_int_equal(cert_seal_key(&seal, &c, (const uint8_t *)msg, strlen(msg)), 0);
    assert_int_equal(c.key_sealed_len, strlen(msg) + STORESEAL_OVERHEAD);
    assert_null(memmem(c.key_sealed, c.key_sealed_len, "secret", 6));
    uint8_t *plain;
    size_t plen;
    bool legacy = true;
    assert_int_equal(cert_open_key(&seal, &c, &plain, &plen, &legacy), 0);
    assert_false(legacy);
    assert_string_equal((char *)plain, msg);
    free(plain);
    /* Moved to another certificate's record: refused. */
    snprintf(c.id, sizeof(c.id), "evil.example.com");
    assert_int_equal(cert_open_key(&seal, &c, &plain, &plen, NULL), -EBADMSG);
    assert_null(plain);
    snprintf(c.id, sizeof(c.id), "www.example.com");
    /* Another mesh's store key: refused. */
    assert_int_equal(cert_open_key(&other_seal, &c, &plain, &plen, NULL), -EBADMSG);
    /* A key sealed before the store key opens, and says so. */
    free(c.key_sealed);
    assert_int_equal(storeseal_seal_legacy(&seal, (const uint8_t *)msg, strlen(msg),
                                           &c.key_sealed, &c.key_sealed_len),
                     0);
    assert_int_equal(cert_open_key(&seal, &c, &plain, &plen, &legacy), 0);
    assert_true(legacy);
    assert_string_equal((char *)plain, msg);
    free(plain);
    free(c.key_sealed);
}

static void test_import_san(void **state)
{
    (void)state;
    struct pem p = make_cert("ignored.example.test",
                             "DNS:WWW.Example.Test,DNS:*.apps.example.test,DNS:www.example.test,"
                             "IP:10.0.0.1,DNS:api.example.test.",
                             NOW - DAY, NOW + 90 * DAY, NULL, "Test CA");
    /* Junk around the block, as openssl pkcs12 writes it, is dropped. */
    char *chain = concat("Bag Attributes\n    friendlyName: x\n", p.cert);
    cert_rec_t c;
    char err[512] = "";
    assert_int_equal(import(chain, p.key, &c, err, sizeof(err)), 0);
    assert_int_equal(c.nnames, 3); /* lowercased, deduplicated, no IP, no trailing dot, no CN */
    assert_string_equal(c.names[0], "www.example.test");
    assert_string_equal(c.names[1], "*.apps.example.test");
    assert_string_equal(c.names[2], "api.example.test");
    assert_string_equal(c.id, "www.example.test");
    assert_int_equal(c.not_before_ms, NOW - DAY);
    assert_int_equal(c.not_after_ms, NOW + 90 * DAY);
    assert_string_equal(c.issuer, "CN = Test CA");
    assert_string_equal(c.state, "valid");
    assert_int_equal(c.created_ms, NOW);
    assert_string_equal(c.chain_pem, p.cert); /* re-encoded: the same block, junk gone */
    assert_null(memmem(c.key_sealed, c.key_sealed_len, "PRIVATE", 7));
    /* The sealed key opens to a key that matches the certificate. */
    uint8_t *plain;
    size_t plen;
    assert_int_equal(cert_open_key(&seal, &c, &plain, &plen, NULL), 0);
    BIO *b = BIO_new_mem_buf(plain, (int)plen);
    EVP_PKEY *k = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    assert_non_null(k);
    assert_int_equal(EVP_PKEY_eq(k, p.pkey), 1);
    EVP_PKEY_free(k);
    BIO_free(b);
    sodium_memzero(plain, plen);
    free(plain);
    cert_rec_free(&c);
    cert_rec_free(&c); /* twice is fine */
    free(chain);
    pem_free(&p);
}

static void test_import_cn_and_wildcard(void **state)
{
    (void)state;
    struct pem p = make_cert("Only.CN.example.test", NULL, NOW - DAY, NOW + DAY, NULL, NULL);
    cert_rec_t c;
    char err[512];
    assert_int_equal(import(p.cert, p.key, &c, err, sizeof(err)), 0);
    assert_int_equal(c.nnames, 1);
    assert_string_equal(c.names[0], "only.cn.example.test");
    cert_rec_free(&c);
    pem_free(&p);
    /* A SAN without DNS entries: the CN is used. */
    p = make_cert("cn.example.test", "IP:192.0.2.1", NOW - DAY, NOW + DAY, NULL, NULL);
    assert_int_equal(import(p.cert, p.key, &c, err, sizeof(err)), 0);
    assert_string_equal(c.names[0], "cn.example.test");
    cert_rec_free(&c);
    pem_free(&p);
    /* A wildcard first name makes a "_wild." id. */
    p = make_cert(NULL, "DNS:*.example.test,DNS:example.test", NOW - DAY, NOW + DAY, NULL, NULL);
    assert_int_equal(import(p.cert, p.key, &c, err, sizeof(err)), 0);
    assert_string_equal(c.id, "_wild.example.test");
    assert_string_equal(c.names[1], "example.test");
    cert_rec_free(&c);
    pem_free(&p);
}

static void test_import_chain(void **state)
{
    (void)state;
    struct pem ca = make_cert("Test Intermediate", NULL, NOW - DAY, NOW + 365 * DAY, NULL, NULL);
    struct pem leaf = make_cert(NULL, "DNS:shop.example.test", NOW - DAY, NOW + 30 * DAY, ca.pkey,
                                "Test Intermediate");
    char *chain = concat(leaf.cert, ca.cert);
    cert_rec_t c;
    char err[512];
    assert_int_equal(import(chain, leaf.key, &c, err, sizeof(err)), 0);
    assert_string_equal(c.chain_pem, chain); /* both certificates, leaf first */
    assert_string_equal(c.issuer, "CN = Test Intermediate");
    cert_rec_free(&c);
    free(chain);
    /* The intermediate first: refused, and the message says what is wrong. */
    chain = concat(ca.cert, leaf.cert);
    expect_refused(chain, leaf.key, "must start with the certificate of the key");
    free(chain);
    pem_free(&leaf);
    pem_free(&ca);
}

static void test_import_refused(void **state)
{
    (void)state;
    struct pem p = make_cert(NULL, "DNS:a.example.test", NOW - DAY, NOW + DAY, NULL, NULL);
    struct pem q = make_cert(NULL, "DNS:b.example.test", NOW - DAY, NOW + DAY, NULL, NULL);
    expect_refused(p.cert, q.key, "the key does not match the certificate");
    expect_refused("garbage\n", p.key, "not a PEM certificate");
    expect_refused("", p.key, "the certificate file is empty");
    expect_refused(p.cert, "", "the key file is empty");
    expect_refused(p.cert, "garbage\n", "not a PEM private key");
    expect_refused(p.cert, p.cert, "holds a certificate, not a private key");
    expect_refused(p.key, p.key, "holds a private key, not a certificate");
    expect_refused("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", p.key,
                   "the certificate is malformed");
    /* A valid first certificate followed by a broken one. */
    char *chain = concat(p.cert, "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n");
    expect_refused(chain, p.key, "certificate 2 of the chain is malformed");
    free(chain);
    /* An encrypted key: refused, never a prompt. */
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_PKCS8PrivateKey(b, p.pkey, EVP_aes_128_cbc(), "pw", 2, NULL, NULL);
    char *enc = bio_text(b);
    BIO_free(b);
    expect_refused(p.cert, enc, "the key is encrypted");
    free(enc);
    /* Sizes. */
    cert_rec_t c;
    char err[512];
    assert_int_equal(cert_from_pem(&seal, p.cert, CERT_CHAIN_MAX + 1, p.key, strlen(p.key), NOW, &c,
                                   err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "the limit is"));
    pem_free(&q);
    pem_free(&p);
    /* Expired, and no name at all. */
    p = make_cert(NULL, "DNS:old.example.test", NOW - 10 * DAY, NOW - DAY, NULL, NULL);
    expect_refused(p.cert, p.key, "the certificate has expired (not after ");
    pem_free(&p);
    p = make_cert(NULL, NULL, NOW - DAY, NOW + DAY, NULL, NULL);
    expect_refused(p.cert, p.key, "names no DNS name");
    pem_free(&p);
    p = make_cert(NULL, "DNS:bad_name!.example.test", NOW - DAY, NOW + DAY, NULL, NULL);
    expect_refused(p.cert, p.key, "cannot be served");
    pem_free(&p);
}

/* ---- names -------------------------------------------------------------------------------- */

static void test_name_matches(void **state)
{
    (void)state;
    assert_true(cert_name_matches("www.example.com", "www.example.com"));
    assert_false(cert_name_matches("www.example.com", "example.com"));
    assert_true(cert_name_matches("*.example.com", "www.example.com"));
    assert_true(cert_name_matches("*.example.com", "a-b.example.com"));
    assert_false(cert_name_matches("*.example.com", "example.com"));     /* no label */
    assert_false(cert_name_matches("*.example.com", ".example.com"));    /* empty label */
    assert_false(cert_name_matches("*.example.com", "a.b.example.com")); /* two labels */
    assert_false(cert_name_matches("*.example.com", "www.example.org"));
    assert_false(cert_name_matches("*.example.com", "wwwexample.com"));
    assert_false(cert_name_matches("w*.example.com", "www.example.com")); /* partial: no */
    assert_true(cert_name_matches("*.example.com", "*.example.com"));     /* exact */
}

static void test_names_and_ids(void **state)
{
    (void)state;
    const char *why;
    char id[CERT_ID_MAX + 1], key[300];
    assert_int_equal(cert_check_name("www.example.com", &why), 0);
    assert_int_equal(cert_check_name("*.example.com", &why), 0);
    assert_int_equal(cert_check_name("*.com", &why), -EINVAL);
    assert_int_equal(cert_check_name("a.*.example.com", &why), -EINVAL);
    assert_int_equal(cert_check_name("*x.example.com", &why), -EINVAL);
    assert_int_equal(cert_check_name("WWW.example.com", &why), -EINVAL);
    assert_int_equal(cert_check_name("www.example.com.", &why), -EINVAL);
    assert_int_equal(cert_check_name("", &why), -EINVAL);
    assert_int_equal(cert_check_name("-a.example.com", &why), -EINVAL);
    /* A literal "_wild." name would share the id of "*." of its parent (found by fuzz_certrec:
     * "_wild.enames" made an id no key accepts). */
    assert_int_equal(cert_check_name("_wild.example.com", &why), -EINVAL);
    assert_non_null(strstr(why, "_wild"));
    assert_int_equal(cert_check_name("_wild.enames", &why), -EINVAL);
    assert_int_equal(cert_id_for("_wild.example.com", id, sizeof(id)), -EINVAL);
    assert_int_equal(cert_check_name("_wilder.example.com", &why), 0);
    assert_int_equal(cert_id_for("*.example.com", id, sizeof(id)), 0);
    assert_string_equal(id, "_wild.example.com");
    assert_int_equal(cert_key(id, key, sizeof(key)), 0);
    assert_string_equal(key, "cert/_wild.example.com");
    char back[CERT_ID_MAX + 1];
    assert_int_equal(cert_key_id(key, strlen(key), back, sizeof(back)), 0);
    assert_string_equal(back, id);
    assert_int_equal(cert_key_id("cert/", 5, back, sizeof(back)), -EINVAL);
    assert_int_equal(cert_key_id("cert/A.b", 8, back, sizeof(back)), -EINVAL);
    assert_int_equal(cert_key_id("certs/a.b", 9, back, sizeof(back)), -EINVAL);
    assert_int_equal(cert_key("_wild.com", key, sizeof(key)), -EINVAL);
    assert_int_equal(cert_key("../x", key, sizeof(key)), -EINVAL);
    /* A 253-byte wildcard name has no id: "_wild." is one byte longer. */
    char longname[260];
    memset(longname, 'a', sizeof(longname));
    memcpy(longname, "*.", 2);
    for (int i = 63; i < 253; i += 64)
        longname[i] = '.';
    longname[253] = '\0';
    assert_int_equal(cert_check_name(longname, &why), 0);
    assert_int_equal(cert_id_for(longname, id, sizeof(id)), -EINVAL);
    uint64_t epoch;
    assert_int_equal(tlsticket_key(0x1234, key, sizeof(key)), 0);
    assert_string_equal(key, "tlsticket/0000000000001234");
    assert_int_equal(tlsticket_key_epoch(key, strlen(key), &epoch), 0);
    assert_int_equal(epoch, 0x1234);
    assert_int_equal(tlsticket_key_epoch("tlsticket/000000000000123G", 26, &epoch), -EINVAL);
    assert_int_equal(tlsticket_key_epoch("tlsticket/123", 13, &epoch), -EINVAL);
}

/* ---- records ------------------------------------------------------------------------------ */

static size_t pack_cert(const cert_rec_t *c, uint8_t *out, size_t cap)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    cert_pack(&pk, c);
    assert_true(sb.size <= cap);
    memcpy(out, sb.data, sb.size);
    size_t n = sb.size;
    msgpack_sbuffer_destroy(&sb);
    return n;
}

static void test_cert_record(void **state)
{
    (void)state;
    struct pem p = make_cert(NULL, "DNS:*.example.test,DNS:example.test", NOW - DAY, NOW + DAY,
                             NULL, "Issuer");
    cert_rec_t c, back;
    char err[512];
    assert_int_equal(import(p.cert, p.key, &c, err, sizeof(err)), 0);
    snprintf(c.source, sizeof(c.source), "acme");
    snprintf(c.obtained_by, sizeof(c.obtained_by), "pop-2");
    snprintf(c.error, sizeof(c.error), "rate limited");
    c.renew_after_ms = NOW + 1;
    static uint8_t buf[128 * 1024];
    size_t n = pack_cert(&c, buf, sizeof(buf));
    const char *why = "";
    assert_int_equal(cert_parse(buf, n, c.id, &back, &why), 0);
    assert_string_equal(back.id, c.id);
    assert_int_equal(back.nnames, 2);
    assert_string_equal(back.names[1], "example.test");
    assert_string_equal(back.chain_pem, c.chain_pem);
    assert_int_equal(back.key_sealed_len, c.key_sealed_len);
    assert_memory_equal(back.key_sealed, c.key_sealed, c.key_sealed_len);
    assert_int_equal(back.not_after_ms, c.not_after_ms);
    assert_string_equal(back.issuer, "CN = Issuer");
    assert_string_equal(back.source, "acme");
    assert_string_equal(back.obtained_by, "pop-2");
    assert_string_equal(back.error, "rate limited");
    assert_int_equal(back.renew_after_ms, NOW + 1);
    cert_rec_free(&back);
    /* The id must be the key's, and the first name's. */
    assert_int_equal(cert_parse(buf, n, "example.test", &back, &why), -EBADMSG);
    assert_null(back.names);
    /* Every truncation is refused, and nothing leaks (ASan). */
    for (size_t i = 0; i < n; i++)
        assert_int_equal(cert_parse(buf, i, c.id, &back, &why), -EBADMSG);

    /* Inconsistent records. */
    cert_rec_t bad = c;
    snprintf(bad.source, sizeof(bad.source), "manual");
    n = pack_cert(&bad, buf, sizeof(buf));
    assert_int_equal(cert_parse(buf, n, c.id, &back, &why), -EBADMSG);
    assert_non_null(strstr(why, "source"));
    bad = c;
    snprintf(bad.state, sizeof(bad.state), "Valid!");
    n = pack_cert(&bad, buf, sizeof(buf));
    assert_int_equal(cert_parse(buf, n, c.id, &back, &why), -EBADMSG);
    bad = c;
    bad.not_before_ms = bad.not_after_ms + 1;
    n = pack_cert(&bad, buf, sizeof(buf));
    assert_int_equal(cert_parse(buf, n, c.id, &back, &why), -EBADMSG);
    bad = c;
    bad.chain_pem = (char *)"";
    n = pack_cert(&bad, buf, sizeof(buf));
    assert_int_equal(cert_parse(buf, n, c.id, &back, &why), -EBADMSG); /* a key, no chain */
    assert_non_null(strstr(why, "without a chain"));
    bad.key_sealed_len = 0;
    snprintf(bad.state, sizeof(bad.state), "failed");
    n = pack_cert(&bad, buf, sizeof(buf));
    assert_int_equal(cert_parse(buf, n, c.id, &back, &why), 0); /* not obtained yet: fine */
    assert_string_equal(back.chain_pem, "");
    cert_rec_free(&back);
    bad = c;
    bad.key_sealed_len = 10; /* too short to be sealed */
    n = pack_cert(&bad, buf, sizeof(buf));
    assert_int_equal(cert_parse(buf, n, c.id, &back, &why), -EBADMSG);
    bad = c;
    char names[2][CERT_ID_MAX + 1] = {"*.example.test", "Bad.example.test"};
    bad.names = names;
    n = pack_cert(&bad, buf, sizeof(buf));
    assert_int_equal(cert_parse(buf, n, c.id, &back, &why), -EBADMSG);
    bad.nnames = 0;
    n = pack_cert(&bad, buf, sizeof(buf));
    assert_int_equal(cert_parse(buf, n, c.id, &back, &why), -EBADMSG);
    /* Not a map, an array of names that is not strings. */
    assert_int_equal(cert_parse((const uint8_t *)"\x91\x01", 2, c.id, &back, &why), -EBADMSG);
    cert_rec_free(&c);
    pem_free(&p);
}

static void test_ticket_record(void **state)
{
    (void)state;
    uint8_t key[TLSTICKET_KEY_LEN];
    randombytes_buf(key, sizeof(key));
    tlsticket_rec_t t = {.epoch = 77, .created_ms = NOW}, back;
    assert_int_equal(tlsticket_seal_key(&seal, &t, key), 0);
    assert_int_equal(t.key_sealed_len, sizeof(t.key_sealed));
    snprintf(t.created_by, sizeof(t.created_by), "pop-3");
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    tlsticket_pack(&pk, &t);
    const char *why = "";
    assert_int_equal(tlsticket_parse((uint8_t *)sb.data, sb.size, 77, &back, &why), 0);
    assert_int_equal(back.epoch, 77);
    assert_string_equal(back.created_by, "pop-3");
    uint8_t plain[TLSTICKET_KEY_LEN];
    assert_int_equal(tlsticket_open_key(&seal, &back, plain, NULL), 0);
    assert_memory_equal(plain, key, sizeof(key));
    /* Moved to another period's record: refused. */
    back.epoch = 78;
    assert_int_equal(tlsticket_open_key(&seal, &back, plain, NULL), -EBADMSG);
    assert_int_equal(tlsticket_parse((uint8_t *)sb.data, sb.size, 78, &back, &why), -EBADMSG);
    assert_non_null(strstr(why, "epoch"));
    for (size_t i = 0; i < sb.size; i++)
        assert_int_equal(tlsticket_parse((uint8_t *)sb.data, i, 77, &back, &why), -EBADMSG);
    msgpack_sbuffer_destroy(&sb);
    /* A key of the wrong size. */
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    t.key_sealed_len = 80;
    tlsticket_pack(&pk, &t);
    assert_int_equal(tlsticket_parse((uint8_t *)sb.data, sb.size, 77, &back, &why), -EBADMSG);
    msgpack_sbuffer_destroy(&sb);
}

static int setup(void **state)
{
    (void)state;
    if (sodium_init() < 0)
        return -1;
    meshkey_t a, b;
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    randombytes_buf(a.sk, sizeof(a.sk));
    randombytes_buf(b.sk, sizeof(b.sk));
    storekey_t ka, kb;
    storekey_generate(&ka);
    storekey_generate(&kb);
    storeseal_init(&seal, &ka, &a);
    storeseal_init(&other_seal, &kb, &b);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seal_open),
        cmocka_unit_test(test_import_san),   cmocka_unit_test(test_import_cn_and_wildcard),
        cmocka_unit_test(test_import_chain), cmocka_unit_test(test_import_refused),
        cmocka_unit_test(test_name_matches), cmocka_unit_test(test_names_and_ids),
        cmocka_unit_test(test_cert_record),  cmocka_unit_test(test_ticket_record),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
