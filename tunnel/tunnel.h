/* tun: one tunnel's stream multiplexer with per-stream credit flow control. Sans-I/O.
 *
 * A tunnel is one reliable, ordered, message-oriented connection between two processes (a
 * TCP connection carrying the secure channel's records, secchan.h: PoP<->site or PoP<->PoP). It
 * carries many streams, each a pair of byte streams with its own flow control. The core never
 * touches a socket or a clock. The driver feeds it:
 *   - tun_receive(): one frame (one transport message) from the peer,
 *   - tun_tick(): the current time, at or after tun_next_deadline(),
 *   - the application's calls (tun_open, tun_send, tun_consumed, tun_fin, ...),
 * and the core answers through tun_io_t: frames to send, and stream events. Everything is a
 * function of those inputs, so two cores wired back to back in memory replay exactly.
 *
 * THE CORE NEVER BUFFERS PAYLOAD. tun_send turns what the credit allows into DATA frames at
 * once and hands them to io.send; everything else stays with the caller, who stops reading
 * its socket (backpressure towards the source). Received DATA is handed to io.on_data at once,
 * borrowed for the call; the application grants more credit only by calling tun_consumed as
 * the bytes leave its hands (written to a socket, or accepted by tun_send on another tunnel
 * when relaying), so a slow reader stops the writer after one window. Memory of the core is
 * O(open streams); the bytes in flight plus those the application holds are at most one
 * window per stream and direction.
 *
 * Callbacks run only inside tun_receive and tun_tick. Calls the application makes
 * (tun_send, tun_consumed, tun_fin, tun_accept, tun_reject, tun_reset, tun_reset_all) never
 * call back; they report through their return value, and may only call io.send. Inside a
 * callback the application may call any tun_* function on the same core except
 * tun_destroy, tun_receive and tun_tick. io.send must not call into the core.
 *
 * Protocol, state machine and error handling: frame.h and docs/tunnel.md. */
#ifndef POPMESH_TUNNEL_TUNNEL_H
#define POPMESH_TUNNEL_TUNNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "tunnel/frame.h"
#include "tunnel/seal.h"

/* Returned by tun_consumed and tun_fin when the call completed a clean close: the stream is
 * gone (no on_closed callback follows), and the application frees its side of it. */
#define TUN_CLOSED 1

typedef struct tun tun_t;

enum tun_role {
    TUN_INITIATOR = 1, /* the end that dialled the tunnel: opens odd stream ids */
    TUN_ACCEPTOR = 2,  /* the end that accepted it: opens even stream ids */
};

/* Why a tunnel died (on_dead). */
enum tun_dead_reason {
    TUN_DEAD_TIMEOUT = 1,   /* nothing received for dead_after_ms */
    TUN_DEAD_PROTOCOL = 2,  /* the peer broke a tunnel rule (stream id space) */
    TUN_DEAD_VERSION = 3,   /* the peer speaks another TUN_VERSION */
    TUN_DEAD_TRANSPORT = 4, /* the driver lost the connection under the tunnel (tun_kill) */
};
const char *tun_dead_reason_name(int reason);

typedef struct tun_config {
    enum tun_role role;
    uint32_t window;           /* 256 KiB: receive window granted to the peer per stream, bytes */
    uint32_t max_window;       /* 2^31-1: cap on one stream's send credit, bytes; a grant past
                                * it resets the stream (TUN_ERR_WINDOW_OVERFLOW) */
    uint32_t window_auto_max;  /* 0: the receive window grows (doubling, from `window`) up to
                                * this many bytes while the application keeps up with what
                                * arrives (so the window, not the destination, is what limits
                                * the stream). 0 or <= window: fixed windows */
    uint32_t max_data;         /* 64 KiB: largest DATA payload this end sends, bytes */
    uint32_t max_streams;      /* 4096: concurrent streams the peer may open (OPENs past it
                                * get OPEN_ERR LIMIT); also caps this end's own tun_open */
    uint32_t ping_interval_ms; /* 250: a PING every interval, idle or not */
    uint32_t dead_after_ms;    /* 1000: dead when nothing at all arrived for this long */
    uint32_t open_timeout_ms;  /* 10000: an OPEN unanswered (either way) is timed out after
                                * this long; 0 = never */
} tun_config_t;

/* Fills the defaults above; role is left 0 for the caller to set. */
void tun_config_defaults(tun_config_t *cfg);

