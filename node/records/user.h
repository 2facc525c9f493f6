/* user: the user record of edge authentication, replicated under user/<name>:
 *
 *   {name: str, groups: [str], pwhash: str, created_ms: uint, session_epoch: uint,
 *    removed: bool, admin: bool}
 *
 * Every PoP reads it on every authenticated request: a session cookie is only as good as the
 * record it names (present, not removed, same session_epoch), which is how a revocation made at
 * one PoP reaches them all (node/auth/session.h). So the record is decoded as untrusted bytes
 * from another node and held to the rules a local command applies: a valid name equal to the
 * one in its key, at most AUTH_GROUPS_MAX distinct valid group names, and an argon2id hash for
 * a user that is not removed. Unknown fields are skipped, a field seen twice is refused
 * (common/mpfields.h). A removed user's record is kept, not deleted, so its epoch survives a
 * re-add of the name (docs/security.md, "Revocation"). */
#ifndef POPMESH_NODE_RECORDS_USER_H
#define POPMESH_NODE_RECORDS_USER_H

#include "node/nodecfg.h"
#include "node/records/authrec.h"
#include "storage/store.h"

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AUTH_GROUPS_MAX 16
#define AUTH_PWHASH_MAX 127 /* bytes of a crypto_pwhash_str string (STRBYTES - 1) */
#define AUTH_EMAIL_MAX   254 /* bytes of an email address */
#define AUTH_DISPLAY_MAX 127 /* bytes of a display name (UTF-8) */

typedef struct auth_user {
    char name[NODECFG_NAME_MAX + 1]; /* a valid name (auth_user_name_ok) */
    char groups[AUTH_GROUPS_MAX][NODECFG_NAME_MAX + 1];
    unsigned ngroups;                 /* 0..AUTH_GROUPS_MAX, distinct valid names */
    char pwhash[AUTH_PWHASH_MAX + 1]; /* "$argon2id$..."; "" once removed */
    uint64_t created_ms;              /* Unix ms */
    uint64_t session_epoch;           /* sessions carry it; bumped to revoke them all */
    bool removed;                     /* the name may be added again, at a higher epoch */
    bool admin; /* may sign in to the admin listener (node/admin); absent in older records: false */
    /* A user from an OpenID provider (node/oidc) is named "IDP:SUBJECT", has no password
     * (pwhash "": a password sign-in can never succeed) and carries what the provider said
     * at the last sign-in. Both fields are optional and printable; "" = none. */
    char email[AUTH_EMAIL_MAX + 1];
    char display_name[AUTH_DISPLAY_MAX + 1];
} auth_user_t;

/* Whether s names a user: a local name (nodecfg_check_name: a-z, 0-9, '-'), or an OpenID
 * provider's user "IDP:SUBJECT" (IDP a local-style name; SUBJECT 1.. bytes of
 * [A-Za-z0-9._@|+=-]), at most NODECFG_NAME_MAX bytes in all. */
bool auth_user_name_ok(const char *s);
/* Whether s is a provider's user ("IDP:SUBJECT"), which has no password. */
bool auth_user_is_external(const char *s);

/* "user/<name>"; 0 or -EINVAL (invalid name). out holds AUTH_KEY_MAX. */
int auth_user_key(const char *name, char *out, size_t len);
void auth_user_pack(msgpack_packer *pk, const auth_user_t *u);
/* Decodes user/<name>: 0 or -EBADMSG with *why. The record's name must equal name. */
int auth_user_parse(const uint8_t *buf, size_t len, const char *name, auth_user_t *u,
                    const char **why);
/* Reads user/<name>: 0, -ENOENT (absent, deleted, invalid name), -EBADMSG (logged), -errno. */
int auth_user_get(store_t *store, const char *name, auth_user_t *u);
/* Every readable user record (removed ones included), in name order; unreadable ones are
 * skipped with a log line. Caller owns *out (free()). 0 or -errno from the store. */
int auth_user_list(store_t *store, auth_user_t **out, size_t *n);

#endif
