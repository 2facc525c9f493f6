/* tlsctx: see tlsctx.h.
 *
 * ONE SSL_CTX PER CERTIFICATE, SWAPPED IN BY SNI. The shared context (t->ctx) holds no
 * certificate; every table entry builds its own context with its leaf, chain and key, and the
 * same settings (ctx_new sets up both: versions, ciphers, groups, options, modes, no
 * session cache, ALPN, the servername, ticket and OCSP status callbacks). A connection starts
 * on one of these contexts (THE CONTEXT A CONNECTION STARTS ON, below); the servername
 * callback, which OpenSSL runs for every client hello (with or without SNI, and again after a
 * HelloRetryRequest), picks the entry and hands the connection its context with
 * SSL_set_SSL_CTX. This used to install the certificate on
 * the one SSL with SSL_use_cert_and_key, which checks again, at every handshake, that the key
 * matches the certificate (~2.3 us of a ~115 us handshake, perf); SSL_set_SSL_CTX copies the
 * context's prepared certificate (references; the whole callback now takes ~0.4 us), as nginx
 * does.
 *
 * What SSL_set_SSL_CTX changes, and why each handshake still behaves as one context would
 * (OpenSSL 3.0, ssl/ssl_lib.c, statem/statem_srvr.c, statem/extensions.c):
 *  - from the new context: the certificate, chain and key (the connection's CERT is a copy of
 *    the new context's); the session id context (empty in both); and what the handshake
 *    reads from SSL_get_SSL_CTX afterwards: the ALPN select callback and the OCSP status
 *    callback (both run after the servername callback), the servername callback of a second
 *    hello (after a HelloRetryRequest), and whatever else OpenSSL looks up there (the cipher
 *    lists, say). ctx_new gives every context the same functions, arguments and lists.
 *  - from the initial context (the SSL's session_ctx, which SSL_set_SSL_CTX never changes):
 *    the ticket key callback, for sealing and for opening, and the session cache mode; the
 *    SSL's own copies made by SSL_new stay: options (no tickets when there is no key ring),
 *    versions, groups, modes, read ahead, early data. A ticket is opened before the servername
 *    callback runs (TLS 1.2: with the session lookup; TLS 1.3: with the PSK extension) and
 *    sealed with the initial context's callback (every context has the same), whose keys are
 *    the mesh-wide ring: a ticket sealed at any PoP, for any certificate, opens at any other.
 *  - an unknown SNI, or none, never gets a certificate: the callback returns the fatal
 *    unrecognized_name alert while the server's answer to the hello is not even begun, so
 *    whichever context the connection holds then, no certificate is sent (a second hello
 *    naming another host after a HelloRetryRequest gets the same alert, before any
 *    certificate was sent). https_ingress.sh checks the alert for an unknown name and none.
 *
 * THE CONTEXT A CONNECTION STARTS ON. The one of the certificate the last hello picked
 * (t->last), else the shared one. SSL_set_SSL_CTX does nothing when the connection already
 * holds the context it is given, so on a PoP whose clients mostly ask for one certificate a
 * connection makes one certificate copy instead of two (SSL_new's, and the swap's), as nginx
 * with one server block does; any other hello swaps as described above. Every context has the
 * same settings and callbacks, so which one a connection starts on (and keeps as its
 * session_ctx) changes nothing a client can see. t->last is a borrowed pointer into the table,
 * forgotten at every change of the table; the connection's SSL holds its own reference to the
 * context it started on.
 *
 * LIFETIMES. A table entry is reference-counted: the table holds one reference, each
 * connection served by it another (the connection needs the entry's names for the Host check
 * and its OCSP response). A record replaced or deleted while connections use the old entry
 * drops the table's reference only. The entry's SSL_CTX is reference-counted by OpenSSL as
 * well: SSL_set_SSL_CTX takes a reference for the SSL and SSL_free drops it, so the context
 * outlives every connection using it even apart from the entry's own count. Everything runs
 * on the loop thread, so the entry counts are plain integers.
 *
 * TICKETS. OpenSSL's ticket format (AES-256-CBC + HMAC-SHA256 over the session, keyed by a
 * 16-byte name) is kept; only its keys come from the mesh-wide ring (ticketkeys.h), so any PoP
 * can open a ticket another sealed. The server-side session cache is off: a session lives
 * only in its ticket, which is what makes it portable. No early data (0-RTT) is accepted, so
 * ticket replay gains an attacker nothing but a handshake.
 *
 * The table is a flat array searched name by name (tens of certificates take well under a
 * microsecond against a handshake's ~100 us); a mesh with thousands of certificates would want
 * a hash on the exact names first, and would pay an SSL_CTX (some kilobytes) per certificate. */
