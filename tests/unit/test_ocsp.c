/* Unit tests of node/tls/ocsprec (the ocsp/ record and the checks every response passes before
 * it is stored or stapled) and of ocspfetch's rule (who fetches, when).
 *
 * Certificates and responses are made here with OpenSSL: a CA, leaves with and without an
 * OCSP responder, a responder the CA delegated (OCSP signing) and one it did not, another CA;
 * responses good, revoked, stale, from the future, without nextUpdate, about another leaf,
 * signed by the wrong key, not successful, with bytes after them. */
#include "node/tls/ocspfetch.h"
#include "node/tls/ocsprec.h"

#include "common/clock.h"
#include "common/mp.h"
#include "node/tls/tlsctx.h"
#include "storage/store.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ev.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <sodium.h>

/* ---- the record ---------------------------------------------------------------------------- */

static void pack(const ocsp_rec_t *r, msgpack_sbuffer *sb)
{
    msgpack_packer pk;
    msgpack_sbuffer_init(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    ocsp_pack(&pk, r);
}

static void test_record(void **state)
{
    (void)state;
    uint8_t der[] = {0x30, 0x03, 0x0a, 0x01, 0x00};
    ocsp_rec_t r = {.der = der,
                    .der_len = sizeof(der),
                    .status = OCSP_ST_REVOKED,
                    .this_update_ms = 1000,
                    .next_update_ms = 2000,
                    .fetched_ms = 1500};
    snprintf(r.fetched_by, sizeof(r.fetched_by), "pop-1");
    msgpack_sbuffer sb;
    pack(&r, &sb);
    ocsp_rec_t p;
    const char *why = NULL;
    assert_int_equal(ocsp_parse((const uint8_t *)sb.data, sb.size, &p, &why), 0);
    assert_int_equal(p.der_len, sizeof(der));
    assert_memory_equal(p.der, der, sizeof(der));
    assert_int_equal(p.status, OCSP_ST_REVOKED);
    assert_int_equal(p.this_update_ms, 1000);
    assert_int_equal(p.next_update_ms, 2000);
    assert_int_equal(p.fetched_ms, 1500);
    assert_string_equal(p.fetched_by, "pop-1");
    ocsp_rec_free(&p);
    /* every byte cut off is refused cleanly */
    for (size_t n = 0; n < sb.size; n++)
        assert_int_equal(ocsp_parse((const uint8_t *)sb.data, n, &p, &why), -EBADMSG);
    msgpack_sbuffer_destroy(&sb);

    /* times out of order */
    r.next_update_ms = 1000;
    pack(&r, &sb);
    assert_int_equal(ocsp_parse((const uint8_t *)sb.data, sb.size, &p, &why), -EBADMSG);
    assert_string_equal(why, "this_update_ms is not before next_update_ms");
    msgpack_sbuffer_destroy(&sb);
    r.next_update_ms = 2000;
    /* no der, and one too large */
    r.der_len = 0;
    pack(&r, &sb);
    assert_int_equal(ocsp_parse((const uint8_t *)sb.data, sb.size, &p, &why), -EBADMSG);
    msgpack_sbuffer_destroy(&sb);
    uint8_t *big = calloc(1, OCSP_DER_MAX + 1);
    r.der = big;
    r.der_len = OCSP_DER_MAX + 1;
    pack(&r, &sb);
    assert_int_equal(ocsp_parse((const uint8_t *)sb.data, sb.size, &p, &why), -EBADMSG);
    msgpack_sbuffer_destroy(&sb);
    free(big);
    /* a status that is not one of the three */
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 6);
    mpw_kv_bin(&pk, "der", der, sizeof(der));
    mpw_kv_str(&pk, "status", "fine");
    mpw_kv_u64(&pk, "this_update_ms", 1);
    mpw_kv_u64(&pk, "next_update_ms", 2);
    mpw_kv_str(&pk, "fetched_by", "x");
    mpw_kv_u64(&pk, "fetched_ms", 1);
    assert_int_equal(ocsp_parse((const uint8_t *)sb.data, sb.size, &p, &why), -EBADMSG);
    assert_non_null(strstr(why, "status"));
    msgpack_sbuffer_destroy(&sb);

    char key[300], id[CERT_ID_MAX + 1];
    assert_int_equal(ocsp_key("www.example.com", key, sizeof(key)), 0);
    assert_string_equal(key, "ocsp/www.example.com");
    assert_int_equal(ocsp_key_id(key, strlen(key), id, sizeof(id)), 0);
    assert_string_equal(id, "www.example.com");
    assert_int_equal(ocsp_key_id("cert/a.b", 8, id, sizeof(id)), -EINVAL);
    assert_int_equal(ocsp_key_id("ocsp/", 5, id, sizeof(id)), -EINVAL);
    assert_int_equal(ocsp_key("../x", key, sizeof(key)), -EINVAL);
    assert_int_equal(ocsp_refresh_at(1000, 3000), 2000);
    assert_int_equal(ocsp_refresh_at(3000, 3000), 3000);
}

