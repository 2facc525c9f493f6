#include "node/records/identity.h"

#include "common/kvfile.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

uint64_t identity_node_id_of(const uint8_t curve_pk[32])
{
    static const char label[] = "popmesh node id v1";
    uint8_t h[32];
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, sizeof(h));
    crypto_generichash_update(&st, (const uint8_t *)label, sizeof(label) - 1);
    crypto_generichash_update(&st, curve_pk, 32);
    crypto_generichash_final(&st, h, sizeof(h));
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | h[i];
    return v ? v : 1; /* 0 means "no origin" in the store */
}

/* Everything follows from the two 32-byte secrets, so the file holds only those. */
static int derive(identity_t *id, const uint8_t curve_seed[32], const uint8_t sign_seed[32])
{
    memcpy(id->curve_sk, curve_seed, 32);
    if (crypto_scalarmult_base(id->curve_pk, id->curve_sk) != 0)
        return -EINVAL;
    if (crypto_sign_seed_keypair(id->sign_pk, id->sign_sk, sign_seed) != 0)
        return -EINVAL;
    id->node_id = identity_node_id_of(id->curve_pk);
    return 0;
}

int identity_generate(identity_t *id)
{
    uint8_t a[32], b[32];
    if (sodium_init() < 0)
        return -EIO;
    randombytes_buf(a, sizeof(a));
    randombytes_buf(b, sizeof(b));
    int rc = derive(id, a, b);
    sodium_memzero(a, sizeof(a));
    sodium_memzero(b, sizeof(b));
    return rc;
}

void identity_wipe(identity_t *id)
{
    sodium_memzero(id, sizeof(*id));
}

void identity_id_hex(uint64_t node_id, char out[17])
{
    snprintf(out, 17, "%016llx", (unsigned long long)node_id);
}

int keyfile_write(const char *path, mode_t mode, bool replace, const char *text, char *err,
                  size_t errlen)
{
    char tmp[4200];
    const char *target = path;
    if (replace) {
        /* A reader sees the old file or the new one, never a half-written one. */
        snprintf(tmp, sizeof(tmp), "%s.tmp", path);
        unlink(tmp);
        target = tmp;
    }
    int fd = open(target, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "cannot create %s: %s", target, strerror(e));
        return -e;
    }
    size_t len = strlen(text), off = 0;
    const char *what = "write";
    int e = 0;
    while (off < len && !e) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0 && errno != EINTR)
            e = errno;
        else if (w > 0)
            off += (size_t)w;
    }
    /* The umask may have narrowed the mode further, never widened it; set it exactly. */
    if (!e && (fchmod(fd, mode) != 0 || fsync(fd) != 0)) {
        e = errno;
        what = "sync";
    }
    close(fd);
    if (!e && replace && rename(tmp, path) != 0) {
        e = errno;
        what = "write";
    }
    if (e) {
        snprintf(err, errlen, "cannot %s %s: %s", what, path, strerror(e));
        unlink(target);
        return -e;
    }
    return 0;
}

int identity_save(const char *dir, const identity_t *id, char *err, size_t errlen)
{
    char path[4096], text[512];
    char cs[65], ss[65], cp[65], sp[65], idhex[17];
    sodium_bin2hex(cs, sizeof(cs), id->curve_sk, 32);
    sodium_bin2hex(ss, sizeof(ss), id->sign_sk, 32); /* the first 32 bytes are the seed */
    sodium_bin2hex(cp, sizeof(cp), id->curve_pk, 32);
    sodium_bin2hex(sp, sizeof(sp), id->sign_pk, 32);
    identity_id_hex(id->node_id, idhex);

    snprintf(text, sizeof(text),
             "# popmesh node secret keys: keep private (mode 0600)\n"
             "curve-secret = %s\n"
             "sign-seed = %s\n",
             cs, ss);
    sodium_memzero(cs, sizeof(cs));
    sodium_memzero(ss, sizeof(ss));
    snprintf(path, sizeof(path), "%s/%s", dir, IDENTITY_KEY_FILE);
    int rc = keyfile_write(path, 0600, false, text, err, errlen);
    sodium_memzero(text, sizeof(text));
    if (rc)
        return rc;

    snprintf(text, sizeof(text),
             "# popmesh node public keys\n"
             "node-id = %s\n"
             "curve-public = %s\n"
             "sign-public = %s\n",
             idhex, cp, sp);
    snprintf(path, sizeof(path), "%s/%s", dir, IDENTITY_PUB_FILE);
    return keyfile_write(path, 0644, false, text, err, errlen);
}

