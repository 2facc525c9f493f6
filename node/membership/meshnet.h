/* meshnet: the mesh transport of popd over ZeroMQ (DESIGN.md section 5).
 *
 * Receiving: one ROUTER bound on the mesh address, CURVE server with the node's key. Every
 * connection is admitted or refused by the ZAP handler here, which asks the caller's
 * authorize() about the client's CURVE public key; the user id it returns is attached by
 * libzmq to every message of that connection, so the receive callback learns who sent a
 * message from the authenticated handshake, never from the message.
 *
 * Sending: one DEALER per peer, CURVE client pinned to the peer's public key, created on first
 * use, closed when idle or when the peer is forgotten; at most MESHNET_MAX_PEERS, the least
 * recently used is closed first. Sends never block: IMMEDIATE means nothing queues for a peer
 * that is not connected, and DONTWAIT drops what does not fit. The protocols above (SWIM,
 * anti-entropy) are built for loss; a stale probe delivered seconds late would be worse.
 *
 * Replies to a connection that is not a member (a joiner) go back through the ROUTER with the
 * routing id the message came with.
 *
 * PEERS THAT CANNOT BE DIALLED. A member behind a firewall that admits no inbound connections
 * (an on-prem PoP: `--no-inbound`) dials every member and keeps those DEALERs up with
 * keepalives (meshnet_keep). Every member message arriving on our ROUTER records its
 * connection's routing id under the sender (a "back channel"); a send whose DEALER is not
 * connected goes back that way instead, and the sender reads its DEALERs. So two members talk
 * as long as either can dial the other. meshnet_path says which way sends to a peer go.
 *
 * LEARNED, NOT DECLARED. A PoP behind such a firewall whose operator did not say --no-inbound
 * is found out from the same traffic: its peers' DEALERs never connect and their sends go
 * back (meshnet_one_way, after MESHNET_ONE_WAY_MS of that), and it sees their messages arrive
 * on its own DEALERs (meshnet_cannot_dial_us). The data plane then stops dialling it and
 * waits for the tunnels it dials, as for a declared one (docs/gossip.md). The DEALER keeps
 * trying meanwhile, so a firewall that opens ends the state at the first send it takes. */
#ifndef POPMESH_NODE_MEMBERSHIP_MESHNET_H
#define POPMESH_NODE_MEMBERSHIP_MESHNET_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MESHNET_MAX_PEERS   256    /* DEALER sockets open at once */
#define MESHNET_IDLE_MS     120000 /* ms without a send before a DEALER is closed */
#define MESHNET_REDIAL_MS   2000   /* ms a DEALER may refuse sends before it is replaced */
#define MESHNET_USER_ID_MAX 64     /* bytes of a ZAP user id */
#define MESHNET_RID_MAX     256    /* bytes of a ROUTER routing id */
#define MESHNET_KEEPALIVE_MS 5000  /* ms between keepalives on a kept DEALER (meshnet_keep) */
#define MESHNET_NO_DIAL     1u     /* meshnet_send flag: the peer takes no inbound connections */
/* ms of sends that all went back before a peer counts as one that cannot be dialled: longer
 * than a DEALER's redial (MESHNET_REDIAL_MS) and a few reconnects, so a peer that restarts or
 * a handshake its ZAP handler refused once is not taken for a firewall. */
#define MESHNET_ONE_WAY_MS 5000

/* Limits on what any peer, authenticated or not, can make this node hold.
 *
 * MESHNET_MSG_MAX is ZMQ_MAXMSGSIZE on every mesh socket. libzmq enforces it in its frame
 * decoder, before it allocates, for every frame, the CURVE handshake commands included: so it
 * is also the most one unauthenticated connection can make libzmq allocate. Without it a
 * frame header claiming 1 GiB was allocated (and filled as fast as the peer sent) before
 * anyone looked at the handshake. The largest legitimate messages, by construction:
 *   - SWIM: SWIM_MSG_MAX (64 KiB);
 *   - PUSH: one store entry, STORE_KEY_MAX + STORE_VALUE_MAX + framing (< 66 KiB);
 *   - anti-entropy ENTRIES: AE_CHUNK_BYTES (64 KiB) of entries, flushed once over, so at
 *     most AE_CHUNK_BYTES - 1 + one entry (< 131 KiB);
 *   - JOIN_OK: the seed packs registry records only up to MESHNET_JOIN_OK_BUDGET and lets
 *     anti-entropy bring the rest (meshnode.c).
 * A message over the limit kills the connection that sent it (libzmq's EMSGSIZE).
 *
 * Connections: libzmq has no cap of its own, so every fd it accepts on the ROUTER is
 * reported through a socket monitor and counted; one over MESHNET_MAX_CONNS, or over
 * MESHNET_MAX_CONNS_PER_ADDR from one IP address, is shut down at once. A handshake not
 * finished within MESHNET_HANDSHAKE_MS is dropped by libzmq (ZMQ_HANDSHAKE_IVL). */
