/* Fuzzes the decoders of the site and resource records: resource/<name> (node/records/resource.h)
 * and site/<name> (node/records/registry.h), plus the token record's site field. Records come from
 * other nodes, so any bytes must be refused cleanly (-EBADMSG with a reason) or decode to a record
 * that passes resource_check and re-encodes to the same fields (the HTTP fields too).
 * A decoded HTTP resource is also matched against the input's bytes as a request's Host and
 * path, so resource_match_http sees arbitrary lengths and bytes. The record's name is checked
 * against the key's, so each decoder runs with the seed corpus's names ("web", "branch-1"). */
#include "node/records/registry.h"
#include "node/records/resource.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_resource(const uint8_t *data, size_t size, const char *name)
{
    resource_t *r = malloc(sizeof(*r)), *back = malloc(sizeof(*back));
    char why_buf[400];
    const char *why = NULL;
    if (!r || !back)
        abort();
    int rc = resource_parse(data, size, name, r, why_buf, sizeof(why_buf), &why);
    if (rc != 0) {
        if (rc != -EBADMSG || !why)
            abort();
        goto out;
    }
    if (strcmp(r->name, name) || resource_check(r, why_buf, sizeof(why_buf), &why) != 0)
        abort();
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    resource_pack(&pk, r);
    if (resource_parse((const uint8_t *)sb.data, sb.size, name, back, why_buf, sizeof(why_buf),
                       &why) != 0)
        abort();
    if (strcmp(r->site, back->site) || r->ntargets != back->ntargets ||
        r->tcp_port != back->tcp_port || r->health != back->health ||
        strcmp(r->http_path, back->http_path) || r->sticky != back->sticky ||
        r->created_ms != back->created_ms || strcmp(r->host, back->host) ||
        strcmp(r->path_prefix, back->path_prefix) || r->auth != back->auth ||
        r->nallow_users != back->nallow_users || r->nallow_groups != back->nallow_groups ||
        r->hc_interval_ms != back->hc_interval_ms || r->hc_timeout_ms != back->hc_timeout_ms ||
        r->hc_rise != back->hc_rise || r->hc_fall != back->hc_fall ||
        r->nhc_status != back->nhc_status ||
        memcmp(r->hc_status, back->hc_status, r->nhc_status * sizeof(r->hc_status[0])) ||
        strcmp(r->hc_host, back->hc_host) || r->udp_port != back->udp_port ||
        r->udp_idle_s != back->udp_idle_s || r->udp_max_flows != back->udp_max_flows)
        abort();
    for (unsigned i = 0; i < r->ntargets; i++)
        if (strcmp(r->targets[i], back->targets[i]))
            abort();
    /* PROXY protocol, HTTPS origins and request rules: the same after a round trip */
    if (r->proxy_protocol != back->proxy_protocol || r->origin_tls != back->origin_tls ||
        r->has_origin_ca != back->has_origin_ca ||
        memcmp(r->origin_ca, back->origin_ca, sizeof(r->origin_ca)) ||
        r->nreq_set != back->nreq_set || r->nreq_remove != back->nreq_remove ||
        r->nresp_set != back->nresp_set || r->nresp_remove != back->nresp_remove ||
        strcmp(r->host_rewrite, back->host_rewrite) || strcmp(r->strip_prefix, back->strip_prefix))
        abort();
    for (unsigned i = 0; i < r->nreq_set; i++)
        if (strcmp(r->req_set[i].name, back->req_set[i].name) ||
            strcmp(r->req_set[i].value, back->req_set[i].value))
            abort();
    for (unsigned i = 0; i < r->nresp_set; i++)
        if (strcmp(r->resp_set[i].name, back->resp_set[i].name) ||
            strcmp(r->resp_set[i].value, back->resp_set[i].value))
            abort();
    for (unsigned i = 0; i < r->nreq_remove; i++)
        if (strcmp(r->req_remove[i], back->req_remove[i]))
            abort();
    for (unsigned i = 0; i < r->nresp_remove; i++)
        if (strcmp(r->resp_remove[i], back->resp_remove[i]))
            abort();
    for (unsigned i = 0; i < r->nallow_users; i++)
        if (strcmp(r->allow_users[i], back->allow_users[i]))
            abort();
    for (unsigned i = 0; i < r->nallow_groups; i++)
        if (strcmp(r->allow_groups[i], back->allow_groups[i]))
            abort();
    if (r->host[0]) {
        /* Its own host and prefix always find it; the input's bytes find it or nothing. */
        if (resource_match_http(r, 1, r->host, strlen(r->host), r->path_prefix,
                                strlen(r->path_prefix)) != 0)
            abort();
        int m = resource_match_http(r, 1, (const char *)data, size / 2,
                                    (const char *)data + size / 2, size - size / 2);
        if (m != 0 && m != -1)
            abort();
    } else if (resource_match_http(r, 1, (const char *)data, size, "/", 1) != -1) {
        abort();
    }
    msgpack_sbuffer_destroy(&sb);
out:
    free(r);
    free(back);
}

static void check_site(const uint8_t *data, size_t size, const char *name)
{
    reg_site_t s, back;
    const char *why = NULL;
    int rc = reg_site_parse(data, size, name, &s, &why);
    if (rc != 0) {
        if (rc != -EBADMSG || !why)
            abort();
        return;
    }
    if (strcmp(s.name, name) || nodecfg_check_name(s.name))
        abort();
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    reg_site_pack(&pk, &s);
    if (reg_site_parse((const uint8_t *)sb.data, sb.size, name, &back, &why) != 0 ||
        s.created_ms != back.created_ms || strcmp(s.created_by, back.created_by) ||
        s.token_id != back.token_id || s.removed != back.removed)
        abort();
    msgpack_sbuffer_destroy(&sb);
}

static void check_token_site(const uint8_t *data, size_t size)
{
    reg_token_t t, back;
    const char *why = NULL;
    if (reg_token_parse(data, size, 1, &t, &why) != 0)
        return; /* the rest of the token record is fuzz_registry's */
    if (t.site[0] && nodecfg_check_name(t.site))
        abort();
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    reg_token_pack(&pk, &t);
    if (reg_token_parse((const uint8_t *)sb.data, sb.size, 1, &back, &why) != 0 ||
        strcmp(t.site, back.site))
        abort();
    msgpack_sbuffer_destroy(&sb);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_resource(data, size, "web");
    check_site(data, size, "branch-1");
    check_token_site(data, size);
    return 0;
}
