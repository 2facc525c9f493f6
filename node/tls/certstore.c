/* certstore: see certstore.h.
 *
 * BACKGROUND
 *
 * A certificate record travels to every PoP, so each one can answer for the names at once,
 * including after the PoP that obtained it is gone. Its private key travels with it, sealed:
 * under the mesh's store key, bound to the record (node/records/storeseal.h; docs/security.md,
 * "Secrets in the store").
 *
 * The import path (cert_from_pem) normalises what an operator hands in: the chain is re-encoded
 * certificate by certificate (text around the PEM blocks, "Bag Attributes" and the like, is
 * dropped), the key is re-encoded as unencrypted PKCS#8 before it is sealed, and names are
 * lowercased without a trailing dot. Every PoP then loads the same bytes.
 *
 * INVARIANTS
 *
 * - No function here writes a private key or a ticket key anywhere but into a sealed buffer
 *   or into memory the caller wipes; error messages name the problem, never the key.
 * - A record whose chain is empty carries no key: it stands for a certificate not obtained yet
 *   (an ACME order that failed before its first success), with its state and error. Consumers
 *   that serve certificates skip it.
 * - cert_parse applies to a record from another node the checks the import applies (names,
 *   id, sizes), so a record that parses can be served. */
#include "node/tls/certstore.h"

#include "common/mp.h"
#include "common/mpfields.h"
#include "common/xmalloc.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sodium.h>

#define WILD_PREFIX   "_wild."

/* ---- sealing: the one place for cert/ and tlsticket/ secrets ------------------------------ */

int cert_seal_key(const certstore_seal_key_t *k, cert_rec_t *c, const uint8_t *pem, size_t len)
{
    char key[sizeof(CERT_PREFIX) + CERT_ID_MAX];
    uint8_t *out;
    size_t outlen;
    if (cert_key(c->id, key, sizeof(key)))
        return -EINVAL;
    int rc = storeseal_seal(k, key, strlen(key), "key", pem, len, &out, &outlen);
    if (rc)
        return rc;
    if (c->key_sealed)
        sodium_memzero(c->key_sealed, c->key_sealed_len);
    free(c->key_sealed);
    c->key_sealed = out;
    c->key_sealed_len = outlen;
    return 0;
}

int cert_open_key(const certstore_seal_key_t *k, const cert_rec_t *c, uint8_t **pem, size_t *len,
                  bool *legacy)
{
    char key[sizeof(CERT_PREFIX) + CERT_ID_MAX];
    *pem = NULL;
    *len = 0;
    if (cert_key(c->id, key, sizeof(key)))
        return -EINVAL;
    return storeseal_open(k, key, strlen(key), "key", c->key_sealed, c->key_sealed_len, pem, len,
                          legacy);
}

int tlsticket_seal_key(const certstore_seal_key_t *k, tlsticket_rec_t *t,
                       const uint8_t key[TLSTICKET_KEY_LEN])
{
    char rkey[64];
    uint8_t *out;
    size_t outlen;
    tlsticket_key(t->epoch, rkey, sizeof(rkey));
    int rc = storeseal_seal(k, rkey, strlen(rkey), "key", key, TLSTICKET_KEY_LEN, &out, &outlen);
    if (rc)
        return rc;
    if (outlen > sizeof(t->key_sealed)) { /* cannot happen: the sizes are pinned */
        free(out);
        return -EOVERFLOW;
    }
    memcpy(t->key_sealed, out, outlen);
    t->key_sealed_len = outlen;
    free(out);
    return 0;
}

