/* geo: which clients are where, for DNS steering, replicated to every PoP.
 *
 *   geo/<cidr>   {cidr, region, lat_udeg?, lon_udeg?, created_ms}
 *
 * A client (a resolver's address, or the EDNS client subnet) inside cidr is in region, and at
 * (lat, lon) when a location is given; node/dns/dnssel.c then prefers the PoPs of that region,
 * or the nearest PoPs. The longest matching prefix wins, so "10.0.0.0/8 eu" and
 * "10.1.0.0/16 us" say what they look like.
 *
 * One key per network: the key holds the canonical text of the CIDR (the network address as
 * inet_ntop writes it, then "/BITS", the prefix always written: "10.1.0.0/16", "2001:db8::/32"),
 * whatever spelling the operator typed ("2001:DB8:0::/32", a bare address). A CIDR with host
 * bits is refused (node/records/cidr.h says why).
 *
 * A location is stored as integer microdegrees (lat_udeg, lon_udeg: both or neither), so the
 * record is exact, identical on every node and free of float encodings; about 11 cm of
 * resolution is more than steering needs. The node record (registry.h) stores a PoP's location
 * the same way, with the helpers below.
 *
 * Records come from other nodes, so geo_parse reads untrusted bytes: bounds-checked, the rules
 * geo.add applies are applied, unknown fields skipped, a missing cidr or region or a field seen
 * twice refused. Loop-free. */
#ifndef POPMESH_NODE_RECORDS_GEO_H
#define POPMESH_NODE_RECORDS_GEO_H

#include "common/mp.h"
#include "node/records/cidr.h"

#include "storage/store.h"

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GEO_PREFIX       "geo/"
#define GEO_KEY_MAX      (sizeof(GEO_PREFIX) + AUTH_CIDR_MAX) /* with the NUL */
#define GEO_REGION_MAX   63                                   /* a name (nodecfg_check_name) */
#define GEO_LOCATION_MAX 32 /* bytes of "LAT,LON" as geo_format_location writes it, with NUL */

typedef struct geo_rec {
    char cidr[AUTH_CIDR_MAX + 1]; /* canonical text, the key's */
    auth_cidr_t net;              /* parsed cidr */
    char region[GEO_REGION_MAX + 1];
    bool has_loc;
    double lat, lon;     /* degrees: -90..90, -180..180; whole microdegrees */
    uint64_t created_ms; /* Unix ms */
} geo_rec_t;

/* The canonical text of a CIDR into out (AUTH_CIDR_MAX + 1 bytes suffice), and the parsed
 * network into *net (may be NULL). 0, or -EINVAL with *why (auth_cidr_parse's reasons). */
int geo_cidr_canonical(const char *text, char *out, size_t len, auth_cidr_t *net, const char **why);
/* "geo/<canonical cidr>" into out (GEO_KEY_MAX bytes suffice); 0, or -EINVAL if cidr does not
 * parse or the key does not fit. */
int geo_key(const char *cidr, char *out, size_t len);
/* Checks every field (cidr canonical, region a name, the location in range) and fills g->net.
 * 0 or -EINVAL with *why. */
int geo_check(geo_rec_t *g, const char **why);
/* The record as a msgpack map. */
void geo_pack(msgpack_packer *pk, const geo_rec_t *g);
/* Decodes a record stored under geo/<cidr_from_key>: 0, or -EBADMSG with *why (static). The
 * record's cidr must be canonical and equal cidr_from_key. */
int geo_parse(const uint8_t *buf, size_t len, const char *cidr_from_key, geo_rec_t *g,
              const char **why);

/* ---- locations (also the node record's) ------------------------------------------------- */

#define GEO_LOCATION_RULE                                                                          \
    "a location is LAT,LON in decimal degrees, latitude -90 to 90 and longitude -180 to 180 "      \
    "(e.g. 48.8566,2.3522)"

/* Parses "LAT,LON": each an optional sign, 1-3 digits, optionally '.' and 1-15 digits (no
 * exponent, no hex, no inf/nan), spaces allowed around either; rounded to whole microdegrees.
 * 0, or -EINVAL (outside the ranges too). */
int geo_parse_location(const char *text, double *lat, double *lon);
/* "LAT,LON" with up to 6 decimals and no trailing zeros ("48.8566,2.3522"). */
void geo_format_location(double lat, double lon, char *out, size_t len);
/* Degrees to microdegrees, rounded half away from zero. */
int64_t geo_udeg(double deg);
/* true if lat and lon are within range. */
bool geo_location_ok(double lat, double lon);
/* Packs "lat_udeg": int, "lon_udeg": int (two pairs of a map whose header the caller wrote). */
void geo_pack_location(msgpack_packer *pk, double lat, double lon);
/* An mpf MPF_CUSTOM reader of one microdegree value into an int64_t. */
int geo_read_udeg(mpr_t *r, void *dst, const char **why);
/* From the microdegrees read (seen: which of the two fields were present) to has_loc, lat and
 * lon: 0, or -EBADMSG with *why when only one is present or one is out of range. */
int geo_location_from_udeg(bool lat_seen, int64_t lat_udeg, bool lon_seen, int64_t lon_udeg,
                           bool *has_loc, double *lat, double *lon, const char **why);

/* Every readable record, in key order; records that do not decode are skipped with a log
 * line. 0 or -errno from the store (*out is then NULL). Caller owns *out (free()). */
int geo_list(store_t *store, geo_rec_t **out, size_t *n);

#endif
