/* apikey: see apikey.h. The codec only; making keys and checking bearer tokens against these
 * records is node/auth/apikey.c. */
#include "node/records/apikey.h"

#include "common/mp.h"
#include "common/mpfields.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

void auth_apikey_key(uint64_t id, char *out, size_t len)
{
    snprintf(out, len, AUTH_APIKEY_PREFIX "%016llx", (unsigned long long)id);
}

void auth_apikey_pack(msgpack_packer *pk, const auth_apikey_t *a)
{
    msgpack_pack_map(pk, 6);
    mpw_kv_str(pk, "user", a->user);
    mpw_kv_bin(pk, "hash", a->hash, 32);
    mpw_kv_u64(pk, "expires_ms", a->expires_ms);
    mpw_kv_u64(pk, "created_ms", a->created_ms);
    mpw_kv_bool(pk, "revoked", a->revoked);
    mpw_kv_bool(pk, "admin", a->admin);
}

int auth_apikey_parse(const uint8_t *buf, size_t len, uint64_t id, auth_apikey_t *a,
                      const char **why)
{
    memset(a, 0, sizeof(*a));
    mpf_t fs[] = {
        {"user", MPF_STR, a->user, sizeof(a->user), true, false, NULL},
        {"hash", MPF_BIN32, a->hash, 0, true, false, NULL},
        {"expires_ms", MPF_U64, &a->expires_ms, 0, true, false, NULL},
        {"created_ms", MPF_U64, &a->created_ms, 0, false, false, NULL},
        {"revoked", MPF_BOOL, &a->revoked, 0, false, false, NULL},
        {"admin", MPF_BOOL, &a->admin, 0, false, false, NULL},
    };
    if (mpf_parse(buf, len, fs, sizeof(fs) / sizeof(fs[0]), why))
        return -EBADMSG;
    if (nodecfg_check_name(a->user) != 0) {
        *why = "user is not a valid user name";
        return -EBADMSG;
    }
    a->id = id;
    return 0;
}
