/* dnsadmin: the operator commands of DNS steering.
 *
 *   zone.add {zone, ttl?, answers?}        -> {name, ttl, answers, created_ms}
 *   zone.list {}                           -> {zones: [{name, ttl, answers, created_ms}]}
 *   zone.rm  {zone}                        -> {zone}
 *   geo.add  {cidr, region, location?}     -> {cidr, region, location?, created_ms}
 *   geo.list {}                            -> {geos: [{cidr, region, location?, created_ms}]}
 *   geo.rm   {cidr}                        -> {cidr}
 *
 * BACKGROUND
 *
 * What an operator types is normalised here, once, to the one spelling records hold: a zone
 * lowercased without its trailing dot ("Example.TEST." is example.test), a CIDR in canonical
 * text ("2001:DB8:0::/32" is 2001:db8::/32), a location rounded to microdegrees. The records'
 * own checks (zone_check, geo_check) then apply, the same ones every PoP applies to a record
 * it receives, so a command never writes a record another PoP would refuse.
 *
 * Adding a zone or a geo rule that exists is refused rather than overwritten: a typo in a
 * second zone.add would otherwise silently change the TTL of a live zone. Remove it first.
 * As everywhere in the mesh, the check runs against this node's replica; two operators adding
 * the same zone on two PoPs at once both succeed and last-writer-wins decides. */
#include "node/dns/dnsadmin.h"

#include "common/clock.h"
#include "common/log.h"
#include "common/mp.h"
#include "common/xmalloc.h"
#include "node/membership/meshnode.h"
#include "node/records/geo.h"
#include "node/records/registry.h"
#include "node/records/zone.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ------------------------------------------------------------------------------ */

static int put_record(dnsadmin_t *a, const char *key, void (*pack)(msgpack_packer *, const void *),
                      const void *rec)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    pack(&pk, rec);
    int rc = meshnode_put_record(a->mesh, key, &sb);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

static bool exists(dnsadmin_t *a, const char *key)
{
    store_entry_t e;
    if (store_get(meshnode_store(a->mesh), key, strlen(key), &e) != 0)
        return false;
    store_entry_free(&e);
    return true;
}

/* ---- zones -------------------------------------------------------------------------------- */

static void pack_zone_v(msgpack_packer *pk, const void *z)
{
    zone_pack(pk, z);
}

/* The "zone" argument, lowercased and without one trailing dot, checked; else an answer. */
static int arg_zone(const ctl_request_t *req, msgpack_packer *pk, char *name)
{
    char buf[ZONE_NAME_MAX + 3];
    int rc = ctl_arg_copy(req, "zone", buf, sizeof(buf));
    if (rc == 0)
        return control_error(pk, CTL_BAD_REQUEST, "missing argument 'zone' (a DNS name)");
    if (rc < 0)
        return control_error(pk, CTL_BAD_REQUEST,
                             "zone must be a DNS name of at most %d bytes (e.g. example.com)",
                             ZONE_NAME_MAX);
    size_t len = strlen(buf);
    if (len > 1 && buf[len - 1] == '.')
        buf[--len] = '\0';
    for (size_t i = 0; i < len; i++)
        if (buf[i] >= 'A' && buf[i] <= 'Z')
            buf[i] = (char)(buf[i] - 'A' + 'a');
    const char *why = "";
    if (zone_check_name(buf, &why))
        return control_error(pk, CTL_BAD_REQUEST, "zone '%s' is invalid: %s", buf, why);
    memcpy(name, buf, len + 1);
    return CTL_OK;
}