#include "node/tls/tlsctx.h"

#include "common/log.h"
#include "common/logesc.h"
#include "common/clock.h"
#include "common/xmalloc.h"
#include "node/tls/ocsprec.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <sodium.h>

#define CHAIN_CERTS_MAX 10 /* certificates in one chain: leaf and intermediates */

/* TLS 1.2: forward secrecy and AEAD only (Mozilla's "intermediate" list). TLS 1.3's suites
 * are all AEAD; OpenSSL's default order is kept. */
static const char CIPHERS_TLS12[] = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                                    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                                    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
static const char GROUPS[] = "X25519:P-256:P-384";
/* What ALPN may agree, in our order of preference (wire format: length-prefixed). "h2" joins
 * here once the proxy speaks it. */
static const unsigned char ALPN_PROTOS[] = "\x08http/1.1";

struct tls_cert {
    int refs;
    char id[CERT_ID_MAX + 1];
    cert_rec_t rec;    /* the record (names, validity); its chain and sealed key freed */
    tlsctx_names_t nm; /* rec's names, for the pick */
    X509 *leaf;
    STACK_OF(X509) *chain; /* intermediates */
    EVP_PKEY *key;
    SSL_CTX *ctx;       /* the shared settings with this certificate (ctx_new) */
    bool has_responder; /* the leaf names an OCSP responder */
    uint8_t *ocsp;      /* DER response to staple, NULL = none */
    size_t ocsp_len;
    uint64_t ocsp_until_ms; /* its nextUpdate (Unix ms) */
};

struct tlsctx {
    tlsctx_opts_t o;
    SSL_CTX *ctx;
    /* The entry the last hello picked (borrowed from the table, NULL after any change to it):
     * a new connection starts on its context, so a hello for the same certificate needs no
     * SSL_set_SSL_CTX (THE CONTEXT A CONNECTION STARTS ON, above). */
    struct tls_cert *last;
    /* AES-256-CBC for the ticket callback, fetched once: EVP_aes_256_cbc() is a legacy object
     * that every EVP_*Init_ex resolves by name again (~2,600 instructions per ticket sealed or
     * opened, callgrind). */
    EVP_CIPHER *ticket_cipher;
    struct tls_cert **certs;
    tlsctx_names_t *names; /* names[i] == certs[i]->nm, for tlsctx_pick */
    size_t n, cap;
    int watch;
    tlsctx_stats_t st;
};

struct tlsconn {
    tlsctx_t *t;
    SSL *ssl;
    int fd;                /* the socket (not owned) */
    struct tls_cert *cert; /* the entry serving it (a reference), NULL before the hello */
    char sni[TLSCTX_HOST_MAX + 1];
    char alpn[32];   /* the protocol ALPN agreed, "" if none */
    const char *why; /* set by a callback that failed the handshake */
    bool done, failed, shut;
};

static SSL_CTX *ctx_new(tlsctx_t *t);

static void cert_unref(struct tls_cert **ep)
{
    struct tls_cert *e = *ep;
    *ep = NULL;
    if (!e || --e->refs > 0)
        return;
    X509_free(e->leaf);
    sk_X509_pop_free(e->chain, X509_free);
    EVP_PKEY_free(e->key);
    SSL_CTX_free(e->ctx); /* connections still using it hold their own references */
    free(e->ocsp);
    cert_rec_free(&e->rec);
    free(e);
}

/* ---- pure helpers ------------------------------------------------------------------------ */