typedef struct tun_io {
    void *ctx;
    /* Sends one frame: the message is head followed by body (body_len 0 except for DATA,
     * whose payload is passed uncopied). Both borrowed for the call. Reliable and in order
     * while the tunnel lives; the core holds no frame for later. */
    void (*send)(void *ctx, const uint8_t *head, size_t head_len, const uint8_t *body,
                 size_t body_len);
    /* Optional. Sends one DATA frame of a sealed stream: body is a record sealed end to end
     * (tun_seal), so the driver may carry it without sealing it again (a SPLIT record,
     * secchan.h); the receiving driver then hands the frame to tun_receive_raw. NULL: such
     * frames go through send like any other. */
    void (*send_raw)(void *ctx, const uint8_t *head, size_t head_len, const uint8_t *body,
                     size_t body_len);
    /* Optional, with send_raw. Room for the payload of a sealed stream's DATA frame that this
     * end seals (TUN_SEAL_END), body_len bytes after a head of head_len, where the driver will
     * send it from: the core seals into it, then calls send_raw with body pointing there, so
     * the record is written once, by the AEAD, and never copied. Valid until the next call
     * into the driver. NULL: the core seals into a buffer of its own, and send_raw copies. */
    uint8_t *(*raw_reserve)(void *ctx, size_t head_len, size_t body_len);
    /* The peer opens stream sid towards target (opaque to the core, borrowed for the call).
     * Answer with tun_accept or tun_reject, now or later (open_timeout_ms applies). */
    void (*on_open)(void *ctx, uint64_t sid, const uint8_t *target, size_t target_len);
    /* Our tun_open of sid was accepted: the stream is open and may carry data. */
    void (*on_open_ok)(void *ctx, uint64_t sid, void *user);
    /* Payload for sid, borrowed for the call. Call tun_consumed(sid, n) as bytes are written
     * on (now or later): nothing else grants the peer more credit. */
    void (*on_data)(void *ctx, uint64_t sid, void *user, const uint8_t *data, size_t len);
    /* The peer sent FIN: no more data will arrive on sid (the application half-closes its
     * socket). The stream stays until this end has sent FIN too and consumed everything. */
    void (*on_fin)(void *ctx, uint64_t sid, void *user);
    /* sid, which had run out of send credit (tun_send accepted less than asked), has credit
     * again. */
    void (*on_writable)(void *ctx, uint64_t sid, void *user);
    /* sid ended abnormally and is gone: OPEN_ERR or RST from the peer (remote), or reset by
     * this core (open timeout, a peer's violation, tunnel death). code: enum tun_code or a
     * newer one; msg (not NUL-terminated, may be NULL) is OPEN_ERR's message. Not called
     * for the application's own tun_reset, tun_reject or tun_reset_all. */
    void (*on_reset)(void *ctx, uint64_t sid, void *user, uint32_t code, bool remote,
                     const char *msg, size_t msg_len);
    /* sid closed cleanly inside tun_receive (the peer's FIN completed it) and is gone. */
    void (*on_closed)(void *ctx, uint64_t sid, void *user);
    /* The tunnel died (enum tun_dead_reason). Every stream was reset just before, each with
     * on_reset(TUN_ERR_TUNNEL_DEAD). From now on every call returns -EPIPE; destroy the core
     * (not inside this callback) and dial again. */
    void (*on_dead)(void *ctx, int reason);
} tun_io_t;

/* Creates a core; the first PING goes out on the first tun_tick. NULL with errno EINVAL on a
 * bad config (role unset, window 0 or past max, max_data 0 or past TUN_DATA_MAX, max_streams
 * 0, ping_interval_ms 0, dead_after_ms not above ping_interval_ms) or missing io.send. */
tun_t *tun_new(const tun_config_t *cfg, const tun_io_t *io, uint64_t now_ms);
/* Frees every stream without a callback or a frame. Accepts NULL; sets *tp = NULL. */
void tun_destroy(tun_t **tp);

/* Handles one frame from the peer. Returns 0 (including a frame that reset a stream for a
 * peer's violation: counted, and the stream's application saw on_reset), -EBADMSG
 * (malformed: dropped and counted; if it named an open stream, that stream is reset with
 * TUN_ERR_PROTOCOL since a piece of it is lost), or -EPIPE (the tunnel is dead, possibly
 * killed by this frame). Any frame, even malformed, proves the peer alive. */
int tun_receive(tun_t *t, uint8_t *frame, size_t len, uint64_t now_ms);
/* The same, for a frame whose payload the hop did not seal (io.send_raw at the peer): only
 * DATA of a sealed stream may come this way; anything else is malformed (and resets the
 * stream it names). The frame's buffer is writable: a TUN_SEAL_END stream's record is opened
 * in place. */
