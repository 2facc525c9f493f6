/* dnsserver: the authoritative name server of a PoP (UDP and TCP), and the view it answers from.
 *
 * THE VIEW. Answers come from a dns_view_t (dnsview.h) that this module keeps current: the
 * replicated configuration (zone/, geo/, resource/, node/, site/ records) through the store's
 * change feed, and the live state (SWIM liveness, health vectors, routes) through the mesh's
 * change hook. Either marks the view dirty; a zero-delay timer rebuilds it once per loop
 * iteration, so a burst of changes costs one rebuild and a change takes effect before the next
 * query is read. Nothing polls.
 *
 * UDP. recvmmsg/sendmmsg in batches (one readable event answers up to DNSSERVER_UDP_BUDGET
 * queries before the loop turns, so TCP clients and the mesh are not starved), with the
 * destination address of each query as the source of its answer (IP_PKTINFO), so a wildcard
 * bind answers from the address the resolver asked. Response rate limiting (dnsrrl.h) per
 * client network, the rate from the node setting dns_rrl.
 *
 * TCP (RFC 7766). Length-prefixed queries, pipelined; answered in order. A connection may be
 * idle DNSSERVER_TCP_IDLE_S; at most DNSSERVER_TCP_MAX connections, DNSSERVER_TCP_PER_ADDR
 * per client address (conncap.h); a client that stops reading is closed once its unread
 * answers pass DNSSERVER_TCP_OUT_MAX bytes. */
#ifndef POPMESH_NODE_DNS_DNSSERVER_H
#define POPMESH_NODE_DNS_DNSSERVER_H

#include "node/ctl/control.h"
#include "node/membership/meshnode.h"
#include "node/nodecfg.h"
#include "storage/store.h"

#include <ev.h>
#include <stdint.h>

#define DNSSERVER_UDP_BATCH    32     /* datagrams per recvmmsg */
#define DNSSERVER_UDP_BUDGET   256    /* datagrams per readable event */
#define DNSSERVER_TCP_MAX      256    /* TCP connections in all */
#define DNSSERVER_TCP_PER_ADDR 16     /* TCP connections per client address */
#define DNSSERVER_TCP_IDLE_S   10.0   /* s a TCP connection may stay silent */
#define DNSSERVER_TCP_OUT_MAX  131072 /* bytes of answers a TCP client may leave unread */

typedef struct dnsserver dnsserver_t;

typedef struct dnsserver_opts {
    struct ev_loop *loop;
    store_t *store;       /* borrowed */
    meshnode_t *mesh;     /* borrowed */
    const nodecfg_t *cfg; /* borrowed: dns_listen ("" = answer no queries), dns_rrl */
    uint64_t self_id;     /* this PoP's node id */
} dnsserver_opts_t;

/* Builds the first view and binds UDP and TCP on cfg->dns_listen when it is set. NULL with a
 * reason in err when a listener cannot be bound. */
dnsserver_t *dnsserver_new(const dnsserver_opts_t *o, char *err, size_t errlen);
/* Accepts NULL and *sp == NULL; sets *sp = NULL. */
void dnsserver_destroy(dnsserver_t **sp);

/* dns.explain {name, client?, type?} and dns.status. */
int dnsserver_register_commands(dnsserver_t *s, control_t *ctl);

#endif