static int cmd_zone_add(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    dnsadmin_t *a = ctx;
    zone_rec_t z = {.ttl = ZONE_TTL_DEFAULT, .answers = ZONE_ANSWERS_DEFAULT};
    int rc = arg_zone(req, pk, z.name);
    if (rc != CTL_OK)
        return rc;
    uint64_t v;
    rc = ctl_arg_uint(req, "ttl", &v);
    if (rc < 0 || (rc == 1 && (v < 1 || v > ZONE_TTL_MAX)))
        return control_error(pk, CTL_BAD_REQUEST, "ttl must be from 1 to %d seconds", ZONE_TTL_MAX);
    if (rc == 1)
        z.ttl = (uint32_t)v;
    rc = ctl_arg_uint(req, "answers", &v);
    if (rc < 0 || (rc == 1 && (v < 1 || v > ZONE_ANSWERS_MAX)))
        return control_error(pk, CTL_BAD_REQUEST,
                             "answers (PoP addresses per answer) must be from 1 to %d",
                             ZONE_ANSWERS_MAX);
    if (rc == 1)
        z.answers = (unsigned)v;
    const char *why = "";
    if (zone_check(&z, &why))
        return control_error(pk, CTL_BAD_REQUEST, "%s", why);
    char key[ZONE_KEY_MAX];
    zone_key(z.name, key, sizeof(key));
    if (exists(a, key))
        return control_error(pk, CTL_REFUSED,
                             "zone %s already exists (meshctl zone list shows it; "
                             "meshctl zone rm %s first to change it)",
                             z.name, z.name);
    z.created_ms = clock_wall_ms();
    if (put_record(a, key, pack_zone_v, &z))
        return control_error(pk, CTL_FAILED, "cannot store zone %s: %s", z.name,
                             store_last_error(meshnode_store(a->mesh)));
    zone_pack(pk, &z);
    log_info("dns: zone %s added (ttl %u s, %u answers)", z.name, z.ttl, z.answers);
    return CTL_OK;
}

static int cmd_zone_list(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    (void)req;
    dnsadmin_t *a = ctx;
    zone_rec_t *v;
    size_t n;
    if (zone_list(meshnode_store(a->mesh), &v, &n))
        return control_error(pk, CTL_FAILED, "cannot list zones: %s",
                             store_last_error(meshnode_store(a->mesh)));
    msgpack_pack_map(pk, 1);
    mpw_str(pk, "zones");
    msgpack_pack_array(pk, n);
    for (size_t i = 0; i < n; i++)
        zone_pack(pk, &v[i]);
    free(v);
    return CTL_OK;
}

static int cmd_zone_rm(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    dnsadmin_t *a = ctx;
    char name[ZONE_NAME_MAX + 1], key[ZONE_KEY_MAX];
    int rc = arg_zone(req, pk, name);
    if (rc != CTL_OK)
        return rc;
    zone_key(name, key, sizeof(key));
    rc = meshnode_del_record(a->mesh, key, strlen(key), NULL);
    if (rc == -ENOENT)
        return control_error(pk, CTL_NOT_FOUND, "no zone %s (meshctl zone list shows them)", name);
    if (rc)
        return control_error(pk, CTL_FAILED, "cannot remove zone %s: %s", name,
                             store_last_error(meshnode_store(a->mesh)));
    msgpack_pack_map(pk, 1);
    mpw_kv_str(pk, "zone", name);
    log_info("dns: zone %s removed", name);
    return CTL_OK;
}

/* ---- geo rules ---------------------------------------------------------------------------- */

static void pack_geo_v(msgpack_packer *pk, const void *g)
{
    geo_pack(pk, g);
}

/* The shape of a geo rule in answers: the location as text rather than microdegrees. */
static void pack_geo_answer(msgpack_packer *pk, const geo_rec_t *g)
{
    msgpack_pack_map(pk, g->has_loc ? 4 : 3);
    mpw_kv_str(pk, "cidr", g->cidr);
    mpw_kv_str(pk, "region", g->region);
    if (g->has_loc) {
        char loc[GEO_LOCATION_MAX];
        geo_format_location(g->lat, g->lon, loc, sizeof(loc));
        mpw_kv_str(pk, "location", loc);
    }
    mpw_kv_u64(pk, "created_ms", g->created_ms);
}

/* The "cidr" argument in canonical text into g->cidr (and g->net); else an answer. */
static int arg_cidr(const ctl_request_t *req, msgpack_packer *pk, geo_rec_t *g)
{
    char buf[AUTH_CIDR_MAX + 1];
    int rc = ctl_arg_copy(req, "cidr", buf, sizeof(buf));
    if (rc == 0)
        return control_error(pk, CTL_BAD_REQUEST,
                             "missing argument 'cidr' (a network, e.g. 10.1.0.0/16)");
    if (rc < 0)
        return control_error(pk, CTL_BAD_REQUEST,
                             "cidr must be ADDRESS/BITS of at most %d characters", AUTH_CIDR_MAX);
    const char *why = "";
    if (geo_cidr_canonical(buf, g->cidr, sizeof(g->cidr), &g->net, &why))
        return control_error(pk, CTL_BAD_REQUEST, "cidr '%s' is invalid: %s", buf, why);
    return CTL_OK;
}

