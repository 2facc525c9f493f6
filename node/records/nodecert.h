/* nodecert: the mesh's key hierarchy. A root Ed25519 key certifies each PoP's own Ed25519
 * signing key (node.key's sign-seed) with capabilities; what a PoP signs (session cookies,
 * share links) is trusted by the other PoPs because its certificate chains to the root, not
 * because every PoP holds one shared key (docs/security.md, "The key hierarchy").
 *
 *   nodecert/<id:16 hex>  [1, node_id, sign_pk: bin 32, caps, not_before_ms, not_after_ms,
 *                          serial, issuer: uint (root key id), sig: bin 64]
 *   trust/root            [1, root_pk: bin 32, created_ms, endorser_pk: bin 32,
 *                          prev_until_ms, legacy_until_ms, sig: bin 64]
 *
 * A certificate's sig is Ed25519 by the root over "popmesh nodecert v1" 0x00 || the first 8
 * elements packed again as an array (canonical: msgpack-c packs integers at their minimal
 * width), so a certificate verifies at every PoP offline, from the replicated record alone.
 *
 * trust/root is how a root becomes known. Each PoP pins its roots locally (DIR/root.pub: the
 * store is writable by every member, so the store is never what says which root to trust):
 *   - popd init pins the root it made; a joining PoP pins the root its seed sends in JOIN_OK
 *     (the seed is authenticated by the token);
 *   - a PoP with no pinned root (a mesh made before roots existed) pins the first trust/root
 *     endorsed by the mesh key (endorser_pk = the mesh public key): at that point every PoP
 *     holds the mesh key anyway, so this gives nobody anything they did not have;
 *   - a PoP with a pinned root R accepts a new root only when endorsed by R (rotation): the
 *     new root becomes current and R stays accepted until prev_until_ms.
 * legacy_until_ms: session cookies signed by the mesh key (pms1., before roots) issued before
 * it are still accepted; 0 for a mesh born with a root.
 *
 * Everything here is loop-free; records are decoded as untrusted input (fuzz_nodecert). */
#ifndef POPMESH_NODE_RECORDS_NODECERT_H
#define POPMESH_NODE_RECORDS_NODECERT_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NODECERT_PREFIX  "nodecert/"
#define TRUST_ROOT_KEY   "trust/root"
#define ROOTKEY_FILE     "root.key" /* the root's secret: 0600, on at most one PoP */
#define TRUSTROOTS_FILE  "root.pub" /* the pinned roots: every PoP */
#define NODECERT_KEY_MAX (sizeof(NODECERT_PREFIX) + 16) /* with the NUL */

/* Capabilities, a bitmask on the wire. */
enum nodecert_cap {
    CAP_VERIFY = 1u << 0,         /* checks sessions, tokens, certificates: every PoP */
    CAP_ISSUE_SESSIONS = 1u << 1, /* signs the sessions and share links made there */
    CAP_INVITE = 1u << 2,         /* mints bootstrap tokens */
    CAP_ADMIN = 1u << 3,          /* changes users, resources, rules */
};
#define CAP_ALL        (CAP_VERIFY | CAP_ISSUE_SESSIONS | CAP_INVITE | CAP_ADMIN)
#define CAPS_TEXT_MAX  64
#define NODECERT_VALID (10ull * 365 * 24 * 3600 * 1000) /* ms a certificate is valid by default */

/* "verify,issue-sessions,invite,admin" in any order, or "all". 0 or -EINVAL with a reason. */
int nodecert_caps_parse(const char *s, uint32_t *caps, char *err, size_t errlen);
/* The comma-separated names, "none" for 0. */
void nodecert_caps_format(uint32_t caps, char *out, size_t len);

/* ---- keys ----------------------------------------------------------------------------- */

typedef struct rootkey {
    uint8_t pk[32];
    uint8_t sk[64]; /* libsodium: seed || pk */
} rootkey_t;

int rootkey_generate(rootkey_t *k);
/* A root's id: the first 8 bytes of BLAKE2b("popmesh root id v1" || pk), never 0. */
uint64_t rootkey_id(const uint8_t pk[32]);
/* Writes the root secret to path (0600, refuses to overwrite). 0 or -errno with err. */
int rootkey_save(const char *path, const rootkey_t *k, char *err, size_t errlen);
/* Reads it; refuses a file others can read. 0, -ENOENT, or -errno with err. */
int rootkey_load(const char *path, rootkey_t *k, char *err, size_t errlen);