int tun_receive_raw(tun_t *t, uint8_t *frame, size_t len, uint64_t now_ms);
/* Runs what is due at now_ms: PING, death after silence, open timeouts. */
void tun_tick(tun_t *t, uint64_t now_ms);
/* The next time tun_tick must run (absolute ms, the clock of now_ms); UINT64_MAX once dead.
 * Drivers: hand over every frame already received before ticking, so a stalled event loop
 * does not mistake its own backlog for the peer's silence. */
uint64_t tun_next_deadline(const tun_t *t);
bool tun_is_dead(const tun_t *t);
/* The driver lost the transport (EOF, socket error): the tunnel dies as on a heartbeat
 * timeout, with the same callbacks (on_reset TUN_ERR_TUNNEL_DEAD for every stream, then
 * on_dead TUN_DEAD_TRANSPORT), so the application has one path for both. Unlike the other
 * calls, this one does call back. No-op when already dead. */
void tun_kill(tun_t *t);

/* Opens a stream towards target (opaque, copied into the OPEN, at most TUN_TARGET_MAX
 * bytes); user is passed back in every callback of the stream. *sid receives its id. No data
 * may be sent until on_open_ok. 0, -E2BIG (target), -EAGAIN (max_streams of ours open),
 * -EPIPE (dead). */
int tun_open(tun_t *t, const uint8_t *target, size_t target_len, void *user, uint64_t now_ms,
             uint64_t *sid);
/* Answers the peer's OPEN of sid: accepted. 0, -ENOENT, -EINVAL (not awaiting an answer),
 * -EPIPE. */
int tun_accept(tun_t *t, uint64_t sid);
/* Answers the peer's OPEN of sid: refused with code and a short message for humans (msg may
 * be NULL; truncated to TUN_MSG_MAX bytes). The stream is gone. 0, -ENOENT, -EINVAL, -EPIPE. */
int tun_reject(tun_t *t, uint64_t sid, uint32_t code, const char *msg);
/* Sets the user pointer passed to sid's callbacks. 0, -ENOENT, -EPIPE. */
int tun_set_user(tun_t *t, uint64_t sid, void *user);

/* Sealed streams (docs/tunnel.md, "Sealed streams"; tunnel/seal.h). A stream's mode is set
 * once, before any DATA: by the opener after tun_open (before on_open_ok), by the acceptor
 * before tun_accept. Both ends of one tunnel must agree (the OPEN's target says so).
 *   TUN_SEAL_END: this end seals and opens the payload with keys (the ingress PoP, the site).
 *     tun_send takes plaintext and sends records of at most max_data bytes, tag included;
 *     on_data hands over plaintext. Credit counts the bytes on the wire (plaintext + tag);
 *     the tag is consumed on arrival. A record that fails to open resets the stream with
 *     TUN_ERR_SEAL.
 *   TUN_SEAL_PASS: this end carries records it cannot open (a relay, the egress PoP): on_data
 *     hands over one whole record, and tun_send takes one whole record or nothing (0, and
 *     on_writable when the credit covers it; -EMSGSIZE past max_data), so records keep their
 *     boundaries from leg to leg.
 * 0, -ENOENT, -EINVAL (not before DATA, already set, bad mode or missing keys), -EPIPE, or
 * the negative errno of seal_state_new (a suite this machine lacks). */
enum tun_seal_mode {
    TUN_SEAL_NONE = 0,
    TUN_SEAL_END = 1,
    TUN_SEAL_PASS = 2,
};
int tun_seal(tun_t *t, uint64_t sid, enum tun_seal_mode mode, const seal_keys_t *keys);

/* Sends up to len bytes on sid as DATA frames of at most max_data bytes; returns how many it
 * took (0..len), bounded by the send credit. If fewer than len, the caller keeps the rest,
 * stops reading its source, and waits for on_writable. -ENOENT, -ENOTCONN (not open yet:
 * wait for on_open_ok, or tun_accept first), -EPIPE (FIN already sent, or dead). */
ssize_t tun_send(tun_t *t, uint64_t sid, const void *data, size_t len);
/* Reports that n bytes delivered by on_data have left the application's hands; credit goes
 * back to the peer in WINDOW frames coalesced to at least half a window. 0, TUN_CLOSED,
 * -ENOENT, -EINVAL (n is more than was delivered and not yet consumed), -EPIPE. */
