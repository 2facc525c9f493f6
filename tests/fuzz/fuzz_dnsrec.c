/* Fuzzes DNS steering's record decoders (node/records/zone.h, geo.h), which read records
 * replicated from other nodes, and the "LAT,LON" parser, which reads what an operator or a
 * peer's control request typed. Any bytes must be refused cleanly (-EBADMSG / -EINVAL with a
 * reason) or decode to a record that passes the checks zone.add / geo.add apply and re-encodes
 * to the same fields. zone_parse runs with the seed corpus's name and with the record's own
 * name (taken from a first decode), geo_parse likewise with the canonical CIDR, so the fuzzer
 * gets past the key check. A location that parses must print and parse back to itself. */
#include "node/records/geo.h"
#include "node/records/zone.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_zone(const uint8_t *data, size_t size, const char *name)
{
    zone_rec_t z, back;
    const char *why = NULL;
    int rc = zone_parse(data, size, name, &z, &why);
    if (rc != 0) {
        if (rc != -EBADMSG || !why)
            abort();
        return;
    }
    if (strcmp(z.name, name) || zone_check(&z, &why) || zone_check_name(z.name, &why))
        abort();
    char key[ZONE_KEY_MAX];
    if (zone_key(z.name, key, sizeof(key)))
        abort();
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    zone_pack(&pk, &z);
    if (zone_parse((const uint8_t *)sb.data, sb.size, name, &back, &why) != 0 ||
        strcmp(z.name, back.name) || z.ttl != back.ttl || z.answers != back.answers ||
        z.created_ms != back.created_ms)
        abort();
    msgpack_sbuffer_destroy(&sb);
}

static void check_geo(const uint8_t *data, size_t size, const char *cidr)
{
    geo_rec_t g, back;
    const char *why = NULL;
    int rc = geo_parse(data, size, cidr, &g, &why);
    if (rc != 0) {
        if (rc != -EBADMSG || !why)
            abort();
        return;
    }
    char canon[AUTH_CIDR_MAX + 1], key[GEO_KEY_MAX];
    if (strcmp(g.cidr, cidr) || geo_cidr_canonical(g.cidr, canon, sizeof(canon), NULL, &why) ||
        strcmp(canon, g.cidr) || geo_key(g.cidr, key, sizeof(key)) ||
        strcmp(key + strlen(GEO_PREFIX), g.cidr) || geo_check(&g, &why))
        abort();
    if (g.has_loc && !geo_location_ok(g.lat, g.lon))
        abort();
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    geo_pack(&pk, &g);
    if (geo_parse((const uint8_t *)sb.data, sb.size, cidr, &back, &why) != 0 ||
        strcmp(g.region, back.region) || g.has_loc != back.has_loc || g.lat != back.lat ||
        g.lon != back.lon || g.created_ms != back.created_ms ||
        memcmp(&g.net, &back.net, sizeof(g.net)))
        abort();
    msgpack_sbuffer_destroy(&sb);
}

static void check_location(const uint8_t *data, size_t size)
{
    char text[160];
    if (size >= sizeof(text))
        size = sizeof(text) - 1;
    memcpy(text, data, size);
    text[size] = '\0';
    double lat, lon, lat2, lon2;
    if (geo_parse_location(text, &lat, &lon) != 0)
        return;
    if (!geo_location_ok(lat, lon))
        abort();
    char out[GEO_LOCATION_MAX];
    geo_format_location(lat, lon, out, sizeof(out));
    if (geo_parse_location(out, &lat2, &lon2) != 0 || lat2 != lat || lon2 != lon)
        abort();
    /* The CIDR canonicaliser on the same text: canonical output is its own canonical form. */
    char c1[AUTH_CIDR_MAX + 1], c2[AUTH_CIDR_MAX + 1];
    const char *why;
    if (geo_cidr_canonical(text, c1, sizeof(c1), NULL, &why) == 0 &&
        (geo_cidr_canonical(c1, c2, sizeof(c2), NULL, &why) != 0 || strcmp(c1, c2)))
        abort();
}

static void check_cidr_text(const uint8_t *data, size_t size)
{
    char text[AUTH_CIDR_MAX + 8];
    if (size >= sizeof(text))
        return;
    memcpy(text, data, size);
    text[size] = '\0';
    char c1[AUTH_CIDR_MAX + 1], c2[AUTH_CIDR_MAX + 1];
    const char *why = NULL;
    if (geo_cidr_canonical(text, c1, sizeof(c1), NULL, &why) != 0) {
        if (!why)
            abort();
        return;
    }
    if (geo_cidr_canonical(c1, c2, sizeof(c2), NULL, &why) != 0 || strcmp(c1, c2))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_zone(data, size, "example.test");
    check_geo(data, size, "10.1.0.0/16");
    /* With the record's own name/cidr, so every valid record is reached. */
    zone_rec_t z;
    geo_rec_t g;
    const char *why;
    if (zone_parse(data, size, "", &z, &why) == -EBADMSG && z.name[0] &&
        zone_check_name(z.name, &why) == 0)
        check_zone(data, size, z.name);
    if (geo_parse(data, size, "", &g, &why) == -EBADMSG && g.cidr[0])
        check_geo(data, size, g.cidr);
    check_location(data, size);
    check_cidr_text(data, size);
    return 0;
}
