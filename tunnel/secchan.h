/* sc: the tunnel's secure channel over one TCP connection. Sans-I/O.
 *
 * Why not ZeroMQ CURVE for the data path: one CURVE connection carries 3.7 Gbit/s here
 * (XSalsa20-Poly1305 plus a copy per message), below `ssh -L` (docs/architecture.md has the
 * measurements). This channel keeps CURVE's trust model (both ends are Curve25519 keys, the
 * initiator knows the responder's key in advance, the responder learns and checks the
 * initiator's) and does the rest the way a data plane needs: one handshake round trip, then
 * records sealed with AES-256-GCM where the CPU has it (ChaCha20-Poly1305 otherwise),
 * decrypted in place, one length-prefixed record per tunnel frame.
 *
 * Handshake: the pattern of Noise IK over X25519 and BLAKE2b (both parties' static keys are
 * authenticated, forward secrecy from ephemeral keys, the initiator's identity hidden from
 * passive observers):
 *
 *     HELLO   (initiator -> responder)  e, es, s, ss, payload
 *     WELCOME (responder -> initiator)  e, ee, se, payload
 *
 * after which each direction has its own key and a 64-bit record counter as nonce. Payloads
 * are opaque to this layer (the application sends who it is and what it offers, and answers
 * with what it accepted); both are sealed, so they are authenticated and confidential.
 *
 * Rekeying: each sender replaces its direction's key by a one-way function of it, after
 * SC_REKEY_BYTES or SC_REKEY_MS (whichever comes first; far below the AES-GCM limits), and says
 * so in band with a REKEY record sealed with the old key: the receiver switches at exactly that
 * record. No round trip, no stream dropped, the two directions independent; the old key is
 * wiped at once, so a key taken from memory opens nothing sealed before the last rekey. Only
 * towards a peer that said in the handshake it can (SC_FEAT_REKEY in the suites byte): a peer
 * that predates it would close the connection on the new record type.
 *
 * Wire: every record is a 4-byte header [type: u8][length: u24 big endian] followed by length
 * bytes. Types: SC_REC_HELLO, SC_REC_WELCOME, SC_REC_DATA, SC_REC_SPLIT, SC_REC_REKEY. A DATA
 * record's body is ciphertext plus a 16-byte tag; the header is authenticated as associated
 * data. length is at most SC_RECORD_MAX; anything else (unknown type, oversized, a DATA before
 * the handshake, a HELLO after it, a REKEY that was not agreed) is a protocol error and the
 * connection must be closed.
 *
 * Every function that reads bytes from the peer is bounds-checked and never reads past len. */
#ifndef POPMESH_TUNNEL_SECCHAN_H
#define POPMESH_TUNNEL_SECCHAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <sodium.h>

#define SC_KEY_LEN     32
#define SC_TAG_LEN     16
#define SC_HDR_LEN     4
#define SC_PAYLOAD_MAX 1024 /* bytes of a handshake payload */
#define SC_TS_LEN      8    /* bytes of the HELLO timestamp (u64 big endian, ns since the epoch) */
#define SC_PLAIN_MAX   (65536 + 1024)              /* bytes of one DATA record's plaintext */
#define SC_RECORD_MAX  (SC_PLAIN_MAX + SC_TAG_LEN) /* bytes after the header */
#define SC_OVERHEAD    (SC_HDR_LEN + SC_TAG_LEN)   /* what sealing adds to a plaintext */
/* Body sizes (bytes after the header), exact: what sc_parse_header accepts per type.
 * HELLO   [suites 1][e.pub 32][s.pub 32 + tag][ts 8, payload 0..SC_PAYLOAD_MAX + tag]
 * WELCOME [suite 1][e.pub 32][payload 0..SC_PAYLOAD_MAX + tag]
 * DATA    [ciphertext 1..SC_PLAIN_MAX][tag] */
