/* mpjson: msgpack -> JSON (jansson) for meshctl's --json output and its tables.
 *
 * Strings that are not valid UTF-8 and bin values become {"base64": "..."}; unsigned integers
 * above INT64_MAX become decimal strings (JSON numbers past 2^53 are lossy in most readers
 * anyway, so scripts should not rely on them); map keys that are not strings are rendered as
 * JSON text. */
#ifndef POPMESH_TOOLS_MPJSON_H
#define POPMESH_TOOLS_MPJSON_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* Converts one msgpack object; NULL if malformed. Caller owns the result (json_decref). */
json_t *mpjson_from(const uint8_t *buf, size_t len);

#endif
