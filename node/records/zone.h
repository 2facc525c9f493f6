/* zone: a DNS zone the mesh is authoritative for, replicated to every PoP.
 *
 *   zone/<name>   {name, ttl, answers, created_ms}
 *
 * Every PoP that runs a DNS listener (--dns-listen) answers for every zone: the apex, NAME.pop.ZONE
 * for each PoP, and the HTTP resources' hosts under it (node/dns/dnsserver.c builds its view
 * from these records). ttl is the TTL of every answer and the SOA minimum; answers is how many
 * PoP addresses one answer carries.
 *
 * One spelling per zone: a name here is lowercase and has no trailing dot, so a key names one
 * zone and a query (lowercased, dot stripped) compares byte for byte. zone_check_name refuses
 * the other spellings; the control handler (zone.add) normalises what an operator types first.
 * '_' is allowed in a label: DNS names are not host names (RFC 2181 section 11), and zones such
 * as _dmarc.example.test exist.
 *
 * Records come from other nodes through replication, so zone_parse reads untrusted bytes:
 * every field is bounds-checked, the rules zone.add applies are applied, unknown fields are
 * skipped, a missing required field (name, ttl, answers) or a field seen twice refuses the
 * record. Loop-free. */
#ifndef POPMESH_NODE_RECORDS_ZONE_H
#define POPMESH_NODE_RECORDS_ZONE_H

#include "storage/store.h"

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#define ZONE_PREFIX          "zone/"
#define ZONE_NAME_MAX        253 /* bytes of a name without the trailing dot */
#define ZONE_LABEL_MAX       63
#define ZONE_KEY_MAX         (sizeof(ZONE_PREFIX) + ZONE_NAME_MAX) /* with the NUL */
#define ZONE_TTL_DEFAULT     20                                    /* s */
#define ZONE_TTL_MAX         86400                                 /* s: one day */
#define ZONE_ANSWERS_DEFAULT 2
#define ZONE_ANSWERS_MAX     8 /* DNS_ANSWERS_MAX */

typedef struct zone_rec {
    char name[ZONE_NAME_MAX + 1]; /* lowercase, no trailing dot */
    uint32_t ttl;                 /* s: 1..ZONE_TTL_MAX */
    unsigned answers;             /* PoP addresses per answer: 1..ZONE_ANSWERS_MAX */
    uint64_t created_ms;          /* Unix ms */
} zone_rec_t;

/* A zone's name: 1..253 bytes of '.'-separated labels of 1..63 of a-z, 0-9, '-' and '_', a
 * label neither starting nor ending with '-'. Upper case and a trailing dot are refused (see
 * above). 0, or -EINVAL with a reason in *why (a static string). */
int zone_check_name(const char *name, const char **why);
/* Checks ttl and answers against their ranges. 0 or -EINVAL with *why. */
int zone_check(const zone_rec_t *z, const char **why);
/* "zone/<name>" into out (ZONE_KEY_MAX bytes suffice); 0, or -EINVAL if name is not valid or
 * the key does not fit. */
int zone_key(const char *name, char *out, size_t len);
/* The record as a msgpack map (also the shape of one zone in control answers). */
void zone_pack(msgpack_packer *pk, const zone_rec_t *z);
/* Decodes a record stored under zone/<name>: 0, or -EBADMSG with a reason in *why (static).
 * The record's name must equal name (the key's). */
int zone_parse(const uint8_t *buf, size_t len, const char *name, zone_rec_t *z, const char **why);

/* Every readable record, in key order; records that do not decode are skipped with a log
 * line. 0 or -errno from the store (*out is then NULL). Caller owns *out (free()). */
int zone_list(store_t *store, zone_rec_t **out, size_t *n);

#endif