#define SC_HELLO_BODY_MIN   (1 + 32 + 32 + SC_TAG_LEN + SC_TS_LEN + SC_TAG_LEN)
#define SC_HELLO_BODY_MAX   (SC_HELLO_BODY_MIN + SC_PAYLOAD_MAX)
#define SC_WELCOME_BODY_MIN (1 + 32 + SC_TAG_LEN)
#define SC_WELCOME_BODY_MAX (SC_WELCOME_BODY_MIN + SC_PAYLOAD_MAX)
#define SC_DATA_BODY_MIN    (1 + SC_TAG_LEN)
/* SPLIT [head length 1][tag][head ciphertext 1..SC_SPLIT_HEAD_MAX][tail 1..]: see sc_seal_split */
#define SC_SPLIT_HEAD_MAX 64
#define SC_SPLIT_BODY_MIN (1 + SC_TAG_LEN + 1 + 1)
/* REKEY [ciphertext of the new key's number: u64 big endian, 8][tag], exactly */
#define SC_REKEY_BODY_LEN (8 + SC_TAG_LEN)
/* Whole records, header included: the buffers sc_initiate, sc_respond and sc_seal_rekey
 * write into. */
#define SC_HELLO_MAX   (SC_HDR_LEN + SC_HELLO_BODY_MAX)
#define SC_WELCOME_MAX (SC_HDR_LEN + SC_WELCOME_BODY_MAX)
#define SC_REKEY_LEN   (SC_HDR_LEN + SC_REKEY_BODY_LEN)

/* When a sender replaces its key, by default and at the latest (docs/tunnel.md, "Rekeying",
 * has the arithmetic): bytes processed with one key (headers, plaintext and tags; a SPLIT
 * record's tail is not the channel key's and does not count), 2^36, where the AES-GCM bound for
 * a 2^-57 advantage is about 2^38.5; and the key's age, for forward secrecy on quiet tunnels. */
#define SC_REKEY_BYTES (64ull << 30)       /* bytes */
#define SC_REKEY_MS    (3600ull * 1000ull) /* ms */

enum sc_record_type {
    SC_REC_HELLO = 1,
    SC_REC_WELCOME = 2,
    SC_REC_DATA = 3,
    SC_REC_SPLIT = 4, /* a DATA record whose tail was sealed end to end by someone else */
    SC_REC_REKEY = 5, /* the sender's next records use its next key (sc_seal_rekey) */
};

/* Features, in the bits of the suites byte no suite uses. The initiator offers them in HELLO
 * (a responder that predates them ignores unknown bits); the responder sets in WELCOME's suite
 * byte the offered ones it has (an initiator that predates them would refuse any bit there,
 * which is why it only answers an offer). Both bytes are in the transcript, so neither can be
 * stripped or added on the way. */
#define SC_FEAT_REKEY 0x80 /* reads and sends REKEY records */
#define SC_FEATURES   SC_FEAT_REKEY

enum sc_suite {
    SC_SUITE_AES256GCM = 1,        /* chosen when both ends have AES-NI/CLMUL */
    SC_SUITE_CHACHA20POLY1305 = 2, /* IETF variant; always available */
};

enum sc_state {
    SC_INIT = 0,
    SC_HELLO_SENT,     /* initiator: waiting for WELCOME */
    SC_HELLO_RECEIVED, /* responder: HELLO read, application checking the peer's key */
    SC_ESTABLISHED,
    SC_FAILED, /* an error was returned: secrets wiped, every call fails */
};

/* The struct is public so that it can live inside the driver's connection; only this module
 * writes its fields (the application may read the public keys and the state). It holds no
 * pointers, so tests copy it by value to try many inputs from one point; a copy of a live
 * channel must never seal, it would reuse nonces. */
typedef struct sc {
    enum sc_state state;
    bool initiator;
    enum sc_suite suite; /* transport AEAD, set by sc_accept / sc_initiator_finish */
    uint8_t local_pk[32], local_sk[32];
    uint8_t remote_pk[32]; /* initiator: known in advance; responder: from HELLO */
    /* handshake state (wiped when established) */
    uint8_t e_pk[32], e_sk[32], re_pk[32];
    uint8_t ck[32], h[32];
    uint8_t suites_offered; /* bitmask 1 << suite: initiator's HELLO (sent or received) */
    /* SC_FEAT_* bits: initiator, offered until WELCOME; then (both ends) agreed by both */
    uint8_t features;
    /* The initiator's HELLO timestamp (ns since the Unix epoch): sent by sc_initiate, read by
     * sc_accept. Authenticated with the initiator's static key, so the responder can refuse a
     * HELLO whose timestamp it has seen before (a replay): see sc_replay_t. */
    uint64_t hello_ts;
    /* transport state */
    uint8_t tx_key[32], rx_key[32];
    uint64_t tx_seq, rx_seq; /* records sealed / opened so far = the next nonce */
    /* tx_key, rx_key expanded for AES-256-GCM (round keys, powers of H) when that is the
     * suite, so that each record does not redo the key schedule */
    crypto_aead_aes256gcm_state tx_aes, rx_aes;
    /* rekeying (sc_rekey_config); the limits apply to this end's sending key */
    uint64_t rekey_bytes;  /* bytes: 0 = SC_REKEY_BYTES */
    uint64_t rekey_ms;     /* ms: 0 = no limit by age (sc_rekey_config not called) */
    uint64_t tx_key_bytes; /* bytes processed with the current tx key */
    uint64_t tx_key_ms;    /* ms (the caller's clock): when the current tx key was made */
    uint64_t tx_rekeys;    /* keys replaced so far sending: the current tx key's number */
    uint64_t rx_rekeys;    /* and receiving: the current rx key's number */
} sc_t;

