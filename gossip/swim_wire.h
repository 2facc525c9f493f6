/* swim_wire: the SWIM message format, its limits, and its codec (private to gossip/).
 *
 * Every message is one msgpack array
 *
 *     [SWIM_VERSION, type, ...fields of the type..., [piggyback entries]]
 *
 *     PING        [V, 1, seq, target, pb]            target: the id the sender meant to ping
 *     ACK         [V, 2, seq, pb]                    seq of the PING being answered
 *     PING_REQ    [V, 3, seq, target, timeout, pb]   ask: ping target, forward its ACK (seq),
 *                                                    or NACK after timeout ms
 *     NACK        [V, 4, seq, pb]                    helper heard nothing from target
 *     SYNC        [V, 5, chunk, members, pb]         push-pull request: full member state
 *     SYNC_REPLY  [V, 6, chunk, members, pb]         push-pull answer
 *
 * Version 2 (SWIM_VERSION) adds wall-clock timestamps to the probe and its answer, for the
 * clock offset estimate (swim.c, "CLOCKS"); every other type is laid out as in version 1:
 *
 *     PING        [2, 1, seq, target, t1, pb]        t1: sender's wall clock when sent (Unix
 *                                                    ms; 0 = not known)
 *     ACK         [2, 2, seq, t1, t2, pb]            t1: the PING's, echoed; t2: responder's
 *                                                    wall clock when it answered (0 and 0 in
 *                                                    an ACK a helper relays)
 *
 * Version 1 messages are still decoded (with no timestamps), and a node answers and probes a
 * member in the version that member last spoke, so old and new nodes mix during an upgrade.
 *
 * members is an array of [id, incarnation, state, meta]. pb (piggyback) is an array of
 * updates, each an array whose first element is its kind:
 *
 *     [0, id, incarnation, meta]      ALIVE
 *     [1, id, incarnation, from]      SUSPECT (from: the member that suspects)
 *     [2, id, incarnation, from]      DEAD    (from: the member that declared it)
 *     [3, id, incarnation]            LEFT
 *     [4, key, payload]               application broadcast
 *
 * The decoder is strict: an array of the wrong length, an unknown type or kind, a zero id, a
 * meta or payload over its limit, an incarnation over SWIM_INCARNATION_MAX, a count over its
 * cap or one trailing byte make the whole message -EBADMSG. Any change of layout bumps
 * SWIM_VERSION. Decoding validates the whole message first, so the core applies a message
 * only once it knows every part of it is well formed (no partial state change). */
#ifndef POPMESH_GOSSIP_SWIM_WIRE_H
#define POPMESH_GOSSIP_SWIM_WIRE_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/mp.h"
#include "gossip/swim.h"

enum swim_msg_type {
    SWIM_MSG_PING = 1,
    SWIM_MSG_ACK = 2,
    SWIM_MSG_PING_REQ = 3,
    SWIM_MSG_NACK = 4,
    SWIM_MSG_SYNC = 5,
    SWIM_MSG_SYNC_REPLY = 6,
};

/* Piggyback kinds 0..3 equal enum swim_state on purpose: a membership update is "member id
 * is in state S at incarnation I". */
enum swim_update_kind {
    SWIM_UPD_ALIVE = SWIM_ALIVE,
    SWIM_UPD_SUSPECT = SWIM_SUSPECT,
    SWIM_UPD_DEAD = SWIM_DEAD,
    SWIM_UPD_LEFT = SWIM_LEFT,
    SWIM_UPD_APP = 4,
};

#define SWIM_PIGGYBACK_MAX    1024         /* piggyback entries in one message */
#define SWIM_SYNC_MAX         65536        /* member entries in one SYNC chunk */
#define SWIM_INCARNATION_MAX  (1ull << 62) /* refutation adds 1: never near overflow */
#define SWIM_NACK_TIMEOUT_MAX 60000        /* ms: PING_REQ timeout field ceiling */
#define SWIM_VERSION_MIN      1            /* oldest version still decoded */
#define SWIM_WALL_MAX         (1ull << 48) /* ms: timestamps above are refused (year 10889) */

/* One piggybacked update. meta/payload (data) borrow the message buffer. */
struct swim_update {
    enum swim_update_kind kind;
    uint64_t id;          /* member id, or the application key for SWIM_UPD_APP */
    uint64_t incarnation; /* unused for APP */
    uint64_t from;        /* SUSPECT, DEAD: accuser; else 0 */
    const uint8_t *data;  /* ALIVE: meta; APP: payload */
    uint32_t len;         /* bytes of data */
};

/* One member of a SYNC; meta borrows the message buffer. */
struct swim_sync_entry {
    uint64_t id;
    uint64_t incarnation;
    enum swim_state state;
    const uint8_t *meta;
    uint32_t meta_len; /* bytes */
};

/* A decoded message. The readers point at the first element of the member list and of the
 * piggyback list; both lists are already validated when swim_wire_decode returns 0. */
struct swim_msg {
    uint8_t version; /* SWIM_VERSION_MIN..SWIM_VERSION; encoding: 0 means SWIM_VERSION */
    enum swim_msg_type type;
    uint32_t seq;        /* PING, ACK, PING_REQ, NACK */
    uint64_t target;     /* PING, PING_REQ */
    uint32_t timeout_ms; /* PING_REQ */
    uint64_t t1;         /* v2 PING: sender's wall ms; v2 ACK: the PING's t1 echoed; 0 = none */
    uint64_t t2;         /* v2 ACK: responder's wall ms when it answered; 0 = none */
    uint32_t chunk;      /* SYNC, SYNC_REPLY: 0 for the first chunk */
    mpr_t members;       /* SYNC, SYNC_REPLY */
    uint32_t member_count;
    mpr_t piggyback;
    uint32_t pb_count;
};

/* Validates the whole message. 0 or -EBADMSG (m is then undefined). */
int swim_wire_decode(const uint8_t *buf, size_t len, struct swim_msg *m);
/* Reads the next entry of a list validated by swim_wire_decode. 0 or -EBADMSG. */
int swim_wire_next_update(mpr_t *r, struct swim_update *u);
int swim_wire_next_sync(mpr_t *r, struct swim_sync_entry *e);

/* Encoding. The head is everything before the member list (SYNC) or the piggyback list:
 * the outer array header, version, type and the scalar fields of m. The caller then packs
 * the member list (SYNC types only) and the piggyback array. */
void swim_wire_pack_head(msgpack_packer *pk, const struct swim_msg *m);
void swim_wire_pack_update(msgpack_packer *pk, const struct swim_update *u);
void swim_wire_pack_sync_entry(msgpack_packer *pk, const struct swim_sync_entry *e);

/* A growable output buffer for msgpack-c's packer that refuses to pass `limit` bytes and
 * remembers it overflowed. */
struct swim_wbuf {
    uint8_t *p;
    size_t len;   /* bytes written */
    size_t cap;   /* bytes allocated */
    size_t limit; /* bytes: never grows past this */
    bool overflow;
};
void swim_wbuf_init(struct swim_wbuf *b, size_t limit);
void swim_wbuf_free(struct swim_wbuf *b);
/* msgpack_packer_init(&pk, &wbuf, swim_wbuf_write) */
int swim_wbuf_write(void *data, const char *buf, size_t len);

/* Encodes one update into buf (cap bytes); returns the length, or 0 if it does not fit. */
size_t swim_wire_encode_update(const struct swim_update *u, uint8_t *buf, size_t cap);

#endif
