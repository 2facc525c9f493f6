/* xmalloc: allocation that aborts on out-of-memory.
 *
 * A PoP that cannot allocate a few bytes cannot do anything useful; failing loudly in one place
 * beats a thousand untested NULL paths. Sizes that come from the network are bounded by the
 * decoders before they reach an allocator, so this never turns a hostile length into an abort. */
#ifndef POPMESH_COMMON_XMALLOC_H
#define POPMESH_COMMON_XMALLOC_H

#include <stddef.h>

void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
void *xmemdup(const void *p, size_t n);

#endif