/* Suites this machine can run, as a bitmask of 1 << enum sc_suite (narrowed by
 * sc_force_suites). 0 only if libsodium cannot initialise. */
uint8_t sc_local_suites(void);

/* Every function below that returns an error leaves s SC_FAILED with every secret wiped (the
 * public keys stay, so the caller can log who the peer was); the connection must then be
 * closed. sc_initiate and sc_accept initialise s: whatever it held is overwritten. */

/* Initiator. Writes HELLO (header included) into out (SC_HELLO_MAX bytes) and returns its
 * length, or a negative errno (-EINVAL: payload too long, or remote_pk of small order;
 * -ENOTSUP: no local suite; -EIO: libsodium failed to initialise). remote_pk is the responder's
 * static key, known in advance (the registry). payload may be NULL when plen is 0. ts goes
 * in the HELLO for the responder's replay filter: it must grow strictly with each HELLO this
 * static key sends (sc_hello_clock gives such values). */
int sc_initiate(sc_t *s, const uint8_t local_pk[32], const uint8_t local_sk[32],
                const uint8_t remote_pk[32], const uint8_t *payload, size_t plen, uint64_t ts,
                uint8_t *out);
/* A HELLO timestamp: the wall clock in ns since the Unix epoch, forced strictly above *last
 * (the caller's previous value, updated), so that two HELLOs of one process never share a
 * timestamp even within a clock tick or across a small step back of the clock. */
uint64_t sc_hello_clock(uint64_t *last);

/* Replay filter of a responder, per initiator key (the caller keeps one per key). A HELLO
 * is admitted when its timestamp is above the floor and not among the recent ones: each
 * timestamp is admitted at most once, and HELLOs of one initiator that raced each other on
 * separate connections (a tunnel and an RTT probe) may arrive out of order by up to
 * SC_REPLAY_WINDOW_NS. The floor only rises: to the newest admitted minus the window, and
 * to any timestamp pushed out of the recent set. */
#define SC_REPLAY_RECENT    8
#define SC_REPLAY_WINDOW_NS (2000000000ull) /* ns of reordering tolerated between HELLOs */
typedef struct sc_replay {
    uint64_t floor;                    /* ns: timestamps at or below are refused */
    uint64_t recent[SC_REPLAY_RECENT]; /* ns: admitted, above floor; 0 = empty slot */
} sc_replay_t;
/* 0 and ts recorded, or -EALREADY (a replay, or older than the filter remembers). */
int sc_replay_check(sc_replay_t *r, uint64_t ts);
/* Initiator: reads WELCOME (body only: the header was parsed by sc_parse_header) and on
 * success is SC_ESTABLISHED with the responder's payload in *payload (points into body,
 * which is decrypted in place). 0, -EBADMSG (malformed or not authentic: close), -EINVAL
 * (s is not SC_HELLO_SENT). */
int sc_initiator_finish(sc_t *s, uint8_t *body, size_t len, const uint8_t **payload, size_t *plen);

/* Responder. Reads HELLO (body only); on success the initiator's static key is in
 * s->remote_pk and its payload in *payload (points into body, decrypted in place); the state
 * is SC_HELLO_RECEIVED. The application decides whether it admits remote_pk, then answers with
 * sc_respond. 0, -EBADMSG (malformed or not authentic), -ENOTSUP (no common suite; the HELLO
 * was authentic and s->remote_pk holds its sender), -EIO (libsodium failed to initialise). */
