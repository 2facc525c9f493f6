/* user: see user.h.
 *
 * The decoder is common/mpfields' table (unknown keys skipped, duplicates refused); what it
 * cannot say in the table (the groups array, the name against the key, a hash for a live
 * user) is checked after it, so a record replicated from another node is held to the rules
 * user.add applies. */
#include "node/records/user.h"

#include "common/log.h"
#include "common/logesc.h"
#include "common/mp.h"
#include "common/mpfields.h"
#include "common/xmalloc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool name_ok(const char *s)
{
    return nodecfg_check_name(s) == 0;
}

bool auth_user_is_external(const char *s)
{
    return strchr(s, ':') != NULL;
}

bool auth_user_name_ok(const char *s)
{
    const char *colon = strchr(s, ':');
    if (!colon)
        return name_ok(s);
    size_t il = (size_t)(colon - s), l = strlen(s);
    char idp[NODECFG_NAME_MAX + 1];
    if (il == 0 || il > NODECFG_NAME_MAX || l > NODECFG_NAME_MAX || !colon[1])
        return false;
    memcpy(idp, s, il);
    idp[il] = '\0';
    if (!name_ok(idp))
        return false;
    for (const char *p = colon + 1; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              strchr("._@|+=-", *p)))
            return false;
    return true;
}

/* An email or a display name: printable (UTF-8 allowed in a name), no control bytes. */
static bool text_ok(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return false;
    return true;
}

int auth_user_key(const char *name, char *out, size_t len)
{
    if (!auth_user_name_ok(name))
        return -EINVAL;
    int n = snprintf(out, len, AUTH_USER_PREFIX "%s", name);
    return n < 0 || (size_t)n >= len ? -EINVAL : 0;
}

void auth_user_pack(msgpack_packer *pk, const auth_user_t *u)
{
    msgpack_pack_map(pk, 7 + !!u->email[0] + !!u->display_name[0]);
    mpw_kv_str(pk, "name", u->name);
    mpw_str(pk, "groups");
    msgpack_pack_array(pk, u->ngroups);
    for (unsigned i = 0; i < u->ngroups; i++)
        mpw_str(pk, u->groups[i]);
    mpw_kv_str(pk, "pwhash", u->pwhash);
    mpw_kv_u64(pk, "created_ms", u->created_ms);
    mpw_kv_u64(pk, "session_epoch", u->session_epoch);
    mpw_kv_bool(pk, "removed", u->removed);
    mpw_kv_bool(pk, "admin", u->admin);
    if (u->email[0])
        mpw_kv_str(pk, "email", u->email);
    if (u->display_name[0])
        mpw_kv_str(pk, "display_name", u->display_name);
}

static int read_groups(mpr_t *r, void *dst, const char **why)
{
    auth_user_t *u = dst;
    uint32_t n;
    if (mpr_array(r, &n)) {
        *why = "groups is not an array";
        return -EBADMSG;
    }
    if (n > AUTH_GROUPS_MAX) {
        *why = "more than 16 groups";
        return -EBADMSG;
    }
    for (uint32_t i = 0; i < n; i++) {
        const char *s;
        uint32_t sl;
        if (mpr_str(r, &s, &sl) || sl > NODECFG_NAME_MAX || memchr(s, '\0', sl)) {
            *why = "a group is not a name";
            return -EBADMSG;
        }
        memcpy(u->groups[i], s, sl);
        u->groups[i][sl] = '\0';
        if (!name_ok(u->groups[i])) {
            *why = "a group is not a valid name";
            return -EBADMSG;
        }
        for (uint32_t j = 0; j < i; j++) {
            if (!strcmp(u->groups[i], u->groups[j])) {
                *why = "a group is listed twice";
                return -EBADMSG;
            }
        }
    }
    u->ngroups = n;
    return 0;
}