/* The roots a PoP accepts: cur always, prev until prev_until_ms (a rotation's rollover). */
typedef struct trustroots {
    uint8_t cur[32];
    bool has_prev;
    uint8_t prev[32];
    uint64_t prev_until_ms;   /* Unix ms */
    uint64_t legacy_until_ms; /* Unix ms: mesh-key cookies issued before it pass; 0 = none */
} trustroots_t;

/* DIR/root.pub (0644). 0 or -errno with err. */
int trustroots_save(const char *dir, const trustroots_t *t, char *err, size_t errlen);
/* 0, -ENOENT when there is none, or -errno with err. */
int trustroots_load(const char *dir, trustroots_t *t, char *err, size_t errlen);
/* Parses the file's text (exposed for tests and the fuzzer). 0 or -EINVAL with a reason. */
int trustroots_parse(const char *text, size_t len, trustroots_t *t, char *err, size_t errlen);
/* The accepted root whose id is key_id at now_ms, or NULL. */
const uint8_t *trustroots_find(const trustroots_t *t, uint64_t key_id, uint64_t now_ms);

/* ---- certificates --------------------------------------------------------------------- */

typedef struct nodecert {
    uint64_t node_id;
    uint8_t sign_pk[32];    /* the node's Ed25519 key (its registry record's sign_pk) */
    uint32_t caps;          /* enum nodecert_cap bits */
    uint64_t not_before_ms; /* Unix ms */
    uint64_t not_after_ms;  /* Unix ms; valid while now < not_after_ms */
    uint64_t serial;        /* random */
    uint64_t issuer;        /* rootkey_id of the signing root */
    uint8_t sig[64];
} nodecert_t;

/* "nodecert/<16 hex>"; out holds NODECERT_KEY_MAX. */
void nodecert_key(uint64_t node_id, char *out, size_t len);
/* Parses the id out of a nodecert/ key; 0 or -EINVAL. */
int nodecert_key_id(const char *key, size_t klen, uint64_t *id);
/* Fills serial (random), issuer and sig from the other fields. */
void nodecert_sign(nodecert_t *c, const rootkey_t *root);
void nodecert_pack(msgpack_packer *pk, const nodecert_t *c);
/* Shape only (no signature check). 0 or -EBADMSG with why. */
int nodecert_parse(const uint8_t *buf, size_t len, nodecert_t *c, const char **why);
/* The chain: issuer is an accepted root at now_ms, the signature verifies, now is within
 * [not_before, not_after), and caps holds every bit of need. 0 or -EACCES with why. */
int nodecert_verify(const nodecert_t *c, const trustroots_t *roots, uint32_t need, uint64_t now_ms,
                    const char **why);

/* ---- the root's endorsement ----------------------------------------------------------- */

typedef struct trustroot_rec {
    uint8_t root_pk[32];
    uint64_t created_ms;
    uint8_t endorser_pk[32]; /* the mesh key (first root) or the previous root (rotation) */
    uint64_t prev_until_ms;  /* rotation: the endorser stays accepted until then; else 0 */
    uint64_t legacy_until_ms;
    uint8_t sig[64]; /* by the endorser over "popmesh root v1" 0x00 || the first 6 elements */
} trustroot_rec_t;

/* Signs with the endorser's 64-byte libsodium secret key (sets endorser_pk and sig). */
void trustroot_sign(trustroot_rec_t *r, const uint8_t endorser_sk[64]);
void trustroot_pack(msgpack_packer *pk, const trustroot_rec_t *r);
/* Shape and signature (by endorser_pk). 0 or -EBADMSG / -EACCES with why. */
int trustroot_parse(const uint8_t *buf, size_t len, trustroot_rec_t *r, const char **why);
/* What a PoP whose roots are *t (NULL: none pinned yet) does with a verified record r:
 * 1 and *t updated when r is to be pinned, 0 when it changes nothing, -EACCES with why when
 * r is not endorsed by a key this PoP trusts for it. mesh_pk: the mesh's public key. */
int trustroots_apply(trustroots_t *t, bool have, const trustroot_rec_t *r,
                     const uint8_t mesh_pk[32], const char **why);

#endif
