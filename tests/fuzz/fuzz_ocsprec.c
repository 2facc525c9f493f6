/* Fuzzes the ocsp/ record decoder (node/tls/ocsprec.h), whose records arrive from other nodes,
 * and the response check every PoP runs on the DER they carry before stapling it. Any bytes
 * must be refused cleanly (-EBADMSG with a reason, nothing left allocated) or decode to a record
 * within its bounds that re-encodes to the same fields; the DER of a decoded record (and the
 * raw input, as a response) goes through ocsp_check against a fixed leaf and issuer, which
 * must refuse it or accept it with sane times, never crash. The input is also judged whole as
 * a stored value (ocsp_judge_record, what cert.list shows and ocspfetch staples). */
#include "node/tls/ocsprec.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static X509 *leaf, *issuer;

static X509 *mk(const char *cn, EVP_PKEY *key, X509 *iss, EVP_PKEY *ikey)
{
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, key);
    X509_NAME *nm = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, iss ? X509_get_subject_name(iss) : nm);
    X509_sign(x, ikey ? ikey : key, EVP_sha256());
    return x;
}

static void init(void)
{
    if (leaf)
        return;
    EVP_PKEY *ck = EVP_EC_gen("P-256"), *lk = EVP_EC_gen("P-256");
    if (!ck || !lk)
        abort();
    issuer = mk("fuzz CA", ck, NULL, NULL);
    leaf = mk("fuzz.example.com", lk, issuer, ck);
    EVP_PKEY_free(ck);
    EVP_PKEY_free(lk);
}

static void check_der(const uint8_t *der, size_t len)
{
    ocsp_info_t info;
    const char *why = NULL;
    int rc = ocsp_check(der, len, leaf, issuer, 1700000000000ull, &info, &why);
    if (rc != 0 && (rc != -EBADMSG || !why))
        abort();
    if (rc == 0 && info.next_update_ms <= info.this_update_ms)
        abort();
}

/* The whole input as a stored ocsp/<id> value, judged as cert.list and ocspfetch judge it: a
 * verdict in range; a value that does not parse is UNUSABLE with a reason and nothing kept; a
 * verdict on a response has sane times; UNUSABLE and STALE say why. */
static void check_judged(const uint8_t *data, size_t size)
{
    ocsp_rec_t rec;
    ocsp_info_t info;
    const char *why = NULL;
    enum ocsp_state st =
        ocsp_judge_record(data, size, leaf, issuer, 1700000000000ull, &rec, &info, &why);
    if (st > OCSP_STATE_UNUSABLE || st == OCSP_STATE_PENDING ||
        st == OCSP_STATE_NONE)
        abort(); /* a value was given: never "pending", never "none" */
    if ((st == OCSP_STATE_UNUSABLE || st == OCSP_STATE_STALE) && !why)
        abort();
    if ((st == OCSP_STATE_GOOD || st == OCSP_STATE_REVOKED || st == OCSP_STATE_UNKNOWN) &&
        (info.next_update_ms <= info.this_update_ms || !rec.der))
        abort();
    if (!rec.der && st != OCSP_STATE_UNUSABLE)
        abort();
    ocsp_rec_free(&rec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    init();
    check_judged(data, size);
    ocsp_rec_t r;
    const char *why = NULL;
    int rc = ocsp_parse(data, size, &r, &why);
    if (rc) {
        if (rc != -EBADMSG || !why || r.der)
            abort();
        if (size <= OCSP_DER_MAX)
            check_der(data, size);
        return 0;
    }
    if (!r.der || r.der_len == 0 || r.der_len > OCSP_DER_MAX ||
        r.this_update_ms >= r.next_update_ms || (unsigned)r.status > OCSP_ST_UNKNOWN ||
        memchr(r.fetched_by, '\0', sizeof(r.fetched_by)) == NULL)
        abort();
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    ocsp_pack(&pk, &r);
    ocsp_rec_t r2;
    if (ocsp_parse((const uint8_t *)sb.data, sb.size, &r2, &why) || r2.der_len != r.der_len ||
        memcmp(r2.der, r.der, r.der_len) || r2.status != r.status ||
        r2.this_update_ms != r.this_update_ms || r2.next_update_ms != r.next_update_ms ||
        r2.fetched_ms != r.fetched_ms || strcmp(r2.fetched_by, r.fetched_by))
        abort();
    check_der(r.der, r.der_len);
    ocsp_rec_free(&r2);
    msgpack_sbuffer_destroy(&sb);
    ocsp_rec_free(&r);
    return 0;
}
