/* password: hashing and checking user passwords (the pwhash of a user record).
 *
 * argon2id through libsodium's crypto_pwhash_str, OPSLIMIT/MEMLIMIT_INTERACTIVE: 64 MiB and
 * about 75 ms of one core per hash, the same per verification (docs/security.md, "Users and
 * passwords", has the measurement). Blocking by design: never call these on the event loop for
 * a client's request. */
#ifndef POPMESH_NODE_AUTH_PASSWORD_H
#define POPMESH_NODE_AUTH_PASSWORD_H

#include "node/records/user.h"

#include <stdbool.h>
#include <stddef.h>

#define AUTH_PASSWORD_MIN 8    /* bytes */
#define AUTH_PASSWORD_MAX 1024 /* bytes */

/* The crypto_pwhash_str string of pw (blocks, see above). out holds AUTH_PWHASH_MAX + 1.
 * 0, -EINVAL (length outside MIN..MAX) or -ENOMEM. */
int auth_password_hash(const char *pw, size_t pwlen, char *out, size_t outlen);
/* true if pw matches hash (same cost as hashing). A malformed hash is false. */
bool auth_password_verify(const char *hash, const char *pw, size_t pwlen);

#endif