int tlsticket_open_key(const certstore_seal_key_t *k, const tlsticket_rec_t *t,
                       uint8_t key[TLSTICKET_KEY_LEN], bool *legacy)
{
    char rkey[64];
    uint8_t *plain;
    size_t plen;
    tlsticket_key(t->epoch, rkey, sizeof(rkey));
    int rc = storeseal_open(k, rkey, strlen(rkey), "key", t->key_sealed, t->key_sealed_len,
                            &plain, &plen, legacy);
    if (rc)
        return rc;
    if (plen != TLSTICKET_KEY_LEN)
        rc = -EBADMSG;
    else
        memcpy(key, plain, TLSTICKET_KEY_LEN);
    sodium_memzero(plain, plen);
    free(plain);
    return rc;
}

/* ---- names and keys ----------------------------------------------------------------------- */

static bool label_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

/* A lowercase DNS name (labels of a-z, 0-9, '-', '_'; 1-63 bytes; no leading or trailing '-'),
 * at most max bytes. */
static int check_dns_name(const char *name, size_t max, const char **why)
{
    size_t len = strnlen(name, max + 1);
    if (len == 0) {
        *why = "a certificate name is empty";
        return -EINVAL;
    }
    if (len > max) {
        *why = "a certificate name is longer than 253 bytes";
        return -EINVAL;
    }
    size_t label = 0;
    for (size_t i = 0; i <= len; i++) {
        char c = i < len ? name[i] : '.';
        if (c == '.') {
            if (label == 0) {
                *why = "a certificate name has an empty label ('..', or a leading or trailing '.')";
                return -EINVAL;
            }
            if (label > 63) {
                *why = "a label of a certificate name is longer than 63 bytes";
                return -EINVAL;
            }
            if (name[i - label] == '-' || name[i - 1] == '-') {
                *why = "a label of a certificate name starts or ends with '-'";
                return -EINVAL;
            }
            label = 0;
        } else if (c >= 'A' && c <= 'Z') {
            *why = "a certificate name is not in lower case";
            return -EINVAL;
        } else if (!label_char(c)) {
            *why = "a certificate name holds a character other than a-z, 0-9, '-', '_', '.' "
                   "(and a leading '*.')";
            return -EINVAL;
        } else {
            label++;
        }
    }
    return 0;
}

int cert_check_name(const char *name, const char **why)
{
    if (name[0] == '*') {
        if (name[1] != '.') {
            *why = "a wildcard certificate name must start with '*.' (a whole label)";
            return -EINVAL;
        }
        if (!strchr(name + 2, '.')) {
            *why = "a wildcard certificate name must cover a name of two labels or more "
                   "(*.example.com, not *.com)";
            return -EINVAL;
        }
        return check_dns_name(name + 2, CERT_ID_MAX - 2, why);
    }
    /* "_wild." names the ids of wildcard certificates: a literal name starting with that label
     * would share its id (and record) with "*." of the same parent, or make an id no key
     * accepts. No public CA issues for such a name anyway (underscores are not hostname text). */
    if (!strncmp(name, WILD_PREFIX, strlen(WILD_PREFIX)) || !strcmp(name, "_wild")) {
        *why = "a certificate name may not start with the label '_wild' (reserved for the ids "
               "of wildcard certificates)";
        return -EINVAL;
    }
    return check_dns_name(name, CERT_ID_MAX, why);
}

int cert_id_for(const char *name, char *out, size_t len)
{
    const char *why;
    if (cert_check_name(name, &why))
        return -EINVAL;
    int n = name[0] == '*' ? snprintf(out, len, WILD_PREFIX "%s", name + 2)
                           : snprintf(out, len, "%s", name);
    if (n < 0 || (size_t)n >= len || (size_t)n > CERT_ID_MAX)
        return -EINVAL;
    return 0;
}

/* An id is what cert_id_for makes: a name, or "_wild." and one. */
static int check_id(const char *id)
{
    const char *why;
    if (strlen(id) > CERT_ID_MAX)
        return -EINVAL;
    if (!strncmp(id, WILD_PREFIX, strlen(WILD_PREFIX))) {
        const char *rest = id + strlen(WILD_PREFIX);
        return strchr(rest, '.') && check_dns_name(rest, CERT_ID_MAX, &why) == 0 ? 0 : -EINVAL;
    }
    return check_dns_name(id, CERT_ID_MAX, &why) ? -EINVAL : 0;
}

