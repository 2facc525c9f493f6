/* httprules: applies a resource's request rules (see httprules.h). */
#include "node/http/httprules.h"

#include <errno.h>
#include <string.h>

static void add_set(httprules_out_t *out, const resource_hdr_t *set, unsigned n)
{
    for (unsigned i = 0;
         i < n && out->ndrop < HTTPRULES_DROP_MAX && out->nextra < HTTPRULES_EXTRA_MAX; i++) {
        out->drop[out->ndrop++] = set[i].name; /* the sender's copies go: ours replaces them */
        out->extra[out->nextra++] =
            (http_header_t){set[i].name, strlen(set[i].name), set[i].value, strlen(set[i].value)};
    }
}

static void add_remove(httprules_out_t *out, const char (*rm)[RESOURCE_HDR_NAME_MAX + 1],
                       unsigned n)
{
    for (unsigned i = 0; i < n && out->ndrop < HTTPRULES_DROP_MAX; i++)
        out->drop[out->ndrop++] = rm[i];
}

void httprules_request(const resource_t *r, httprules_out_t *out)
{
    out->ndrop = out->nextra = 0;
    if (r->host_rewrite[0]) {
        out->drop[out->ndrop++] = "Host";
        out->extra[out->nextra++] =
            (http_header_t){"Host", 4, r->host_rewrite, strlen(r->host_rewrite)};
    }
    add_remove(out, r->req_remove, r->nreq_remove);
    add_set(out, r->req_set, r->nreq_set);
}

void httprules_response(const resource_t *r, httprules_out_t *out)
{
    out->ndrop = out->nextra = 0;
    add_remove(out, r->resp_remove, r->nresp_remove);
    add_set(out, r->resp_set, r->nresp_set);
}

ssize_t httprules_strip_prefix(const char *target, size_t n, const char *prefix, char *out,
                               size_t cap)
{
    size_t pl = strlen(prefix);
    const char *rest = target;
    size_t rl = n;
    /* The path ends at '?' or '#'; the prefix must end on a segment boundary within it. */
    if (pl && n >= pl && !memcmp(target, prefix, pl) &&
        (n == pl || target[pl] == '/' || target[pl] == '?' || target[pl] == '#')) {
        rest = target + pl;
        rl = n - pl;
    }
    bool slash = rest != target && (rl == 0 || rest[0] != '/'); /* "/api" or "/api?q" */
    if (rl + slash > cap)
        return -ENOSPC;
    if (slash)
        out[0] = '/';
    memcpy(out + slash, rest, rl);
    return (ssize_t)(rl + slash);
}
