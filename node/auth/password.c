/* password: argon2id hashes of user passwords (see password.h).
 *
 * Threat model: a copy of the replicated store (a backup, a compromised PoP) gives the hashes
 * to an attacker, who then guesses offline; argon2id at 64 MiB per guess makes that costly on
 * GPUs as well as CPUs. Online guessing is the rate limiter's (ratelimit.h). The cost lands on
 * the PoP too (a hash per login), which is why hashing happens off the event loop and after
 * the rate limit. Only "$argon2id$" strings are verified: libsodium would verify argon2i
 * strings too, and a replicated record does not get to choose the algorithm. */
#include "node/auth/password.h"

#include <errno.h>
#include <sodium.h>
#include <string.h>

int auth_password_hash(const char *pw, size_t pwlen, char *out, size_t outlen)
{
    if (pwlen < AUTH_PASSWORD_MIN || pwlen > AUTH_PASSWORD_MAX || outlen < crypto_pwhash_STRBYTES)
        return -EINVAL;
    if (crypto_pwhash_str_alg(out, pw, pwlen, crypto_pwhash_OPSLIMIT_INTERACTIVE,
                              crypto_pwhash_MEMLIMIT_INTERACTIVE, crypto_pwhash_ALG_ARGON2ID13))
        return -ENOMEM;
    return 0;
}

bool auth_password_verify(const char *hash, const char *pw, size_t pwlen)
{
    if (!hash || strncmp(hash, "$argon2id$", 10) != 0 || pwlen > AUTH_PASSWORD_MAX)
        return false;
    if (!memchr(hash, '\0', crypto_pwhash_STRBYTES))
        return false;
    return crypto_pwhash_str_verify(hash, pw, pwlen) == 0;
}