int tun_consumed(tun_t *t, uint64_t sid, size_t n);
/* Half-close: this end sends no more data on sid. Before on_open_ok it is remembered and sent
 * with the open. 0, TUN_CLOSED, -ENOENT, -EALREADY, -EINVAL (peer's OPEN not answered yet),
 * -EPIPE. */
int tun_fin(tun_t *t, uint64_t sid);
/* Aborts sid both ways with code (RST; OPEN_ERR if the peer's OPEN is unanswered). The stream
 * is gone. 0, -ENOENT, -EPIPE. */
int tun_reset(tun_t *t, uint64_t sid, uint32_t code);
/* Aborts every stream with code (e.g. TUN_ERR_SHUTTING_DOWN before closing the tunnel, so
 * the peer retries elsewhere at once). No callbacks. Returns the number of streams reset. */
size_t tun_reset_all(tun_t *t, uint32_t code);

enum tun_stream_state {
    TUN_STREAM_OPENING = 1, /* we sent OPEN, no answer yet */
    TUN_STREAM_PENDING = 2, /* the peer sent OPEN, the application has not answered */
    TUN_STREAM_OPEN = 3,
};

typedef struct tun_stream_info {
    uint64_t sid;
    enum tun_stream_state state;
    bool local;           /* this end opened it */
    bool fin_sent;        /* this end half-closed (or will, at OPEN_OK) */
    bool fin_received;    /* the peer half-closed */
    uint32_t send_credit; /* bytes tun_send may still take */
    uint32_t recv_credit; /* bytes the peer may still send */
    uint32_t unconsumed;  /* bytes delivered by on_data, not yet tun_consumed */
    uint32_t ungranted;   /* bytes consumed, not yet granted back in a WINDOW */
    uint32_t window;      /* receive window: granted at open (0 while PENDING), grown by
                           * window_auto_max's tuning */
    enum tun_seal_mode seal;
    void *user;
} tun_stream_info_t;

int tun_stream_get(const tun_t *t, uint64_t sid, tun_stream_info_t *out);

typedef struct tun_stats {
    uint64_t frames_sent, frames_received;
    uint64_t bytes_sent, bytes_received;           /* whole frames */
    uint64_t data_bytes_sent, data_bytes_received; /* DATA payload */
    uint64_t malformed;        /* frames dropped by the decoder (unknown types included) */
    uint64_t protocol_errors;  /* stream rules broken by the peer (RST PROTOCOL) */
    uint64_t flow_violations;  /* DATA beyond the receive window (RST FLOW_CONTROL) */
    uint64_t window_overflows; /* grants past max_window (RST WINDOW_OVERFLOW) */
    uint64_t seal_failures;    /* sealed records that failed to open (RST SEAL) */
    uint64_t unknown_stream;   /* frames for streams that do not exist */
    uint64_t streams_opened;   /* tun_open calls that sent an OPEN */
    uint64_t streams_accepted; /* peer OPENs this end accepted */
    uint64_t open_refused;     /* peer OPENs refused by the core (limit, bad window) */
    uint64_t open_timeouts;    /* OPENs timed out, either direction */
    uint64_t window_growths;   /* receive windows doubled by the auto-tuning */
    uint64_t resets_sent;      /* RST and OPEN_ERR frames sent */
    uint64_t resets_received;  /* RST and OPEN_ERR frames received for a known stream */
    uint64_t pings_sent, pongs_received;
    uint32_t streams;           /* open now, both directions */
    uint32_t streams_local;     /* of which this end opened */
    uint64_t app_unconsumed;    /* bytes delivered to the application, not yet consumed */
    size_t mem_bytes;           /* heap held by the core: itself, stream table, streams */
    uint32_t rtt_us;            /* smoothed PING round trip (RFC 6298); 0 = no sample yet */
    uint32_t rttvar_us;         /* its mean deviation */
    uint32_t rtt_min_us;        /* smallest sample */
    uint32_t rtt_recent_min_us; /* smallest sample of the last 20 to 40 (5-10 s of PINGs):
                                 * the path's delay without the queueing of a busy tunnel */
    uint64_t last_rx_ms;        /* when the last frame arrived */
} tun_stats_t;

void tun_get_stats(const tun_t *t, tun_stats_t *st);

/* Checks the core's invariants (credit accounting of every stream, table and counters);
 * O(streams). 0, or -1 with a log line naming the first one broken. For tests and fuzzers. */
int tun_check(const tun_t *t);

#endif