/* ---- certificates and responses ------------------------------------------------------------ */

static EVP_PKEY *mk_key(void)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    assert_non_null(k);
    return k;
}

/* A certificate for cn with key, signed by issuer/ikey (NULL: self-signed). ca: a CA; ocsp_url:
 * a responder in its AIA; eku: an extendedKeyUsage value (NULL: none). Caller owns it. */
static X509 *mk_x509(const char *cn, EVP_PKEY *key, X509 *issuer, EVP_PKEY *ikey, bool ca,
                     const char *ocsp_url, const char *eku)
{
    X509 *x = X509_new();
    assert_non_null(x);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), (long)randombytes_uniform(1u << 30));
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, key);
    X509_NAME *nm = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : nm);
    char san[300], aia[300];
    snprintf(san, sizeof(san), "DNS:%s", cn);
    snprintf(aia, sizeof(aia), "OCSP;URI:%s", ocsp_url ? ocsp_url : "");
    struct {
        int nid;
        const char *v;
    } exts[] = {{NID_subject_alt_name, ca ? NULL : san},
                {NID_basic_constraints, ca ? "critical,CA:TRUE" : "CA:FALSE"},
                {NID_key_usage, ca ? "critical,keyCertSign,cRLSign" : "digitalSignature"},
                {NID_ext_key_usage, eku},
                {NID_info_access, ocsp_url ? aia : NULL}};
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
    for (size_t i = 0; i < sizeof(exts) / sizeof(exts[0]); i++) {
        if (!exts[i].v)
            continue;
        X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, exts[i].nid, exts[i].v);
        assert_non_null(ext);
        X509_add_ext(x, ext, -1);
        X509_EXTENSION_free(ext);
    }
    assert_true(X509_sign(x, ikey ? ikey : key, EVP_sha256()) > 0);
    return x;
}

struct pki {
    EVP_PKEY *cakey, *leafkey, *otherkey, *rkey, *badcakey;
    X509 *ca, *leaf, *leaf2, *noaia, *delegated, *undelegated, *badca, *selfsigned;
};

static struct pki P;

static int setup(void **state)
{
    (void)state;
    P.cakey = mk_key();
    P.leafkey = mk_key();
    P.otherkey = mk_key();
    P.rkey = mk_key();
    P.badcakey = mk_key();
    P.ca = mk_x509("test CA", P.cakey, NULL, NULL, true, NULL, NULL);
    P.badca = mk_x509("test CA", P.badcakey, NULL, NULL, true, NULL, NULL); /* same name */
    P.leaf = mk_x509("www.example.com", P.leafkey, P.ca, P.cakey, false, "http://127.0.0.1:9/",
                     "serverAuth");
    P.leaf2 = mk_x509("other.example.com", P.otherkey, P.ca, P.cakey, false,
                      "http://127.0.0.1:9/", "serverAuth");
    P.noaia = mk_x509("plain.example.com", P.otherkey, P.ca, P.cakey, false, NULL, "serverAuth");
    P.delegated = mk_x509("responder", P.rkey, P.ca, P.cakey, false, NULL, "OCSPSigning");
    P.undelegated = mk_x509("responder", P.rkey, P.ca, P.cakey, false, NULL, "serverAuth");
    P.selfsigned = mk_x509("responder", P.rkey, NULL, NULL, false, NULL, "OCSPSigning");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    X509 *xs[] = {P.ca, P.leaf, P.leaf2, P.noaia, P.delegated, P.undelegated, P.badca,
                  P.selfsigned};
    for (size_t i = 0; i < sizeof(xs) / sizeof(xs[0]); i++)
        X509_free(xs[i]);
    EVP_PKEY *ks[] = {P.cakey, P.leafkey, P.otherkey, P.rkey, P.badcakey};
    for (size_t i = 0; i < sizeof(ks) / sizeof(ks[0]); i++)
        EVP_PKEY_free(ks[i]);
    return 0;
}