#define MESHNET_MSG_MAX            (256 * 1024)             /* bytes of one message (one frame) */
#define MESHNET_JOIN_OK_BUDGET     (MESHNET_MSG_MAX - 4096) /* bytes of registry in a JOIN_OK */
#define MESHNET_HANDSHAKE_MS       5000 /* ms a connection may take to finish CURVE + ZAP */
#define MESHNET_MAX_CONNS          1024 /* inbound connections on the mesh port */
#define MESHNET_MAX_CONNS_PER_ADDR 64   /* of them from one IP address */

typedef struct meshnet meshnet_t;

typedef struct meshnet_cb {
    void *ctx;
    /* ZAP: a client with CURVE key client_pk wants in. Return 1 and write a NUL-terminated
     * user id (< MESHNET_USER_ID_MAX) to admit, 0 to refuse. */
    int (*authorize)(void *ctx, const uint8_t client_pk[32], char *user_id);
    /* One message (a single frame) from an admitted connection. rid is the ROUTER routing id
     * for meshnet_reply. All pointers are borrowed for the call. */
    void (*receive)(void *ctx, const char *user_id, const uint8_t *rid, size_t rid_len,
                    const uint8_t *msg, size_t len);
} meshnet_cb_t;

/* Binds listen ("host:port") and starts the ZAP handler. zctx is a ZeroMQ context the caller
 * owns. NULL on failure with a reason in err. */
meshnet_t *meshnet_new(struct ev_loop *loop, void *zctx, const char *listen,
                       const uint8_t curve_pk[32], const uint8_t curve_sk[32],
                       const meshnet_cb_t *cb, char *err, size_t errlen);
void meshnet_destroy(meshnet_t **mp);

/* Sends msg to peer id at addr ("host:port") whose CURVE key is peer_pk. If the peer's address
 * or key changed, its DEALER is replaced. When the DEALER is not connected, the message goes
 * back on the peer's connection to our ROUTER if it has one; with MESHNET_NO_DIAL only that
 * way is tried (no DEALER). 0, or -EAGAIN (not connected yet or queue full: dropped),
 * -errno. */
int meshnet_send(meshnet_t *m, uint64_t peer_id, const char *addr, const uint8_t peer_pk[32],
                 const uint8_t *msg, size_t len, unsigned flags);
/* Keeps a DEALER to peer_id open and known to the peer: an empty keepalive when nothing was
 * sent to it for MESHNET_KEEPALIVE_MS. A node that takes no inbound connections calls it for
 * every member, so each has a way back to it. */
void meshnet_keep(meshnet_t *m, uint64_t peer_id, const char *addr, const uint8_t peer_pk[32]);
enum meshnet_path {
    MESHNET_PATH_UNKNOWN = 0, /* nothing sent yet */
    MESHNET_PATH_DIRECT,      /* our DEALER to it is connected */
    MESHNET_PATH_BACK,        /* our last sends went back on its connection to us */
};
enum meshnet_path meshnet_path(const meshnet_t *m, uint64_t peer_id);
/* Learned one-way links (above). meshnet_one_way: every send to peer_id for the last
 * MESHNET_ONE_WAY_MS went back on its connection to us, none through a DEALER: it takes no
 * connection from us. meshnet_cannot_dial_us: peer_id sent on our DEALER to it (it could not
 * dial us) within the last MESHNET_ONE_WAY_MS. */
bool meshnet_one_way(const meshnet_t *m, uint64_t peer_id);
bool meshnet_cannot_dial_us(const meshnet_t *m, uint64_t peer_id);
/* Sends back through the ROUTER to the connection that had routing id rid. */
int meshnet_reply(meshnet_t *m, const uint8_t *rid, size_t rid_len, const uint8_t *msg, size_t len);
/* Closes the DEALER to peer_id, if any (a removed node, or one that changed address). */
void meshnet_forget(meshnet_t *m, uint64_t peer_id);
/* The address actually bound (useful with port 0). */
const char *meshnet_bound(const meshnet_t *m);

typedef struct meshnet_stats {
    unsigned long long sent, send_dropped, received, bytes_sent, bytes_received;
    unsigned long long zap_admitted, zap_refused;
    unsigned long long redials;       /* DEALERs replaced after refusing sends (see meshnet.c) */
    unsigned long long sent_back;     /* of sent: back on a peer's connection to our ROUTER */
    unsigned long long received_back; /* of received: on our DEALERs (from peers we dial) */
    unsigned long long conns_refused; /* inbound connections shut for a cap (MESHNET_MAX_*) */
    unsigned conns;                   /* inbound connections open on the mesh port */
    unsigned peers;                   /* DEALERs open */
} meshnet_stats_t;
void meshnet_get_stats(const meshnet_t *m, meshnet_stats_t *st);

#endif