int tlsctx_host_name(const char *in, size_t len, char *out, size_t outlen)
{
    if (!in || len == 0 || outlen < 2)
        return -EINVAL;
    if (in[0] == '[')
        return -EINVAL; /* an IPv6 literal: no certificate names one */
    const char *colon = memchr(in, ':', len);
    if (colon) {
        /* HOST:PORT: the port must be digits (a second colon is an unbracketed IPv6) */
        for (const char *p = colon + 1; p < in + len; p++)
            if (*p < '0' || *p > '9')
                return -EINVAL;
        len = (size_t)(colon - in);
    }
    if (len && in[len - 1] == '.')
        len--;
    if (len == 0 || len > TLSCTX_HOST_MAX || len + 1 > outlen)
        return -EINVAL;
    bool all_digits_dots = true;
    for (size_t i = 0; i < len; i++) {
        char ch = in[i];
        if (ch >= 'A' && ch <= 'Z')
            ch = (char)(ch - 'A' + 'a');
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' ||
              ch == '_'))
            return -EINVAL;
        if (ch != '.' && (ch < '0' || ch > '9'))
            all_digits_dots = false;
        out[i] = ch;
    }
    out[len] = '\0';
    if (all_digits_dots)
        return -EINVAL; /* an IPv4 literal */
    return 0;
}

bool tlsctx_names_cover(const tlsctx_names_t *c, const char *host)
{
    for (size_t k = 0; k < c->nnames; k++)
        if (cert_name_matches(c->names[k], host))
            return true;
    return false;
}

ssize_t tlsctx_pick(const tlsctx_names_t *certs, size_t n, const char *host)
{
    /* pass 0: exact names; pass 1: wildcards */
    for (int pass = 0; pass < 2; pass++) {
        ssize_t best = -1;
        for (size_t i = 0; i < n; i++) {
            bool hit = false;
            for (size_t k = 0; k < certs[i].nnames && !hit; k++) {
                const char *p = certs[i].names[k];
                bool wild = p[0] == '*';
                if (pass == 0 ? !wild && !strcmp(p, host) : wild && cert_name_matches(p, host))
                    hit = true;
            }
            if (hit && (best < 0 || certs[i].not_after_ms > certs[best].not_after_ms))
                best = (ssize_t)i;
        }
        if (best >= 0)
            return best;
    }
    return -1;
}

/* ---- the table, from cert/ records -------------------------------------------------------- */

static int pem_no_password(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag, (void)u;
    return 0; /* an encrypted key cannot be used unattended: refuse, never prompt */
}

/* The last OpenSSL error as text (static), for a log line. */
static const char *ssl_err(void)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    return r ? r : "unknown error";
}

/* An entry from a parsed record: takes the record (rec is left empty). NULL with *why. */
static struct tls_cert *cert_build(tlsctx_t *t, cert_rec_t *rec, const char **why)
{
    struct tls_cert *e = xcalloc(1, sizeof(*e));
    e->refs = 1;
    snprintf(e->id, sizeof(e->id), "%s", rec->id);
    e->rec = *rec;
    memset(rec, 0, sizeof(*rec));
    e->chain = sk_X509_new_null();
    ERR_clear_error();
    if (!e->rec.chain_pem || !e->rec.nnames) {
        *why = "no certificate in the record yet";
        goto fail;
    }
    BIO *b = BIO_new_mem_buf(e->rec.chain_pem, -1);
    X509 *x;
    unsigned nx = 0;
    while (b && (x = PEM_read_bio_X509(b, NULL, pem_no_password, NULL))) {
        if (nx++ == 0) {
            e->leaf = x;
        } else if (nx > CHAIN_CERTS_MAX || !sk_X509_push(e->chain, x)) {
            X509_free(x);
            BIO_free(b);
            *why = "the chain holds too many certificates";
            goto fail;
        }
    }
    BIO_free(b);
    ERR_clear_error(); /* the read that ended the loop */
    if (!e->leaf) {
        *why = "the chain holds no PEM certificate";
        goto fail;
    }
    uint8_t *plain = NULL;
    size_t plen = 0;
    int orc = cert_open_key(t->o.seal, &e->rec, &plain, &plen, NULL);
    if (orc) {
        /* the caller logs it with the record's name; never anything of the key */
        *why = orc == -EBADMSG ? "the private key does not open with this mesh's store key "
                                 "(tampered, or copied from another record)"
                               : storeseal_strerror(orc);
        goto fail;
    }
    b = BIO_new_mem_buf(plain, (int)plen);
    e->key = b ? PEM_read_bio_PrivateKey(b, NULL, pem_no_password, NULL) : NULL;
    BIO_free(b);
    sodium_memzero(plain, plen);
    free(plain);
    if (!e->key) {
        *why = "the private key is not a PEM key (or is encrypted)";
        goto fail;
    }
    if (X509_check_private_key(e->leaf, e->key) != 1) {
        *why = "the private key does not match the certificate";
        goto fail;
    }
    /* The key check runs here, once per record, not at every handshake (header comment). */
    e->ctx = ctx_new(t);
    if (!e->ctx || SSL_CTX_use_cert_and_key(e->ctx, e->leaf, e->key, e->chain, 1) != 1) {
        *why = "OpenSSL refuses the certificate or its key";
        goto fail;
    }
    STACK_OF(OPENSSL_STRING) *ocsp = X509_get1_ocsp(e->leaf);
    e->has_responder = ocsp && sk_OPENSSL_STRING_num(ocsp) > 0;
    X509_email_free(ocsp);
    /* Only what the handshake needs stays in memory: the PEM chain and the sealed key go. */
    free(e->rec.chain_pem);
    e->rec.chain_pem = NULL;
    free(e->rec.key_sealed);
    e->rec.key_sealed = NULL;
    e->rec.key_sealed_len = 0;
    e->nm = (tlsctx_names_t){.names = (const char(*)[CERT_ID_MAX + 1]) e->rec.names,
                             .nnames = e->rec.nnames,
                             .not_after_ms = e->rec.not_after_ms};
    ERR_clear_error();
    return e;
fail:
    ERR_clear_error();
    cert_unref(&e);
    return NULL;
}