struct resp_opts {
    X509 *about;       /* the leaf the SingleResponse is about (its issuer: P.ca) */
    int status;        /* V_OCSP_CERTSTATUS_* */
    long this_s;       /* thisUpdate, s from now */
    long next_s;       /* nextUpdate, s from now; 0 = none */
    X509 *signer;      /* and its key */
    EVP_PKEY *skey;
    int resp_status;   /* OCSP_RESPONSE_STATUS_* */
};

static uint8_t *mk_resp(const struct resp_opts *o, size_t *len)
{
    OCSP_CERTID *id = OCSP_cert_to_id(NULL, o->about, P.ca);
    OCSP_BASICRESP *bs = OCSP_BASICRESP_new();
    ASN1_TIME *thisupd = X509_gmtime_adj(NULL, o->this_s);
    ASN1_TIME *nextupd = o->next_s ? X509_gmtime_adj(NULL, o->next_s) : NULL;
    ASN1_TIME *revtime =
        o->status == V_OCSP_CERTSTATUS_REVOKED ? X509_gmtime_adj(NULL, -30) : NULL;
    assert_non_null(OCSP_basic_add1_status(bs, id, o->status, 0, revtime, thisupd, nextupd));
    assert_int_equal(OCSP_basic_sign(bs, o->signer, o->skey, EVP_sha256(), NULL, 0), 1);
    OCSP_RESPONSE *resp =
        o->resp_status == OCSP_RESPONSE_STATUS_SUCCESSFUL
            ? OCSP_response_create(OCSP_RESPONSE_STATUS_SUCCESSFUL, bs)
            : OCSP_response_create(o->resp_status, NULL);
    unsigned char *der = NULL;
    int l = i2d_OCSP_RESPONSE(resp, &der);
    assert_true(l > 0);
    uint8_t *out = malloc((size_t)l + 1);
    memcpy(out, der, (size_t)l);
    *len = (size_t)l;
    OPENSSL_free(der);
    OCSP_RESPONSE_free(resp);
    OCSP_BASICRESP_free(bs);
    OCSP_CERTID_free(id);
    ASN1_TIME_free(thisupd);
    ASN1_TIME_free(nextupd);
    ASN1_TIME_free(revtime);
    return out;
}

static struct resp_opts good(void)
{
    return (struct resp_opts){.about = P.leaf,
                              .status = V_OCSP_CERTSTATUS_GOOD,
                              .this_s = -60,
                              .next_s = 3600,
                              .signer = P.ca,
                              .skey = P.cakey,
                              .resp_status = OCSP_RESPONSE_STATUS_SUCCESSFUL};
}

/* ocsp_check's verdict on a response made with o; *st gets the status when accepted. */
static int check(const struct resp_opts *o, enum ocsp_status *st, const char **why)
{
    size_t len;
    uint8_t *der = mk_resp(o, &len);
    ocsp_info_t info;
    int rc = ocsp_check(der, len, P.leaf, P.ca, clock_wall_ms(), &info, why);
    if (st)
        *st = info.status;
    if (rc == 0) {
        assert_true(info.this_update_ms < info.next_update_ms);
        /* one byte more is not one response */
        der[len] = 0;
        const char *w2;
        assert_int_equal(ocsp_check(der, len + 1, P.leaf, P.ca, clock_wall_ms(), &info, &w2),
                         -EBADMSG);
    }
    free(der);
    return rc;
}

