/* resource: a TCP service at a site, published on every PoP (issue 4), as stored in the
 * replicated store.
 *
 *   resource/<name>   {name, site, targets: [str], tcp_port, health, sticky, created_ms}
 *
 * A PoP listens on tcp_port and carries each accepted connection through the site's tunnel to
 * one of the targets ("host:port" as the site connector resolves it); health says how the
 * site checks a target: "tcp" (a connect succeeds) or "http:/PATH" (GET PATH answers 2xx or
 * 3xx); sticky keeps a client address on the same target while it stays healthy.
 *
 * Records come from other nodes through replication, so resource_parse treats them as
 * untrusted bytes: every field is bounds-checked and resource_check's rules are applied, so a
 * record that decodes is one resource.add would have accepted. Unknown fields are skipped
 * (issue 5 adds HTTP fields: host, path_prefix, auth), a record missing a required field is
 * refused.
 *
 * tcp_port is unique among resources as far as one node can enforce it (resource.add refuses
 * a port in use). Two resources added on two nodes at the same moment can still share a port
 * once both replicate; whoever serves ports resolves that the same way everywhere: the
 * resource with the smaller created_ms, then the smaller name, owns the port. */
#ifndef POPMESH_NODE_RESOURCE_H
#define POPMESH_NODE_RESOURCE_H

#include "node/nodecfg.h"
#include "storage/store.h"

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RESOURCE_PREFIX        "resource/"
#define RESOURCE_TARGETS_MAX   16
#define RESOURCE_HTTP_PATH_MAX 200                          /* bytes of the PATH in "http:/PATH" */
#define RESOURCE_HEALTH_MAX    (5 + RESOURCE_HTTP_PATH_MAX) /* bytes of "http:" + PATH */
#define RESOURCE_KEY_MAX       (sizeof(RESOURCE_PREFIX) + NODECFG_NAME_MAX) /* with the NUL */

enum resource_health {
    RESOURCE_HEALTH_TCP = 0, /* "tcp": connecting is enough */
    RESOURCE_HEALTH_HTTP,    /* "http:/PATH": GET PATH must answer 2xx or 3xx */
};

typedef struct resource {
    char name[NODECFG_NAME_MAX + 1];                          /* unique in the mesh */
    char site[NODECFG_NAME_MAX + 1];                          /* the site serving it */
    char targets[RESOURCE_TARGETS_MAX][NODECFG_ADDR_MAX + 1]; /* "host:port", port != 0 */
    unsigned ntargets;                                        /* 1..RESOURCE_TARGETS_MAX */
    uint16_t tcp_port;                                        /* 1..65535, on every PoP */
    enum resource_health health;
    char http_path[RESOURCE_HTTP_PATH_MAX + 1]; /* RESOURCE_HEALTH_HTTP: "/..."; else "" */
    bool sticky;                                /* same client address, same target */
    uint64_t created_ms;                        /* Unix ms */
} resource_t;

/* "resource/<name>" into out (RESOURCE_KEY_MAX bytes suffice); 0, or -EINVAL if name is
 * not a valid name or the key does not fit in len. */
int resource_key(const char *name, char *out, size_t len);

/* Parses a health spec ("tcp" or "http:/PATH", PATH printable ASCII without spaces, starting
 * with '/', at most RESOURCE_HTTP_PATH_MAX bytes) into r->health and r->http_path.
 * 0 or -EINVAL with a reason in *why (a static string). */
int resource_health_parse(const char *s, size_t len, resource_t *r, const char **why);
/* The health spec as text ("tcp", "http:/PATH"); out should hold RESOURCE_HEALTH_MAX + 1. */
void resource_health_str(const resource_t *r, char *out, size_t len);

/* Checks every field against the rules above (names, 1..16 distinct targets that
 * nodecfg_check_addr accepts with a nonzero port, tcp_port, health). 0 or -EINVAL with a
 * reason in why, formatted into why_buf (which it points to) so it can name the bad value. */
int resource_check(const resource_t *r, char *why_buf, size_t why_len, const char **why);

/* The record as a msgpack map (also the shape of one resource in control answers). */
void resource_pack(msgpack_packer *pk, const resource_t *r);
/* Decodes a record stored under resource/<name>: 0 or -EBADMSG with a reason in *why (a
 * static string, or why_buf). The record's name must equal name (the key's). */
int resource_parse(const uint8_t *buf, size_t len, const char *name, resource_t *r, char *why_buf,
                   size_t why_len, const char **why);

/* Reads resource/<name>: 0, -ENOENT (absent or deleted), -EBADMSG (unreadable, logged) or
 * another -errno from the store. */
int resource_get(store_t *store, const char *name, resource_t *r);
/* Every readable resource, in name order; records that do not decode are skipped with a log
 * line. 0 or -errno from the store (*out is then NULL). Caller owns *out (free()). */
int resource_list(store_t *store, resource_t **out, size_t *n);

#endif
