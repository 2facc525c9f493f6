/* identity: a node's long-term keys.
 *
 * Two keypairs, both derived from 32-byte secrets kept in DIR/node.key (mode 0600):
 *   - Curve25519 for ZeroMQ CURVE (the mesh transport authenticates peers by this key);
 *   - Ed25519 for signing what the node originates.
 * The node id (origin of every store write) is the first 8 bytes of BLAKE2b over the Curve25519
 * public key, so it is stable, needs no coordination and cannot be chosen freely by a peer.
 * Public halves are written to DIR/node.pub (mode 0644) for operators to read. */
#ifndef POPMESH_NODE_RECORDS_IDENTITY_H
#define POPMESH_NODE_RECORDS_IDENTITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define IDENTITY_KEY_FILE "node.key"
#define IDENTITY_PUB_FILE "node.pub"

typedef struct identity {
    uint8_t curve_pk[32];
    uint8_t curve_sk[32];
    uint8_t sign_pk[32];
    uint8_t sign_sk[64];
    uint64_t node_id; /* never 0 */
} identity_t;

/* Fresh random keys. 0 or -errno. */
int identity_generate(identity_t *id);
/* Writes DIR/node.key (0600, refuses to overwrite) and DIR/node.pub. 0 or -errno. */
int identity_save(const char *dir, const identity_t *id, char *err, size_t errlen);
/* Reads DIR/node.key; refuses a key file that others can read. 0 or -errno, reason in err. */
int identity_load(const char *dir, identity_t *id, char *err, size_t errlen);
/* Parses the key file text (exposed for the fuzzer). 0 or -EINVAL with a reason. */
int identity_parse(const char *text, size_t len, identity_t *id, char *err, size_t errlen);
/* Writes the node id as 16 lowercase hex digits. */
void identity_id_hex(uint64_t node_id, char out[17]);
/* Wipes secrets. */
void identity_wipe(identity_t *id);
/* The node id that belongs to a Curve25519 public key: what lets anyone check that a key
 * claimed for a node id really is that node's. */
uint64_t identity_node_id_of(const uint8_t curve_pk[32]);

/* The mesh's Ed25519 signing key (it signs tokens and, later, sessions). Every PoP holds it,
 * in DIR/mesh.key (0600); its public half is DIR/mesh.pub and the mesh id is derived from it. */
#define MESHKEY_FILE     "mesh.key"
#define MESHKEY_PUB_FILE "mesh.pub"

typedef struct meshkey {
    uint8_t pk[32];
    uint8_t sk[64];
} meshkey_t;

int meshkey_generate(meshkey_t *k);
/* From the 64-byte libsodium secret key (seed || pk). 0 or -EINVAL if pk does not match. */
int meshkey_from_sk(meshkey_t *k, const uint8_t sk[64]);
int meshkey_save(const char *dir, const meshkey_t *k, char *err, size_t errlen);
int meshkey_load(const char *dir, meshkey_t *k, char *err, size_t errlen);
/* Mesh id as 32 hex digits (BLAKE2b-128 of the public key). */
void meshkey_id_hex(const uint8_t pk[32], char out[33]);

/* The mesh's store key: 32 random bytes that seal the secrets inside replicated records
 * (storeseal.h). Every PoP holds it, in DIR/store.key (0600), next to mesh.key; sites never.
 * `popd init` makes it; a joining PoP receives it in JOIN_OK. A PoP of a mesh made before the
 * store key existed has none: popd derives it from mesh.key (storekey_from_mesh), which every
 * such PoP does alike, so an existing mesh arrives at one key with no coordination. The id is
 * written into every sealed value, so a later key can be told apart (rotation). */
#define STOREKEY_FILE     "store.key"
#define STOREKEY_ID_FIRST 1

typedef struct storekey {
    uint8_t id; /* 1..255 */
    uint8_t key[32];
} storekey_t;

int storekey_generate(storekey_t *k);
/* The store key of a mesh made before store keys: BLAKE2b-derived from the mesh key's seed
 * (crypto_kdf, context "popmstor", subkey 1), id STOREKEY_ID_FIRST. */
void storekey_from_mesh(storekey_t *k, const meshkey_t *mk);
/* Writes DIR/store.key (0600, refuses to overwrite). 0 or -errno. */
int storekey_save(const char *dir, const storekey_t *k, char *err, size_t errlen);
/* Reads DIR/store.key; refuses a file others can read. 0, -ENOENT when there is none, or
 * another -errno with the reason in err. */
int storekey_load(const char *dir, storekey_t *k, char *err, size_t errlen);
/* Parses the file's text (exposed for tests). 0 or -EINVAL with a reason. */
int storekey_parse(const char *text, size_t len, storekey_t *k, char *err, size_t errlen);

/* ---- key files ------------------------------------------------------------------------------
 * The one reader and writer of the small text files that hold keys: node.key, mesh.key and
 * store.key here, root.key and root.pub in nodecert.c. Every error names the file. */

/* Writes text to path with mode (set exactly, whatever the umask) and syncs it. replace false:
 * refuses an existing file (-EEXIST), the rule for secrets, which are never overwritten;
 * replace true: the new file is swapped in atomically (PATH.tmp renamed over it), for files
 * rewritten in place such as root.pub. 0 or -errno with the reason in err. */
int keyfile_write(const char *path, mode_t mode, bool replace, const char *text, char *err,
                  size_t errlen);
/* Reads path into text (a file of cap bytes or more is refused: no key file is that large);
 * text is not NUL-terminated, *len says how much was read. secret: refuses a file that group or
 * others can read (-EPERM, with the chmod to run). 0 or -errno with the reason in err. */
int keyfile_read(const char *path, bool secret, char *text, size_t cap, size_t *len, char *err,
                 size_t errlen);
/* A value of 64 hex digits to 32 bytes. 0 or -EINVAL. */
int keyfile_hex32(const char *v, size_t vlen, uint8_t out[32]);

/* A file holding one Ed25519 seed (mesh.key, root.key): comment (whole lines, each starting
 * with '#' and ending in '\n'), then "FIELD = <64 hex digits>\n". Saved 0600, never over an
 * existing file. 0 or -errno with err. */
int seedfile_save(const char *path, const char *comment, const char *field, const uint8_t seed[32],
                  char *err, size_t errlen);
/* Reads such a file, refusing one others can read and any line but FIELD, and derives the
 * keypair (sk: libsodium's seed || pk). 0 or -errno with "PATH: reason" in err. */
int seedfile_load(const char *path, const char *field, uint8_t pk[32], uint8_t sk[64], char *err,
                  size_t errlen);

#endif
