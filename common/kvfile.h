/* kvfile: the "name = value" text format of popmesh's local files (popd.conf, node.key).
 *
 * One setting per line; '#' starts a comment line; blank lines are skipped; spaces around
 * the name and value are trimmed. Human-editable, diff-able, and small enough to parse
 * without a library. The parser is bounds-checked and has a fuzz harness because an
 * operator's editor is untrusted input too. */
#ifndef POPMESH_COMMON_KVFILE_H
#define POPMESH_COMMON_KVFILE_H

#include <stddef.h>

#define KVFILE_MAX_LINE 1024 /* bytes */

/* Called per setting; name and value are not NUL-terminated, borrowed for the call.
 * Returns 0 to go on, or -errno after writing a reason to err (without the line number:
 * kvfile_parse prefixes it). */
typedef int (*kvfile_fn)(const char *name, size_t nlen, const char *value, size_t vlen, void *ctx,
                         char *err, size_t errlen);

/* 0, the callback's error, or -EINVAL for a line without '=', an empty name, a NUL byte or
 * a line over KVFILE_MAX_LINE. err gets "line N: reason". */
int kvfile_parse(const char *text, size_t len, kvfile_fn fn, void *ctx, char *err, size_t errlen);

/* Convenience for callbacks: does name equal the NUL-terminated want? */
int kvfile_is(const char *name, size_t nlen, const char *want);

#endif