static int cmd_geo_add(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    dnsadmin_t *a = ctx;
    geo_rec_t g;
    memset(&g, 0, sizeof(g));
    int rc = arg_cidr(req, pk, &g);
    if (rc != CTL_OK)
        return rc;
    rc = ctl_arg_copy(req, "region", g.region, sizeof(g.region));
    if (rc == 0)
        return control_error(pk, CTL_BAD_REQUEST, "missing argument 'region'");
    if (rc < 0 || nodecfg_check_name(g.region))
        return control_error(pk, CTL_BAD_REQUEST,
                             "region '%s' is invalid (1-63 of a-z, 0-9 and '-', not starting or "
                             "ending with '-'; the --region of PoPs)",
                             rc < 0 ? "?" : g.region);
    char loc[64];
    rc = ctl_arg_copy(req, "location", loc, sizeof(loc));
    if (rc < 0 || (rc == 1 && geo_parse_location(loc, &g.lat, &g.lon)))
        return control_error(pk, CTL_BAD_REQUEST, "location '%s' is invalid: " GEO_LOCATION_RULE,
                             rc < 0 ? "?" : loc);
    g.has_loc = rc == 1;
    const char *why = "";
    if (geo_check(&g, &why))
        return control_error(pk, CTL_BAD_REQUEST, "%s", why);
    char key[GEO_KEY_MAX];
    geo_key(g.cidr, key, sizeof(key));
    if (exists(a, key))
        return control_error(pk, CTL_REFUSED,
                             "a geo rule for %s already exists (meshctl geo list shows it; "
                             "meshctl geo rm %s first to change it)",
                             g.cidr, g.cidr);
    g.created_ms = clock_wall_ms();
    if (put_record(a, key, pack_geo_v, &g))
        return control_error(pk, CTL_FAILED, "cannot store the geo rule for %s: %s", g.cidr,
                             store_last_error(meshnode_store(a->mesh)));
    pack_geo_answer(pk, &g);
    log_info("dns: geo rule %s -> region %s added", g.cidr, g.region);
    return CTL_OK;
}

static int cmd_geo_list(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    (void)req;
    dnsadmin_t *a = ctx;
    geo_rec_t *v;
    size_t n;
    if (geo_list(meshnode_store(a->mesh), &v, &n))
        return control_error(pk, CTL_FAILED, "cannot list geo rules: %s",
                             store_last_error(meshnode_store(a->mesh)));
    msgpack_pack_map(pk, 1);
    mpw_str(pk, "geos");
    msgpack_pack_array(pk, n);
    for (size_t i = 0; i < n; i++)
        pack_geo_answer(pk, &v[i]);
    free(v);
    return CTL_OK;
}

static int cmd_geo_rm(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    dnsadmin_t *a = ctx;
    geo_rec_t g;
    memset(&g, 0, sizeof(g));
    int rc = arg_cidr(req, pk, &g);
    if (rc != CTL_OK)
        return rc;
    char key[GEO_KEY_MAX];
    geo_key(g.cidr, key, sizeof(key));
    rc = meshnode_del_record(a->mesh, key, strlen(key), NULL);
    if (rc == -ENOENT)
        return control_error(pk, CTL_NOT_FOUND, "no geo rule for %s (meshctl geo list shows them)",
                             g.cidr);
    if (rc)
        return control_error(pk, CTL_FAILED, "cannot remove the geo rule for %s: %s", g.cidr,
                             store_last_error(meshnode_store(a->mesh)));
    msgpack_pack_map(pk, 1);
    mpw_kv_str(pk, "cidr", g.cidr);
    log_info("dns: geo rule %s removed", g.cidr);
    return CTL_OK;
}

