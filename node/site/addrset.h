/* addrset: a multiset of connections (local and remote address), for popsite's loop detection.
 *
 * popsite registers here every socket it opens towards a target (stream connections and health
 * checks): its local address (getsockname) and where it connects to. A PoP's OPEN names where
 * its ingress client connected from and, when it knows, to; a connection in the set with both
 * is one of popsite's own, so the stream went out to a target and came back into the mesh
 * (docs/dataplane.md, "Loops into the mesh").
 *
 * Why both ends: on one host, Linux gives the same ephemeral ip:port to connections to
 * different destinations, so a local address alone also matches an unrelated client of the
 * mesh on the site's machine (measured: 10,000 concurrent connections through a PoP on the
 * site's host matched within seconds). The four-tuple is unique while a connection lives and
 * in TIME_WAIT. Without the remote end (a PoP that does not send it) only live entries match.
 *
 * Keys are compared as (family, address, port) with IPv4-mapped IPv6 addresses
 * ([::ffff:a.b.c.d]) folded into IPv4, since a dual-stack listener reports an IPv4 client in
 * that form. Scope ids and flow labels are ignored. The same key may be added more than once
 * (Linux shares an ephemeral port between connections to different destinations); each add
 * returns its own entry. Lookups and removals are O(1) on average: a chained hash table that
 * doubles when it holds more entries than buckets.
 *
 * LINGER. A released entry may stay findable for a while (addrset_release with linger_ms): a
 * health check closes its socket as soon as it connects, before the PoP's OPEN for that
 * connection can come back, and a chain of short connections would otherwise slip through.
 * addrset_expire frees the entries whose time is up; entries expire in release order, so use
 * one linger value per set (a later, shorter one waits behind an earlier, longer one). */
#ifndef POPMESH_NODE_SITE_ADDRSET_H
#define POPMESH_NODE_SITE_ADDRSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

typedef struct addrset addrset_t;
typedef struct addrset_entry addrset_entry_t;

/* Never NULL (aborts on out-of-memory). */
addrset_t *addrset_new(void);
/* Frees every entry, lingering or not; accepts NULL; sets *sp = NULL. */
void addrset_destroy(addrset_t **sp);

/* Adds a connection from local to remote (AF_INET or AF_INET6, lengths in bytes) with a label
 * (copied: a lingering entry outlives whatever its socket belonged to). Returns the entry
 * (owned by the set until released), or NULL for another family or a short length. */
addrset_entry_t *addrset_add(addrset_t *s, const struct sockaddr *local, socklen_t llen,
                             const struct sockaddr *remote, socklen_t rlen, const char *label);
/* Ends an entry: at once with linger_ms 0, else it stays findable (addrset_find reports it as
 * lingering) until addrset_expire at now_ms + linger_ms. The entry must not be used after. */
void addrset_release(addrset_t *s, addrset_entry_t *e, uint64_t now_ms, uint32_t linger_ms);
/* Frees lingering entries whose time is up. */
void addrset_expire(addrset_t *s, uint64_t now_ms);

/* The label of an entry from local to remote, live entries before lingering ones, or NULL;
 * borrowed until the set next changes. remote NULL: any remote, live entries only (a released
 * local address is free for anyone's next connection). *lingering (may be NULL) tells whether
 * the entry found was released already. */
const char *addrset_find(const addrset_t *s, const struct sockaddr *local, socklen_t llen,
                         const struct sockaddr *remote, socklen_t rlen, bool *lingering);
/* Entries held, live and lingering. */
size_t addrset_count(const addrset_t *s);

#endif
