#include "node/identity.h"

#include "common/kvfile.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static uint64_t derive_node_id(const uint8_t curve_pk[32])
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
    id->node_id = derive_node_id(id->curve_pk);
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

static int write_file(const char *path, mode_t mode, const char *text, char *err, size_t errlen)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "cannot create %s: %s", path, strerror(e));
        return -e;
    }
    size_t len = strlen(text), off = 0;
    while (off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            snprintf(err, errlen, "cannot write %s: %s", path, strerror(e));
            close(fd);
            unlink(path);
            return -e;
        }
        off += (size_t)w;
    }
    /* The umask may have narrowed the mode further, never widened it; set it exactly. */
    if (fchmod(fd, mode) != 0 || fsync(fd) != 0) {
        int e = errno;
        snprintf(err, errlen, "cannot sync %s: %s", path, strerror(e));
        close(fd);
        unlink(path);
        return -e;
    }
    close(fd);
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
    int rc = write_file(path, 0600, text, err, errlen);
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
    return write_file(path, 0644, text, err, errlen);
}

/* Parses one "name = 64 hex digits" line value into 32 bytes. */
static int parse_hex32(const char *v, size_t vl, uint8_t out[32])
{
    size_t bin_len = 0;
    const char *end = NULL;
    if (vl != 64)
        return -EINVAL;
    if (sodium_hex2bin(out, 32, v, vl, NULL, &bin_len, &end) != 0 || bin_len != 32 ||
        end != v + vl)
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
        if (parse_hex32(v, vlen, k->curve) == 0)
            return 0;
    } else if (kvfile_is(name, nlen, "sign-seed")) {
        k->have_sign = 1;
        if (parse_hex32(v, vlen, k->sign) == 0)
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

int identity_load(const char *dir, identity_t *id, char *err, size_t errlen)
{
    char path[4096], text[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, IDENTITY_KEY_FILE);
    if (sodium_init() < 0) {
        snprintf(err, errlen, "libsodium failed to initialise");
        return -EIO;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(e));
        return -e;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || (st.st_mode & 0077)) {
        snprintf(err, errlen, "%s is accessible by group or others (mode %04o); run: chmod 600 %s",
                 path, (unsigned)(st.st_mode & 07777), path);
        close(fd);
        return -EPERM;
    }
    ssize_t n = read(fd, text, sizeof(text));
    close(fd);
    if (n < 0) {
        int e = errno;
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(e));
        return -e;
    }
    if ((size_t)n == sizeof(text)) {
        snprintf(err, errlen, "%s is too large to be a key file", path);
        return -EINVAL;
    }
    char why[200];
    int rc = identity_parse(text, (size_t)n, id, why, sizeof(why));
    sodium_memzero(text, sizeof(text));
    if (rc)
        snprintf(err, errlen, "%s: %s", path, why);
    return rc;
}