int cert_key(const char *id, char *out, size_t len)
{
    if (check_id(id))
        return -EINVAL;
    int n = snprintf(out, len, CERT_PREFIX "%s", id);
    return n < 0 || (size_t)n >= len ? -EINVAL : 0;
}

int cert_key_id(const char *key, size_t klen, char *id, size_t len)
{
    size_t pl = strlen(CERT_PREFIX);
    if (klen <= pl || memcmp(key, CERT_PREFIX, pl) || klen - pl > CERT_ID_MAX || klen - pl >= len ||
        memchr(key, '\0', klen))
        return -EINVAL;
    memcpy(id, key + pl, klen - pl);
    id[klen - pl] = '\0';
    return check_id(id);
}

bool cert_name_matches(const char *pattern, const char *name)
{
    if (!strcmp(pattern, name))
        return true;
    if (pattern[0] != '*' || pattern[1] != '.')
        return false;
    /* "*.rest" covers "label.rest" for exactly one non-empty label. */
    const char *dot = strchr(name, '.');
    if (!dot || dot == name)
        return false;
    return !strcmp(dot + 1, pattern + 2);
}

/* ---- the cert/ record --------------------------------------------------------------------- */

void cert_rec_free(cert_rec_t *c)
{
    if (!c)
        return;
    free(c->names);
    free(c->chain_pem);
    if (c->key_sealed)
        sodium_memzero(c->key_sealed, c->key_sealed_len);
    free(c->key_sealed);
    c->names = NULL;
    c->nnames = 0;
    c->chain_pem = NULL;
    c->key_sealed = NULL;
    c->key_sealed_len = 0;
}

void cert_pack(msgpack_packer *pk, const cert_rec_t *c)
{
    msgpack_pack_map(pk, 11 + (c->error[0] != '\0') + (c->renew_after_ms != 0));
    mpw_kv_str(pk, "id", c->id);
    mpw_str(pk, "names");
    msgpack_pack_array(pk, c->nnames);
    for (size_t i = 0; i < c->nnames; i++)
        mpw_str(pk, c->names[i]);
    mpw_kv_str(pk, "chain", c->chain_pem ? c->chain_pem : "");
    mpw_kv_bin(pk, "key", c->key_sealed, c->key_sealed_len);
    mpw_kv_u64(pk, "not_before_ms", c->not_before_ms);
    mpw_kv_u64(pk, "not_after_ms", c->not_after_ms);
    mpw_kv_str(pk, "issuer", c->issuer);
    mpw_kv_str(pk, "source", c->source);
    mpw_kv_str(pk, "obtained_by", c->obtained_by);
    mpw_kv_u64(pk, "created_ms", c->created_ms);
    mpw_kv_str(pk, "state", c->state);
    if (c->error[0])
        mpw_kv_str(pk, "error", c->error);
    if (c->renew_after_ms)
        mpw_kv_u64(pk, "renew_after_ms", c->renew_after_ms);
}

static int read_names(mpr_t *r, void *dst, const char **why)
{
    cert_rec_t *c = dst;
    uint32_t n;
    if (mpr_array(r, &n)) {
        *why = "names is not an array";
        return -EBADMSG;
    }
    if (n == 0 || n > CERT_NAMES_MAX) {
        *why = "names must hold 1 to 100 names";
        return -EBADMSG;
    }
    c->names = xcalloc(n, sizeof(*c->names));
    for (uint32_t i = 0; i < n; i++) {
        const char *s;
        uint32_t sl;
        if (mpr_str(r, &s, &sl) || sl > CERT_ID_MAX || memchr(s, '\0', sl)) {
            *why = "a name is not a string of at most 253 bytes";
            return -EBADMSG;
        }
        memcpy(c->names[i], s, sl);
        c->names[i][sl] = '\0';
        c->nnames = i + 1;
        if (cert_check_name(c->names[i], why))
            return -EBADMSG;
    }
    return 0;
}

