/* authadmin: the operator commands of edge authentication.
 *
 *   user.add       {name, password, groups?, admin?} -> {name, groups, session_epoch, admin}
 *   user.list      {}                             -> {users: [{name, groups, created_ms,
 *                                                     session_epoch, admin}]}
 *   user.set       {name, admin}                  -> {name, admin}
 *   user.rm        {name}                         -> {name, session_epoch}
 *   user.passwd    {name, password}               -> {name, session_epoch}
 *   session.revoke {user}                         -> {user, session_epoch}
 *   share.create   {resource, ttl_ms?}            -> {resource, token, expires_ms, url?}
 *   apikey.create  {user, ttl_ms?, admin?}        -> {id, token, user, expires_ms, admin}
 *   apikey.list    {}                             -> {apikeys: [{id, user, state, admin, ...}]}
 *   apikey.revoke  {id}                           -> {id}
 *   rule.add       {resource, action, cidr|path, priority?} -> the rule with its id
 *   rule.list      {resource?}                    -> {rules: [...]}
 *   rule.rm        {id}                           -> {id, resource}
 *
 * BACKGROUND
 *
 * Secrets: a password arrives in user.add/user.passwd and leaves only as an argon2id hash; the
 * request buffer is the control server's, the copy made here is wiped. An API key's secret and
 * a share token are answered once and never stored or logged (the API key record holds a hash).
 * Log lines name users, ids and resources, never a secret.
 *
 * Revocation is a write of the user record with session_epoch + 1: user.rm, user.passwd and
 * session.revoke all do it, and user.add of a removed name starts above the old epoch, so a
 * cookie made for an earlier holder of the name never becomes valid again.
 *
 * Cost: hashing a password takes argon2id's interactive cost (64 MiB, about 0.1 s) on the loop
 * thread. That is acceptable for an operator command, which is rare and local; client logins
 * in the proxy must not do it on the loop.
 *
 * The admin flag (user.add --admin, user.set, apikey.create --admin) opens the admin listener's
 * status page (node/admin). It is read from the record on every admin request, so turning it
 * off takes effect without revoking the user's sessions; an admin API key works only while its
 * user is an admin too, so it is refused for a user who is not.
 *
 * Every check runs against this node's view of the store; two operators adding the same user
 * on two nodes at once both succeed locally and last-writer-wins decides, as for sites. */
#include "node/auth/authadmin.h"

#include "common/clock.h"
#include "common/log.h"
#include "common/mp.h"
#include "common/netaddr.h"
#include "common/xmalloc.h"
#include "node/auth/auth.h"
#include "node/records/authrec.h"
#include "node/membership/meshnode.h"
#include "node/records/resource.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SHARE_TTL_DEFAULT (24ull * 3600 * 1000)            /* ms */
#define APIKEY_TTL_MAX    (10ull * 365 * 24 * 3600 * 1000) /* ms */
#define NAME_RULE         "1-63 of a-z, 0-9 and '-', not starting or ending with '-'"

/* ---- arguments ---------------------------------------------------------------------------- */

/* Argument arg as a valid name into name, else a CTL_BAD_REQUEST answer (returned). */
static int arg_name(const ctl_request_t *req, msgpack_packer *pk, const char *arg, const char *what,
                    char *name)
{
    char buf[256];
    int rc = ctl_arg_copy(req, arg, buf, sizeof(buf));
    if (rc == 0)
        return control_error(pk, CTL_BAD_REQUEST, "missing argument '%s' (the %s)", arg, what);
    if (rc < 0 || nodecfg_check_name(buf))
        return control_error(pk, CTL_BAD_REQUEST, "%s '%s' is invalid (" NAME_RULE ")", what,
                             rc < 0 ? "?" : buf);
    memcpy(name, buf, strlen(buf) + 1);
    return CTL_OK;
}

/* The password argument into pw (AUTH_PASSWORD_MAX + 1 bytes), else an answer. The message
 * never repeats the password. */
static int arg_password(const ctl_request_t *req, msgpack_packer *pk, char *pw, size_t *pwlen)
{
    const char *s;
    uint32_t sl;
    int rc = ctl_arg_str(req, "password", &s, &sl);
    if (rc == 0)
        return control_error(pk, CTL_BAD_REQUEST, "missing argument 'password'");
    if (rc < 0)
        return control_error(pk, CTL_BAD_REQUEST, "password must be a string");
    if (sl < AUTH_PASSWORD_MIN || sl > AUTH_PASSWORD_MAX)
        return control_error(pk, CTL_BAD_REQUEST, "a password is %d to %d bytes, not %u",
                             AUTH_PASSWORD_MIN, AUTH_PASSWORD_MAX, sl);
    memcpy(pw, s, sl);
    pw[sl] = '\0';
    *pwlen = sl;
    return CTL_OK;
}

