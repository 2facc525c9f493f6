/* totprec: see totprec.h. */
#include "node/records/totprec.h"

#include "common/log.h"
#include "common/logesc.h"
#include "common/mp.h"
#include "common/mpfields.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SECRET_FIELD "secret"

static int key_of(const char *prefix, const char *name, char *out, size_t len)
{
    if (nodecfg_check_name(name))
        return -EINVAL;
    int n = snprintf(out, len, "%s%s", prefix, name);
    return n < 0 || (size_t)n >= len ? -EINVAL : 0;
}

int totprec_key(const char *name, char *out, size_t len)
{
    return key_of(TOTPREC_PREFIX, name, out, len);
}

int totpuse_key(const char *name, char *out, size_t len)
{
    return key_of(TOTPUSE_PREFIX, name, out, len);
}

void totprec_pack(msgpack_packer *pk, const totp_rec_t *t)
{
    msgpack_pack_map(pk, 5);
    mpw_kv_str(pk, "name", t->name);
    mpw_kv_bin(pk, SECRET_FIELD, t->sealed, t->sealed_len);
    mpw_kv_u64(pk, "enrolled_ms", t->enrolled_ms);
    mpw_kv_bin(pk, "salt", t->salt, sizeof(t->salt));
    mpw_str(pk, "recovery");
    msgpack_pack_array(pk, t->nrecovery);
    for (unsigned i = 0; i < t->nrecovery; i++)
        mpw_bin(pk, t->recovery[i], TOTPREC_HASH);
}

static int read_sealed(mpr_t *r, void *dst, const char **why)
{
    totp_rec_t *t = dst;
    const uint8_t *b;
    uint32_t n;
    if (mpr_bin(r, &b, &n) || n > sizeof(t->sealed) || n < STORESEAL_LEGACY_OVERHEAD) {
        *why = "secret is not a sealed value of a TOTP secret";
        return -EBADMSG;
    }
    memcpy(t->sealed, b, n);
    t->sealed_len = n;
    return 0;
}

static int read_salt(mpr_t *r, void *dst, const char **why)
{
    totp_rec_t *t = dst;
    const uint8_t *b;
    uint32_t n;
    if (mpr_bin(r, &b, &n) || n != TOTPREC_SALT) {
        *why = "salt is not 16 bytes";
        return -EBADMSG;
    }
    memcpy(t->salt, b, n);
    return 0;
}

static int read_recovery(mpr_t *r, void *dst, const char **why)
{
    totp_rec_t *t = dst;
    uint32_t n;
    if (mpr_array(r, &n) || n > TOTPREC_RECOVERY) {
        *why = "recovery is not an array of at most 10 hashes";
        return -EBADMSG;
    }
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *b;
        uint32_t bl;
        if (mpr_bin(r, &b, &bl) || bl != TOTPREC_HASH) {
            *why = "a recovery hash is not 32 bytes";
            return -EBADMSG;
        }
        memcpy(t->recovery[i], b, bl);
    }
    t->nrecovery = n;
    return 0;
}

int totprec_parse(const uint8_t *buf, size_t len, const char *name, totp_rec_t *t, const char **why)
{
    memset(t, 0, sizeof(*t));
    mpf_t fs[] = {
        {"name", MPF_STR, t->name, sizeof(t->name), true, false, NULL},
        {SECRET_FIELD, MPF_CUSTOM, t, 0, true, false, read_sealed},
        {"enrolled_ms", MPF_U64, &t->enrolled_ms, 0, true, false, NULL},
        {"salt", MPF_CUSTOM, t, 0, true, false, read_salt},
        {"recovery", MPF_CUSTOM, t, 0, false, false, read_recovery},
    };
    if (mpf_parse(buf, len, fs, sizeof(fs) / sizeof(fs[0]), why))
        return -EBADMSG;
    if (nodecfg_check_name(t->name) || strcmp(t->name, name)) {
        *why = "the record's name is not the valid name in its key";
        return -EBADMSG;
    }
    if (!t->enrolled_ms) {
        *why = "enrolled_ms is 0";
        return -EBADMSG;
    }
    return 0;
}