static int read_chain(mpr_t *r, void *dst, const char **why)
{
    cert_rec_t *c = dst;
    const char *s;
    uint32_t sl;
    if (mpr_str(r, &s, &sl) || sl > CERT_CHAIN_MAX || memchr(s, '\0', sl)) {
        *why = "chain is not a string of at most 64 KiB";
        return -EBADMSG;
    }
    c->chain_pem = xmalloc(sl + 1);
    memcpy(c->chain_pem, s, sl);
    c->chain_pem[sl] = '\0';
    return 0;
}

static int read_key(mpr_t *r, void *dst, const char **why)
{
    cert_rec_t *c = dst;
    const uint8_t *b;
    uint32_t bl;
    /* The legacy format is 40 bytes over the key, the current one 45. */
    if (mpr_bin(r, &b, &bl) || bl > CERT_KEY_MAX + STORESEAL_OVERHEAD ||
        (bl != 0 && bl <= STORESEAL_LEGACY_OVERHEAD)) {
        *why = "key is not a sealed key (binary, 41 bytes to 16 KiB + 45)";
        return -EBADMSG;
    }
    c->key_sealed = bl ? xmemdup(b, bl) : NULL;
    c->key_sealed_len = bl;
    return 0;
}

static bool state_ok(const char *s)
{
    if (!s[0])
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || *s == '-'))
            return false;
    return true;
}

int cert_parse(const uint8_t *buf, size_t len, const char *id, cert_rec_t *c, const char **why)
{
    memset(c, 0, sizeof(*c));
    char rid[CERT_ID_MAX + 1];
    mpf_t fs[] = {
        {"id", MPF_STR, rid, sizeof(rid), true, false, NULL},
        {"names", MPF_CUSTOM, c, 0, true, false, read_names},
        {"chain", MPF_CUSTOM, c, 0, true, false, read_chain},
        {"key", MPF_CUSTOM, c, 0, true, false, read_key},
        {"not_before_ms", MPF_U64, &c->not_before_ms, 0, true, false, NULL},
        {"not_after_ms", MPF_U64, &c->not_after_ms, 0, true, false, NULL},
        {"issuer", MPF_STR, c->issuer, sizeof(c->issuer), true, false, NULL},
        {"source", MPF_STR, c->source, sizeof(c->source), true, false, NULL},
        {"obtained_by", MPF_STR, c->obtained_by, sizeof(c->obtained_by), true, false, NULL},
        {"created_ms", MPF_U64, &c->created_ms, 0, true, false, NULL},
        {"state", MPF_STR, c->state, sizeof(c->state), true, false, NULL},
        {"error", MPF_STR, c->error, sizeof(c->error), false, false, NULL},
        {"renew_after_ms", MPF_U64, &c->renew_after_ms, 0, false, false, NULL},
    };
    if (mpf_parse(buf, len, fs, sizeof(fs) / sizeof(fs[0]), why))
        goto fail;
    if (strcmp(rid, id)) {
        *why = "the record's id is not the id in its key";
        goto fail;
    }
    char want[CERT_ID_MAX + 1];
    if (cert_id_for(c->names[0], want, sizeof(want)) || strcmp(want, id)) {
        *why = "the record's id is not the id of its first name";
        goto fail;
    }
    memcpy(c->id, rid, sizeof(rid));
    if (strcmp(c->source, "import") && strcmp(c->source, "acme")) {
        *why = "source is neither \"import\" nor \"acme\"";
        goto fail;
    }
    if (!state_ok(c->state)) {
        *why = "state is not a word of a-z and '-'";
        goto fail;
    }
    if (c->chain_pem[0] == '\0') {
        if (c->key_sealed_len) {
            *why = "a record without a chain carries a key";
            goto fail;
        }
    } else if (!c->key_sealed_len) {
        *why = "a record with a chain has no key";
        goto fail;
    } else if (c->not_before_ms > c->not_after_ms) {
        *why = "not_before_ms is after not_after_ms";
        goto fail;
    }
    return 0;
fail:
    cert_rec_free(c);
    return -EBADMSG;
}

