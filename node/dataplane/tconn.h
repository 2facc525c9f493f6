/* tconn: one tunnel over one TCP connection, driven by libev.
 *
 * It ties three things together: a non-blocking TCP socket, the secure channel on it
 * (tunnel/secchan.h: a Noise IK handshake, then sealed records) and the stream multiplexer
 * (tunnel/tunnel.h). Every sealed record carries one message whose first byte says what it
 * is: TCONN_MSG_FRAME (a tunnel frame, handed to the tun core) or TCONN_MSG_CTL (a control
 * message of the application: a site's status, a PoP's configuration for the site).
 *
 * Buffering: received bytes are decrypted in place and handed on at once (the tun core
 * never buffers payload, and the application bounds what it keeps by the stream windows).
 * Sealed records wait in one output buffer until the socket takes them. Above
 * TCONN_OUT_HIGH bytes queued the connection reports itself congested (tconn_congested):
 * applications then stop reading their sources and wait for on_drain, which comes when the
 * queue fell below TCONN_OUT_LOW. Control frames (WINDOW, PING, RST, ...) are always queued,
 * so credit keeps flowing, and they are small; their total is bounded by the streams' count.
 *
 * Life: tconn_dial (initiator) or tconn_accept (responder, from a listening socket) ->
 * handshake (bounded by TCONN_HANDSHAKE_MS) -> on_up -> streams -> on_down, once, with a
 * reason; after on_down the application calls tconn_destroy (not inside the callback).
 *
 * A responder calls on_up only when the first sealed record from the initiator has opened,
 * not when the HELLO was admitted: a HELLO can be replayed by anyone who recorded one (Noise
 * IK), and only a record sealed with the session's keys proves that the peer holds the
 * ephemeral key of this handshake. The initiator's first record is its tunnel core's first
 * PING, sent as soon as it is up, so this costs no round trip. Until then the connection
 * carries nothing and stays bounded by TCONN_HANDSHAKE_MS.
 *
 * Rekeying (secchan.h, docs/tunnel.md "Rekeying"): when the peer agreed to it in the
 * handshake, each end replaces its sending key after the limits of tconn_keys_t (by bytes,
 * checked after every record it seals; by age, on its timer) with a REKEY record queued right
 * after the record that reached the limit. Nothing stops: the streams never see it. Towards a
 * peer that predates rekeying, keys live as long as the connection, as before. */
#ifndef POPMESH_NODE_DATAPLANE_TCONN_H
#define POPMESH_NODE_DATAPLANE_TCONN_H

#include "tunnel/tunnel.h"

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TCONN_OUT_HIGH     (4u << 20) /* bytes queued: congested above this */
#define TCONN_OUT_LOW      (1u << 20) /* bytes queued: on_drain below this */
#define TCONN_HANDSHAKE_MS 5000       /* ms from connect to established */

enum tconn_msg {
    TCONN_MSG_FRAME = 1, /* a tunnel frame (tunnel/frame.h) */
    TCONN_MSG_CTL = 2,   /* an application control message (msgpack) */
};

typedef struct tconn tconn_t;

typedef struct tconn_keys {
    uint8_t pk[32], sk[32]; /* this end's static Curve25519 keys */
    /* Initiator: the last HELLO timestamp sent with this key (ns since the epoch), shared by
     * every dial of the process so that each HELLO's is strictly newer (the responder refuses
     * one it has seen: a replay). Borrowed; NULL = the wall clock alone. */
    uint64_t *hello_ts_last;
    /* When this end replaces its sending key: 0 = the channel's defaults (SC_REKEY_BYTES,
     * SC_REKEY_MS), which are also the most a value may be. For tests: tconn_keys_test_knobs. */
    uint64_t rekey_bytes; /* bytes */
    uint64_t rekey_ms;    /* ms */
} tconn_keys_t;

/* For tests only: POPMESH_TEST_REKEY_BYTES=N and POPMESH_TEST_REKEY_MS=N in the environment
 * (positive numbers; they can only shorten a key's life) set k's rekey limits, so that a test
 * sees many rekeys in seconds; each one set is logged as a TEST KNOB. Call once at start. */
void tconn_keys_test_knobs(tconn_keys_t *k);

typedef struct tconn_cbs {
    void *ctx;
    /* Responder only: the initiator proved it holds the static key pk and sent payload.
     * Return 0 to admit it, with the WELCOME payload written into reply (up to *reply_len
     * bytes; set *reply_len), or a negative errno to refuse (the connection is closed; the
     * application logs why). */
    int (*admit)(void *ctx, tconn_t *c, const uint8_t pk[32], const uint8_t *payload, size_t plen,
                 uint8_t *reply, size_t *reply_len);
    /* Established. Initiator: payload is the responder's WELCOME payload. Responder: NULL. */
    void (*on_up)(void *ctx, tconn_t *c, const uint8_t *payload, size_t plen);
    /* A control message (borrowed for the call). */
    void (*on_ctl)(void *ctx, tconn_t *c, const uint8_t *msg, size_t len);
    /* The connection is gone (EOF, error, tunnel death, handshake failure): once. Every
     * stream was reset just before (tun on_reset with TUN_ERR_TUNNEL_DEAD) if it was up. */
    void (*on_down)(void *ctx, tconn_t *c, const char *why);
    /* The output queue fell below TCONN_OUT_LOW after having been congested. */
    void (*on_drain)(void *ctx, tconn_t *c);
    /* Stream events: as tun_io_t, with the connection added (ctx is this struct's ctx). */
    void (*on_open)(void *ctx, tconn_t *c, uint64_t sid, const uint8_t *target, size_t len);
    void (*on_open_ok)(void *ctx, tconn_t *c, uint64_t sid, void *user);
    void (*on_data)(void *ctx, tconn_t *c, uint64_t sid, void *user, const uint8_t *data,
                    size_t len);
    void (*on_fin)(void *ctx, tconn_t *c, uint64_t sid, void *user);
    void (*on_writable)(void *ctx, tconn_t *c, uint64_t sid, void *user);
    void (*on_reset)(void *ctx, tconn_t *c, uint64_t sid, void *user, uint32_t code, bool remote,
                     const char *msg, size_t msg_len);
    void (*on_closed)(void *ctx, tconn_t *c, uint64_t sid, void *user);
} tconn_cbs_t;