int auth_user_parse(const uint8_t *buf, size_t len, const char *name, auth_user_t *u,
                    const char **why)
{
    memset(u, 0, sizeof(*u));
    mpf_t fs[] = {
        {"name", MPF_STR, u->name, sizeof(u->name), true, false, NULL},
        {"groups", MPF_CUSTOM, u, 0, false, false, read_groups},
        {"pwhash", MPF_STR, u->pwhash, sizeof(u->pwhash), false, false, NULL},
        {"created_ms", MPF_U64, &u->created_ms, 0, false, false, NULL},
        {"session_epoch", MPF_U64, &u->session_epoch, 0, true, false, NULL},
        {"removed", MPF_BOOL, &u->removed, 0, false, false, NULL},
        {"admin", MPF_BOOL, &u->admin, 0, false, false, NULL},
        {"email", MPF_STR, u->email, sizeof(u->email), false, false, NULL},
        {"display_name", MPF_STR, u->display_name, sizeof(u->display_name), false, false, NULL},
    };
    if (mpf_parse(buf, len, fs, sizeof(fs) / sizeof(fs[0]), why))
        return -EBADMSG;
    if (!auth_user_name_ok(u->name)) {
        *why = "name is not a valid user name";
        return -EBADMSG;
    }
    if (strcmp(u->name, name) != 0) {
        *why = "the record's name is not the name in its key";
        return -EBADMSG;
    }
    /* A provider's user has no password at all; a local one always has a hash. */
    if (!u->removed && (auth_user_is_external(u->name) ? u->pwhash[0] != '\0'
                                                       : strncmp(u->pwhash, "$argon2id$", 10))) {
        *why = "a live user's pwhash is not an argon2id hash (or a provider's user has one)";
        return -EBADMSG;
    }
    if (!text_ok(u->email) || !text_ok(u->display_name)) {
        *why = "email or display_name holds a control character";
        return -EBADMSG;
    }
    return 0;
}

/* ---- the store --------------------------------------------------------------------------- */

int auth_user_get(store_t *store, const char *name, auth_user_t *u)
{
    char key[AUTH_KEY_MAX];
    store_entry_t e;
    if (auth_user_key(name, key, sizeof(key)))
        return -ENOENT; /* no valid record can be stored under an invalid name */
    int rc = store_get(store, key, strlen(key), &e);
    if (rc)
        return rc;
    const char *why = "";
    rc = auth_user_parse(e.value, e.vlen, name, u, &why);
    store_entry_free(&e);
    if (rc) {
        char ek[LOG_ESC_MAX];
        log_warn("auth: record %s is unreadable: %s", log_escs(ek, sizeof(ek), key), why);
    }
    return rc;
}

struct user_vec {
    auth_user_t *v;
    size_t n;
};

static int collect_user(const store_entry_t *e, void *ctx)
{
    struct user_vec *uv = ctx;
    size_t pl = strlen(AUTH_USER_PREFIX), nl = e->klen - pl;
    char name[NODECFG_NAME_MAX + 1];
    const char *why = "the key's name is too long";
    if (nl <= NODECFG_NAME_MAX) {
        memcpy(name, e->key + pl, nl);
        name[nl] = '\0';
        uv->v = xrealloc(uv->v, (uv->n + 1) * sizeof(*uv->v));
        if (auth_user_parse(e->value, e->vlen, name, &uv->v[uv->n], &why) == 0) {
            uv->n++;
            return 0;
        }
    }
    char ek[LOG_ESC_MAX];
    log_warn("auth: skipping unreadable record %s: %s", log_esc(ek, sizeof(ek), e->key, e->klen),
             why);
    return 0;
}

int auth_user_list(store_t *store, auth_user_t **out, size_t *n)
{
    struct user_vec uv = {0};
    int rc = store_list(store, AUTH_USER_PREFIX, strlen(AUTH_USER_PREFIX), collect_user, &uv);
    if (rc) {
        free(uv.v);
        uv.v = NULL;
        uv.n = 0;
    }
    *out = uv.v;
    *n = uv.n;
    return rc;
}