/* ---- the tlsticket/ record ---------------------------------------------------------------- */

int tlsticket_key(uint64_t epoch, char *out, size_t len)
{
    int n = snprintf(out, len, TLSTICKET_PREFIX "%016llx", (unsigned long long)epoch);
    return n < 0 || (size_t)n >= len ? -EINVAL : 0;
}

int tlsticket_key_epoch(const char *key, size_t klen, uint64_t *epoch)
{
    size_t pl = strlen(TLSTICKET_PREFIX);
    if (klen != pl + 16 || memcmp(key, TLSTICKET_PREFIX, pl))
        return -EINVAL;
    uint64_t v = 0;
    for (size_t i = pl; i < klen; i++) {
        char ch = key[i];
        int d = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
        if (d < 0)
            return -EINVAL;
        v = v << 4 | (uint64_t)d;
    }
    *epoch = v;
    return 0;
}

void tlsticket_pack(msgpack_packer *pk, const tlsticket_rec_t *t)
{
    msgpack_pack_map(pk, 4);
    mpw_kv_u64(pk, "epoch", t->epoch);
    mpw_kv_bin(pk, "key", t->key_sealed, t->key_sealed_len);
    mpw_kv_u64(pk, "created_ms", t->created_ms);
    mpw_kv_str(pk, "created_by", t->created_by);
}

static int read_ticket_key(mpr_t *r, void *dst, const char **why)
{
    tlsticket_rec_t *t = dst;
    const uint8_t *b;
    uint32_t bl;
    if (mpr_bin(r, &b, &bl) || (bl != TLSTICKET_KEY_LEN + STORESEAL_OVERHEAD &&
                                bl != TLSTICKET_KEY_LEN + STORESEAL_LEGACY_OVERHEAD)) {
        *why = "key is not a sealed ticket key (binary, 125 bytes, or 120 sealed before the "
               "store key)";
        return -EBADMSG;
    }
    memcpy(t->key_sealed, b, bl);
    t->key_sealed_len = bl;
    return 0;
}

int tlsticket_parse(const uint8_t *buf, size_t len, uint64_t epoch, tlsticket_rec_t *t,
                    const char **why)
{
    memset(t, 0, sizeof(*t));
    mpf_t fs[] = {
        {"epoch", MPF_U64, &t->epoch, 0, true, false, NULL},
        {"key", MPF_CUSTOM, t, 0, true, false, read_ticket_key},
        {"created_ms", MPF_U64, &t->created_ms, 0, true, false, NULL},
        {"created_by", MPF_STR, t->created_by, sizeof(t->created_by), true, false, NULL},
    };
    if (mpf_parse(buf, len, fs, sizeof(fs) / sizeof(fs[0]), why))
        goto fail;
    if (t->epoch != epoch) {
        *why = "the record's epoch is not the epoch in its key";
        goto fail;
    }
    return 0;
fail:
    sodium_memzero(t, sizeof(*t));
    return -EBADMSG;
}

/* ---- import from PEM ---------------------------------------------------------------------- */

static int fail_msg(char *err, size_t errlen, bool with_reason, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Writes the message, with OpenSSL's reason for the last failure appended when with_reason
 * and it has one, and clears OpenSSL's error queue (left behind, it would surface in the next
 * unrelated failure). */
static int fail_msg(char *err, size_t errlen, bool with_reason, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    unsigned long e = with_reason ? ERR_peek_last_error() : 0;
    const char *reason = e ? ERR_reason_error_string(e) : NULL;
    if (reason && n >= 0 && (size_t)n < errlen)
        snprintf(err + n, errlen - (size_t)n, " (%s)", reason);
    ERR_clear_error();
    return -EINVAL;
}