static void table_rebuild_names(tlsctx_t *t)
{
    t->last = NULL; /* it may be the entry just replaced or removed */
    for (size_t i = 0; i < t->n; i++)
        t->names[i] = t->certs[i]->nm;
}

static ssize_t table_find(const tlsctx_t *t, const char *id)
{
    for (size_t i = 0; i < t->n; i++)
        if (!strcmp(t->certs[i]->id, id))
            return (ssize_t)i;
    return -1;
}

static void table_remove(tlsctx_t *t, size_t i)
{
    cert_unref(&t->certs[i]);
    t->certs[i] = t->certs[--t->n];
    table_rebuild_names(t);
}

/* The record cert/<id> (value NULL: deleted) replaces what the table held for id. */
static void table_apply(tlsctx_t *t, const char *id, const uint8_t *value, size_t vlen)
{
    ssize_t i = table_find(t, id);
    char eid[LOG_ESC_MAX];
    log_escs(eid, sizeof(eid), id);
    if (!value) {
        if (i >= 0) {
            table_remove(t, (size_t)i);
            log_info("tls: certificate %s removed: no longer served", eid);
        }
        return;
    }
    cert_rec_t rec;
    memset(&rec, 0, sizeof(rec));
    const char *why = NULL;
    struct tls_cert *e = NULL;
    if (cert_parse(value, vlen, id, &rec, &why) == 0)
        e = cert_build(t, &rec, &why);
    cert_rec_free(&rec);
    if (!e) {
        /* A record that cannot be served leaves the previous one in place (a renewal that went
         * wrong must not take a working certificate away). */
        log_warn("tls: certificate %s not served: %s%s", eid, why ? why : "unreadable record",
                 i >= 0 ? " (the previous one stays)" : "");
        return;
    }
    uint64_t now = clock_wall_ms();
    if (e->rec.not_after_ms && e->rec.not_after_ms < now)
        log_warn("tls: certificate %s (%s) expired; served until a new one arrives", eid,
                 e->rec.names[0]);
    if (i >= 0) {
        cert_unref(&t->certs[i]);
        t->certs[i] = e;
    } else {
        if (t->n == t->cap) {
            t->cap = t->cap ? 2 * t->cap : 8;
            t->certs = xrealloc(t->certs, t->cap * sizeof(*t->certs));
            t->names = xrealloc(t->names, t->cap * sizeof(*t->names));
        }
        t->certs[t->n++] = e;
    }
    table_rebuild_names(t);
    char en[LOG_ESC_MAX];
    log_info("tls: serving certificate %s for %s%s (%zu name%s, %s)", eid,
             log_escs(en, sizeof(en), e->rec.names[0]), e->rec.nnames > 1 ? ", ..." : "",
             e->rec.nnames, e->rec.nnames == 1 ? "" : "s",
             e->has_responder ? "has an OCSP responder" : "no OCSP responder");
}

static void on_cert_change(void *ctx, const store_entry_t *changes, size_t n)
{
    tlsctx_t *t = ctx;
    for (size_t k = 0; k < n; k++) {
        char id[CERT_ID_MAX + 1];
        if (cert_key_id(changes[k].key, changes[k].klen, id, sizeof(id)))
            continue;
        table_apply(t, id, changes[k].tombstone ? NULL : changes[k].value, changes[k].vlen);
    }
}

