/* httprules: a resource's request rules (node/records/resource.h, REQUEST RULES) turned into
 * what the proxy writes: the request target with a path prefix stripped, the Host the
 * application gets, request headers dropped and set, response headers dropped and set.
 *
 * The rules were checked when the record was read (resource_check: no Host removal, no
 * hop-by-hop or framing header, no CR/LF in values), so this only applies them; it never
 * fails on a rule, and the one request-dependent step (the target) is bounded by cap. Headers
 * are removed by name, every copy, as http_head_serialize's drop list compares them (no case),
 * so a set header replaces whatever the client (or application) sent under that name. Pure:
 * no I/O, no allocation; the output borrows from the resource and from out itself. */
#ifndef POPMESH_NODE_HTTP_HTTPRULES_H
#define POPMESH_NODE_HTTP_HTTPRULES_H

#include "node/http/httpmsg.h"
#include "node/records/resource.h"

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define HTTPRULES_DROP_MAX  (2 * RESOURCE_RULES_MAX + 1) /* removed and set names, and Host */
#define HTTPRULES_EXTRA_MAX (RESOURCE_RULES_MAX + 1)     /* set headers, and Host */

typedef struct httprules_out {
    const char *drop[HTTPRULES_DROP_MAX]; /* header names to remove (borrowed from the rules) */
    size_t ndrop;
    http_header_t extra[HTTPRULES_EXTRA_MAX]; /* headers to add after the others */
    size_t nextra;
} httprules_out_t;

/* The request's rules: names to drop and headers to add (Host first when rewritten). */
void httprules_request(const resource_t *r, httprules_out_t *out);
/* The response's rules. */
void httprules_response(const resource_t *r, httprules_out_t *out);

/* The request target with prefix (a resource's strip_prefix: "/x", no trailing '/') taken
 * off its path when the path is prefix or starts with prefix + '/': "/api/v1?q" -> "/v1?q",
 * "/api" -> "/", "/api?q" -> "/?q", "/apix" unchanged. prefix "" or a target that does not
 * match: the target unchanged. The comparison is on the bytes as sent (routing compared the
 * canonical path, which a target the resource serves agrees with on its prefix). Writes into
 * out (cap bytes, no NUL); returns the length, or -ENOSPC. */
ssize_t httprules_strip_prefix(const char *target, size_t n, const char *prefix, char *out,
                               size_t cap);

#endif