static void test_check(void **state)
{
    (void)state;
    enum ocsp_status st;
    const char *why = NULL;
    struct resp_opts o = good();
    assert_int_equal(check(&o, &st, &why), 0);
    assert_int_equal(st, OCSP_ST_GOOD);

    o = good();
    o.status = V_OCSP_CERTSTATUS_REVOKED;
    assert_int_equal(check(&o, &st, &why), 0);
    assert_int_equal(st, OCSP_ST_REVOKED); /* accepted as an answer; the caller never staples it */
    o = good();
    o.status = V_OCSP_CERTSTATUS_UNKNOWN;
    assert_int_equal(check(&o, &st, &why), 0);
    assert_int_equal(st, OCSP_ST_UNKNOWN);

    /* a responder the CA delegated (OCSP signing), its certificate in the response */
    o = good();
    o.signer = P.delegated;
    o.skey = P.rkey;
    assert_int_equal(check(&o, &st, &why), 0);

    struct {
        const char *what;
        void (*mod)(struct resp_opts *);
    } bad[] = {
        {"about another certificate", NULL},
        {"signed by another CA of the same name", NULL},
        {"signed by a responder without OCSP signing", NULL},
        {"signed by a self-signed responder", NULL},
        {"stale", NULL},
        {"thisUpdate in the future", NULL},
        {"no nextUpdate", NULL},
        {"try later", NULL},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        o = good();
        switch (i) {
        case 0: o.about = P.leaf2; break;
        case 1: o.signer = P.badca, o.skey = P.badcakey; break;
        case 2: o.signer = P.undelegated, o.skey = P.rkey; break;
        case 3: o.signer = P.selfsigned, o.skey = P.rkey; break;
        case 4: o.this_s = -7200, o.next_s = -60; break;
        case 5: o.this_s = 3600, o.next_s = 7200; break;
        case 6: o.next_s = 0; break;
        case 7: o.resp_status = OCSP_RESPONSE_STATUS_TRYLATER; break;
        }
        why = NULL;
        if (check(&o, &st, &why) != -EBADMSG)
            fail_msg("accepted a response %s", bad[i].what);
        assert_non_null(why);
        print_message("refused (%s): %s\n", bad[i].what, why);
    }
    /* garbage and nothing */
    uint8_t junk[64];
    randombytes_buf(junk, sizeof(junk));
    ocsp_info_t info;
    assert_int_equal(ocsp_check(junk, sizeof(junk), P.leaf, P.ca, clock_wall_ms(), &info, &why),
                     -EBADMSG);
    assert_int_equal(ocsp_check(NULL, 0, P.leaf, P.ca, clock_wall_ms(), &info, &why), -EBADMSG);
    /* a response for leaf checked as if it were leaf2's */
    o = good();
    size_t len;
    uint8_t *der = mk_resp(&o, &len);
    assert_int_equal(ocsp_check(der, len, P.leaf2, P.ca, clock_wall_ms(), &info, &why), -EBADMSG);
    /* and the same response later than its nextUpdate */
    assert_int_equal(
        ocsp_check(der, len, P.leaf, P.ca, clock_wall_ms() + 3601 * 1000ull, &info, &why),
        -EBADMSG);
    free(der);
}

/* ocsp_judge: the one verdict ocspfetch, tlsctx and cert.list share. Only GOOD is stapled;
 * STALE and REVOKED keep their times for the operator; a mismatch is UNUSABLE with its reason. */