static int load_one(const store_entry_t *e, void *ctx)
{
    char id[CERT_ID_MAX + 1];
    if (cert_key_id(e->key, e->klen, id, sizeof(id)) == 0)
        table_apply(ctx, id, e->value, e->vlen);
    return 0;
}

/* ---- OpenSSL callbacks --------------------------------------------------------------------- */

static int on_servername(SSL *ssl, int *al, void *arg)
{
    tlsctx_t *t = arg;
    tlsconn_t *c = SSL_get_app_data(ssl);
    if (!c)
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    const char *sn = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    char host[TLSCTX_HOST_MAX + 1];
    ssize_t i = -1;
    if (sn && tlsctx_host_name(sn, strlen(sn), host, sizeof(host)) == 0)
        i = tlsctx_pick(t->names, t->n, host);
    if (i < 0) {
        c->why = sn ? "unknown server name" : "no server name (SNI)";
        t->st.unknown_sni++;
        *al = SSL_AD_UNRECOGNIZED_NAME;
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    struct tls_cert *e = t->certs[i];
    /* The SSL takes a reference to e->ctx (SSL_free drops it); a second hello chooses again */
    if (SSL_set_SSL_CTX(ssl, e->ctx) != e->ctx) {
        c->why = "cannot install the certificate";
        *al = SSL_AD_INTERNAL_ERROR;
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    cert_unref(&c->cert); /* a second hello (after HelloRetryRequest) */
    e->refs++;
    c->cert = e;
    t->last = e;
    memcpy(c->sni, host, strlen(host) + 1); /* both TLSCTX_HOST_MAX + 1 bytes */
    return SSL_TLSEXT_ERR_OK;
}

static int on_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl, (void)arg;
    unsigned char *o = NULL;
    if (inlen == 0 || SSL_select_next_proto(&o, outlen, ALPN_PROTOS, sizeof(ALPN_PROTOS) - 1, in,
                                            inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK; /* go on without ALPN: HTTP/1.1 is what we speak anyway */
    *out = o;
    return SSL_TLSEXT_ERR_OK;
}

/* Session tickets with the mesh-wide keys: enc 1 seals a new ticket with the current key;
 * enc 0 finds the key a presented ticket names (2: accepted, but re-issue under the current
 * key). */
static int on_ticket_key(SSL *ssl, unsigned char key_name[16], unsigned char *iv,
                         EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc)
{
    tlsctx_t *t = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    if (!t || !t->o.tickets)
        return 0;
    ticketkey_t k;
    bool renew = false;
    int rc = 1;
    if (enc) {
        if (!ticketkeys_current(t->o.tickets, &k))
            return 0; /* no key yet: no ticket (a full handshake next time) */
        memcpy(key_name, k.name, 16);
        if (RAND_bytes(iv, EVP_CIPHER_get_iv_length(t->ticket_cipher)) != 1)
            rc = -1;
        else if (EVP_EncryptInit_ex(cctx, t->ticket_cipher, NULL, k.aes, iv) != 1)
            rc = -1;
        if (rc == 1)
            t->st.tickets_new++;
    } else {
        if (!ticketkeys_find(t->o.tickets, key_name, &k, &renew)) {
            t->st.tickets_stale++;
            return 0; /* unknown or expired key: a full handshake */
        }
        if (EVP_DecryptInit_ex(cctx, t->ticket_cipher, NULL, k.aes, iv) != 1)
            rc = -1;
    }
    if (rc == 1) {
        OSSL_PARAM params[] = {
            OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, k.hmac, sizeof(k.hmac)),
            OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
            OSSL_PARAM_construct_end()};
        if (EVP_MAC_CTX_set_params(hctx, params) != 1)
            rc = -1;
    }
    sodium_memzero(&k, sizeof(k));
    /* 2: accepted, and a new ticket goes out. Under TLS 1.3 always: clients use a ticket once
     * (RFC 8446 C.4), and OpenSSL issues none after a resumption it was not asked to renew, so
     * a client would otherwise alternate between resumed and full handshakes (measured: half
     * of a chain of reconnections resumed). */
    if (rc == 1 && !enc && (renew || SSL_version(ssl) >= TLS1_3_VERSION))
        rc = 2;
    return rc;
}

/* OCSP stapling: the stored response of the connection's certificate while it is fresh. */
static int on_status(SSL *ssl, void *arg)
{
    tlsctx_t *t = arg;
    tlsconn_t *c = SSL_get_app_data(ssl);
    const struct tls_cert *e = c ? c->cert : NULL;
    if (!e || !e->ocsp || !e->has_responder || clock_wall_ms() >= e->ocsp_until_ms)
        return SSL_TLSEXT_ERR_NOACK;
    unsigned char *copy = OPENSSL_malloc(e->ocsp_len); /* OpenSSL frees it */
    if (!copy)
        return SSL_TLSEXT_ERR_NOACK;
    memcpy(copy, e->ocsp, e->ocsp_len);
    if (SSL_set_tlsext_status_ocsp_resp(ssl, copy, (long)e->ocsp_len) != 1) {
        OPENSSL_free(copy);
        return SSL_TLSEXT_ERR_NOACK;
    }
    t->st.ocsp_stapled++;
    return SSL_TLSEXT_ERR_OK;
}

/* ---- the context --------------------------------------------------------------------------- */

/* A context with everything the connections share and no certificate (NULL with the reason
 * in OpenSSL's error queue): the shared one, and one per certificate, so that swapping a
 * connection onto its certificate's context changes nothing else (the header comment). */
static SSL_CTX *ctx_new(tlsctx_t *t)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx)
        return NULL;
    SSL_CTX_set_app_data(ctx, t);
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_cipher_list(ctx, CIPHERS_TLS12) != 1 ||
        SSL_CTX_set1_groups_list(ctx, GROUPS) != 1) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    /* No renegotiation (a client-driven CPU sink, and a TLS 1.2 attack surface), no
     * compression (CRIME); a client that closes without close_notify is an EOF, as HTTP framing
     * makes truncation visible anyway. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_IGNORE_UNEXPECTED_EOF);
    /* Idle keep-alive connections give their ~34 KiB of record buffers back; the output
     * buffer of httpproxy may move between a WANT_WRITE and its retry. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* Read ahead: one read() takes whatever the socket holds (a whole flight, a request)
     * instead of two per record (header, then body): 8.6 reads per short connection before,
     * as many as 3 after (tools/bench/bench_tls.sh). Bytes read ahead are invisible to the
     * socket's readiness: tlsconn_pending reports them. */
    SSL_CTX_set_read_ahead(ctx, 1);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_max_early_data(ctx, 0);
    SSL_CTX_set_tlsext_servername_callback(ctx, on_servername);
    SSL_CTX_set_tlsext_servername_arg(ctx, t);
    SSL_CTX_set_alpn_select_cb(ctx, on_alpn, t);
    SSL_CTX_set_tlsext_status_cb(ctx, on_status);
    SSL_CTX_set_tlsext_status_arg(ctx, t);
    if (t->o.tickets) {
        SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, on_ticket_key);
    } else {
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
        SSL_CTX_set_num_tickets(ctx, 0);
    }
    return ctx;
}