/* ttl_ms argument: default dflt, 1..max. */
static int arg_ttl(const ctl_request_t *req, msgpack_packer *pk, uint64_t dflt, uint64_t max,
                   uint64_t *ttl)
{
    *ttl = dflt;
    int rc = ctl_arg_uint(req, "ttl_ms", ttl);
    if (rc < 0 || (rc == 1 && (*ttl == 0 || *ttl > max)))
        return control_error(pk, CTL_BAD_REQUEST, "ttl must be between 1 ms and %llu days",
                             (unsigned long long)(max / (24ull * 3600 * 1000)));
    return CTL_OK;
}

static int put_packed(authadmin_t *a, const char *key, void (*pack)(msgpack_packer *, const void *),
                      const void *rec)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    pack(&pk, rec);
    int rc = meshnode_put_record(a->mesh, key, &sb);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

static void pack_user_v(msgpack_packer *pk, const void *u)
{
    auth_user_pack(pk, u);
}

static void pack_apikey_v(msgpack_packer *pk, const void *k)
{
    auth_apikey_pack(pk, k);
}

static void pack_rule_v(msgpack_packer *pk, const void *r)
{
    auth_rule_pack(pk, r);
}

/* 1 found, 0 absent, -EINVAL not a bool. */
static int arg_bool(const ctl_request_t *req, const char *name, bool *v)
{
    const uint8_t *val;
    size_t vl;
    int rc = ctl_arg(req, name, &val, &vl);
    if (rc <= 0)
        return rc;
    mpr_t r;
    mpr_init(&r, val, vl);
    return mpr_bool(&r, v) == 0 ? 1 : -EINVAL;
}

static int put_user(authadmin_t *a, const auth_user_t *u)
{
    char key[AUTH_KEY_MAX];
    if (auth_user_key(u->name, key, sizeof(key)))
        return -EINVAL;
    return put_packed(a, key, pack_user_v, u);
}

static void pack_id(msgpack_packer *pk, const char *key, uint64_t id)
{
    char hex[17];
    identity_id_hex(id, hex);
    mpw_kv_str(pk, key, hex);
}

static void pack_groups(msgpack_packer *pk, const auth_user_t *u)
{
    mpw_str(pk, "groups");
    msgpack_pack_array(pk, u->ngroups);
    for (unsigned i = 0; i < u->ngroups; i++)
        mpw_str(pk, u->groups[i]);
}

/* A live user, else an answer: CTL_NOT_FOUND or CTL_FAILED. */
static int live_user(authadmin_t *a, msgpack_packer *pk, const char *name, auth_user_t *u)
{
    store_t *store = meshnode_store(a->mesh);
    int rc = auth_user_get(store, name, u);
    if (rc == -ENOENT || (rc == 0 && u->removed))
        return control_error(pk, CTL_NOT_FOUND, "no user '%s' (meshctl user list shows them)",
                             name);
    if (rc)
        return control_error(pk, CTL_FAILED, "user '%s' is unreadable here", name);
    return CTL_OK;
}

/* ---- users -------------------------------------------------------------------------------- */

static int arg_groups(const ctl_request_t *req, msgpack_packer *pk, auth_user_t *u)
{
    const uint8_t *val;
    size_t vl;
    uint32_t n;
    mpr_t mr;
    int rc = ctl_arg(req, "groups", &val, &vl);
    if (rc <= 0)
        return rc == 0 ? CTL_OK
                       : control_error(pk, CTL_BAD_REQUEST, "groups must be a list of names");
    mpr_init(&mr, val, vl);
    if (mpr_array(&mr, &n) || n > AUTH_GROUPS_MAX)
        return control_error(pk, CTL_BAD_REQUEST, "groups must be a list of at most %d names",
                             AUTH_GROUPS_MAX);
    for (uint32_t i = 0; i < n; i++) {
        const char *s;
        uint32_t sl;
        if (mpr_str(&mr, &s, &sl) || sl > NODECFG_NAME_MAX || memchr(s, '\0', sl))
            return control_error(pk, CTL_BAD_REQUEST, "group %u is not a name (" NAME_RULE ")",
                                 i + 1);
        memcpy(u->groups[i], s, sl);
        u->groups[i][sl] = '\0';
        if (nodecfg_check_name(u->groups[i]))
            return control_error(pk, CTL_BAD_REQUEST, "group '%s' is invalid (" NAME_RULE ")",
                                 u->groups[i]);
        for (uint32_t j = 0; j < i; j++)
            if (!strcmp(u->groups[i], u->groups[j]))
                return control_error(pk, CTL_BAD_REQUEST, "group '%s' is listed twice",
                                     u->groups[i]);
    }
    u->ngroups = n;
    return CTL_OK;
}