static void test_judge(void **state)
{
    (void)state;
    uint64_t now = clock_wall_ms();
    ocsp_info_t info;
    const char *why;
    size_t len;
    struct resp_opts o = good();
    uint8_t *der = mk_resp(&o, &len);
    why = NULL;
    assert_int_equal(ocsp_judge(der, len, P.leaf, P.ca, now, &info, &why), OCSP_STATE_GOOD);
    assert_int_equal(info.status, OCSP_ST_GOOD);
    assert_true(info.next_update_ms > now + 3590 * 1000ull);
    assert_true(info.next_update_ms <= now + 3601 * 1000ull);
    assert_int_equal(info.revoked_ms, 0);
    /* the same response once its nextUpdate has passed: stale, times kept, never stapled */
    why = NULL;
    assert_int_equal(ocsp_judge(der, len, P.leaf, P.ca, now + 3601 * 1000ull, &info, &why),
                     OCSP_STATE_STALE);
    assert_non_null(why);
    assert_int_equal(info.status, OCSP_ST_GOOD);
    assert_true(info.next_update_ms > now);
    assert_int_equal(ocsp_check(der, len, P.leaf, P.ca, now + 3601 * 1000ull, &info, &why),
                     -EBADMSG);
    /* mismatched: a response about www checked for other */
    why = NULL;
    assert_int_equal(ocsp_judge(der, len, P.leaf2, P.ca, now, &info, &why), OCSP_STATE_UNUSABLE);
    assert_string_equal(why, "the response is not about this certificate");
    assert_int_equal(info.next_update_ms, 0);
    free(der);

    o = good();
    o.this_s = -7200, o.next_s = -60;
    der = mk_resp(&o, &len);
    assert_int_equal(ocsp_judge(der, len, P.leaf, P.ca, now, &info, &why), OCSP_STATE_STALE);
    assert_string_equal(why, "nextUpdate has passed (a stale response)");
    free(der);

    o = good();
    o.status = V_OCSP_CERTSTATUS_REVOKED; /* revoked 30 s ago (mk_resp) */
    der = mk_resp(&o, &len);
    assert_int_equal(ocsp_judge(der, len, P.leaf, P.ca, now, &info, &why), OCSP_STATE_REVOKED);
    assert_int_equal(info.status, OCSP_ST_REVOKED);
    assert_true(info.revoked_ms >= now - 35 * 1000ull && info.revoked_ms <= now - 25 * 1000ull);
    free(der);

    o = good();
    o.status = V_OCSP_CERTSTATUS_UNKNOWN;
    der = mk_resp(&o, &len);
    assert_int_equal(ocsp_judge(der, len, P.leaf, P.ca, now, &info, &why), OCSP_STATE_UNKNOWN);
    free(der);

    o = good();
    o.signer = P.badca, o.skey = P.badcakey; /* same name, another key */
    der = mk_resp(&o, &len);
    assert_int_equal(ocsp_judge(der, len, P.leaf, P.ca, now, &info, &why), OCSP_STATE_UNUSABLE);
    assert_non_null(strstr(why, "signature"));
    free(der);

    /* the stored record: none is pending; one that does not parse is unusable; the DER decides,
     * not the status the record claims */
    ocsp_rec_t r;
    assert_int_equal(ocsp_judge_record(NULL, 0, P.leaf, P.ca, now, &r, &info, &why),
                     OCSP_STATE_PENDING);
    assert_null(r.der);
    uint8_t junk[] = {0x81, 0xa1, 'x', 0x01};
    assert_int_equal(ocsp_judge_record(junk, sizeof(junk), P.leaf, P.ca, now, &r, &info, &why),
                     OCSP_STATE_UNUSABLE);
    assert_null(r.der);
    o = good();
    o.status = V_OCSP_CERTSTATUS_REVOKED;
    der = mk_resp(&o, &len);
    ocsp_rec_t claimed = {.der = der,
                          .der_len = len,
                          .status = OCSP_ST_GOOD,
                          .this_update_ms = 1,
                          .next_update_ms = now + 7 * 86400 * 1000ull,
                          .fetched_ms = now - 1000};
    snprintf(claimed.fetched_by, sizeof(claimed.fetched_by), "pop-7");
    msgpack_sbuffer sb;
    pack(&claimed, &sb);
    assert_int_equal(ocsp_judge_record((const uint8_t *)sb.data, sb.size, P.leaf, P.ca, now, &r,
                                       &info, &why),
                     OCSP_STATE_REVOKED);
    assert_string_equal(r.fetched_by, "pop-7");
    assert_int_equal(r.fetched_ms, now - 1000);
    assert_true(info.next_update_ms < now + 3601 * 1000ull); /* the DER's, not the record's */
    ocsp_rec_free(&r);
    msgpack_sbuffer_destroy(&sb);
    free(der);

    for (int s = OCSP_STATE_NONE; s <= OCSP_STATE_UNUSABLE; s++)
        assert_string_not_equal(ocsp_state_name((enum ocsp_state)s), "?");
    assert_string_equal(ocsp_state_name(OCSP_STATE_GOOD), "good");
    assert_string_equal(ocsp_state_name(OCSP_STATE_UNUSABLE), "unusable");
}

static char *pem_of(X509 *x)
{
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(b, x);
    char *p;
    long l = BIO_get_mem_data(b, &p);
    char *out = strndup(p, (size_t)l);
    BIO_free(b);
    return out;
}