tlsctx_t *tlsctx_new(const tlsctx_opts_t *o, char *err, size_t errlen)
{
    tlsctx_t *t = xcalloc(1, sizeof(*t));
    t->o = *o;
    ERR_clear_error();
    t->ticket_cipher = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL);
    t->ctx = t->ticket_cipher ? ctx_new(t) : NULL;
    if (!t->ctx) {
        snprintf(err, errlen, "cannot create the TLS context: %s", ssl_err());
        goto fail;
    }
    t->watch = store_watch(o->store, CERT_PREFIX, strlen(CERT_PREFIX), on_cert_change, t);
    if (t->watch < 0) {
        snprintf(err, errlen, "cannot watch %s: %s", CERT_PREFIX,
                 t->watch == -ENOSPC ? "too many store watchers" : strerror(-t->watch));
        t->watch = 0;
        goto fail;
    }
    int rc = store_list(o->store, CERT_PREFIX, strlen(CERT_PREFIX), load_one, t);
    if (rc) {
        snprintf(err, errlen, "cannot read the certificates: %s", store_last_error(o->store));
        goto fail;
    }
    return t;
fail:
    tlsctx_destroy(&t);
    return NULL;
}

void tlsctx_destroy(tlsctx_t **tp)
{
    tlsctx_t *t = tp ? *tp : NULL;
    if (!t)
        return;
    if (t->watch > 0)
        store_unwatch(t->o.store, t->watch);
    for (size_t i = 0; i < t->n; i++)
        cert_unref(&t->certs[i]);
    free(t->certs);
    free(t->names);
    SSL_CTX_free(t->ctx);
    EVP_CIPHER_free(t->ticket_cipher);
    free(t);
    *tp = NULL;
}

