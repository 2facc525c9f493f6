/* geo: see geo.h. Decoding checks shapes (common/mpfields); geo_check then applies what
 * geo.add applies. */
#include "node/records/geo.h"

#include "common/geoloc.h"
#include "common/log.h"
#include "common/mpfields.h"
#include "common/xmalloc.h"
#include "node/nodecfg.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define UDEG_LAT_MAX GEOLOC_LAT_MAX
#define UDEG_LON_MAX GEOLOC_LON_MAX

int geo_cidr_canonical(const char *text, char *out, size_t len, auth_cidr_t *net, const char **why)
{
    auth_cidr_t c;
    char addr[INET6_ADDRSTRLEN];
    if (auth_cidr_parse(text, &c, why))
        return -EINVAL;
    if (!inet_ntop(c.net.family, c.net.a, addr, sizeof(addr))) {
        *why = "the address of a CIDR is not an IPv4 or IPv6 address";
        return -EINVAL;
    }
    int n = snprintf(out, len, "%s/%u", addr, c.prefix);
    if (n < 0 || (size_t)n >= len) {
        *why = "a CIDR is ADDRESS/BITS, at most 49 characters";
        return -EINVAL;
    }
    if (net)
        *net = c;
    return 0;
}

int geo_key(const char *cidr, char *out, size_t len)
{
    char canon[AUTH_CIDR_MAX + 1];
    const char *why;
    if (geo_cidr_canonical(cidr, canon, sizeof(canon), NULL, &why))
        return -EINVAL;
    int n = snprintf(out, len, GEO_PREFIX "%s", canon);
    return n < 0 || (size_t)n >= len ? -EINVAL : 0;
}

bool geo_location_ok(double lat, double lon)
{
    /* Written so that NaN fails every comparison and is refused. */
    return lat >= -90.0 && lat <= 90.0 && lon >= -180.0 && lon <= 180.0;
}

int geo_check(geo_rec_t *g, const char **why)
{
    char canon[AUTH_CIDR_MAX + 1];
    if (geo_cidr_canonical(g->cidr, canon, sizeof(canon), &g->net, why))
        return -EINVAL;
    if (strcmp(canon, g->cidr) != 0) {
        *why = "the cidr is not written canonically (the network as inet_ntop writes it, then "
               "/BITS)";
        return -EINVAL;
    }
    if (nodecfg_check_name(g->region)) {
        *why = "a region is 1-63 of a-z, 0-9 and '-', not starting or ending with '-'";
        return -EINVAL;
    }
    if (g->has_loc && !geo_location_ok(g->lat, g->lon)) {
        *why = GEO_LOCATION_RULE;
        return -EINVAL;
    }
    return 0;
}

int64_t geo_udeg(double deg)
{
    if (!(deg >= -360.0 && deg <= 360.0))
        return 0; /* NaN or far out of range: never cast an unrepresentable value */
    double x = deg * 1e6;
    return (int64_t)(x >= 0 ? x + 0.5 : x - 0.5);
}

void geo_pack_location(msgpack_packer *pk, double lat, double lon)
{
    mpw_str(pk, "lat_udeg");
    msgpack_pack_int64(pk, geo_udeg(lat));
    mpw_str(pk, "lon_udeg");
    msgpack_pack_int64(pk, geo_udeg(lon));
}

void geo_pack(msgpack_packer *pk, const geo_rec_t *g)
{
    msgpack_pack_map(pk, g->has_loc ? 5 : 3);
    mpw_kv_str(pk, "cidr", g->cidr);
    mpw_kv_str(pk, "region", g->region);
    if (g->has_loc)
        geo_pack_location(pk, g->lat, g->lon);
    mpw_kv_u64(pk, "created_ms", g->created_ms);
}

int geo_read_udeg(mpr_t *r, void *dst, const char **why)
{
    if (mpr_int(r, dst)) {
        *why = "lat_udeg and lon_udeg must be integers (microdegrees)";
        return -EBADMSG;
    }
    return 0;
}