static void test_chain_request(void **state)
{
    (void)state;
    char *lp = pem_of(P.leaf), *cp = pem_of(P.ca), *bp = pem_of(P.badca);
    char chain[16384];
    X509 *leaf, *issuer;
    snprintf(chain, sizeof(chain), "%s%s", lp, cp);
    assert_int_equal(ocsp_chain(chain, &leaf, &issuer), 0);
    assert_int_equal(X509_cmp(leaf, P.leaf), 0);
    assert_int_equal(X509_cmp(issuer, P.ca), 0);
    char url[OCSP_URL_MAX + 1];
    assert_int_equal(ocsp_responder(leaf, url, sizeof(url)), 0);
    assert_string_equal(url, "http://127.0.0.1:9/");
    assert_int_equal(ocsp_responder(P.noaia, url, sizeof(url)), -ENOENT);
    assert_int_equal(ocsp_responder(leaf, url, 5), -EINVAL);

    uint8_t *der;
    size_t len;
    assert_int_equal(ocsp_request(leaf, issuer, &der, &len), 0);
    const unsigned char *p = der;
    OCSP_REQUEST *req = d2i_OCSP_REQUEST(NULL, &p, (long)len);
    assert_non_null(req);
    assert_ptr_equal(p, der + len);
    assert_int_equal(OCSP_request_onereq_count(req), 1);
    OCSP_CERTID *want = OCSP_cert_to_id(NULL, P.leaf, P.ca);
    assert_int_equal(OCSP_id_cmp(OCSP_onereq_get0_id(OCSP_request_onereq_get0(req, 0)), want), 0);
    OCSP_CERTID_free(want);
    OCSP_REQUEST_free(req);
    OPENSSL_free(der);
    X509_free(leaf);
    X509_free(issuer);

    /* ocsp_target: what ocspfetch fetches and cert.list calls none */
    const char *why = NULL;
    assert_int_equal(ocsp_target(chain, &leaf, &issuer, url, sizeof(url), &why), 0);
    assert_string_equal(url, "http://127.0.0.1:9/");
    assert_int_equal(X509_cmp(issuer, P.ca), 0);
    X509_free(leaf);
    X509_free(issuer);
    char *np = pem_of(P.noaia), chain2[16384];
    snprintf(chain2, sizeof(chain2), "%s%s", np, cp);
    assert_int_equal(ocsp_target(chain2, &leaf, &issuer, url, sizeof(url), &why), -ENOENT);
    assert_string_equal(why, "the certificate names no OCSP responder");
    assert_null(leaf);
    assert_null(issuer);
    assert_int_equal(ocsp_target(lp, &leaf, &issuer, url, sizeof(url), &why), -ENOENT);
    assert_non_null(strstr(why, "no issuer"));
    assert_int_equal(ocsp_target("", &leaf, &issuer, url, sizeof(url), &why), -ENOENT);
    snprintf(chain2, sizeof(chain2), "%s%s", lp, bp);
    assert_int_equal(ocsp_target(chain2, &leaf, &issuer, url, sizeof(url), &why), -EINVAL);
    assert_null(leaf);
    free(np);

    /* a leaf alone: no issuer to ask about */
    assert_int_equal(ocsp_chain(lp, &leaf, &issuer), -ENOENT);
    assert_null(leaf);
    /* a second certificate that did not issue the first */
    snprintf(chain, sizeof(chain), "%s%s", lp, bp);
    assert_int_equal(ocsp_chain(chain, &leaf, &issuer), -EINVAL);
    assert_int_equal(ocsp_chain("not pem", &leaf, &issuer), -EINVAL);
    free(lp);
    free(cp);
    free(bp);
}

/* Who fetches: one PoP per certificate, the same one seen from every PoP, and the ranks after
 * it in turn. */
static void test_rank(void **state)
{
    (void)state;
    uint64_t pops[] = {11, 22, 33, 44, 55};
    size_t n = sizeof(pops) / sizeof(pops[0]);
    unsigned firsts[5] = {0};
    for (int c = 0; c < 200; c++) {
        char id[32];
        snprintf(id, sizeof(id), "host%d.example.com", c);
        bool seen[5] = {false};
        for (size_t i = 0; i < n; i++) {
            unsigned r = ocspfetch_rank(pops[i], pops, n, id);
            assert_true(r < n);
            assert_false(seen[r]); /* a permutation */
            seen[r] = true;
            if (r == 0)
                firsts[i]++;
            /* the list's order does not matter, nor self missing from it */
            uint64_t rev[5] = {55, 44, 33, 22, 11};
            assert_int_equal(ocspfetch_rank(pops[i], rev, n, id), r);
        }
    }
    for (size_t i = 0; i < n; i++) /* spread over the PoPs (200 certificates, 40 expected) */
        assert_true(firsts[i] > 10);
    assert_int_equal(ocspfetch_due_ms(1000, 0, 500), 1000);
    assert_int_equal(ocspfetch_due_ms(1000, 2, 500), 2000);
}

/* ---- every PoP's side: stored records checked before tlsctx gets them --------------------- */