/* Dials addr ("host:port", numeric host or "localhost") as initiator, pinned to the
 * responder's key remote_pk, and sends payload in HELLO. NULL with errno (EINVAL bad
 * address or payload, or the socket error). keys and cbs are copied. */
tconn_t *tconn_dial(struct ev_loop *loop, const char *addr, const tconn_keys_t *keys,
                    const uint8_t remote_pk[32], const uint8_t *payload, size_t plen,
                    const tun_config_t *tcfg, const tconn_cbs_t *cbs);
/* Takes ownership of fd, an accepted TCP connection, as responder. */
tconn_t *tconn_accept(struct ev_loop *loop, int fd, const tconn_keys_t *keys,
                      const tun_config_t *tcfg, const tconn_cbs_t *cbs);
/* Closes at once (no callback) and frees. Accepts NULL; sets *cp = NULL. */
void tconn_destroy(tconn_t **cp);
/* Graceful close: resets every stream with TUN_ERR_SHUTTING_DOWN (so the peer retries
 * elsewhere at once), flushes what is queued (bounded by 1 s), then on_down. */
void tconn_close(tconn_t *c, const char *why);

bool tconn_congested(const tconn_t *c);
/* The tun core (NULL before on_up and after on_down; during tconn_close it is still there,
 * and new OPENs from the peer are refused with TUN_ERR_SHUTTING_DOWN). Calls into it are the
 * application's (tun_open, tun_send, ...); the connection re-arms its timer after each event it
 * handles, and tconn_kick must be called after tun_open outside a callback so the open timeout is
 * scheduled. */
tun_t *tconn_tun(tconn_t *c);
void tconn_kick(tconn_t *c);
/* Sends a control message. 0, -EPIPE (not up), -EMSGSIZE. */
int tconn_send_ctl(tconn_t *c, const uint8_t *msg, size_t len);

/* The peer's address as "ip:port". */
const char *tconn_peer_addr(const tconn_t *c);
/* Responder: the timestamp of the peer's HELLO (ns since the epoch, authenticated with its
 * static key), for the application's replay filter in admit. 0 before the HELLO. */
uint64_t tconn_hello_ts(const tconn_t *c);
/* Handshake round trip, us (initiator: HELLO sent -> WELCOME read; responder: 0). */
uint32_t tconn_handshake_rtt_us(const tconn_t *c);
/* The tunnel's path RTT, us: the smallest heartbeat RTT of the last 5-10 s (the smoothed
 * one would include the queueing of a busy tunnel, and make a loaded PoP look far); the
 * handshake RTT before the first heartbeat; 0 = nothing measured yet. */
uint32_t tconn_rtt_us(const tconn_t *c);
/* The peer reads SPLIT records (it said so in its HELLO or WELCOME payload: sitemsg's seal
 * field): sealed streams' records then cross this hop without a second seal over their payload
 * (secchan.h). Off by default: a peer that predates them would close the connection. */
void tconn_set_split(tconn_t *c, bool on);
/* SPLIT records sent on this connection so far. */
uint64_t tconn_split_records(const tconn_t *c);
/* Keys replaced so far in each direction (REKEY records sent, received); true when both ends
 * agreed to rekey (false before the handshake, and with a peer that predates it). */
bool tconn_rekeys(const tconn_t *c, uint64_t *sent, uint64_t *received);
/* Bytes waiting in the output queue. */
size_t tconn_queued(const tconn_t *c);

/* Zero-copy sending (the top of tconn.c). Between tconn_lend_begin and tconn_lend_end the
 * caller promises that the bytes in [lo, hi) stay as they are; a connection asked to send a
 * sealed record from there queues a reference instead of a copy. tconn_lend_end makes every
 * such connection send now and copy what it could not, and restores the window that was lent
 * before (these nest: a connection's own read buffer is lent while its records are handled). */
typedef struct {
    const uint8_t *lo, *hi;
} tconn_lend_t;
void tconn_lend_begin(const uint8_t *lo, const uint8_t *hi, tconn_lend_t *saved);
void tconn_lend_end(const tconn_lend_t *saved);
/* Payload bytes this connection sent from a lent buffer without copying them. */
uint64_t tconn_zc_bytes(const tconn_t *c);

#endif