bool tlsctx_covers(const tlsctx_t *t, const char *host)
{
    char h[TLSCTX_HOST_MAX + 1];
    if (!t || !host || tlsctx_host_name(host, strlen(host), h, sizeof(h)))
        return false;
    return tlsctx_pick(t->names, t->n, h) >= 0;
}

size_t tlsctx_count(const tlsctx_t *t)
{
    return t ? t->n : 0;
}

void tlsctx_stats(const tlsctx_t *t, tlsctx_stats_t *out)
{
    *out = t->st;
}

int tlsctx_set_ocsp(tlsctx_t *t, const char *id, const uint8_t *der, size_t len)
{
    ssize_t i = table_find(t, id);
    if (i < 0)
        return -ENOENT;
    struct tls_cert *e = t->certs[i];
    if (!der || len == 0 || len > (64u << 10) || sk_X509_num(e->chain) < 1)
        return -EINVAL;
    /* The same rule as ocspfetch and cert.list (ocsprec.h): verified against the issuer,
     * about this leaf, fresh and good. */
    ocsp_info_t info;
    const char *why;
    if (ocsp_judge(der, len, e->leaf, sk_X509_value(e->chain, 0), clock_wall_ms(), &info, &why) !=
        OCSP_STATE_GOOD)
        return -EINVAL;
    free(e->ocsp);
    e->ocsp = xmalloc(len);
    memcpy(e->ocsp, der, len);
    e->ocsp_len = len;
    e->ocsp_until_ms = info.next_update_ms;
    return 0;
}

int tlsctx_clear_ocsp(tlsctx_t *t, const char *id)
{
    ssize_t i = table_find(t, id);
    if (i < 0)
        return -ENOENT;
    struct tls_cert *e = t->certs[i];
    free(e->ocsp);
    e->ocsp = NULL;
    e->ocsp_len = 0;
    e->ocsp_until_ms = 0;
    return 0;
}

/* ---- one connection ------------------------------------------------------------------------ */

tlsconn_t *tlsconn_new(tlsctx_t *t, int fd)
{
    SSL *ssl = SSL_new(t->last ? t->last->ctx : t->ctx);
    if (!ssl)
        return NULL;
    if (SSL_set_fd(ssl, fd) != 1) {
        SSL_free(ssl);
        return NULL;
    }
    tlsconn_t *c = xcalloc(1, sizeof(*c));
    c->t = t;
    c->ssl = ssl;
    c->fd = fd;
    SSL_set_app_data(ssl, c);
    SSL_set_accept_state(ssl);
    return c;
}

void tlsconn_destroy(tlsconn_t **cp)
{
    tlsconn_t *c = cp ? *cp : NULL;
    if (!c)
        return;
    SSL_free(c->ssl);
    cert_unref(&c->cert);
    free(c);
    *cp = NULL;
}

/* Empties the thread's error queue before an SSL call, as SSL_get_error needs, when it holds
 * anything: ERR_clear_error wipes all its slots every time (~1,100 instructions, six calls per
 * short connection), a look at an empty queue costs a fraction of that. */
static void err_reset(void)
{
    if (ERR_peek_error())
        ERR_clear_error();
}

/* What an SSL call's failure means for the caller. */
static int map_error(tlsconn_t *c, int ret)
{
    switch (SSL_get_error(c->ssl, ret)) {
    case SSL_ERROR_WANT_READ:
        return TLS_WANT_READ;
    case SSL_ERROR_WANT_WRITE:
        return TLS_WANT_WRITE;
    case SSL_ERROR_ZERO_RETURN:
        return TLS_CLOSED;
    default:
        c->failed = true;
        return TLS_ERROR;
    }
}