int sc_accept(sc_t *s, const uint8_t local_pk[32], const uint8_t local_sk[32], uint8_t *body,
              size_t len, const uint8_t **payload, size_t *plen);
/* Responder: writes WELCOME (header included) into out (SC_WELCOME_MAX bytes), returns its
 * length, and is SC_ESTABLISHED. -EINVAL: s is not SC_HELLO_RECEIVED, or plen >
 * SC_PAYLOAD_MAX. payload may be NULL when plen is 0. */
int sc_respond(sc_t *s, const uint8_t *payload, size_t plen, uint8_t *out);

/* Parses a record header: the record's type and the length of the body that follows.
 * 0, -EBADMSG (unknown type, or a length outside its type's range: HELLO
 * SC_HELLO_BODY_MIN..SC_HELLO_BODY_MAX, WELCOME SC_WELCOME_BODY_MIN..SC_WELCOME_BODY_MAX,
 * DATA SC_DATA_BODY_MIN..SC_RECORD_MAX, SPLIT SC_SPLIT_BODY_MIN..SC_RECORD_MAX + 1, REKEY
 * exactly SC_REKEY_BODY_LEN). Stateless: which type is acceptable now is the
 * caller's check (s->state). */
int sc_parse_header(const uint8_t hdr[SC_HDR_LEN], uint8_t *type, uint32_t *len);

/* Seals one DATA record: reads the plaintext from the pieces (iov-like, n pieces, total 1 to
 * SC_PLAIN_MAX bytes: an empty record would be refused by the peer's sc_parse_header), writes
 * header + ciphertext + tag into out (total + SC_OVERHEAD bytes). Pieces must not overlap out,
 * except that out may equal the first piece's address minus SC_HDR_LEN (in place) when
 * n == 1. A piece of length 0 may have p NULL. Returns bytes written, or -EINVAL (bad
 * total), -EPIPE (not established, or 2^64 - 1 records already sealed). */
typedef struct sc_piece {
    const uint8_t *p;
    size_t len;
} sc_piece_t;
ssize_t sc_seal(sc_t *s, const sc_piece_t *pieces, size_t n, uint8_t *out);
/* Opens one DATA record in place: hdr is its header, body its body (len bytes as the header
 * said). On success the plaintext is body[0 .. *plen). 0, -EBADMSG (not authentic, replayed,
 * reordered, or hdr not a DATA header for len bytes: close the connection, never retry),
 * -EPIPE (not established, or 2^64 - 1 records already opened). */
int sc_open(sc_t *s, const uint8_t hdr[SC_HDR_LEN], uint8_t *body, size_t len, size_t *plen);

/* SPLIT records: the tunnel's answer to relays that must not do per-byte crypto (docs/tunnel.md,
 * "Sealed streams"). A relayed stream's payload is already sealed end to end by its ingress PoP
 * for the site (tunnel/seal.h): sealing it again per hop would cost every relay two AEAD passes
 * per byte and protect nothing the end-to-end seal does not. A SPLIT record seals only its head
 * (the message kind and the tunnel frame's head: type, stream id, length) with the channel's
 * key and counter, and carries the tail (the frame's payload) as it is:
 *
 *     [hdr 4][head length 1][tag 16][head ciphertext][tail]
 *
 * The associated data is the record header and the head length, so the record's total length,
 * and with it the tail's, is authenticated; the tail's bytes are not (the receiver must only
 * hand them to a stream sealed end to end, whose own tag covers them). The tag comes before
 * the head so that, once the head is decrypted in place, head and tail are contiguous: the
 * receiver sees one ordinary message [kind][frame].
 *
 * Seals head (1..SC_SPLIT_HEAD_MAX bytes, from pieces as sc_seal) and copies tail (1 byte or
 * more, at most SC_PLAIN_MAX - head) into out (head + tail + SC_OVERHEAD + 1 bytes). tail may
 * already be in place (out + SC_HDR_LEN + SC_SPLIT_SKIP + head): it is then not copied.
 * Returns bytes written, -EINVAL, -EPIPE (as sc_seal). */
ssize_t sc_seal_split(sc_t *s, const sc_piece_t *head, size_t n, const uint8_t *tail,
                      size_t tail_len, uint8_t *out);
/* sc_seal_split without the tail: writes the record up to the tail (head + SC_OVERHEAD + 1
 * bytes, returned) and the caller sends the tail_len bytes of tail right after them, from
 * wherever they are (a relay forwarding a sealed payload from its read buffer, no copy). */
