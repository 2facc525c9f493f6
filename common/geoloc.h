/* geoloc: a point on Earth as an operator writes it, "LAT,LON" in decimal degrees, read into
 * whole microdegrees (about 11 cm), the unit records store, so a location is exact and means
 * the same on every node. Used by popd.conf's location and by geo rules (node/records/geo.h).
 * Loop-free apart from bounded digit loops. */
#ifndef POPMESH_COMMON_GEOLOC_H
#define POPMESH_COMMON_GEOLOC_H

#include <stddef.h>
#include <stdint.h>

#define GEOLOC_LAT_MAX 90000000ll  /* microdegrees: 90 degrees */
#define GEOLOC_LON_MAX 180000000ll /* microdegrees: 180 degrees */

/* Parses "LAT,LON": each an optional sign, 1-3 digits, optionally '.' and 1-15 digits (no
 * exponent, no hex, no inf/nan), spaces allowed around either; rounded half away from zero to
 * whole microdegrees; latitude within +-90, longitude within +-180. 0 or -EINVAL. */
int geoloc_parse(const char *text, int64_t *lat_udeg, int64_t *lon_udeg);
/* "LAT,LON" with up to 6 decimals and no trailing zeros ("48.8566,2.3522"); 32 bytes hold any. */
void geoloc_format(int64_t lat_udeg, int64_t lon_udeg, char *out, size_t len);

#endif
