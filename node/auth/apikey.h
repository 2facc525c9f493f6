/* apikey: API keys, the bearer tokens of scripts and services.
 *
 *   pmk1.<id: 16 hex>.<base64url(secret: 32 bytes)>     exactly AUTH_APIKEY_TEXT characters
 *
 * The id names the record apikey/<id> (node/records/apikey.h), which holds only a hash of the
 * secret; checking a token is one store read and one BLAKE2b, cheap enough for every request
 * (a password costs an argon2id). */
#ifndef POPMESH_NODE_AUTH_APIKEY_H
#define POPMESH_NODE_AUTH_APIKEY_H

#include "node/records/apikey.h"
#include "node/records/user.h"
#include "storage/store.h"

#include <stddef.h>
#include <stdint.h>

#define AUTH_APIKEY_TPREFIX "pmk1."
#define AUTH_APIKEY_TEXT    65 /* characters of pmk1.<16 hex>.<43 base64url> */

/* A new key for user: fills rec (id, hash, user, created_ms = now, expires_ms = now + ttl or 0
 * for ttl 0) and text (AUTH_APIKEY_TEXT + 1 bytes: the bearer token, which holds the secret:
 * the caller wipes it). The caller stores rec. 0 or -EINVAL. */
int auth_apikey_new(const char *user, uint64_t now_ms, uint64_t ttl_ms, auth_apikey_t *rec,
                    char *text, size_t textlen);
/* Splits a bearer token into id and secret: 0 or -EACCES with *why. */
int auth_apikey_token_parse(const char *token, size_t len, uint64_t *id, uint8_t secret[32],
                            const char **why);
/* Checks a bearer token: the record exists, the hash matches (constant time), it is not
 * revoked or expired, and its user exists and is not removed. user_out may be NULL.
 * 0, -EACCES with *why, or -errno (store). */
int auth_apikey_check(store_t *store, const char *token, size_t len, uint64_t now_ms,
                      auth_user_t *user_out, const char **why);

#endif
