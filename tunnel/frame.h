/* tun_frame: the tunnel's wire format, its limits, and its codec.
 *
 * One frame is one record of the tunnel's secure channel (secchan.h: a TCP connection with
 * sealed, length-prefixed records), so frames carry no length prefix of their own. Every frame is
 * one msgpack array
 *
 *     [TUN_VERSION, type, ...fields of the type...]
 *
 *     OPEN      [1, 1, sid, window, target]  open stream sid; window: bytes the opener lets
 *                                             the acceptor send; target: bin, opaque, <= 1 KiB
 *     OPEN_OK   [1, 2, sid, window]          accepted; window: bytes the acceptor lets the
 *                                             opener send
 *     OPEN_ERR  [1, 3, sid, code, message]   refused; code: enum tun_code; message: str,
 *                                             <= 256 bytes, for humans (not sanitised)
 *     DATA      [1, 4, sid, payload]         payload: bin, 1..64 KiB
 *     WINDOW    [1, 5, sid, increment]       the receiver lets the sender send increment
 *                                             (1..2^32-1) more bytes
 *     FIN       [1, 6, sid]                  the sender will send no more DATA on sid
 *     RST       [1, 7, sid, code]            abort sid in both directions
 *     PING      [1, 8, seq]                  heartbeat; seq: any uint64, echoed
 *     PONG      [1, 9, seq]                  answer to the PING with that seq
 *
 * sid is 1..TUN_SID_MAX: odd when the tunnel's initiator opened the stream, even when the
 * acceptor did. Semantics (flow control, states, which violation costs what) are in tunnel.h
 * and docs/tunnel.md.
 *
 * The decoder reads only through mpr and is strict: an array of the wrong length for its
 * type, an unknown type, a field of the wrong msgpack type or out of its range, and one
 * trailing byte make the frame -EBADMSG. A frame whose first element is a version other than
 * ours is -EPROTONOSUPPORT. Any change of layout bumps TUN_VERSION. */
#ifndef POPMESH_TUNNEL_FRAME_H
#define POPMESH_TUNNEL_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define TUN_VERSION 1

enum tun_frame_type {
    TUN_OPEN = 1,
    TUN_OPEN_OK = 2,
    TUN_OPEN_ERR = 3,
    TUN_DATA = 4,
    TUN_WINDOW = 5,
    TUN_FIN = 6,
    TUN_RST = 7,
    TUN_PING = 8,
    TUN_PONG = 9,
};

/* Codes of OPEN_ERR and RST. The wire carries any value up to TUN_CODE_MAX and the core
 * passes it through unchanged, so newer codes cross older relays; an application treats a
 * code it does not know like TUN_ERR_INTERNAL. */
enum tun_code {
    TUN_ERR_NONE = 0,            /* no error: the application aborted the stream */
    TUN_ERR_REFUSED = 1,         /* the acceptor's application refused the target */
    TUN_ERR_TIMEOUT = 2,         /* the open was not answered in open_timeout_ms */
    TUN_ERR_PROTOCOL = 3,        /* the peer broke a stream rule (see docs/tunnel.md) */
    TUN_ERR_WINDOW_OVERFLOW = 4, /* a grant would push the send credit past max_window */
    TUN_ERR_FLOW_CONTROL = 5,    /* DATA beyond the receive window */
    TUN_ERR_UNREACHABLE = 6,     /* the target could not be reached (site dial failed) */
    TUN_ERR_SHUTTING_DOWN = 7,   /* the sender is going away: retry on another tunnel */
    TUN_ERR_LIMIT = 8,           /* too many streams on this tunnel: retry elsewhere */
    TUN_ERR_STREAM_CLOSED = 9,   /* a frame for a stream that does not exist (any more) */
    TUN_ERR_INTERNAL = 10,       /* anything else */
    TUN_ERR_TUNNEL_DEAD = 11,    /* the tunnel under the stream died (the core reports it
                                  * locally; a relay forwards it on the other leg) */
    TUN_ERR_SEAL = 12,           /* a sealed stream's record failed to open (altered, or keys
                                  * that do not match: see tunnel/seal.h) */
};

#define TUN_SID_MAX        (1ull << 62) /* stream ids: never exhausted in a tunnel's life */
#define TUN_TARGET_MAX     1024         /* bytes of OPEN's target descriptor */
#define TUN_MSG_MAX        256          /* bytes of OPEN_ERR's message */
#define TUN_DATA_MAX       65536        /* bytes of one DATA payload */
#define TUN_WINDOW_MAX     0x7fffffffu  /* bytes: a stream's credit never exceeds 2^31-1 */
#define TUN_CODE_MAX       0xffffu
#define TUN_WINDOW_INC_MAX 0xffffffffu /* WINDOW increment field; the core checks the sum */
/* Bytes of an encoded frame without a DATA payload: the largest is OPEN with a full target
 * (1 + 1 + 1 + 9 + 5 + 3 + 1024 = 1044). A DATA frame is its head (at most 17 bytes: array,
 * version, type, sid, bin32 header) followed by the payload. */
#define TUN_HEAD_MAX 1056
/* Bytes of the largest frame a receiver must accept (the transport's message size cap). */
#define TUN_FRAME_MAX (TUN_DATA_MAX + 32)

/* One frame, decoded or to encode. data borrows the frame buffer (decoded) or the caller's
 * bytes (to encode). */
typedef struct tun_frame {
    enum tun_frame_type type;
    uint64_t sid;        /* all but PING/PONG; 0 when absent */
    uint32_t window;     /* OPEN, OPEN_OK: initial grant; WINDOW: increment; bytes */
    uint32_t code;       /* OPEN_ERR, RST */
    uint64_t seq;        /* PING, PONG */
    const uint8_t *data; /* OPEN: target; OPEN_ERR: message; DATA: payload */
    uint32_t len;        /* bytes of data */
} tun_frame_t;

const char *tun_frame_type_name(enum tun_frame_type type);
const char *tun_code_name(uint32_t code);

/* Decodes one frame. 0, -EBADMSG (malformed) or -EPROTONOSUPPORT (another version). On
 * -EBADMSG, f->type and f->sid are still set (non-zero) if the frame got as far as a valid
 * type and stream id, so a receiver can tell which stream a broken frame was meant for. */
int tun_frame_decode(const uint8_t *buf, size_t len, tun_frame_t *f);

/* Encodes f's head into head (TUN_HEAD_MAX bytes) and returns its length, or 0 if f breaks a
 * limit (a field out of range, data too long). For DATA the head ends with the bin header and
 * the payload (f->data, f->len) follows it on the wire: it is not copied, so a driver can
 * build the message from two pieces with one copy. For every other type the head is the
 * whole frame. */
size_t tun_frame_encode(const tun_frame_t *f, uint8_t head[TUN_HEAD_MAX]);

#endif