struct sync_fx {
    char dir[64];
    store_t *store;
    certstore_seal_key_t seal;
    tlsctx_t *tls;
    struct ev_loop *loop;
    ocspfetch_t *of;
};

static void put_cert(struct sync_fx *f, X509 *leaf, EVP_PKEY *pkey)
{
    char *lp = pem_of(leaf), *cp = pem_of(P.ca);
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(b, pkey, NULL, NULL, 0, NULL, NULL);
    char *kp;
    long kl = BIO_get_mem_data(b, &kp);
    char chain[16384], err[256];
    snprintf(chain, sizeof(chain), "%s%s", lp, cp);
    cert_rec_t c;
    int rc = cert_from_pem(&f->seal, chain, strlen(chain), kp, (size_t)kl, clock_wall_ms(), &c,
                           err, sizeof(err));
    if (rc)
        print_error("cert_from_pem: %s\n", err);
    assert_int_equal(rc, 0);
    if (!c.id[0])
        assert_int_equal(cert_id_for(c.names[0], c.id, sizeof(c.id)), 0);
    snprintf(c.source, sizeof(c.source), "import");
    snprintf(c.state, sizeof(c.state), "valid");
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    cert_pack(&pk, &c);
    char key[CERT_ID_MAX + 16];
    assert_int_equal(cert_key(c.id, key, sizeof(key)), 0);
    assert_int_equal(
        store_put(f->store, key, strlen(key), sb.data, sb.size, clock_wall_ms(), NULL), 0);
    msgpack_sbuffer_destroy(&sb);
    cert_rec_free(&c);
    BIO_free(b);
    free(lp);
    free(cp);
}

/* Writes ocsp/<id> holding a response made with o. */
static void put_ocsp_at(struct sync_fx *f, const char *id, const struct resp_opts *o,
                        enum ocsp_status claimed, int64_t next_ms)
{
    size_t len;
    uint8_t *der = mk_resp(o, &len);
    uint64_t now = clock_wall_ms();
    ocsp_rec_t r = {.der = der,
                    .der_len = len,
                    .status = claimed, /* what the record says; the DER decides */
                    .this_update_ms = (uint64_t)((int64_t)now + next_ms - 3600000),
                    .next_update_ms = (uint64_t)((int64_t)now + next_ms),
                    .fetched_ms = now};
    snprintf(r.fetched_by, sizeof(r.fetched_by), "pop-x");
    msgpack_sbuffer sb;
    pack(&r, &sb);
    char key[CERT_ID_MAX + 16];
    assert_int_equal(ocsp_key(id, key, sizeof(key)), 0);
    assert_int_equal(store_put(f->store, key, strlen(key), sb.data, sb.size, now, NULL), 0);
    msgpack_sbuffer_destroy(&sb);
    free(der);
}

static void put_ocsp(struct sync_fx *f, const char *id, const struct resp_opts *o,
                     enum ocsp_status claimed)
{
    put_ocsp_at(f, id, o, claimed, 3600000);
}

static bool has_key(struct sync_fx *f, const char *key)
{
    store_entry_t e = {0};
    bool has = store_get(f->store, key, strlen(key), &e) == 0 && e.value;
    store_entry_free(&e);
    return has;
}

static void on_break(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)w, (void)revents;
    ev_break(loop, EVBREAK_ALL);
}

/* Runs the loop long enough for the sync that follows a change. */
static ocspfetch_stats_t settle_for(struct sync_fx *f, double secs)
{
    ev_timer t;
    ev_timer_init(&t, on_break, secs, 0.);
    ev_timer_start(f->loop, &t);
    ev_run(f->loop, 0);
    ev_timer_stop(f->loop, &t);
    ocspfetch_stats_t st;
    ocspfetch_stats(f->of, &st);
    return st;
}

static ocspfetch_stats_t settle(struct sync_fx *f)
{
    return settle_for(f, 0.3);
}

/* What reaches tlsctx: a good response for this very leaf, checked at this PoP; never one
 * about another certificate, a forged one, or a revoked one (whatever the record claims). */
