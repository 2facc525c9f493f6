/* tlsctx: the server side of TLS at a PoP's ingress (OpenSSL 3).
 *
 * One tlsctx_t holds the TLS settings (TLS 1.2 and 1.3 only; for 1.2 only ECDHE with AES-GCM
 * or ChaCha20-Poly1305; no renegotiation, no compression; no server-side session cache) and
 * the table of certificates it serves, each with an SSL_CTX of the same settings (tlsctx.c): one
 * entry per cert/ record (certstore.h) whose chain parses and whose sealed key opens, kept current
 * by the store's change feed, so a certificate imported or renewed at any PoP is served here as
 * soon as the record arrives.
 *
 * Choice by SNI (the servername callback): an exact name of some certificate first, then a
 * wildcard ("*.example.com" covers "a.example.com", not "a.b.example.com" nor "example.com");
 * among several, the one that expires last. A client hello without SNI, or one naming a host
 * no certificate covers, gets a fatal unrecognized_name alert: never another host's
 * certificate, which would only teach the client (and an observer) which names live here.
 *
 * ALPN: "http/1.1" when offered (the list is one place below, so "h2" can join it); a client
 * that offers no protocol we speak goes on without ALPN. OCSP: a response handed over with
 * tlsctx_set_ocsp is stapled while it is fresh, for a certificate that names a responder
 * (ocspfetch.h fetches them). Session tickets are sealed with the mesh-wide key ring
 * (ticketkeys.h), so a ticket from one PoP resumes at any other.
 *
 * tlsconn_t wraps one non-blocking socket: handshake, read, write and shutdown report
 * TLS_WANT_READ / TLS_WANT_WRITE as OpenSSL asks, so the owner's event loop knows what to wait
 * for. Everything runs on the loop's thread. */
#ifndef POPMESH_NODE_TLS_TLSCTX_H
#define POPMESH_NODE_TLS_TLSCTX_H

#include "node/tls/certstore.h"
#include "node/tls/ticketkeys.h"
#include "storage/store.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define TLSCTX_HANDSHAKE_TIMEOUT_S 10.0 /* s a client may take over its handshake (httpproxy) */
#define TLSCTX_HOST_MAX            253  /* bytes of a host name (SNI, Host) */

typedef struct tlsctx tlsctx_t;
typedef struct tlsconn tlsconn_t;

typedef struct tlsctx_opts {
    store_t *store;                   /* borrowed: cert/ is read and watched */
    const certstore_seal_key_t *seal; /* borrowed: opens the private keys */
    const ticketkeys_t *tickets;      /* borrowed; NULL = no session tickets */
} tlsctx_opts_t;

/* Loads every cert/ record and watches the prefix. NULL with a reason in err. */
tlsctx_t *tlsctx_new(const tlsctx_opts_t *o, char *err, size_t errlen);
void tlsctx_destroy(tlsctx_t **tp);

/* Whether some certificate covers host (any case, an optional ":port" and a trailing dot are
 * ignored): for the redirect of plain HTTP to HTTPS. */
bool tlsctx_covers(const tlsctx_t *t, const char *host);
/* Certificates in the table. */
size_t tlsctx_count(const tlsctx_t *t);

/* An OCSP response (DER) for the certificate cert/<id>: stapled while its nextUpdate has not
 * passed. Checked here (a successful response about this leaf); 0, -ENOENT (no such
 * certificate loaded) or -EINVAL. Copied. A new record for the id drops it. */
int tlsctx_set_ocsp(tlsctx_t *t, const char *id, const uint8_t *der, size_t len);
/* Stops stapling for cert/<id> (a response that is no longer good, ocspfetch.h): 0 or
 * -ENOENT. */
int tlsctx_clear_ocsp(tlsctx_t *t, const char *id);