int geo_location_from_udeg(bool lat_seen, int64_t lat_udeg, bool lon_seen, int64_t lon_udeg,
                           bool *has_loc, double *lat, double *lon, const char **why)
{
    *has_loc = false;
    *lat = *lon = 0;
    if (lat_seen != lon_seen) {
        *why = "a location needs both lat_udeg and lon_udeg";
        return -EBADMSG;
    }
    if (!lat_seen)
        return 0;
    if (lat_udeg < -UDEG_LAT_MAX || lat_udeg > UDEG_LAT_MAX || lon_udeg < -UDEG_LON_MAX ||
        lon_udeg > UDEG_LON_MAX) {
        *why = "lat_udeg must be within +-90000000 and lon_udeg within +-180000000";
        return -EBADMSG;
    }
    *has_loc = true;
    *lat = (double)lat_udeg / 1e6;
    *lon = (double)lon_udeg / 1e6;
    return 0;
}

int geo_parse(const uint8_t *buf, size_t len, const char *cidr_from_key, geo_rec_t *g,
              const char **why)
{
    int64_t lat = 0, lon = 0;
    memset(g, 0, sizeof(*g));
    mpf_t fs[] = {
        {"cidr", MPF_STR, g->cidr, sizeof(g->cidr), true, false, NULL},
        {"region", MPF_STR, g->region, sizeof(g->region), true, false, NULL},
        {"lat_udeg", MPF_CUSTOM, &lat, 0, false, false, geo_read_udeg},
        {"lon_udeg", MPF_CUSTOM, &lon, 0, false, false, geo_read_udeg},
        {"created_ms", MPF_U64, &g->created_ms, 0, false, false, NULL},
    };
    if (mpf_parse(buf, len, fs, sizeof(fs) / sizeof(fs[0]), why))
        return -EBADMSG;
    if (geo_location_from_udeg(fs[2].seen, lat, fs[3].seen, lon, &g->has_loc, &g->lat, &g->lon,
                               why))
        return -EBADMSG;
    if (geo_check(g, why))
        return -EBADMSG;
    if (strcmp(g->cidr, cidr_from_key) != 0) {
        *why = "the record's cidr is not the cidr in its key";
        return -EBADMSG;
    }
    return 0;
}

/* ---- "LAT,LON": common/geoloc.h, shared with popd.conf's location ----------------------- */

int geo_parse_location(const char *text, double *lat, double *lon)
{
    int64_t a, b;
    if (geoloc_parse(text, &a, &b))
        return -EINVAL;
    *lat = (double)a / 1e6;
    *lon = (double)b / 1e6;
    return 0;
}

void geo_format_location(double lat, double lon, char *out, size_t len)
{
    geoloc_format(geo_udeg(lat), geo_udeg(lon), out, len);
}

/* ---- the store ---------------------------------------------------------------------------- */

struct collect {
    geo_rec_t *v;
    size_t n;
};

static int collect_one(const store_entry_t *e, void *ctx)
{
    struct collect *c = ctx;
    size_t pl = strlen(GEO_PREFIX), nl = e->klen - pl;
    char cidr[AUTH_CIDR_MAX + 1];
    const char *why = "the key is too long";
    geo_rec_t r;
    if (nl <= AUTH_CIDR_MAX) {
        memcpy(cidr, e->key + pl, nl);
        cidr[nl] = '\0';
        if (geo_parse(e->value, e->vlen, cidr, &r, &why) == 0) {
            c->v = xrealloc(c->v, (c->n + 1) * sizeof(*c->v));
            c->v[c->n++] = r;
            return 0;
        }
    }
    log_warn("geo: skipping unreadable record %.*s: %s", (int)e->klen, e->key, why);
    return 0;
}

int geo_list(store_t *store, geo_rec_t **out, size_t *n)
{
    struct collect c = {0};
    int rc = store_list(store, GEO_PREFIX, strlen(GEO_PREFIX), collect_one, &c);
    if (rc) {
        free(c.v);
        *out = NULL;
        *n = 0;
        return rc;
    }
    *out = c.v;
    *n = c.n;
    return 0;
}
