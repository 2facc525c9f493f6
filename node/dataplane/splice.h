/* splice: joins two legs, each a TCP socket or a tunnel stream, and moves bytes both ways
 * with backpressure, half-close and reset carried across.
 *
 * Three shapes: TCP <-> stream (a PoP's ingress connection, a site's target connection) and
 * stream <-> stream (a relay PoP). The rules that keep memory bounded:
 *   - a TCP source is read only when its sink can take data (a stream with credit on an
 *     uncongested tunnel, or a socket whose pending buffer is empty); what the sink did not
 *     take stays in this direction's buffer (at most one read chunk) and reading stops;
 *   - a stream source delivers at most its window; bytes are reported consumed
 *     (tun_consumed) only when the sink took them, so the sender stops after one window.
 * So each direction holds at most max(read chunk, window) bytes here, whatever the speeds.
 *
 * End of a direction: the source's EOF/FIN is forwarded (shutdown(SHUT_WR) / tun_fin) once
 * its buffer is empty. A reset or socket error on either leg aborts both: the other stream
 * gets RST (the same code when it came from a stream) and a socket is closed with RST
 * (SO_LINGER 0), so nobody waits on a half-dead pair. The splice is freed when both
 * directions ended and every stream leg is gone, or after an abort; frees are deferred to
 * the top of the loop, so a splice may end inside any callback. */
#ifndef POPMESH_NODE_DATAPLANE_SPLICE_H
#define POPMESH_NODE_DATAPLANE_SPLICE_H

#include "node/dataplane/tconn.h"

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct splice_ctx splice_ctx_t;
typedef struct splice splice_t;

#define SPLICE_CHUNK (128u << 10) /* bytes read from a socket at once */

/* Process-wide: owns the list of live splices (for tconn drain and shutdown) and the
 * deferred frees. */
splice_ctx_t *splice_ctx_new(struct ev_loop *loop);
/* Aborts every splice (RST both ways) and frees. Accepts NULL; sets *p = NULL. */
void splice_ctx_destroy(splice_ctx_t **p);
/* A tunnel drained (tconn on_drain): resume every splice waiting on it. */
void splice_ctx_tconn_drained(splice_ctx_t *x, tconn_t *c);
/* A tunnel went down: its streams were already reset through splice_on_reset; nothing left
 * may point at it. (Checked in debug builds.) */
size_t splice_ctx_count(const splice_ctx_t *x);
/* Logs every splice: legs, buffers, and the tunnel's view of each stream (SIGUSR1). */
void splice_ctx_dump(const splice_ctx_t *x);

/* Called when the splice ends: aborted (ok false, why says what), or closed cleanly. Bytes
 * moved each way: [0] from leg 0 to leg 1, [1] back. */
typedef void (*splice_done_fn)(void *ctx, splice_t *s, bool ok, const char *why,
                               const uint64_t bytes[2]);

/* A new splice with leg 0 a connected TCP socket (takes ownership of fd) and leg 1 not yet
 * attached: nothing is read from fd until splice_attach_stream. */
splice_t *splice_new_tcp(splice_ctx_t *x, int fd, splice_done_fn done, void *ctx);

/* A byte layer between a TCP leg and its socket (TLS at a PoP's ingress): the splice reads
 * and writes through it instead of recv/send. Its calls return bytes (> 0) or one of the
 * codes below; after a WANT_*, the splice waits for that readiness of the socket and calls
 * again, a write with at least the same bytes (they may have moved in memory). A layer may
 * hold decrypted bytes the socket will not signal: the splice reads until WANT_READ, so
 * nothing is left behind. The values match tlsctx.h's TLS_* codes. */
enum splice_io_rc {
    SPLICE_IO_WANT_READ = -1,
    SPLICE_IO_WANT_WRITE = -2,
    SPLICE_IO_CLOSED = -3, /* the peer ended its side cleanly (close_notify) */
    SPLICE_IO_ERROR = -4,
};
typedef struct splice_io_ops {
    const char *name; /* "tls": for log lines */
    ssize_t (*read)(void *io, void *buf, size_t len);
    ssize_t (*write)(void *io, const void *buf, size_t len);
    void (*shutdown)(void *io); /* our half ends (close_notify), best effort */
    void (*destroy)(void *io);  /* frees the layer; the socket is closed right after */
} splice_io_ops_t;
/* As splice_new_tcp, with reads and writes through ops on io (takes ownership of io: it is
 * destroyed when the leg closes). */
splice_t *splice_new_tcp_io(splice_ctx_t *x, int fd, const splice_io_ops_t *ops, void *io,
                            splice_done_fn done, void *ctx);
/* A new splice with leg 0 an open stream (sid on c) and leg 1 not yet attached (a relay's
 * upstream, or a site's stream waiting for its target to connect). The stream's callbacks
 * must be routed to splice_on_* with this splice as the stream's user pointer. */
splice_t *splice_new_stream(splice_ctx_t *x, tconn_t *c, uint64_t sid, splice_done_fn done,
                            void *ctx);
/* Attaches leg 1: an open stream (sid on c). Sets the stream's user pointer to s. */
void splice_attach_stream(splice_t *s, tconn_t *c, uint64_t sid);
/* Attaches leg 1: a connected TCP socket (takes ownership of fd). */
void splice_attach_tcp(splice_t *s, int fd);
/* Aborts with a reason: streams get RST code, sockets are closed with RST. */
void splice_abort(splice_t *s, uint32_t code, const char *why);
/* Whether a stream's user pointer is a splice (every splice starts with a magic number; an
 * application whose other stream users start with a different uint32_t can tell them
 * apart). */
bool splice_owns(const void *user);

/* Stream events, for streams whose user pointer is a splice. */
void splice_on_data(splice_t *s, tconn_t *c, uint64_t sid, const uint8_t *data, size_t len);
void splice_on_fin(splice_t *s, tconn_t *c, uint64_t sid);
void splice_on_writable(splice_t *s, tconn_t *c, uint64_t sid);
void splice_on_reset(splice_t *s, tconn_t *c, uint64_t sid, uint32_t code, const char *msg,
                     size_t msg_len);
void splice_on_closed(splice_t *s, tconn_t *c, uint64_t sid);

/* The same, shaped as tconn_cbs_t callbacks (ctx unused): for applications whose streams
 * carry bytes only through splices, these can be the on_data, on_fin, on_writable and
 * on_closed callbacks as they are; events of streams that are not (yet) spliced are
 * dropped, which is right for them since nothing reads or writes those streams. */
void splice_cb_data(void *ctx, tconn_t *c, uint64_t sid, void *user, const uint8_t *data,
                    size_t len);
void splice_cb_fin(void *ctx, tconn_t *c, uint64_t sid, void *user);
void splice_cb_writable(void *ctx, tconn_t *c, uint64_t sid, void *user);
void splice_cb_closed(void *ctx, tconn_t *c, uint64_t sid, void *user);

#endif
