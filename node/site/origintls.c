/* origintls: the site's TLS client to HTTPS origins (see origintls.h). */
#include "node/site/origintls.h"

#include "common/netaddr.h"
#include "common/xmalloc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <openssl/pem.h>
#include <stdlib.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>

struct origintls {
    SSL *ssl;
};

/* OpenSSL's first queued error, as text; clears the queue. */
static void ossl_err(char *err, size_t errlen, const char *what)
{
    unsigned long e = ERR_get_error();
    char buf[200] = "";
    if (e)
        ERR_error_string_n(e, buf, sizeof(buf));
    snprintf(err, errlen, "%s%s%s", what, buf[0] ? ": " : "", buf);
    ERR_clear_error();
}

SSL_CTX *origintls_ctx_new(const char *ca_pem, size_t ca_len, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        ossl_err(err, errlen, "TLS context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* What splice.h asks of a layer: a write may take part of the bytes, and is called again
     * with at least the same bytes, which may have moved. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    /* The system store always: an origin with a public certificate needs no --ca. */
    if (SSL_CTX_set_default_verify_paths(ctx) != 1)
        ERR_clear_error(); /* no system store: only the resource's CA then */
    if (ca_pem && ca_len) {
        if (ca_len > INT_MAX) {
            snprintf(err, errlen, "CA too large");
            SSL_CTX_free(ctx);
            return NULL;
        }
        BIO *b = BIO_new_mem_buf(ca_pem, (int)ca_len);
        X509_STORE *st = SSL_CTX_get_cert_store(ctx);
        unsigned n = 0;
        X509 *x;
        while (b && (x = PEM_read_bio_X509(b, NULL, NULL, NULL))) {
            if (X509_STORE_add_cert(st, x) == 1)
                n++;
            X509_free(x);
        }
        ERR_clear_error(); /* the end of the PEM reads as an error */
        BIO_free(b);
        if (!n) {
            snprintf(err, errlen, "the resource's CA holds no certificate OpenSSL can read");
            SSL_CTX_free(ctx);
            return NULL;
        }
    }
    return ctx;
}

origintls_t *origintls_new(SSL_CTX *ctx, int fd, const char *target, bool insecure, char *err,
                           size_t errlen)
{
    netaddr_t na;
    if (netaddr_parse(target, &na, false)) {
        snprintf(err, errlen, "target %.200s is not host:port", target);
        return NULL;
    }
    SSL *ssl = SSL_new(ctx);
    if (!ssl || SSL_set_fd(ssl, fd) != 1) {
        ossl_err(err, errlen, "TLS connection");
        SSL_free(ssl);
        return NULL;
    }
    uint8_t ip[16];
    bool is_ip = inet_pton(AF_INET, na.host, ip) == 1 || inet_pton(AF_INET6, na.host, ip) == 1;
    /* SNI is for names only (RFC 6066 section 3: no literal addresses). */
    if (!is_ip && SSL_set_tlsext_host_name(ssl, na.host) != 1) {
        ossl_err(err, errlen, "SNI");
        SSL_free(ssl);
        return NULL;
    }
    if (insecure) {
        SSL_set_verify(ssl, SSL_VERIFY_NONE, NULL);
    } else {
        X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
        int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, na.host)
                       : X509_VERIFY_PARAM_set1_host(vp, na.host, 0);
        if (ok != 1) {
            ossl_err(err, errlen, "certificate name check");
            SSL_free(ssl);
            return NULL;
        }
    }
    SSL_set_connect_state(ssl);
    origintls_t *t = xcalloc(1, sizeof(*t));
    t->ssl = ssl;
    return t;
}

int origintls_handshake(origintls_t *t, char *err, size_t errlen)
{
    ERR_clear_error();
    int rc = SSL_do_handshake(t->ssl);
    if (rc == 1)
        return 0;
    int e = SSL_get_error(t->ssl, rc);
    if (e == SSL_ERROR_WANT_READ)
        return SPLICE_IO_WANT_READ;
    if (e == SSL_ERROR_WANT_WRITE)
        return SPLICE_IO_WANT_WRITE;
    long vr = SSL_get_verify_result(t->ssl);
    if (vr != X509_V_OK) {
        snprintf(err, errlen, "TLS: certificate verify failed: %s",
                 X509_verify_cert_error_string(vr));
        ERR_clear_error();
    } else if (e == SSL_ERROR_SYSCALL && !ERR_peek_error()) {
        snprintf(err, errlen, "TLS: the target closed the connection during the handshake%s%s",
                 errno ? ": " : "", errno ? strerror(errno) : "");
    } else {
        ossl_err(err, errlen, "TLS handshake");
    }
    return SPLICE_IO_ERROR;
}

static ssize_t io_read(void *io, void *buf, size_t len)
{
    origintls_t *t = io;
    size_t n = 0;
    ERR_clear_error();
    if (SSL_read_ex(t->ssl, buf, len, &n) == 1)
        return (ssize_t)n;
    switch (SSL_get_error(t->ssl, 0)) {
    case SSL_ERROR_WANT_READ:
        return SPLICE_IO_WANT_READ;
    case SSL_ERROR_WANT_WRITE:
        return SPLICE_IO_WANT_WRITE;
    case SSL_ERROR_ZERO_RETURN:
        return SPLICE_IO_CLOSED;
    default:
        /* An origin that closes without close_notify (many do after a response): an end, not
         * an attack on us; the bytes it sent were authenticated. */
        if (ERR_GET_REASON(ERR_peek_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
            ERR_clear_error();
            return SPLICE_IO_CLOSED;
        }
        ERR_clear_error();
        return SPLICE_IO_ERROR;
    }
}

static ssize_t io_write(void *io, const void *buf, size_t len)
{
    origintls_t *t = io;
    size_t n = 0;
    ERR_clear_error();
    if (SSL_write_ex(t->ssl, buf, len, &n) == 1)
        return (ssize_t)n;
    switch (SSL_get_error(t->ssl, 0)) {
    case SSL_ERROR_WANT_READ:
        return SPLICE_IO_WANT_READ;
    case SSL_ERROR_WANT_WRITE:
        return SPLICE_IO_WANT_WRITE;
    default:
        ERR_clear_error();
        return SPLICE_IO_ERROR;
    }
}

static void io_shutdown(void *io)
{
    origintls_t *t = io;
    ERR_clear_error();
    SSL_shutdown(t->ssl); /* our close_notify, best effort */
    ERR_clear_error();
}

static void io_destroy(void *io)
{
    origintls_free(io);
}

const splice_io_ops_t origintls_ops = {
    .name = "tls-origin",
    .read = io_read,
    .write = io_write,
    .shutdown = io_shutdown,
    .destroy = io_destroy,
};

void origintls_free(origintls_t *t)
{
    if (!t)
        return;
    SSL_free(t->ssl);
    free(t);
}