int keyfile_hex32(const char *v, size_t vl, uint8_t out[32])
{
    size_t bin_len = 0;
    const char *end = NULL;
    if (vl != 64)
        return -EINVAL;
    if (sodium_hex2bin(out, 32, v, vl, NULL, &bin_len, &end) != 0 || bin_len != 32 || end != v + vl)
        return -EINVAL;
    return 0;
}

struct key_seeds {
    uint8_t curve[32], sign[32];
    int have_curve, have_sign;
};

static int key_setting(const char *name, size_t nlen, const char *v, size_t vlen, void *ctx,
                       char *err, size_t errlen)
{
    struct key_seeds *k = ctx;
    if (kvfile_is(name, nlen, "curve-secret")) {
        k->have_curve = 1;
        if (keyfile_hex32(v, vlen, k->curve) == 0)
            return 0;
    } else if (kvfile_is(name, nlen, "sign-seed")) {
        k->have_sign = 1;
        if (keyfile_hex32(v, vlen, k->sign) == 0)
            return 0;
    } else {
        snprintf(err, errlen, "unknown key '%.*s'", (int)(nlen > 40 ? 40 : nlen), name);
        return -EINVAL;
    }
    snprintf(err, errlen, "%.*s must be 64 hex digits", (int)nlen, name);
    return -EINVAL;
}

int identity_parse(const char *text, size_t len, identity_t *id, char *err, size_t errlen)
{
    struct key_seeds k = {0};
    int rc = kvfile_parse(text, len, key_setting, &k, err, errlen);
    if (rc == 0 && (!k.have_curve || !k.have_sign)) {
        snprintf(err, errlen, "missing %s", !k.have_curve ? "curve-secret" : "sign-seed");
        rc = -EINVAL;
    }
    if (rc == 0 && (rc = derive(id, k.curve, k.sign)) != 0)
        snprintf(err, errlen, "key material is invalid");
    sodium_memzero(&k, sizeof(k));
    return rc;
}

int keyfile_read(const char *path, bool secret, char *text, size_t cap, size_t *len, char *err,
                 size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(e));
        return -e;
    }
    struct stat st;
    if (secret && (fstat(fd, &st) != 0 || (st.st_mode & 0077))) {
        snprintf(err, errlen, "%s is accessible by group or others (mode %04o); run: chmod 600 %s",
                 path, (unsigned)(st.st_mode & 07777), path);
        close(fd);
        return -EPERM;
    }
    ssize_t n = read(fd, text, cap);
    int e = errno;
    close(fd);
    if (n < 0) {
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(e));
        return -e;
    }
    if ((size_t)n == cap) {
        snprintf(err, errlen, "%s is too large to be a key file", path);
        return -EINVAL;
    }
    *len = (size_t)n;
    return 0;
}

/* ---- seed files (mesh.key, root.key) ------------------------------------------------------ */

struct seed_parse {
    const char *field;
    uint8_t seed[32];
    bool have;
};

static int seed_setting(const char *name, size_t nlen, const char *v, size_t vlen, void *ctx,
                        char *err, size_t errlen)
{
    struct seed_parse *s = ctx;
    if (!kvfile_is(name, nlen, s->field)) {
        snprintf(err, errlen, "unknown key '%.*s'", (int)(nlen > 40 ? 40 : nlen), name);
        return -EINVAL;
    }
    if (keyfile_hex32(v, vlen, s->seed)) {
        snprintf(err, errlen, "%s must be 64 hex digits", s->field);
        return -EINVAL;
    }
    s->have = true;
    return 0;
}