static int cmd_user_add(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    authadmin_t *a = ctx;
    store_t *store = meshnode_store(a->mesh);
    auth_user_t *u = xcalloc(1, sizeof(*u)), old;
    char pw[AUTH_PASSWORD_MAX + 1];
    size_t pwlen = 0;
    int rc = arg_name(req, pk, "name", "user name", u->name);
    if (rc != CTL_OK)
        goto out;
    if ((rc = arg_groups(req, pk, u)) != CTL_OK)
        goto out;
    if ((rc = arg_password(req, pk, pw, &pwlen)) != CTL_OK)
        goto out;
    if (arg_bool(req, "admin", &u->admin) < 0) {
        rc = control_error(pk, CTL_BAD_REQUEST, "admin must be true or false");
        goto out;
    }
    int orc = auth_user_get(store, u->name, &old);
    if (orc == 0 && !old.removed) {
        rc = control_error(pk, CTL_REFUSED,
                           "user '%s' already exists; change the password with meshctl user "
                           "passwd %s, or remove the user first",
                           u->name, u->name);
        goto out;
    }
    if (orc != 0 && orc != -ENOENT && orc != -EBADMSG) {
        rc = control_error(pk, CTL_FAILED, "cannot read user '%s': %s", u->name,
                           store_last_error(store));
        goto out;
    }
    if (auth_password_hash(pw, pwlen, u->pwhash, sizeof(u->pwhash))) {
        rc = control_error(pk, CTL_FAILED, "cannot hash the password (out of memory?)");
        goto out;
    }
    u->created_ms = clock_wall_ms();
    /* Above any epoch the name had, so an earlier holder's cookies stay dead. */
    u->session_epoch = orc == 0 ? old.session_epoch + 1 : 0;
    if (put_user(a, u)) {
        rc = control_error(pk, CTL_FAILED, "cannot store user '%s': %s", u->name,
                           store_last_error(store));
        goto out;
    }
    msgpack_pack_map(pk, 4);
    mpw_kv_str(pk, "name", u->name);
    pack_groups(pk, u);
    mpw_kv_u64(pk, "session_epoch", u->session_epoch);
    mpw_kv_bool(pk, "admin", u->admin);
    log_info("auth: user %s added (%u group(s)%s)", u->name, u->ngroups,
             u->admin ? ", admin" : "");
    rc = CTL_OK;
out:
    sodium_memzero(pw, sizeof(pw));
    sodium_memzero(u, sizeof(*u));
    free(u);
    return rc;
}

static int cmd_user_list(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    authadmin_t *a = ctx;
    store_t *store = meshnode_store(a->mesh);
    auth_user_t *all;
    size_t n, live = 0;
    if (auth_user_list(store, &all, &n))
        return control_error(pk, CTL_FAILED, "cannot list users: %s", store_last_error(store));
    for (size_t i = 0; i < n; i++)
        live += !all[i].removed;
    msgpack_pack_map(pk, 1);
    mpw_str(pk, "users");
    msgpack_pack_array(pk, live);
    for (size_t i = 0; i < n; i++) {
        if (all[i].removed)
            continue;
        msgpack_pack_map(pk, 5); /* never the hash */
        mpw_kv_str(pk, "name", all[i].name);
        pack_groups(pk, &all[i]);
        mpw_kv_u64(pk, "created_ms", all[i].created_ms);
        mpw_kv_u64(pk, "session_epoch", all[i].session_epoch);
        mpw_kv_bool(pk, "admin", all[i].admin);
    }
    sodium_memzero(all, n * sizeof(*all));
    free(all);
    return CTL_OK;
}