ssize_t sc_seal_split_head(sc_t *s, const sc_piece_t *head, size_t n, size_t tail_len,
                           uint8_t *out);
/* Opens a SPLIT record in place: hdr its header, body its body (len bytes). On success the
 * message (head then tail) is body[SC_SPLIT_SKIP .. SC_SPLIT_SKIP + *plen) and the head is its
 * first *head_len bytes. 0, -EBADMSG (not authentic, bad head length: close), -EPIPE. */
#define SC_SPLIT_SKIP (1 + SC_TAG_LEN)
int sc_open_split(sc_t *s, const uint8_t hdr[SC_HDR_LEN], uint8_t *body, size_t len,
                  size_t *plen, size_t *head_len);

/* ---- rekeying (docs/tunnel.md, "Rekeying") ------------------------------------------------
 *
 * A sender replaces its key k with KDF(k, "popmesh-sc-v2 rekey") (the handshake's keyed-BLAKE2b
 * KDF, first output: one way, so the new key does not give the old one) when sc_rekey_due says
 * so, by sealing a REKEY record with the old key (sc_seal_rekey); the receiver opens it with the
 * old key and switches (sc_open_rekey). The record counter continues across keys, so a (key,
 * nonce) pair cannot repeat within a connection whatever the keys, and a record cannot be moved
 * from one key's span to another's. The old key and its AES expansion are overwritten at once.
 * The caller sends nothing between the REKEY and the records that follow it but those records:
 * it is the next record in its direction like any other. */

/* Sets this end's limits: its sending key is replaced after bytes (0 = SC_REKEY_BYTES) or ms
 * (0 = SC_REKEY_MS) of age, whichever comes first; larger values are taken as the defaults (a
 * knob may only shorten a key's life). now_ms (any monotonic clock, the one later calls use)
 * starts the current key's age. Call once established; without it only the byte limit holds. */
void sc_rekey_config(sc_t *s, uint64_t bytes, uint64_t ms, uint64_t now_ms);
/* Both ends agreed to rekey (SC_FEAT_REKEY) and the channel is established. */
bool sc_rekey_agreed(const sc_t *s);
/* True when the sending key has reached a limit and the peer reads REKEY records: the caller
 * then sends sc_seal_rekey's record next. */
bool sc_rekey_due(const sc_t *s, uint64_t now_ms);
/* When (ms, the caller's clock) the sending key reaches its age limit; UINT64_MAX when it has
 * none (rekeying not agreed, or sc_rekey_config not called). For the caller's timer. */
uint64_t sc_rekey_deadline(const sc_t *s);
/* Seals a REKEY record (SC_REKEY_LEN bytes) into out with the current key, then makes the
 * next key current, wipes the old one, restarts the byte count and the age at now_ms.
 * Returns SC_REKEY_LEN, -ENOTSUP (the peer did not agree: it would close the connection),
 * -EPIPE (not established, or the counter is exhausted). */
ssize_t sc_seal_rekey(sc_t *s, uint64_t now_ms, uint8_t *out);
/* Opens a REKEY record (hdr its header, body its SC_REKEY_BODY_LEN bytes) and switches the
 * receiving key. 0, -ENOTSUP (rekeying was not agreed: a peer must not send one), -EBADMSG
 * (not authentic, replayed, reordered, a wrong key number, or hdr not a REKEY header for
 * len bytes), -EPIPE (not established, or the counter is exhausted). */
int sc_open_rekey(sc_t *s, const uint8_t hdr[SC_HDR_LEN], uint8_t *body, size_t len);

/* Wipes every key (the whole struct) and leaves s SC_FAILED. */
void sc_wipe(sc_t *s);

/* For tests and benchmarks only: narrows sc_local_suites() to mask & what the machine has
 * (mask 0 restores the default). Process-wide and read at each sc_initiate / sc_accept, so a
 * test can give its initiator and its responder different suites by calling it between the
 * two. Not for production code: it and sc_force_no_features are the globals of this module. */
void sc_force_suites(uint8_t mask);
/* For tests only: with off, this process neither offers nor accepts any SC_FEAT_* (an end that
 * predates them); false restores the default. Read at each sc_initiate / sc_accept. */
void sc_force_no_features(bool off);

#endif