const control_command_t dnsadmin_commands[] = {
    {"zone.add", cmd_zone_add,
     "zone: str [ttl: uint s, 1-86400, default 20] [answers: uint, 1-8, default 2] -> the zone"},
    {"zone.list", cmd_zone_list, "-> {zones: [{name, ttl, answers, created_ms}]}"},
    {"zone.rm", cmd_zone_rm, "zone: str -> {zone}"},
    {"geo.add", cmd_geo_add,
     "cidr: str, region: str [location: \"LAT,LON\"] -> {cidr, region, location?, created_ms}"},
    {"geo.list", cmd_geo_list, "-> {geos: [{cidr, region, location?, created_ms}]}"},
    {"geo.rm", cmd_geo_rm, "cidr: str -> {cidr}"},
    {NULL, NULL, NULL},
};

int dnsadmin_register_commands(dnsadmin_t *a, control_t *ctl)
{
    return control_add_commands(ctl, dnsadmin_commands, a);
}

/* ---- this PoP's node record --------------------------------------------------------------- */

int dnsadmin_publish_self(store_t *st, meshnode_t *mesh, const nodecfg_t *cfg, uint64_t self_id)
{
    char key[64];
    reg_node_key(self_id, key, sizeof(key));
    store_entry_t e;
    int rc = store_get(st, key, strlen(key), &e);
    if (rc) {
        log_warn("dns: cannot read this node's record %s to publish its DNS settings: %s", key,
                 rc == -ENOENT ? "not there yet" : store_last_error(st));
        return rc;
    }
    reg_node_t n;
    const char *why = "";
    rc = reg_node_parse(e.value, e.vlen, self_id, &n, &why);
    store_entry_free(&e);
    if (rc) {
        log_warn("dns: this node's record %s is unreadable (%s): DNS settings not published", key,
                 why);
        return rc;
    }
    reg_node_t want = n;
    nodecfg_public_addrs(cfg, want.public4, sizeof(want.public4), want.public6,
                         sizeof(want.public6));
    want.has_loc = cfg->has_location;
    want.lat = cfg->has_location ? (double)cfg->lat_udeg / 1e6 : 0;
    want.lon = cfg->has_location ? (double)cfg->lon_udeg / 1e6 : 0;
    snprintf(want.dns_addr, sizeof(want.dns_addr), "%s", cfg->dns_listen);
    /* Not DNS, but a setting of this machine that its record carries too, published here with
     * them (one read and one write of the record at start). */
    want.no_inbound = cfg->no_inbound;
    memset(want.labels, 0, sizeof(want.labels));
    memcpy(want.labels, cfg->labels, sizeof(want.labels));
    want.nlabels = cfg->nlabels;
    want.seal = true; /* this version relays sealed streams (tunnel/seal.h) */
    bool same_labels = want.nlabels == n.nlabels;
    for (unsigned i = 0; i < want.nlabels && same_labels; i++)
        same_labels = !strcmp(want.labels[i], n.labels[i]);
    if (!strcmp(want.public4, n.public4) && !strcmp(want.public6, n.public6) &&
        want.has_loc == n.has_loc && geo_udeg(want.lat) == geo_udeg(n.lat) &&
        geo_udeg(want.lon) == geo_udeg(n.lon) && !strcmp(want.dns_addr, n.dns_addr) &&
        want.no_inbound == n.no_inbound && want.seal == n.seal && same_labels)
        return 0;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    reg_node_pack(&pk, &want);
    rc = meshnode_put_record(mesh, key, &sb);
    msgpack_sbuffer_destroy(&sb);
    if (rc) {
        log_warn("dns: cannot publish this node's DNS settings: %s", store_last_error(st));
        return rc;
    }
    char loc[GEO_LOCATION_MAX] = "none";
    if (want.has_loc)
        geo_format_location(want.lat, want.lon, loc, sizeof(loc));
    log_info("dns: published public address %s%s%s, location %s, dns %s",
             want.public4[0] ? want.public4 : "", want.public4[0] && want.public6[0] ? "," : "",
             !want.public4[0] && !want.public6[0] ? "none" : want.public6, loc,
             want.dns_addr[0] ? want.dns_addr : "off");
    return 0;
}