/* Writes u with session_epoch + 1 and answers {key: name, session_epoch}. */
static int bump_epoch(authadmin_t *a, msgpack_packer *pk, auth_user_t *u, const char *key,
                      const char *what)
{
    u->session_epoch++;
    if (put_user(a, u))
        return control_error(pk, CTL_FAILED, "cannot store user '%s': %s", u->name,
                             store_last_error(meshnode_store(a->mesh)));
    msgpack_pack_map(pk, 2);
    mpw_kv_str(pk, key, u->name);
    mpw_kv_u64(pk, "session_epoch", u->session_epoch);
    log_info("auth: user %s: %s (session epoch now %llu)", u->name, what,
             (unsigned long long)u->session_epoch);
    return CTL_OK;
}

static int cmd_user_rm(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    authadmin_t *a = ctx;
    auth_user_t u;
    char name[NODECFG_NAME_MAX + 1];
    int rc = arg_name(req, pk, "name", "user name", name);
    if (rc == CTL_OK)
        rc = live_user(a, pk, name, &u);
    if (rc != CTL_OK)
        return rc;
    /* Kept as a removed record, not deleted: the epoch must survive for a later user.add. */
    u.removed = true;
    u.pwhash[0] = '\0';
    rc = bump_epoch(a, pk, &u, "name", "removed, sessions revoked");
    sodium_memzero(&u, sizeof(u));
    return rc;
}

static int cmd_user_passwd(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    authadmin_t *a = ctx;
    auth_user_t u;
    char name[NODECFG_NAME_MAX + 1], pw[AUTH_PASSWORD_MAX + 1];
    size_t pwlen = 0;
    int rc = arg_name(req, pk, "name", "user name", name);
    if (rc == CTL_OK)
        rc = arg_password(req, pk, pw, &pwlen);
    if (rc == CTL_OK)
        rc = live_user(a, pk, name, &u);
    if (rc == CTL_OK) {
        if (auth_password_hash(pw, pwlen, u.pwhash, sizeof(u.pwhash)))
            rc = control_error(pk, CTL_FAILED, "cannot hash the password (out of memory?)");
        else
            rc = bump_epoch(a, pk, &u, "name", "password changed, sessions revoked");
    }
    sodium_memzero(pw, sizeof(pw));
    sodium_memzero(&u, sizeof(u));
    return rc;
}

/* Changes what a user may do, not who they are: the sessions stay (the flag is read on every
 * admin request, so taking it away closes the status page at once). */
static int cmd_user_set(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    authadmin_t *a = ctx;
    auth_user_t u;
    char name[NODECFG_NAME_MAX + 1];
    bool admin = false;
    int rc = arg_name(req, pk, "name", "user name", name);
    if (rc != CTL_OK)
        return rc;
    int arc = arg_bool(req, "admin", &admin);
    if (arc < 0)
        return control_error(pk, CTL_BAD_REQUEST, "admin must be true or false");
    if (arc == 0)
        return control_error(pk, CTL_BAD_REQUEST, "nothing to set: give admin (true or false)");
    if ((rc = live_user(a, pk, name, &u)) != CTL_OK)
        return rc;
    bool was = u.admin;
    u.admin = admin;
    if (was != admin && put_user(a, &u)) {
        sodium_memzero(&u, sizeof(u));
        return control_error(pk, CTL_FAILED, "cannot store user '%s': %s", name,
                             store_last_error(meshnode_store(a->mesh)));
    }
    sodium_memzero(&u, sizeof(u));
    msgpack_pack_map(pk, 2);
    mpw_kv_str(pk, "name", name);
    mpw_kv_bool(pk, "admin", admin);
    if (was != admin)
        log_info("auth: user %s: admin %s", name, admin ? "granted" : "taken away");
    return CTL_OK;
}

static int cmd_session_revoke(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    authadmin_t *a = ctx;
    auth_user_t u;
    char name[NODECFG_NAME_MAX + 1];
    int rc = arg_name(req, pk, "user", "user name", name);
    if (rc == CTL_OK)
        rc = live_user(a, pk, name, &u);
    if (rc != CTL_OK)
        return rc;
    rc = bump_epoch(a, pk, &u, "user", "sessions revoked");
    sodium_memzero(&u, sizeof(u));
    return rc;
}

/* ---- share links -------------------------------------------------------------------------- */