/* A password callback that refuses: an encrypted key must fail, not prompt on popd's tty. */
static int no_password(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag, (void)u;
    return -1;
}

static uint64_t asn1_ms(const ASN1_TIME *t, bool *ok)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    if (!t || ASN1_TIME_to_tm(t, &tm) != 1) {
        *ok = false;
        return 0;
    }
    time_t s = timegm(&tm);
    if (s < 0) {
        *ok = false;
        return 0;
    }
    return (uint64_t)s * 1000;
}

static void fmt_utc(uint64_t ms, char *buf, size_t len)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm);
}

/* Adds name (as the certificate spells it: any case, maybe a trailing dot) to c, lowercased,
 * once. 0, or -EINVAL with a message. */
static int add_name(cert_rec_t *c, const unsigned char *s, int len, char *err, size_t errlen)
{
    char name[CERT_ID_MAX + 2];
    if (len <= 0 || (size_t)len >= sizeof(name) || memchr(s, '\0', (size_t)len))
        return fail_msg(err, errlen, false,
                        "the certificate names a DNS name longer than 253 bytes "
                        "or with a NUL byte");
    for (int i = 0; i < len; i++)
        name[i] = (char)tolower(s[i]);
    name[len] = '\0';
    if (len > 1 && name[len - 1] == '.')
        name[len - 1] = '\0';
    const char *why = "";
    if (cert_check_name(name, &why))
        return fail_msg(err, errlen, false, "the certificate's name '%s' cannot be served: %s",
                        name, why);
    for (size_t i = 0; i < c->nnames; i++)
        if (!strcmp(c->names[i], name))
            return 0;
    if (c->nnames == CERT_NAMES_MAX)
        return fail_msg(err, errlen, false, "the certificate has more than %d names",
                        CERT_NAMES_MAX);
    c->names = xrealloc(c->names, (c->nnames + 1) * sizeof(*c->names));
    memcpy(c->names[c->nnames++], name, strlen(name) + 1);
    return 0;
}

/* The leaf's DNS names: subjectAltName DNS entries, else the subject's CN (RFC 6125 says a
 * client looks at the CN only when there is no DNS SAN; so do we). */
static int leaf_names(X509 *leaf, cert_rec_t *c, char *err, size_t errlen)
{
    GENERAL_NAMES *gens = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
    int rc = 0;
    for (int i = 0; gens && rc == 0 && i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        if (g->type != GEN_DNS)
            continue;
        rc = add_name(c, ASN1_STRING_get0_data(g->d.dNSName), ASN1_STRING_length(g->d.dNSName), err,
                      errlen);
    }
    GENERAL_NAMES_free(gens);
    if (rc || c->nnames)
        return rc;
    const X509_NAME *subj = X509_get_subject_name(leaf);
    int idx = X509_NAME_get_index_by_NID(subj, NID_commonName, -1);
    if (idx >= 0) {
        const ASN1_STRING *cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, idx));
        return add_name(c, ASN1_STRING_get0_data(cn), ASN1_STRING_length(cn), err, errlen);
    }
    ERR_clear_error();
    return fail_msg(err, errlen, false,
                    "the certificate names no DNS name (no subjectAltName DNS entry, no CN)");
}

static void issuer_line(X509 *leaf, char *out, size_t len)
{
    BIO *b = BIO_new(BIO_s_mem());
    out[0] = '\0';
    if (!b)
        return;
    X509_NAME_print_ex(b, X509_get_issuer_name(leaf), 0, XN_FLAG_ONELINE & ~ASN1_STRFLGS_ESC_MSB);
    char *p;
    long n = BIO_get_mem_data(b, &p);
    if (n > 0) {
        size_t m = (size_t)n < len - 1 ? (size_t)n : len - 1;
        memcpy(out, p, m);
        out[m] = '\0';
        for (size_t i = 0; i < m; i++) /* shown in tables and logs: control bytes out */
            if ((unsigned char)out[i] < 0x20 || out[i] == 0x7f)
                out[i] = '?';
    }
    BIO_free(b);
}

