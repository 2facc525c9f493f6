/* loginshare: login attempts counted mesh-wide. Each PoP tells the others how many attempts it
 * admitted per key (a user name, a client address), so every PoP's rate limiter
 * (ratelimit.h) charges the whole mesh's attempts, not only its own.
 *
 * Sans-I/O: the caller feeds it local attempts (loginshare_note), peers' summaries
 * (loginshare_receive) and the time (loginshare_tick), broadcasts the summaries it packs and
 * applies the charges it is handed. The design, the bound it gives and what it costs are in
 * loginshare.c and docs/security.md ("Rate limits").
 *
 * WIRE. A summary is one msgpack array, gossiped as a SWIM broadcast (meshnode.h,
 * MESH_BCAST_LOGINS), a newer one from the same PoP replacing a queued older one:
 *
 *   [version, origin, epoch, seq, [[kind, key, born, count], ...]]
 *
 *   version  LOGINSHARE_VERSION; another is refused (-EPROTONOSUPPORT), never guessed at
 *   origin   the node id of the PoP whose attempts these are
 *   epoch    that PoP's wall clock (ms) when it started: its counters restart with it
 *   seq      1, 2, ... within an epoch: a summary is news only above the last one seen
 *   kind     enum loginshare_kind; an unknown kind (a newer node's) is skipped
 *   key      the key's hash under the mesh's rate-limit key (auth_ratelimit_hash): never the
 *            user name or the address itself, never anything about a password
 *   born     which counter of that key at that PoP: a PoP that forgot a key starts a new one
 *   count    attempts admitted for the key at that PoP since born (>= 1, cumulative)
 *
 * Fields past the known ones, in the summary and in an entry, are skipped: newer nodes may
 * append. At most LOGINSHARE_ENTRIES_MAX entries; a key twice in one summary, a count of 0 or
 * anything over its width is malformed, and a malformed summary changes nothing. */
#ifndef POPMESH_NODE_AUTH_LOGINSHARE_H
#define POPMESH_NODE_AUTH_LOGINSHARE_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LOGINSHARE_VERSION      1
#define LOGINSHARE_ENTRIES_MAX  64 /* keys in one summary: about 1.5 KiB on the wire */
#define LOGINSHARE_FIELDS       5  /* fields of a summary this version sends */
#define LOGINSHARE_ENTRY_FIELDS 4  /* fields of an entry */
/* Bytes of the largest summary this version packs; well under SWIM_PAYLOAD_MAX. */
#define LOGINSHARE_MSG_MAX (40 + LOGINSHARE_ENTRIES_MAX * 24)

#define LOGINSHARE_FLUSH_MS  50     /* ms: attempts coalesced into one summary */
#define LOGINSHARE_PERIOD_MS 1000   /* ms between repeats while a key is recent */
#define LOGINSHARE_RESEND_MS 10000  /* ms a key is repeated after its last attempt here */
#define LOGINSHARE_KEEP_MS   120000 /* ms a counter lives here after its last attempt */
/* ms a peer's counter is remembered after it last grew: more than KEEP_MS (loginshare.c) */
#define LOGINSHARE_FORGET_MS   180000
#define LOGINSHARE_LOCAL_MAX   1024 /* keys counted here at once; least recent forgotten */
#define LOGINSHARE_SEEN_MAX    8192 /* peers' counters remembered at once */
#define LOGINSHARE_ORIGINS_MAX 1024 /* peers remembered at once */

/* What a key names. Wire values. */
enum loginshare_kind {
    LOGINSHARE_ADDR = 0, /* a client address ("ip:..." in the address limiter) */
    LOGINSHARE_USER = 1, /* a user name ("user:..." in the user limiter) */
};
#define LOGINSHARE_KINDS 2

typedef struct loginshare_entry {
    uint32_t kind;  /* enum loginshare_kind, or an unknown one (skipped when applied) */
    uint64_t key;   /* the key's hash */
    uint32_t born;  /* which counter */
    uint32_t count; /* attempts since born, >= 1 */
} loginshare_entry_t;

typedef struct loginshare_msg {
    uint64_t origin; /* node id */
    uint64_t epoch;  /* ms, the origin's wall clock at its start */
    uint64_t seq;    /* >= 1 */
    uint32_t n;      /* entries */
    loginshare_entry_t e[LOGINSHARE_ENTRIES_MAX];
} loginshare_msg_t;

/* Strict decoder of one summary (all of buf, nothing after it): 0, -EBADMSG, or
 * -EPROTONOSUPPORT for another version. */
int loginshare_decode(const uint8_t *buf, size_t len, loginshare_msg_t *m);
void loginshare_pack(msgpack_packer *pk, const loginshare_msg_t *m);

typedef struct loginshare loginshare_t;

typedef struct loginshare_stats {
    uint64_t sent;      /* summaries packed */
    uint64_t received;  /* summaries that were news */
    uint64_t stale;     /* summaries already seen, older, or our own */
    uint64_t malformed; /* summaries refused (malformed or another version) */
    uint64_t charged;   /* peers' attempts handed to the charge callback */
    uint64_t evicted;   /* peers' counters forgotten for room: later growth is over-charged */
} loginshare_stats_t;

/* self_id: this PoP's node id; epoch_ms: its wall clock now (counters restart with it). Caller
 * owns the result. */
loginshare_t *loginshare_new(uint64_t self_id, uint64_t epoch_ms);
/* Accepts NULL or *lsp NULL; sets *lsp = NULL. */
void loginshare_destroy(loginshare_t **lsp);

/* One attempt admitted here for key (its hash). Returns the time (ms, now_ms's clock) by which
 * loginshare_tick should run to send it. */
uint64_t loginshare_note(loginshare_t *ls, enum loginshare_kind kind, uint64_t key,
                         uint64_t now_ms);

/* Runs what is due at now_ms: forgets idle counters and, when a summary is due, packs it with
 * pk and returns 1 (the caller broadcasts the bytes), else 0. *next_ms: when to call again
 * (UINT64_MAX: only after the next loginshare_note). now_ms: a clock that does not go back. */
int loginshare_tick(loginshare_t *ls, uint64_t now_ms, msgpack_packer *pk, uint64_t *next_ms);

/* Called once per key whose count grew at a peer: n attempts to charge. */
typedef void (*loginshare_charge_fn)(void *ctx, enum loginshare_kind kind, uint64_t key,
                                     uint64_t n);
/* A peer's summary (untrusted bytes, borrowed for the call): 1 when it was news (gossip it on),
 * 0 when not (already seen, older, our own), or the decoder's error (nothing changed). */
int loginshare_receive(loginshare_t *ls, const uint8_t *buf, size_t len, uint64_t now_ms,
                       loginshare_charge_fn charge, void *ctx);

loginshare_stats_t loginshare_stats(const loginshare_t *ls);

#endif
