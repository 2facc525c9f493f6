/* mpjson: msgpack -> JSON (jansson) for meshctl's --json output and its tables, and for the
 * admin listener's /api/ (node/admin), which answers what meshctl --json prints.
 *
 * Strings that are not valid UTF-8 and bin values become {"base64": "..."}; unsigned integers
 * above INT64_MAX become decimal strings (JSON numbers past 2^53 are lossy in most readers
 * anyway, so scripts should not rely on them); map keys that are not strings are rendered as
 * JSON text. */
#ifndef POPMESH_COMMON_MPJSON_H
#define POPMESH_COMMON_MPJSON_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* Converts one msgpack object; NULL if malformed. Caller owns the result (json_decref). */
json_t *mpjson_from(const uint8_t *buf, size_t len);

/* j as meshctl --json prints it: indented by 2, a newline at the end. NULL if it cannot be
 * encoded. Caller owns the result (free). */
char *mpjson_text(const json_t *j);

#endif