static int cmd_share_create(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    authadmin_t *a = ctx;
    store_t *store = meshnode_store(a->mesh);
    char name[NODECFG_NAME_MAX + 1], token[AUTH_TOKEN_MAX + 1];
    uint64_t ttl;
    resource_t *r = xcalloc(1, sizeof(*r));
    int rc = arg_name(req, pk, "resource", "resource name", name);
    if (rc == CTL_OK)
        rc = arg_ttl(req, pk, SHARE_TTL_DEFAULT, AUTH_SHARE_TTL_MAX, &ttl);
    if (rc != CTL_OK)
        goto out;
    int grc = resource_get(store, name, r);
    if (grc) {
        rc = control_error(pk, grc == -ENOENT ? CTL_NOT_FOUND : CTL_FAILED,
                           grc == -ENOENT ? "there is no resource '%s' (meshctl resource list)"
                                          : "resource '%s' is unreadable here",
                           name);
        goto out;
    }
    uint64_t expires = clock_wall_ms() + ttl;
    const char *why = "";
    int mrc = a->keys ? auth_link_make(a->keys, name, clock_wall_ms(), expires, token,
                                       sizeof(token), &why)
                      : auth_share_make(a->meshkey, name, expires, token, sizeof(token));
    if (mrc) {
        rc = control_error(pk, mrc == -EPERM ? CTL_REFUSED : CTL_FAILED,
                           mrc == -EPERM ? "this PoP may not sign share links (%s): create the "
                                           "link at a PoP that holds issue-sessions"
                                         : "cannot make a share token for '%s'",
                           mrc == -EPERM ? why : name);
        goto out;
    }
    /* With a host (an HTTP resource) the link opens the resource through the ingress;
     * resource_check has made sure host is a plain lowercase DNS name. */
    const char *host = r->host;
    msgpack_pack_map(pk, host[0] ? 4 : 3);
    mpw_kv_str(pk, "resource", name);
    mpw_kv_str(pk, "token", token);
    mpw_kv_u64(pk, "expires_ms", expires);
    if (host[0]) {
        /* The ingress speaks plain HTTP (TLS in front of it is the operator's); the port is
         * this PoP's, which every PoP of a fleet usually shares. */
        netaddr_t listen;
        char port[8] = "";
        if (a->http_listen && netaddr_parse(a->http_listen, &listen, false) == 0 &&
            listen.port != 80)
            snprintf(port, sizeof(port), ":%u", listen.port);
        char url[RESOURCE_HOST_MAX + AUTH_TOKEN_MAX + 64];
        snprintf(url, sizeof(url), "http://%s%s/.popmesh/share?t=%s", host, port, token);
        mpw_kv_str(pk, "url", url);
        sodium_memzero(url, sizeof(url));
    }
    log_info("auth: share link for resource %s made, expires in %llu s", name,
             (unsigned long long)(ttl / 1000));
    rc = CTL_OK;
out:
    sodium_memzero(token, sizeof(token));
    free(r);
    return rc;
}

/* ---- API keys ----------------------------------------------------------------------------- */

static int cmd_apikey_create(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    authadmin_t *a = ctx;
    store_t *store = meshnode_store(a->mesh);
    char name[NODECFG_NAME_MAX + 1], text[AUTH_APIKEY_TEXT + 1], key[AUTH_KEY_MAX];
    uint64_t ttl = 0;
    auth_user_t u = {0};
    auth_apikey_t k;
    bool admin = false;
    int rc = arg_name(req, pk, "user", "user name", name);
    if (rc == CTL_OK && ctl_arg(req, "ttl_ms", &(const uint8_t *){0}, &(size_t){0}) == 1)
        rc = arg_ttl(req, pk, 0, APIKEY_TTL_MAX, &ttl);
    if (rc == CTL_OK && arg_bool(req, "admin", &admin) < 0)
        rc = control_error(pk, CTL_BAD_REQUEST, "admin must be true or false");
    if (rc == CTL_OK)
        rc = live_user(a, pk, name, &u);
    bool user_admin = u.admin;
    sodium_memzero(&u, sizeof(u));
    if (rc != CTL_OK)
        return rc;
    if (admin && !user_admin)
        return control_error(pk, CTL_REFUSED,
                             "user '%s' is not an admin, so an admin key of theirs would be "
                             "refused: meshctl user set %s --admin on first",
                             name, name);
    uint64_t now = clock_wall_ms();
    if (auth_apikey_new(name, now, ttl, &k, text, sizeof(text)))
        return control_error(pk, CTL_FAILED, "cannot make an API key");
    k.admin = admin;
    auth_apikey_key(k.id, key, sizeof(key));
    if (put_packed(a, key, pack_apikey_v, &k)) {
        sodium_memzero(text, sizeof(text));
        return control_error(pk, CTL_FAILED, "cannot store the API key: %s",
                             store_last_error(store));
    }
    msgpack_pack_map(pk, 5);
    pack_id(pk, "id", k.id);
    mpw_kv_str(pk, "token", text);
    mpw_kv_str(pk, "user", name);
    mpw_kv_u64(pk, "expires_ms", k.expires_ms);
    mpw_kv_bool(pk, "admin", k.admin);
    sodium_memzero(text, sizeof(text));
    log_info("auth: %sAPI key %016llx made for user %s", k.admin ? "admin " : "",
             (unsigned long long)k.id, name);
    return CTL_OK;
}

