/* nodecfg: a node's local settings, DIR/popd.conf ("name = value" lines, see kvfile.h).
 *
 * Only what is local to one machine lives here (its name, listen addresses, storage sizing).
 * Everything the mesh shares lives in the replicated store instead. */
#ifndef POPMESH_NODE_NODECFG_H
#define POPMESH_NODE_NODECFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/netaddr.h"

#define NODECFG_FILE              "popd.conf"
#define NODECFG_NAME_MAX          63          /* bytes: a DNS label */
#define NODECFG_ADDR_MAX          NETADDR_MAX /* bytes of "host:port" */
#define NODECFG_MAX_SEEDS         8
#define NODECFG_DEFAULT_MESH_PORT 7946
#define NODECFG_DEFAULT_MAX_BODY  (64ull << 20) /* bytes: http-max-body */
#define NODECFG_DEFAULT_DNS_RRL   200           /* responses/s per client network: dns-rrl */
#define NODECFG_DNS_RRL_MAX       1000000
#define NODECFG_DNS_RRL_UNSET     UINT32_MAX /* in popd run's overrides: not given */
#define NODECFG_PUBLIC4_MAX       15         /* bytes of an IPv4 address's text */
#define NODECFG_PUBLIC6_MAX       45         /* bytes of an IPv6 address's text */
#define NODECFG_ACCESS_LOG_MAX    1023       /* bytes of access-log's path */

#define NODECFG_METRICS_ALLOW_MAX 16 /* networks in metrics-allow (ADMIN_ALLOW_MAX) */
#define NODECFG_CIDR_MAX          49 /* bytes of one network's text (AUTH_CIDR_MAX) */

#define NODECFG_LABELS_MAX 8 /* labels of one PoP (its region counts as one more) */

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
    char https_listen[NODECFG_ADDR_MAX + 1];     /* "host:port" of the HTTPS ingress; "" = off */
    uint64_t http_max_body;                      /* bytes of one request body; past it 413 */
    /* The admin listener (node/admin): /metrics, /healthz, /readyz. */
    char admin_listen[NODECFG_ADDR_MAX + 1]; /* "host:port"; "" = off (the default); never an
                                              * ingress address (nodecfg_check_admin) */
    char metrics_allow[NODECFG_METRICS_ALLOW_MAX][NODECFG_CIDR_MAX + 1]; /* networks that may
                                              * read /metrics; none = 127.0.0.0/8 and ::1 */
    unsigned nmetrics_allow;
    /* DNS steering (node/dns): */
    char dns_listen[NODECFG_ADDR_MAX + 1];   /* "host:port" of the name server (UDP and TCP);
                                              * "" = this PoP serves no DNS */
    char public4[NODECFG_PUBLIC4_MAX + 1];   /* public-address: the IPv4 address answers give
                                              * for this PoP; "" (and public6 "") = the default
                                              * rule of nodecfg_public_addrs */
    char public6[NODECFG_PUBLIC6_MAX + 1];   /* the same, IPv6 */
    bool has_location;                       /* location given */
    int64_t lat_udeg, lon_udeg;              /* microdegrees (common/geoloc.h) */
    uint32_t dns_rrl;                        /* responses/s per client network; 0 = no limit */
    bool no_seal;    /* seal-streams = no: this ingress does not seal streams end to end for
                      * their sites (tunnel/seal.h); for comparisons and debugging */
    bool no_inbound; /* no-inbound: this machine takes no inbound connections (a firewall):
                      * it dials every PoP and is reached on those connections */
    char access_log[NODECFG_ACCESS_LOG_MAX + 1]; /* access-log: a file path, "stdout", or ""
                      * (off, the default): one JSON line per request and connection
                      * (common/accesslog.h) */
    char labels[NODECFG_LABELS_MAX][NODECFG_NAME_MAX + 1]; /* labels: what resources may
                      * require of the PoPs their traffic enters or crosses ("onprem") */
    unsigned nlabels;
    nodecfg_seed_t seeds[NODECFG_MAX_SEEDS]; /* members to contact at start */
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
 * the one to publish (tunnel_advertise, else that, with a wildcard host replaced by the
 * advertised mesh host). out holds NODECFG_ADDR_MAX + 1. */
void nodecfg_tunnel_listen(const nodecfg_t *c, char *out, size_t len);
void nodecfg_tunnel_addr(const nodecfg_t *c, char *out, size_t len);
/* Checks an IP address without a port (v4 or v6, no brackets). 0 or -EINVAL. */
int nodecfg_check_ip(const char *s);

/* Sets one setting by its popd.conf name ("dns-listen", "public-address", ...) from text, as
 * a line of popd.conf would: popd's command-line flags go through here so both refuse the
 * same values with the same words. 0 or -EINVAL with the reason in err. */
int nodecfg_set(nodecfg_t *c, const char *name, const char *value, char *err, size_t errlen);

/* The admin listener must not share an address with the public ingress (http-listen,
 * https-listen), the DNS listener, the mesh or the tunnel socket: same port, and the same host
 * or either a wildcard. 0, or -EINVAL with the reason in err. */
int nodecfg_check_admin(const nodecfg_t *c, char *err, size_t errlen);

/* The addresses DNS answers give for this PoP: public4/public6 when either is set; else one
 * address taken from the first of these whose host is an IP address and not a wildcard: the
 * ingress address, the host of http_listen, the host of the mesh address peers dial. Into v4
 * and v6 ("" for none; NODECFG_PUBLIC4_MAX + 1 and NODECFG_PUBLIC6_MAX + 1 bytes suffice).
 * Returns how many were found (0, 1 or 2). */
int nodecfg_public_addrs(const nodecfg_t *c, char *v4, size_t v4len, char *v6, size_t v6len);

/* Parses "123", "64k", "1M", "2G" (powers of 1024) into bytes. 0 or -EINVAL. */
int nodecfg_parse_size(const char *s, size_t len, uint64_t *out);
/* Parses "500ms", "30s", "5m", "2h", "7d" into milliseconds. 0 or -EINVAL. */
int nodecfg_parse_duration(const char *s, size_t len, uint64_t *out_ms);

#endif