void totpuse_pack(msgpack_packer *pk, const totp_use_t *u)
{
    msgpack_pack_map(pk, 3);
    mpw_kv_u64(pk, "enrolled_ms", u->enrolled_ms);
    mpw_kv_u64(pk, "last_step", u->last_step);
    mpw_kv_u64(pk, "recovery_used", u->recovery_used);
}

int totpuse_parse(const uint8_t *buf, size_t len, totp_use_t *u, const char **why)
{
    memset(u, 0, sizeof(*u));
    mpf_t fs[] = {
        {"enrolled_ms", MPF_U64, &u->enrolled_ms, 0, true, false, NULL},
        {"last_step", MPF_U64, &u->last_step, 0, true, false, NULL},
        {"recovery_used", MPF_U64, &u->recovery_used, 0, false, false, NULL},
    };
    if (mpf_parse(buf, len, fs, sizeof(fs) / sizeof(fs[0]), why))
        return -EBADMSG;
    if (u->recovery_used >> TOTPREC_RECOVERY) {
        *why = "recovery_used names a code that does not exist";
        return -EBADMSG;
    }
    return 0;
}

int totprec_seal(const storeseal_t *k, totp_rec_t *t, const uint8_t secret[TOTPREC_SECRET])
{
    char key[TOTPREC_KEY_MAX];
    uint8_t *out;
    size_t outlen;
    if (totprec_key(t->name, key, sizeof(key)))
        return -EINVAL;
    int rc =
        storeseal_seal(k, key, strlen(key), SECRET_FIELD, secret, TOTPREC_SECRET, &out, &outlen);
    if (rc)
        return rc;
    if (outlen > sizeof(t->sealed)) { /* cannot happen: the sizes are pinned */
        free(out);
        return -EINVAL;
    }
    memcpy(t->sealed, out, outlen);
    t->sealed_len = outlen;
    free(out);
    return 0;
}

int totprec_open(const storeseal_t *k, const totp_rec_t *t, uint8_t secret[TOTPREC_SECRET])
{
    char key[TOTPREC_KEY_MAX];
    uint8_t *plain;
    size_t plainlen;
    if (totprec_key(t->name, key, sizeof(key)))
        return -EINVAL;
    int rc = storeseal_open(k, key, strlen(key), SECRET_FIELD, t->sealed, t->sealed_len, &plain,
                            &plainlen, NULL);
    if (rc)
        return rc;
    if (plainlen != TOTPREC_SECRET)
        rc = -EBADMSG;
    else
        memcpy(secret, plain, TOTPREC_SECRET);
    sodium_memzero(plain, plainlen);
    free(plain);
    return rc;
}

int totprec_get(store_t *store, const char *name, totp_rec_t *t)
{
    char key[TOTPREC_KEY_MAX];
    store_entry_t e;
    if (totprec_key(name, key, sizeof(key)))
        return -ENOENT;
    int rc = store_get(store, key, strlen(key), &e);
    if (rc)
        return rc;
    const char *why = "";
    rc = totprec_parse(e.value, e.vlen, name, t, &why);
    store_entry_free(&e);
    if (rc) {
        char ek[LOG_ESC_MAX];
        log_warn("auth: record %s is unreadable: %s", log_escs(ek, sizeof(ek), key), why);
    }
    return rc;
}

int totpuse_get(store_t *store, const char *name, uint64_t enrolled_ms, totp_use_t *u)
{
    char key[TOTPREC_KEY_MAX];
    store_entry_t e;
    memset(u, 0, sizeof(*u));
    u->enrolled_ms = enrolled_ms;
    if (totpuse_key(name, key, sizeof(key)))
        return -EINVAL;
    int rc = store_get(store, key, strlen(key), &e);
    if (rc == -ENOENT)
        return 0;
    if (rc)
        return rc;
    const char *why = "";
    totp_use_t got;
    rc = totpuse_parse(e.value, e.vlen, &got, &why);
    store_entry_free(&e);
    if (rc) {
        char ek[LOG_ESC_MAX];
        log_warn("auth: record %s is unreadable: %s", log_escs(ek, sizeof(ek), key), why);
        return rc;
    }
    if (got.enrolled_ms == enrolled_ms)
        *u = got;
    return 0;
}