int tlsconn_handshake(tlsconn_t *c, const char **why)
{
    if (c->done)
        return TLS_OK;
    if (c->failed) {
        *why = c->why ? c->why : "failed";
        return TLS_ERROR;
    }
    /* A full TLS 1.3 handshake ends with two session tickets (OpenSSL's default, one per
     * connection a client may open in parallel: RFC 8446 C.4), and OpenSSL writes and flushes
     * each by itself: two write()s, two segments, two wake-ups of the client for ~480 bytes.
     * The call that sends them is the one after the client hello's (the session, made while
     * reading the hello, tells the version and whether it resumed; a resumption gets one
     * ticket); corked during that call, they leave in one segment as the cork comes off right
     * after it. Every other call writes at most one flight, already one write(). */
    SSL_SESSION *sess = SSL_get_session(c->ssl);
    bool cork = sess && SSL_SESSION_get_protocol_version(sess) == TLS1_3_VERSION &&
                !SSL_session_reused(c->ssl);
    int on = 1, off = 0;
    if (cork)
        (void)setsockopt(c->fd, IPPROTO_TCP, TCP_CORK, &on, sizeof(on));
    err_reset();
    int r = SSL_do_handshake(c->ssl);
    if (cork)
        (void)setsockopt(c->fd, IPPROTO_TCP, TCP_CORK, &off, sizeof(off));
    if (r == 1) {
        c->done = true;
        c->t->st.handshakes++;
        const unsigned char *p = NULL;
        unsigned int l = 0;
        SSL_get0_alpn_selected(c->ssl, &p, &l);
        if (p && l < sizeof(c->alpn)) {
            memcpy(c->alpn, p, l);
            c->alpn[l] = '\0';
        }
        if (SSL_session_reused(c->ssl))
            c->t->st.resumed++;
        return TLS_OK;
    }
    int rc = map_error(c, r);
    if (rc == TLS_WANT_READ || rc == TLS_WANT_WRITE)
        return rc;
    c->failed = true;
    c->t->st.failed++;
    *why = c->why ? c->why : ERR_peek_last_error() ? ssl_err() : "the client went away";
    ERR_clear_error();
    return TLS_ERROR;
}

ssize_t tlsconn_read(tlsconn_t *c, void *buf, size_t len)
{
    if (c->failed)
        return TLS_ERROR;
    size_t n = 0;
    err_reset();
    int r = SSL_read_ex(c->ssl, buf, len, &n);
    if (r == 1)
        return (ssize_t)n;
    int rc = map_error(c, r);
    err_reset();
    return rc;
}

ssize_t tlsconn_write(tlsconn_t *c, const void *buf, size_t len)
{
    if (c->failed || c->shut)
        return TLS_ERROR;
    size_t n = 0;
    err_reset();
    int r = SSL_write_ex(c->ssl, buf, len, &n);
    if (r == 1)
        return (ssize_t)n;
    int rc = map_error(c, r);
    err_reset();
    return rc == TLS_CLOSED ? TLS_ERROR : rc;
}

bool tlsconn_pending(const tlsconn_t *c)
{
    /* SSL_pending counts decrypted bytes only; SSL_has_pending also the records read ahead */
    return c->done && !c->failed && SSL_has_pending(c->ssl);
}

void tlsconn_shutdown(tlsconn_t *c)
{
    if (!c || !c->done || c->failed || c->shut)
        return;
    c->shut = true;
    /* Every caller shuts the socket's write side or closes it next: corked, the alert waits for
     * that FIN and both leave in one segment, so the peer wakes once for the two (a separate
     * packet was measurable in short connections: bench_tls.sh). */
    int one = 1;
    (void)setsockopt(c->fd, IPPROTO_TCP, TCP_CORK, &one, sizeof(one));
    err_reset();
    (void)SSL_shutdown(c->ssl);
    err_reset();
}

bool tlsconn_done(const tlsconn_t *c)
{
    return c->done;
}

const char *tlsconn_sni(const tlsconn_t *c)
{
    return c->sni;
}

const char *tlsconn_alpn(const tlsconn_t *c)
{
    return c->alpn;
}

bool tlsconn_resumed(const tlsconn_t *c)
{
    return c->done && SSL_session_reused(c->ssl);
}

const char *tlsconn_version(const tlsconn_t *c)
{
    return SSL_get_version(c->ssl);
}

bool tlsconn_covers(const tlsconn_t *c, const char *host)
{
    char h[TLSCTX_HOST_MAX + 1];
    if (!c->cert || !host || tlsctx_host_name(host, strlen(host), h, sizeof(h)))
        return false;
    return tlsctx_names_cover(&c->cert->nm, h);
}
