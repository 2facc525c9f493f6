/* totprec: a user's second factor, in two replicated records.
 *
 *   totp/<user>     {name: str, secret: bin (sealed), enrolled_ms: uint, salt: bin 16,
 *                    recovery: [bin 32, ...]}      written by the operator only
 *   totpuse/<user>  {enrolled_ms: uint, last_step: uint, recovery_used: uint}
 *                                                  written by the PoP that accepts a code
 *
 * BACKGROUND
 *
 * The secret is a secret-bearing field: sealed under the store key, bound to the record key
 * and the field name "secret" (storeseal.h), so a copy of data.mdb does not give away anyone's
 * second factor. The recovery codes are kept only as keyed BLAKE2b hashes (node/auth/totp.h).
 *
 * Why two records: the store keeps the last writer of a key (LWW). If logins wrote back the
 * enrolment record to note the step they accepted, a login racing `totp disable` at another
 * PoP could write the old enrolment back after the removal, enabling a secret the operator
 * meant to drop. The use record only ever holds counters, and names the enrolment it belongs
 * to (enrolled_ms): a use record of an earlier enrolment counts as none.
 *
 * Replay protection is as good as replication: a PoP refuses a step <= last_step it holds;
 * two PoPs that accept codes of one user before either's write reached the other both accept,
 * and the later write wins (docs/security.md, "Second factor", says the window).
 *
 * Decoded as untrusted bytes from another node: names checked, lengths exact, at most
 * TOTP_RECOVERY_N hashes, unknown fields skipped, duplicates refused. */
#ifndef POPMESH_NODE_RECORDS_TOTPREC_H
#define POPMESH_NODE_RECORDS_TOTPREC_H

#include "node/nodecfg.h"
#include "node/records/storeseal.h"
#include "storage/store.h"

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TOTPREC_PREFIX     "totp/"
#define TOTPUSE_PREFIX     "totpuse/"
#define TOTPREC_KEY_MAX    80
#define TOTPREC_SECRET     20 /* bytes of the secret (TOTP_SECRET_BYTES) */
#define TOTPREC_SEALED_MAX (TOTPREC_SECRET + STORESEAL_OVERHEAD)
#define TOTPREC_SALT       16
#define TOTPREC_HASH       32
#define TOTPREC_RECOVERY   10

typedef struct totp_rec {
    char name[NODECFG_NAME_MAX + 1];
    uint8_t sealed[TOTPREC_SEALED_MAX]; /* the secret, sealed (storeseal) */
    size_t sealed_len;
    uint64_t enrolled_ms; /* Unix ms: names the enrolment */
    uint8_t salt[TOTPREC_SALT];
    uint8_t recovery[TOTPREC_RECOVERY][TOTPREC_HASH];
    unsigned nrecovery; /* 0..TOTPREC_RECOVERY */
} totp_rec_t;

typedef struct totp_use {
    uint64_t enrolled_ms;   /* the enrolment these counters belong to */
    uint64_t last_step;     /* the last TOTP step accepted (0 = none) */
    uint64_t recovery_used; /* bit i: recovery code i was used */
} totp_use_t;

/* "totp/<name>" / "totpuse/<name>": 0 or -EINVAL (invalid name). out holds TOTPREC_KEY_MAX. */
int totprec_key(const char *name, char *out, size_t len);
int totpuse_key(const char *name, char *out, size_t len);

void totprec_pack(msgpack_packer *pk, const totp_rec_t *t);
/* 0 or -EBADMSG with *why. The record's name must equal name. */
int totprec_parse(const uint8_t *buf, size_t len, const char *name, totp_rec_t *t,
                  const char **why);
void totpuse_pack(msgpack_packer *pk, const totp_use_t *u);
int totpuse_parse(const uint8_t *buf, size_t len, totp_use_t *u, const char **why);

/* Seals secret into t->sealed for t->name. 0, -ENOKEY (no store key), -EINVAL. */
int totprec_seal(const storeseal_t *k, totp_rec_t *t, const uint8_t secret[TOTPREC_SECRET]);
/* Opens t's secret into secret (wipe it after use). 0, or storeseal_open's errors; -EBADMSG
 * also for a secret of another length. */
int totprec_open(const storeseal_t *k, const totp_rec_t *t, uint8_t secret[TOTPREC_SECRET]);

/* Reads totp/<name>: 0, -ENOENT (absent, deleted, invalid name), -EBADMSG (logged), -errno. */
int totprec_get(store_t *store, const char *name, totp_rec_t *t);
/* Reads totpuse/<name> for the enrolment enrolled_ms: a record of another enrolment, or none,
 * reads as zero counters. 0, or -errno from the store (an unreadable record is logged and
 * read as -EBADMSG: the caller refuses rather than forget the last step). */
int totpuse_get(store_t *store, const char *name, uint64_t enrolled_ms, totp_use_t *u);

#endif
