/* udpframe: datagrams inside a tunnel stream, shared by the PoP (udpingress.h) and the site.
 *
 * A UDP resource carries each flow (one client address and port) as one tunnel stream, and
 * each datagram in it as [u16 length, big endian][payload]. Why a stream and not a datagram
 * frame type: the stream already has what a flow needs (routing, relays, sealing end to end,
 * failover of its OPEN, credit), so relays and sealing carry it unchanged; the two length
 * bytes keep the boundaries. A stream is reliable and ordered, so a datagram lost on the way
 * to the PoP stays lost, but none is lost inside the mesh: loss happens only where we choose
 * it, at a full queue (udpframe_txq_push), and is counted there.
 *
 * The reader is sans-I/O: feed it the stream's bytes as they arrive, in any cut, and it calls
 * back once per whole datagram. A length over UDPFRAME_PAYLOAD_MAX is a broken peer: the
 * reader refuses it and the caller resets the stream. */
#ifndef POPMESH_NODE_DATAPLANE_UDPFRAME_H
#define POPMESH_NODE_DATAPLANE_UDPFRAME_H

#include <stddef.h>
#include <stdint.h>

#define UDPFRAME_HDR         2     /* bytes of the length before each payload */
#define UDPFRAME_PAYLOAD_MAX 65507 /* bytes: the largest UDP payload over IPv4 */

/* Reassembly of a datagram cut across the stream's DATA deliveries. Zero it to start. */
typedef struct udpframe_rx {
    uint8_t hdr[UDPFRAME_HDR];
    uint32_t nhdr; /* header bytes held */
    uint8_t *buf;  /* the payload being assembled (heap, only while one is cut) */
    uint32_t need; /* its length */
    uint32_t have; /* bytes of it held */
} udpframe_rx_t;

typedef void (*udpframe_fn)(void *ctx, const uint8_t *payload, size_t len);

/* Feeds n stream bytes; calls fn for every datagram they complete (payload borrowed for the
 * call). 0, or -EMSGSIZE on a length over UDPFRAME_PAYLOAD_MAX (the reader is then spent). */
int udpframe_feed(udpframe_rx_t *rx, const uint8_t *d, size_t n, udpframe_fn fn, void *ctx);
/* Frees what the reader holds. */
void udpframe_rx_free(udpframe_rx_t *rx);

/* Framed datagrams waiting for stream credit, at most cap bytes. Zero it, set cap. */
typedef struct udpframe_txq {
    uint8_t *buf;
    size_t off, len, alloc; /* bytes: sent from off, held up to len */
    size_t cap;             /* bytes: the most it holds */
} udpframe_txq_t;

/* Appends [len][payload]. 0, -EMSGSIZE (len > UDPFRAME_PAYLOAD_MAX) or -ENOBUFS (it would
 * pass cap: the caller drops the datagram and counts it). */
int udpframe_txq_push(udpframe_txq_t *q, const uint8_t *payload, size_t len);
/* The bytes waiting (borrowed until the next call) and their count. */
static inline const uint8_t *udpframe_txq_data(const udpframe_txq_t *q, size_t *n)
{
    *n = q->len - q->off;
    return q->buf + q->off;
}
/* n bytes were sent. */
void udpframe_txq_sent(udpframe_txq_t *q, size_t n);
void udpframe_txq_free(udpframe_txq_t *q);

#endif