int seedfile_save(const char *path, const char *comment, const char *field, const uint8_t seed[32],
                  char *err, size_t errlen)
{
    char text[512], hex[65];
    sodium_bin2hex(hex, sizeof(hex), seed, 32);
    int w = snprintf(text, sizeof(text), "%s%s = %s\n", comment, field, hex);
    sodium_memzero(hex, sizeof(hex));
    int rc;
    if (w < 0 || (size_t)w >= sizeof(text)) {
        snprintf(err, errlen, "cannot write %s: its comment is too long", path);
        rc = -EINVAL;
    } else {
        rc = keyfile_write(path, 0600, false, text, err, errlen);
    }
    sodium_memzero(text, sizeof(text));
    return rc;
}

int seedfile_load(const char *path, const char *field, uint8_t pk[32], uint8_t sk[64], char *err,
                  size_t errlen)
{
    char text[1024], why[200];
    size_t n = 0; /* keyfile_read sets it; gcc -O2 cannot see that on its error paths */
    int rc = keyfile_read(path, true, text, sizeof(text), &n, err, errlen);
    if (rc)
        return rc;
    struct seed_parse s = {.field = field};
    rc = kvfile_parse(text, n, seed_setting, &s, why, sizeof(why));
    sodium_memzero(text, sizeof(text));
    if (rc == 0 && !s.have) {
        snprintf(why, sizeof(why), "missing %s", field);
        rc = -EINVAL;
    }
    if (rc == 0)
        crypto_sign_seed_keypair(pk, sk, s.seed);
    else
        snprintf(err, errlen, "%s: %s", path, why);
    sodium_memzero(&s, sizeof(s));
    return rc;
}

/* ---- the mesh key ------------------------------------------------------------------------- */

int meshkey_generate(meshkey_t *k)
{
    if (sodium_init() < 0)
        return -EIO;
    crypto_sign_keypair(k->pk, k->sk);
    return 0;
}

int meshkey_from_sk(meshkey_t *k, const uint8_t sk[64])
{
    uint8_t pk[32];
    crypto_sign_ed25519_sk_to_pk(pk, sk);
    uint8_t check_pk[32], check_sk[64];
    crypto_sign_seed_keypair(check_pk, check_sk, sk); /* first 32 bytes are the seed */
    int ok = memcmp(pk, check_pk, 32) == 0;
    sodium_memzero(check_sk, sizeof(check_sk));
    if (!ok)
        return -EINVAL;
    memcpy(k->pk, pk, 32);
    memcpy(k->sk, sk, 64);
    return 0;
}

void meshkey_id_hex(const uint8_t pk[32], char out[33])
{
    uint8_t id[16];
    crypto_generichash(id, sizeof(id), pk, 32, NULL, 0);
    sodium_bin2hex(out, 33, id, sizeof(id));
}

int meshkey_save(const char *dir, const meshkey_t *k, char *err, size_t errlen)
{
    char path[4096], text[256], pub[65], idhex[33];
    snprintf(path, sizeof(path), "%s/%s", dir, MESHKEY_FILE);
    int rc = seedfile_save(
        path, "# popmesh mesh signing key: every PoP holds it; keep private (mode 0600)\n",
        "mesh-sign-seed", k->sk, err, errlen); /* the first 32 bytes of sk are the seed */
    if (rc)
        return rc;
    sodium_bin2hex(pub, sizeof(pub), k->pk, 32);
    meshkey_id_hex(k->pk, idhex);
    snprintf(text, sizeof(text), "# popmesh mesh public key\nmesh-id = %s\nmesh-public = %s\n",
             idhex, pub);
    snprintf(path, sizeof(path), "%s/%s", dir, MESHKEY_PUB_FILE);
    return keyfile_write(path, 0644, false, text, err, errlen);
}

int meshkey_load(const char *dir, meshkey_t *k, char *err, size_t errlen)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, MESHKEY_FILE);
    return seedfile_load(path, "mesh-sign-seed", k->pk, k->sk, err, errlen);
}

/* ---- the store key ------------------------------------------------------------------------ */

struct store_seed {
    uint8_t key[32];
    uint64_t id;
    int have_key, have_id;
};