int cert_from_pem(const certstore_seal_key_t *k, const char *chain_pem, size_t chain_len,
                  const char *key_pem, size_t key_len, uint64_t now_ms, cert_rec_t *c, char *err,
                  size_t errlen)
{
    memset(c, 0, sizeof(*c));
    STACK_OF(X509) *certs = sk_X509_new_null();
    EVP_PKEY *pkey = NULL;
    BIO *in = NULL, *out = NULL, *kout = NULL;
    int rc = -EINVAL;
    ERR_clear_error();
    if (!certs) {
        rc = fail_msg(err, errlen, false, "out of memory");
        goto out;
    }
    if (chain_len == 0) {
        rc = fail_msg(err, errlen, false, "the certificate file is empty");
        goto out;
    }
    if (chain_len > CERT_CHAIN_MAX) {
        rc = fail_msg(err, errlen, false, "the certificate chain is %zu bytes; the limit is %d",
                      chain_len, CERT_CHAIN_MAX);
        goto out;
    }
    if (key_len == 0) {
        rc = fail_msg(err, errlen, false, "the key file is empty");
        goto out;
    }
    if (key_len > CERT_KEY_MAX) {
        rc = fail_msg(err, errlen, false, "the key is %zu bytes; the limit is %d", key_len,
                      CERT_KEY_MAX);
        goto out;
    }

    /* The chain: every CERTIFICATE block, leaf first. */
    in = BIO_new_mem_buf(chain_pem, (int)chain_len);
    for (;;) {
        X509 *x = PEM_read_bio_X509(in, NULL, no_password, NULL);
        if (!x)
            break;
        sk_X509_push(certs, x);
        if (sk_X509_num(certs) > 16) {
            rc = fail_msg(err, errlen, false, "the chain holds more than 16 certificates");
            goto out;
        }
    }
    unsigned long e = ERR_peek_last_error();
    if (sk_X509_num(certs) == 0) {
        if (memmem(chain_pem, chain_len, "-----BEGIN CERTIFICATE-----", 27))
            rc = fail_msg(err, errlen, true, "the certificate is malformed");
        else if (memmem(chain_pem, chain_len, "PRIVATE KEY-----", 16))
            rc = fail_msg(err, errlen, false,
                          "the certificate file holds a private key, not a "
                          "certificate (--cert and --key swapped?)");
        else
            rc = fail_msg(err, errlen, false,
                          "not a PEM certificate (expected a -----BEGIN CERTIFICATE----- block)");
        goto out;
    }
    if (e && !(ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)) {
        rc = fail_msg(err, errlen, true, "certificate %d of the chain is malformed",
                      sk_X509_num(certs) + 1);
        goto out;
    }
    ERR_clear_error();
    BIO_free(in);

    /* The key. */
    in = BIO_new_mem_buf(key_pem, (int)key_len);
    pkey = PEM_read_bio_PrivateKey(in, NULL, no_password, NULL);
    if (!pkey) {
        if (memmem(key_pem, key_len, "ENCRYPTED", 9))
            rc = fail_msg(err, errlen, false,
                          "the key is encrypted: give it without a passphrase "
                          "(openssl pkey -in KEY -out PLAIN)");
        else if (memmem(key_pem, key_len, "-----BEGIN CERTIFICATE", 22))
            rc = fail_msg(err, errlen, false,
                          "the key file holds a certificate, not a private key "
                          "(--cert and --key swapped?)");
        else
            rc = fail_msg(err, errlen, false,
                          "not a PEM private key (expected a -----BEGIN PRIVATE KEY----- block)");
        goto out;
    }
    X509 *leaf = sk_X509_value(certs, 0);
    if (X509_check_private_key(leaf, pkey) != 1) {
        ERR_clear_error();
        for (int i = 1; i < sk_X509_num(certs); i++)
            if (X509_check_private_key(sk_X509_value(certs, i), pkey) == 1) {
                ERR_clear_error();
                rc = fail_msg(err, errlen, false,
                              "the chain must start with the certificate of the key (it is "
                              "certificate %d of %d)",
                              i + 1, sk_X509_num(certs));
                goto out;
            }
        ERR_clear_error();
        rc = fail_msg(err, errlen, false, "the key does not match the certificate");
        goto out;
    }

    /* Names, validity, issuer. */
    if ((rc = leaf_names(leaf, c, err, errlen)) != 0)
        goto out;
    bool ok = true;
    c->not_before_ms = asn1_ms(X509_get0_notBefore(leaf), &ok);
    c->not_after_ms = asn1_ms(X509_get0_notAfter(leaf), &ok);
    if (!ok || c->not_before_ms > c->not_after_ms) {
        rc = fail_msg(err, errlen, true, "the certificate's validity dates are unreadable");
        goto out;
    }
    if (c->not_after_ms <= now_ms) {
        char when[40];
        fmt_utc(c->not_after_ms, when, sizeof(when));
        rc = fail_msg(err, errlen, false, "the certificate has expired (not after %s)", when);
        goto out;
    }
    issuer_line(leaf, c->issuer, sizeof(c->issuer));
    if (cert_id_for(c->names[0], c->id, sizeof(c->id))) {
        rc = fail_msg(err, errlen, false, "the certificate's first name '%s' makes no record id",
                      c->names[0]);
        goto out;
    }

    /* The chain as every PoP will load it: the certificates alone, re-encoded. */
    out = BIO_new(BIO_s_mem());
    for (int i = 0; i < sk_X509_num(certs); i++)
        if (!PEM_write_bio_X509(out, sk_X509_value(certs, i))) {
            rc = fail_msg(err, errlen, true, "cannot re-encode the certificate chain");
            goto out;
        }
    char *p;
    long n = BIO_get_mem_data(out, &p);
    if (n <= 0 || n > CERT_CHAIN_MAX) {
        rc = fail_msg(err, errlen, false,
                      "the re-encoded certificate chain is larger than %d bytes", CERT_CHAIN_MAX);
        goto out;
    }
    c->chain_pem = xmalloc((size_t)n + 1);
    memcpy(c->chain_pem, p, (size_t)n);
    c->chain_pem[n] = '\0';

    /* The key as unencrypted PKCS#8, in secure memory until it is sealed. */
    kout = BIO_new(BIO_s_secmem());
    if (!kout || !PEM_write_bio_PrivateKey(kout, pkey, NULL, NULL, 0, NULL, NULL)) {
        rc = fail_msg(err, errlen, true, "cannot re-encode the private key");
        goto out;
    }
    n = BIO_get_mem_data(kout, &p);
    if (n <= 0 || n > CERT_KEY_MAX) {
        rc = fail_msg(err, errlen, false, "the re-encoded key is larger than %d bytes",
                      CERT_KEY_MAX);
        goto out;
    }
    if ((rc = cert_seal_key(k, c, (const uint8_t *)p, (size_t)n)) != 0) {
        rc = fail_msg(err, errlen, false, "cannot seal the private key: %s",
                      rc == -ENOKEY ? "this PoP has no store key" : strerror(-rc));
        goto out;
    }
    c->created_ms = now_ms;
    snprintf(c->state, sizeof(c->state), "valid");
    rc = 0;
out:
    BIO_free(in);
    BIO_free(out);
    BIO_free(kout); /* secmem: cleansed on free */
    EVP_PKEY_free(pkey);
    sk_X509_pop_free(certs, X509_free);
    if (rc)
        cert_rec_free(c);
    return rc;
}
