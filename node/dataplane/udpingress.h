/* udpingress: a PoP's UDP resources. Each resource with a udp_port gets a UDP socket on the
 * PoP's ingress address; each client address and port that sends to it is a flow, carried as
 * one tunnel stream opened through the data plane's routing (dataplane_open_stream: the same
 * path choice, replica choice and retries as a TCP connection), its datagrams framed by
 * udpframe.h. Answers come back on the stream and leave from the resource's socket to the
 * client.
 *
 * BOUNDS (every one drops and counts, nothing waits without limit):
 *   - a flow ends after the resource's udp_idle seconds without a datagram either way
 *     (RESOURCE_UDP_IDLE_DEFAULT = 30 s when unset); its stream is reset;
 *   - flows per resource and PoP: udp_max_flows (RESOURCE_UDP_FLOWS_DEFAULT); per client
 *     address (IPv6 by /64, common/conncap.h): UDPIN_FLOWS_PER_ADDR; in all: UDPIN_FLOWS_MAX.
 *     A datagram that would start a flow past a cap is dropped (udp_dropped.flow_cap);
 *   - bytes queued per flow while the stream is opening or out of credit: UDPIN_QUEUE_MAX;
 *     past it a datagram is dropped (udp_dropped.queue_full);
 *   - a datagram over UDPFRAME_PAYLOAD_MAX is dropped (udp_dropped.oversize).
 * A flow whose stream failed to open drops what it queued (udp_dropped.no_route) and, for
 * UDPIN_RETRY_MS, the datagrams that follow, rather than open a stream per datagram. A flow
 * whose stream was reset (its site replica died, a tunnel failed) opens a new one with the
 * next datagram, on whatever path and replica the data plane picks then. */
#ifndef POPMESH_NODE_DATAPLANE_UDPINGRESS_H
#define POPMESH_NODE_DATAPLANE_UDPINGRESS_H

#include "node/nodecfg.h"
#include "storage/store.h"

#include <ev.h>
#include <msgpack.h>
#include <stdint.h>

#define UDPIN_FLOWS_MAX      16384        /* flows of every UDP resource of one PoP */
#define UDPIN_FLOWS_PER_ADDR 256          /* flows of one client address (IPv6 by /64) */
#define UDPIN_QUEUE_MAX      (256u << 10) /* bytes queued per flow */
#define UDPIN_RETRY_MS       1000         /* ms a flow whose stream failed drops datagrams */
#define UDPIN_RCVBUF         (4u << 20)   /* bytes: the socket buffer asked for (bursts) */
#define UDPIN_BURST          64           /* datagrams read per readiness event, for fairness */

typedef struct udpin udpin_t;
struct dataplane;
struct resource;

/* A PoP's UDP ingress; never NULL. POPMESH_TEST_UDP_PER_IP=N in the environment sets the
 * per-address cap (a TEST KNOB, logged). */
udpin_t *udpin_new(struct ev_loop *loop, struct dataplane *dp, store_t *store,
                   const nodecfg_t *cfg);
/* Ends every flow (streams reset) and closes the sockets. Accepts NULL; sets *up = NULL. */
void udpin_destroy(udpin_t **up);
/* Resource name changed: r is its record (NULL: removed or not UDP); here says whether this
 * PoP takes its users' traffic (ingress labels). Opens, moves or closes its socket; flows of a
 * removed resource end. */
void udpin_apply(udpin_t *u, const char *name, const struct resource *r, bool here);
/* Adds UDPIN_STATUS_PAIRS key/value pairs to an open map: udp_flows, udp_flows_opened,
 * udp_datagrams_in (clients -> mesh), udp_datagrams_out (mesh -> clients), udp_bytes_in,
 * udp_bytes_out, udp_dropped {oversize, queue_full, flow_cap, no_route, send_failed}. */
#define UDPIN_STATUS_PAIRS 7
void udpin_pack_status(const udpin_t *u, msgpack_packer *pk);
/* Sockets configured and sockets bound (the PoP's health: listeners, listeners_up). */
void udpin_listeners(const udpin_t *u, uint32_t *configured, uint32_t *bound);

#endif
