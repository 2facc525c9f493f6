/* apikey: an API key's record, replicated under apikey/<id: 16 hex>:
 *
 *   {user: str, hash: bin 32, expires_ms: uint, created_ms: uint, revoked: bool, admin: bool}
 *
 * admin (absent in older records: false) makes it an admin key: it opens the admin listener's
 * status page and /api/ for scripts, as long as its user is an admin too (node/admin).
 *
 * The record never holds the key's secret, only hash = BLAKE2b-256("popmesh apikey v1" 0x00 ||
 * id as 8 bytes big-endian || secret), made and compared by node/auth/apikey.h: whoever copies
 * the store learns no usable key, and since the id is inside the hash, a hash copied into
 * another record verifies nothing. The id comes from the key, not the record, so a record
 * cannot claim another key's id. Decoded as untrusted bytes from another node: unknown fields
 * skipped, a field seen twice refused (common/mpfields.h), the user a valid name. */
#ifndef POPMESH_NODE_RECORDS_APIKEY_H
#define POPMESH_NODE_RECORDS_APIKEY_H

#include "node/nodecfg.h"
#include "node/records/authrec.h"

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct auth_apikey {
    uint64_t id;                     /* from the key apikey/<id> */
    char user[NODECFG_NAME_MAX + 1]; /* the user the key authenticates as */
    uint8_t hash[32];    /* BLAKE2b-256("popmesh apikey v1\0" || id (8, BE) || secret) */
    uint64_t expires_ms; /* Unix ms; 0 = never */
    uint64_t created_ms; /* Unix ms */
    bool revoked;
    bool admin;          /* an admin key (see above) */
} auth_apikey_t;

/* "apikey/<16 lowercase hex>"; out holds AUTH_KEY_MAX. */
void auth_apikey_key(uint64_t id, char *out, size_t len);
void auth_apikey_pack(msgpack_packer *pk, const auth_apikey_t *a);
/* Decodes apikey/<id>: 0 or -EBADMSG with *why; a->id = id. */
int auth_apikey_parse(const uint8_t *buf, size_t len, uint64_t id, auth_apikey_t *a,
                      const char **why);

#endif