struct key_vec {
    auth_apikey_t *v;
    size_t n;
};

static int collect_apikey(const store_entry_t *e, void *ctx)
{
    struct key_vec *kv = ctx;
    size_t pl = strlen(AUTH_APIKEY_PREFIX);
    const char *why = "the key is not apikey/<16 hex>";
    uint64_t id = 0;
    if (e->klen >= pl && authrec_id_parse(e->key + pl, e->klen - pl, &id) == 0) {
        kv->v = xrealloc(kv->v, (kv->n + 1) * sizeof(*kv->v));
        if (auth_apikey_parse(e->value, e->vlen, id, &kv->v[kv->n], &why) == 0) {
            kv->n++;
            return 0;
        }
    }
    log_warn("auth: skipping unreadable record %.*s: %s", (int)e->klen, e->key, why);
    return 0;
}

static int cmd_apikey_list(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    authadmin_t *a = ctx;
    store_t *store = meshnode_store(a->mesh);
    struct key_vec kv = {0};
    if (store_list(store, AUTH_APIKEY_PREFIX, strlen(AUTH_APIKEY_PREFIX), collect_apikey, &kv)) {
        free(kv.v);
        return control_error(pk, CTL_FAILED, "cannot list API keys: %s", store_last_error(store));
    }
    uint64_t now = clock_wall_ms();
    msgpack_pack_map(pk, 1);
    mpw_str(pk, "apikeys");
    msgpack_pack_array(pk, kv.n);
    for (size_t i = 0; i < kv.n; i++) {
        const auth_apikey_t *k = &kv.v[i];
        msgpack_pack_map(pk, 7); /* never the hash */
        pack_id(pk, "id", k->id);
        mpw_kv_bool(pk, "admin", k->admin);
        mpw_kv_str(pk, "user", k->user);
        mpw_kv_u64(pk, "created_ms", k->created_ms);
        mpw_kv_u64(pk, "expires_ms", k->expires_ms);
        mpw_kv_bool(pk, "revoked", k->revoked);
        mpw_kv_str(pk, "state",
                   k->revoked                              ? "revoked"
                   : k->expires_ms && now >= k->expires_ms ? "expired"
                                                           : "active");
    }
    free(kv.v);
    return CTL_OK;
}

/* The "id" argument as 16 hex digits, else an answer. */
static int arg_id(const ctl_request_t *req, msgpack_packer *pk, const char *what, uint64_t *id)
{
    char buf[64];
    int rc = ctl_arg_copy(req, "id", buf, sizeof(buf));
    if (rc == 0)
        return control_error(pk, CTL_BAD_REQUEST, "missing argument 'id' (the %s's id)", what);
    if (rc < 0 || authrec_id_parse(buf, strlen(buf), id))
        return control_error(pk, CTL_BAD_REQUEST, "a %s id is 16 lowercase hex digits", what);
    return CTL_OK;
}

static int cmd_apikey_revoke(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    authadmin_t *a = ctx;
    store_t *store = meshnode_store(a->mesh);
    char key[AUTH_KEY_MAX];
    uint64_t id;
    store_entry_t e;
    auth_apikey_t k;
    const char *why = "";
    int rc = arg_id(req, pk, "API key", &id);
    if (rc != CTL_OK)
        return rc;
    auth_apikey_key(id, key, sizeof(key));
    rc = store_get(store, key, strlen(key), &e);
    if (rc == -ENOENT)
        return control_error(pk, CTL_NOT_FOUND, "no API key %016llx (meshctl apikey list)",
                             (unsigned long long)id);
    if (rc)
        return control_error(pk, CTL_FAILED, "cannot read API key %016llx: %s",
                             (unsigned long long)id, store_last_error(store));
    rc = auth_apikey_parse(e.value, e.vlen, id, &k, &why);
    store_entry_free(&e);
    if (rc)
        return control_error(pk, CTL_FAILED, "API key %016llx is unreadable here: %s",
                             (unsigned long long)id, why);
    if (!k.revoked) {
        k.revoked = true;
        if (put_packed(a, key, pack_apikey_v, &k))
            return control_error(pk, CTL_FAILED, "cannot store API key %016llx: %s",
                                 (unsigned long long)id, store_last_error(store));
        log_info("auth: API key %016llx (user %s) revoked", (unsigned long long)id, k.user);
    }
    msgpack_pack_map(pk, 2);
    pack_id(pk, "id", id);
    mpw_kv_str(pk, "user", k.user);
    return CTL_OK;
}