typedef struct tlsctx_stats {
    uint64_t handshakes;    /* completed */
    uint64_t resumed;       /* of which by a session ticket */
    uint64_t failed;        /* handshakes that ended in an error (alerts sent, garbage) */
    uint64_t unknown_sni;   /* of which: no certificate for the name (or no SNI) */
    uint64_t ocsp_stapled;  /* handshakes with a stapled OCSP response */
    uint64_t tickets_new;   /* tickets sealed */
    uint64_t tickets_stale; /* tickets presented with a key no longer known */
} tlsctx_stats_t;
void tlsctx_stats(const tlsctx_t *t, tlsctx_stats_t *out);

/* ---- pure helpers (unit-tested) ---- */

/* The host name of a Host header or an SNI: lowercased, without ":port" (or "[v6]:port") and
 * a trailing dot, into out (TLSCTX_HOST_MAX + 1 bytes). 0, or -EINVAL when it is not a name
 * (empty, too long, bytes outside letters, digits, '-', '.', '_', or an IP literal). */
int tlsctx_host_name(const char *in, size_t len, char *out, size_t outlen);

/* Names of one certificate, as the table sees them. */
typedef struct tlsctx_names {
    const char (*names)[CERT_ID_MAX + 1]; /* lowercase; "*.x" for a wildcard */
    size_t nnames;
    uint64_t not_after_ms;
} tlsctx_names_t;
/* Which of certs[0..n) serves host (lowercase, as tlsctx_host_name gives it): a certificate
 * with host among its exact names, else one with a wildcard covering it (cert_name_matches);
 * several: the latest not_after_ms, then the lowest index. -1 when none. */
ssize_t tlsctx_pick(const tlsctx_names_t *certs, size_t n, const char *host);
/* Whether one certificate covers host. */
bool tlsctx_names_cover(const tlsctx_names_t *c, const char *host);

/* ---- one connection ---- */

enum tlsconn_rc {
    TLS_OK = 0,          /* done (handshake, shutdown) */
    TLS_WANT_READ = -1,  /* call again when the socket is readable */
    TLS_WANT_WRITE = -2, /* call again when the socket is writable */
    TLS_CLOSED = -3,     /* the peer closed (close_notify or EOF) */
    TLS_ERROR = -4,      /* a protocol error, an alert, a socket error: close */
};

/* A server-side TLS connection on fd (non-blocking; not owned: the caller closes it). NULL on
 * out of memory. */
tlsconn_t *tlsconn_new(tlsctx_t *t, int fd);
/* Frees the connection (no close_notify: see tlsconn_shutdown). Accepts NULL. */
void tlsconn_destroy(tlsconn_t **cp);

/* Advances the handshake: TLS_OK once done, TLS_WANT_*, or TLS_ERROR (*why: static, for a
 * log line; "unknown server name" for an unrecognized SNI). */
int tlsconn_handshake(tlsconn_t *c, const char **why);
/* Bytes read (> 0), or TLS_WANT_*, TLS_CLOSED, TLS_ERROR. */
ssize_t tlsconn_read(tlsconn_t *c, void *buf, size_t len);
/* Bytes written (> 0), or TLS_WANT_*, TLS_ERROR. After TLS_WANT_*, call again with at least
 * the same bytes (they may have moved in memory). */
ssize_t tlsconn_write(tlsconn_t *c, const void *buf, size_t len);
/* Decrypted bytes waiting inside the connection: the socket will not signal them. */
bool tlsconn_pending(const tlsconn_t *c);
/* Sends close_notify, best effort, once (no waiting for the peer's). The caller must shut the
 * socket's write side or close it right after: the socket is corked (TCP_CORK) so the alert
 * leaves with the FIN. */
void tlsconn_shutdown(tlsconn_t *c);

bool tlsconn_done(const tlsconn_t *c);           /* the handshake completed */
const char *tlsconn_sni(const tlsconn_t *c);     /* the server name chosen ("" before) */
const char *tlsconn_alpn(const tlsconn_t *c);    /* "http/1.1", or "" if none was agreed */
bool tlsconn_resumed(const tlsconn_t *c);        /* resumed by a session ticket */
const char *tlsconn_version(const tlsconn_t *c); /* "TLSv1.3", ... */
/* Whether the certificate this connection was served covers host (as tlsctx_covers). */
bool tlsconn_covers(const tlsconn_t *c, const char *host);

#endif