static void test_sync(void **state)
{
    (void)state;
    struct sync_fx f = {0};
    snprintf(f.dir, sizeof(f.dir), "/tmp/test_ocsp.XXXXXX");
    assert_non_null(mkdtemp(f.dir));
    store_opts_t so = {.node_id = 7, .nosync = true};
    assert_int_equal(store_open(f.dir, &so, &f.store), 0);
    storekey_t sk;
    storekey_generate(&sk);
    storeseal_init(&f.seal, &sk, NULL);
    char err[256];
    tlsctx_opts_t to = {.store = f.store, .seal = &f.seal};
    f.tls = tlsctx_new(&to, err, sizeof(err));
    assert_non_null(f.tls);
    put_cert(&f, P.leaf, P.leafkey);    /* www.example.com */
    put_cert(&f, P.leaf2, P.otherkey); /* other.example.com */
    f.loop = ev_loop_new(EVFLAG_AUTO);
    /* refresh_ms 1 s: the cleaning runs every second, for records 1 s past nextUpdate */
    ocspfetch_opts_t oo = {
        .loop = f.loop, .store = f.store, .tls = f.tls, .self_id = 7, .refresh_ms = 1000};
    f.of = ocspfetch_new(&oo, err, sizeof(err));
    assert_non_null(f.of);
    ocspfetch_stats_t st = settle(&f);
    assert_int_equal(st.stapling, 0);

    /* tlsctx applies the same verdict (ocsp_judge): a good response signed by another CA of
     * the same name is refused there too, the real one taken */
    {
        struct resp_opts fo = good();
        fo.signer = P.badca, fo.skey = P.badcakey;
        size_t flen, glen;
        uint8_t *forged = mk_resp(&fo, &flen);
        fo = good();
        uint8_t *real = mk_resp(&fo, &glen);
        assert_int_equal(tlsctx_set_ocsp(f.tls, "www.example.com", forged, flen), -EINVAL);
        assert_int_equal(tlsctx_set_ocsp(f.tls, "www.example.com", real, glen), 0);
        assert_int_equal(tlsctx_clear_ocsp(f.tls, "www.example.com"), 0);
        free(forged);
        free(real);
    }

    struct resp_opts o = good();
    put_ocsp(&f, "www.example.com", &o, OCSP_ST_GOOD);
    st = settle(&f);
    assert_int_equal(st.stapling, 1);
    uint64_t refused = st.refused;

    /* www's response stored as other's: refused, www still stapled */
    put_ocsp(&f, "other.example.com", &o, OCSP_ST_GOOD);
    st = settle(&f);
    assert_int_equal(st.stapling, 1);
    assert_true(st.refused > refused);

    /* a response signed by another CA of the same name: refused */
    o = good();
    o.signer = P.badca;
    o.skey = P.badcakey;
    put_ocsp(&f, "www.example.com", &o, OCSP_ST_GOOD);
    st = settle(&f);
    assert_int_equal(st.stapling, 0);

    /* good again, then revoked (the record claiming good): nothing stapled */
    o = good();
    put_ocsp(&f, "www.example.com", &o, OCSP_ST_GOOD);
    assert_int_equal(settle(&f).stapling, 1);
    o.status = V_OCSP_CERTSTATUS_REVOKED;
    put_ocsp(&f, "www.example.com", &o, OCSP_ST_GOOD);
    assert_int_equal(settle(&f).stapling, 0);

    /* records of certificates that are gone: a stale one is deleted, a fresh one stays (its
     * cert/ record may still be on its way), and so does a stale one of a certificate held */
    o = good();
    put_ocsp_at(&f, "gone.example.com", &o, OCSP_ST_GOOD, -7200 * 1000);
    put_ocsp_at(&f, "soon.example.com", &o, OCSP_ST_GOOD, 3600 * 1000);
    put_ocsp_at(&f, "other.example.com", &o, OCSP_ST_GOOD, -7200 * 1000);
    assert_true(has_key(&f, "ocsp/gone.example.com"));
    settle_for(&f, 2.5);
    assert_false(has_key(&f, "ocsp/gone.example.com"));
    assert_true(has_key(&f, "ocsp/soon.example.com"));
    assert_true(has_key(&f, "ocsp/other.example.com"));

    ocspfetch_destroy(&f.of);
    assert_null(f.of);
    ev_loop_destroy(f.loop);
    tlsctx_destroy(&f.tls);
    store_close(&f.store);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f.dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", f.dir);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_record),
        cmocka_unit_test_setup_teardown(test_check, setup, teardown),
        cmocka_unit_test_setup_teardown(test_judge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chain_request, setup, teardown),
        cmocka_unit_test(test_rank),
        cmocka_unit_test_setup_teardown(test_sync, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