/* ---- rules -------------------------------------------------------------------------------- */

static void pack_rule_answer(msgpack_packer *pk, const auth_rule_t *r)
{
    msgpack_pack_map(pk, 6);
    pack_id(pk, "id", r->id);
    mpw_kv_str(pk, "resource", r->resource);
    mpw_kv_str(pk, "action", r->action == AUTH_ALLOW ? "allow" : "deny");
    if (r->cidr[0])
        mpw_kv_str(pk, "cidr", r->cidr);
    else
        mpw_kv_str(pk, "path", r->path);
    mpw_str(pk, "priority");
    msgpack_pack_int64(pk, r->priority);
    mpw_kv_u64(pk, "created_ms", r->created_ms);
}

static int cmd_rule_add(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    authadmin_t *a = ctx;
    store_t *store = meshnode_store(a->mesh);
    auth_rule_t *r = xcalloc(1, sizeof(*r));
    resource_t *res = xcalloc(1, sizeof(*res));
    char action[16] = "", key[AUTH_KEY_MAX];
    const char *why = "";
    const uint8_t *val;
    size_t vl;
    int rc = arg_name(req, pk, "resource", "resource name", r->resource);
    if (rc != CTL_OK)
        goto out;
    int arc = ctl_arg_copy(req, "action", action, sizeof(action));
    if (arc <= 0 || (strcmp(action, "allow") && strcmp(action, "deny"))) {
        rc = control_error(pk, CTL_BAD_REQUEST, "action must be allow or deny");
        goto out;
    }
    r->action = strcmp(action, "allow") ? AUTH_DENY : AUTH_ALLOW;
    int crc = ctl_arg_copy(req, "cidr", r->cidr, sizeof(r->cidr));
    int prc = ctl_arg_copy(req, "path", r->path, sizeof(r->path));
    if (crc < 0 || prc < 0) {
        rc = control_error(pk, CTL_BAD_REQUEST,
                           crc < 0 ? "cidr must be ADDRESS/BITS (at most %d characters)"
                                   : "path must be a glob of at most %d characters",
                           crc < 0 ? AUTH_CIDR_MAX : AUTH_GLOB_MAX);
        goto out;
    }
    if ((crc == 1) == (prc == 1)) {
        rc = control_error(pk, CTL_BAD_REQUEST,
                           "a rule needs exactly one of cidr (ADDRESS/BITS) and path (a glob)");
        goto out;
    }
    if (ctl_arg(req, "priority", &val, &vl) == 1) {
        mpr_t mr;
        mpr_init(&mr, val, vl);
        if (mpr_int(&mr, &r->priority)) {
            rc = control_error(pk, CTL_BAD_REQUEST, "priority must be an integer");
            goto out;
        }
    }
    if (auth_rule_check(r, &why)) {
        rc = control_error(pk, CTL_BAD_REQUEST, "%s", why);
        goto out;
    }
    int grc = resource_get(store, r->resource, res);
    if (grc) {
        rc = control_error(pk, grc == -ENOENT ? CTL_NOT_FOUND : CTL_FAILED,
                           grc == -ENOENT ? "there is no resource '%s' (meshctl resource list)"
                                          : "resource '%s' is unreadable here",
                           r->resource);
        goto out;
    }
    do
        randombytes_buf(&r->id, sizeof(r->id));
    while (r->id == 0);
    r->created_ms = clock_wall_ms();
    auth_rule_key(r->resource, r->id, key, sizeof(key));
    if (put_packed(a, key, pack_rule_v, r)) {
        rc = control_error(pk, CTL_FAILED, "cannot store the rule: %s", store_last_error(store));
        goto out;
    }
    pack_rule_answer(pk, r);
    log_info("auth: rule %016llx added to %s: %s %s %s (priority %lld)", (unsigned long long)r->id,
             r->resource, action, r->cidr[0] ? "cidr" : "path", r->cidr[0] ? r->cidr : r->path,
             (long long)r->priority);
    rc = CTL_OK;
out:
    free(res);
    free(r);
    return rc;
}