static int storekey_setting(const char *name, size_t nlen, const char *v, size_t vlen, void *ctx,
                            char *err, size_t errlen)
{
    struct store_seed *s = ctx;
    if (kvfile_is(name, nlen, "store-key")) {
        if (keyfile_hex32(v, vlen, s->key)) {
            snprintf(err, errlen, "store-key must be 64 hex digits");
            return -EINVAL;
        }
        s->have_key = 1;
        return 0;
    }
    if (kvfile_is(name, nlen, "store-key-id")) {
        char num[8];
        char *end;
        if (vlen == 0 || vlen >= sizeof(num)) {
            snprintf(err, errlen, "store-key-id must be 1 to 255");
            return -EINVAL;
        }
        memcpy(num, v, vlen);
        num[vlen] = '\0';
        unsigned long id = strtoul(num, &end, 10);
        if (*end || id < 1 || id > 255 || num[0] < '0' || num[0] > '9') {
            snprintf(err, errlen, "store-key-id must be 1 to 255");
            return -EINVAL;
        }
        s->id = id;
        s->have_id = 1;
        return 0;
    }
    snprintf(err, errlen, "unknown key '%.*s'", (int)(nlen > 40 ? 40 : nlen), name);
    return -EINVAL;
}

int storekey_generate(storekey_t *k)
{
    if (sodium_init() < 0)
        return -EIO;
    k->id = STOREKEY_ID_FIRST;
    randombytes_buf(k->key, sizeof(k->key));
    return 0;
}

void storekey_from_mesh(storekey_t *k, const meshkey_t *mk)
{
    _Static_assert(crypto_kdf_CONTEXTBYTES == 8, "KDF context is 8 bytes");
    /* The first 32 bytes of libsodium's Ed25519 secret key are the seed. */
    crypto_kdf_derive_from_key(k->key, sizeof(k->key), 1, "popmstor", mk->sk);
    k->id = STOREKEY_ID_FIRST;
}

int storekey_save(const char *dir, const storekey_t *k, char *err, size_t errlen)
{
    char path[4096], text[256], hex[65];
    sodium_bin2hex(hex, sizeof(hex), k->key, 32);
    snprintf(text, sizeof(text),
             "# popmesh store key: seals the secrets in the replicated store; every PoP holds\n"
             "# it; keep private (mode 0600) and back it up with mesh.key\n"
             "store-key-id = %u\nstore-key = %s\n",
             (unsigned)k->id, hex);
    sodium_memzero(hex, sizeof(hex));
    snprintf(path, sizeof(path), "%s/%s", dir, STOREKEY_FILE);
    int rc = keyfile_write(path, 0600, false, text, err, errlen);
    sodium_memzero(text, sizeof(text));
    return rc;
}

int storekey_parse(const char *text, size_t len, storekey_t *k, char *err, size_t errlen)
{
    struct store_seed s = {0};
    int rc = kvfile_parse(text, len, storekey_setting, &s, err, errlen);
    if (rc == 0 && (!s.have_key || !s.have_id)) {
        snprintf(err, errlen, "missing %s", !s.have_key ? "store-key" : "store-key-id");
        rc = -EINVAL;
    }
    if (rc == 0) {
        memcpy(k->key, s.key, 32);
        k->id = (uint8_t)s.id;
    }
    sodium_memzero(&s, sizeof(s));
    return rc;
}

int storekey_load(const char *dir, storekey_t *k, char *err, size_t errlen)
{
    char path[4096], text[1024], why[200];
    size_t n = 0;
    snprintf(path, sizeof(path), "%s/%s", dir, STOREKEY_FILE);
    int rc = keyfile_read(path, true, text, sizeof(text), &n, err, errlen);
    if (rc)
        return rc;
    rc = storekey_parse(text, n, k, why, sizeof(why));
    sodium_memzero(text, sizeof(text));
    if (rc)
        snprintf(err, errlen, "%s: %s", path, why);
    return rc;
}

int identity_load(const char *dir, identity_t *id, char *err, size_t errlen)
{
    char path[4096], text[4096], why[200];
    size_t n = 0;
    if (sodium_init() < 0) {
        snprintf(err, errlen, "libsodium failed to initialise");
        return -EIO;
    }
    snprintf(path, sizeof(path), "%s/%s", dir, IDENTITY_KEY_FILE);
    int rc = keyfile_read(path, true, text, sizeof(text), &n, err, errlen);
    if (rc)
        return rc;
    rc = identity_parse(text, n, id, why, sizeof(why));
    sodium_memzero(text, sizeof(text));
    if (rc)
        snprintf(err, errlen, "%s: %s", path, why);
    return rc;
}
