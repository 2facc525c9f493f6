/* origintls: TLS from the site to a target (an HTTPS origin: resource add --target
 * https://HOST:PORT), on OpenSSL 3.
 *
 * The site connects, then shakes hands as a client before it accepts the stream, so a target
 * whose certificate does not verify fails the OPEN like a refused connect (the next target is
 * tried, and the HTTP ingress answers 502 when none is left) instead of carrying bytes to an
 * origin nobody checked. SNI is the target's host when it is a name; the certificate must be
 * valid for that name (or for the IP address when the host is one), checked against the
 * system's trust store and, when the resource has one, its CA (PEM). insecure skips the
 * certificate checks (the resource says so explicitly, and resource list shows it); SNI is
 * still sent. Once the handshake is done, the connection is a splice layer (splice.h): the
 * splice reads and writes plaintext through it.
 *
 * Contexts are per CA: origintls_ctx_new builds one (the system store plus ca_pem), which the
 * caller keeps for as long as streams use it (OpenSSL counts references: a context freed while
 * connections use it lives until the last one ends). */
#ifndef POPMESH_NODE_SITE_ORIGINTLS_H
#define POPMESH_NODE_SITE_ORIGINTLS_H

#include "node/dataplane/splice.h"

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct origintls origintls_t;

/* A client context trusting the system store and, when ca_pem is not NULL, the certificates in
 * it (PEM, ca_len bytes). NULL with a reason in err when ca_pem holds no certificate or
 * OpenSSL fails. Caller owns the result (SSL_CTX_free). */
SSL_CTX *origintls_ctx_new(const char *ca_pem, size_t ca_len, char *err, size_t errlen);

/* A client connection on the connected socket fd (not owned) to target "host:port": SNI and
 * the name or address checked from host; insecure: no certificate checks. NULL with err. */
origintls_t *origintls_new(SSL_CTX *ctx, int fd, const char *target, bool insecure, char *err,
                           size_t errlen);
/* Advances the handshake: 0 when done, SPLICE_IO_WANT_READ or SPLICE_IO_WANT_WRITE (wait for
 * that readiness of fd, then call again), or SPLICE_IO_ERROR with the reason in err (the
 * verification error when the certificate was refused: "certificate verify failed: unable to
 * get local issuer certificate"). */
int origintls_handshake(origintls_t *t, char *err, size_t errlen);
/* The layer's calls for splice_new_tcp_io, on an origintls_t whose handshake is done. */
extern const splice_io_ops_t origintls_ops;
/* Frees t (not the socket). Accepts NULL. */
void origintls_free(origintls_t *t);

#endif