static int cmd_rule_list(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    authadmin_t *a = ctx;
    store_t *store = meshnode_store(a->mesh);
    char name[NODECFG_NAME_MAX + 1] = "";
    auth_rule_t *rules;
    size_t n;
    if (ctl_arg(req, "resource", &(const uint8_t *){0}, &(size_t){0}) == 1) {
        int rc = arg_name(req, pk, "resource", "resource name", name);
        if (rc != CTL_OK)
            return rc;
    }
    if (auth_rules_load(store, name, &rules, &n))
        return control_error(pk, CTL_FAILED, "cannot list rules: %s", store_last_error(store));
    msgpack_pack_map(pk, 1);
    mpw_str(pk, "rules");
    msgpack_pack_array(pk, n);
    for (size_t i = 0; i < n; i++)
        pack_rule_answer(pk, &rules[i]);
    free(rules);
    return CTL_OK;
}

static int cmd_rule_rm(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    authadmin_t *a = ctx;
    store_t *store = meshnode_store(a->mesh);
    uint64_t id;
    auth_rule_t *rules;
    size_t n;
    int rc = arg_id(req, pk, "rule", &id);
    if (rc != CTL_OK)
        return rc;
    if (auth_rules_load(store, NULL, &rules, &n))
        return control_error(pk, CTL_FAILED, "cannot list rules: %s", store_last_error(store));
    char key[AUTH_KEY_MAX], resource[NODECFG_NAME_MAX + 1] = "";
    for (size_t i = 0; i < n && !resource[0]; i++)
        if (rules[i].id == id)
            memcpy(resource, rules[i].resource, sizeof(resource));
    free(rules);
    if (!resource[0])
        return control_error(pk, CTL_NOT_FOUND, "no rule %016llx (meshctl rule list)",
                             (unsigned long long)id);
    auth_rule_key(resource, id, key, sizeof(key));
    rc = meshnode_del_record(a->mesh, key, strlen(key), NULL);
    if (rc == -ENOENT)
        return control_error(pk, CTL_NOT_FOUND, "no rule %016llx (meshctl rule list)",
                             (unsigned long long)id);
    if (rc)
        return control_error(pk, CTL_FAILED, "cannot remove rule %016llx: %s",
                             (unsigned long long)id, store_last_error(store));
    msgpack_pack_map(pk, 2);
    pack_id(pk, "id", id);
    mpw_kv_str(pk, "resource", resource);
    log_info("auth: rule %016llx of %s removed", (unsigned long long)id, resource);
    return CTL_OK;
}

const control_command_t authadmin_commands[] = {
    {"user.add", cmd_user_add,
     "name: str, password: str [groups: [str]] [admin: bool] -> {name, groups, session_epoch, "
     "admin}"},
    {"user.list", cmd_user_list,
     "-> {users: [{name, groups, created_ms, session_epoch, admin}]}"},
    {"user.set", cmd_user_set,
     "name: str, admin: bool -> {name, admin}: admin opens the admin listener's status page"},
    {"user.rm", cmd_user_rm, "name: str -> {name, session_epoch}: removes, revokes sessions"},
    {"user.passwd", cmd_user_passwd,
     "name: str, password: str -> {name, session_epoch}: new password, sessions revoked"},
    {"session.revoke", cmd_session_revoke,
     "user: str -> {user, session_epoch}: every session of the user stops working"},
    {"share.create", cmd_share_create,
     "resource: str [ttl_ms: uint] -> {resource, token, expires_ms, [url]}"},
    {"apikey.create", cmd_apikey_create,
     "user: str [ttl_ms: uint] [admin: bool] -> {id, token, user, expires_ms, admin}: the token "
     "is shown once"},
    {"apikey.list", cmd_apikey_list,
     "-> {apikeys: [{id, admin, user, created_ms, expires_ms, revoked, state}]}"},
    {"apikey.revoke", cmd_apikey_revoke, "id: str -> {id, user}"},
    {"rule.add", cmd_rule_add,
     "resource: str, action: allow|deny, cidr: str | path: str [priority: int] -> the rule"},
    {"rule.list", cmd_rule_list, "[resource: str] -> {rules: [{id, resource, action, ...}]}"},
    {"rule.rm", cmd_rule_rm, "id: str -> {id, resource}"},
    {NULL, NULL, NULL},
};

int authadmin_register_commands(authadmin_t *a, control_t *ctl)
{
    return control_add_commands(ctl, authadmin_commands, a);
}
