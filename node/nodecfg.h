/* nodecfg: a node's local settings, DIR/popd.conf ("name = value" lines, see kvfile.h).
 *
 * Only what is local to one machine lives here (its name, listen addresses, storage sizing).
 * Everything the mesh shares lives in the replicated store instead. */
#ifndef POPMESH_NODE_NODECFG_H
#define POPMESH_NODE_NODECFG_H

#include <stddef.h>
#include <stdint.h>

#include "common/netaddr.h"

#define NODECFG_FILE              "popd.conf"
#define NODECFG_NAME_MAX          63          /* bytes: a DNS label */
#define NODECFG_ADDR_MAX          NETADDR_MAX /* bytes of "host:port" */
#define NODECFG_MAX_SEEDS         8
#define NODECFG_DEFAULT_MESH_PORT 7946
#define NODECFG_DEFAULT_MAX_BODY  (64ull << 20) /* bytes: http-max-body */

typedef struct nodecfg_seed {
    char addr[NODECFG_ADDR_MAX + 1]; /* "host:port" of a member's mesh socket */
    uint8_t curve_pk[32];            /* its CURVE key */
} nodecfg_seed_t;

typedef struct nodecfg {
    char name[NODECFG_NAME_MAX + 1];             /* node name, unique in the mesh */
    char region[NODECFG_NAME_MAX + 1];           /* free-form label, may be empty */
    char log_level[8];                           /* debug | info | warn | error */
    uint64_t store_map_size;                     /* bytes: LMDB map size */
    uint64_t tombstone_grace;                    /* ms: how long deletes are remembered */
    char mesh_listen[NODECFG_ADDR_MAX + 1];      /* "host:port" the mesh ROUTER binds */
    char advertise[NODECFG_ADDR_MAX + 1];        /* "host:port" peers dial; empty = mesh_listen */
    char tunnel_listen[NODECFG_ADDR_MAX + 1];    /* "host:port" sites and PoPs connect to for
                                                  * tunnels; "" = mesh host, mesh port + 1 */
    char tunnel_advertise[NODECFG_ADDR_MAX + 1]; /* what they dial; "" = tunnel_listen */
    char ingress_address[NODECFG_ADDR_MAX + 1];  /* address resource ports bind; "" = all */
    char http_listen[NODECFG_ADDR_MAX + 1];      /* "host:port" of the HTTP ingress; "" = off */
    uint64_t http_max_body;                      /* bytes of one request body; past it 413 */
    nodecfg_seed_t seeds[NODECFG_MAX_SEEDS];     /* members to contact at start */
    unsigned nseeds;
} nodecfg_t;

/* Defaults for everything; name and region empty. */
void nodecfg_defaults(nodecfg_t *c);
/* Checks a node or region name: 1..63 of [a-z0-9-], not starting or ending with '-'.
 * 0 or -EINVAL. */
int nodecfg_check_name(const char *s);
/* Parses popd.conf text onto c (which should hold defaults). 0 or -EINVAL, reason in err. */
int nodecfg_parse(const char *text, size_t len, nodecfg_t *c, char *err, size_t errlen);
int nodecfg_load(const char *dir, nodecfg_t *c, char *err, size_t errlen);
/* Writes DIR/popd.conf atomically (temp file + rename). */
int nodecfg_save(const char *dir, const nodecfg_t *c, char *err, size_t errlen);

/* Checks "host:port" (host: name, IPv4, or [IPv6]; port 1..65535; port 0 allowed only if
 * allow_zero). 0 or -EINVAL. */
int nodecfg_check_addr(const char *s, int allow_zero);
/* The address peers should dial: advertise if set, else mesh_listen. */
const char *nodecfg_mesh_addr(const nodecfg_t *c);

/* The tunnel endpoint to bind (tunnel_listen, or the mesh host with the mesh port + 1) and
 * the one to publish (tunnel_advertise, else that). out holds NODECFG_ADDR_MAX + 1. */
void nodecfg_tunnel_listen(const nodecfg_t *c, char *out, size_t len);
void nodecfg_tunnel_addr(const nodecfg_t *c, char *out, size_t len);
/* Checks an IP address without a port (v4 or v6, no brackets). 0 or -EINVAL. */
int nodecfg_check_ip(const char *s);

/* Parses "123", "64k", "1M", "2G" (powers of 1024) into bytes. 0 or -EINVAL. */
int nodecfg_parse_size(const char *s, size_t len, uint64_t *out);
/* Parses "500ms", "30s", "5m", "2h", "7d" into milliseconds. 0 or -EINVAL. */
int nodecfg_parse_duration(const char *s, size_t len, uint64_t *out_ms);

#endif
