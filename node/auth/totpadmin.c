/* totpadmin: see totpadmin.h.
 *
 * Enrolment answers the secret exactly once, inside the otpauth:// URI (meshctl shows it and
 * its QR code to the operator, who hands it to the user), with the ten recovery codes; the
 * store keeps the secret sealed and the codes hashed, and nothing here logs either.
 *
 * Enabling bumps the user's session epoch: every session that exists afterwards was made by a
 * sign-in that passed the code, which is what lets a resource with require_2fa trust any live
 * session of a user who has a second factor (docs/security.md, "Second factor"). Disabling
 * deletes both records; a session made with the code stays valid until it expires or is
 * revoked, but no longer opens a require_2fa resource. */
#include "node/auth/totpadmin.h"

#include "common/clock.h"
#include "common/log.h"
#include "common/mp.h"
#include "node/auth/idjwt.h"
#include "node/auth/totp.h"
#include "node/records/totprec.h"
#include "node/records/user.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#define TOTP_ISSUER_DEFAULT "popmesh"

static int put(meshnode_t *mesh, const char *key, msgpack_sbuffer *sb)
{
    return meshnode_put_record(mesh, key, sb);
}

/* The name argument of a live user into u, else an answer. */
static int live_user(totpadmin_t *a, const ctl_request_t *req, msgpack_packer *pk, auth_user_t *u)
{
    char name[256];
    int rc = ctl_arg_copy(req, "name", name, sizeof(name));
    if (rc == 0)
        return control_error(pk, CTL_BAD_REQUEST, "missing argument 'name' (the user name)");
    if (rc < 0 || nodecfg_check_name(name))
        return control_error(pk, CTL_BAD_REQUEST, "user name '%s' is invalid", rc < 0 ? "?" : name);
    rc = auth_user_get(meshnode_store(a->mesh), name, u);
    if (rc == -ENOENT || (rc == 0 && u->removed))
        return control_error(pk, CTL_NOT_FOUND, "no user '%s' (meshctl user list shows them)",
                             name);
    if (rc)
        return control_error(pk, CTL_FAILED, "user '%s' is unreadable here", name);
    return CTL_OK;
}

static int cmd_enable(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    totpadmin_t *a = ctx;
    store_t *store = meshnode_store(a->mesh);
    auth_user_t u;
    totp_rec_t t;
    uint8_t secret[TOTP_SECRET_BYTES];
    char codes[TOTP_RECOVERY_N][TOTP_RECOVERY_TEXT + 1], uri[TOTP_URI_MAX];
    char issuer[64] = TOTP_ISSUER_DEFAULT, key[TOTPREC_KEY_MAX];
    int rc = live_user(a, req, pk, &u);
    if (rc != CTL_OK)
        return rc;
    if (ctl_arg_copy(req, "issuer", issuer, sizeof(issuer)) < 0 || !issuer[0])
        return control_error(pk, CTL_BAD_REQUEST, "issuer must be a string of 1 to 63 bytes");
    if (totprec_get(store, u.name, &t) == 0)
        return control_error(pk, CTL_REFUSED,
                             "user '%s' already has TOTP; to enrol a new device run meshctl "
                             "user totp disable %s first",
                             u.name, u.name);
    memset(&t, 0, sizeof(t));
    memcpy(t.name, u.name, sizeof(t.name));
    t.enrolled_ms = clock_wall_ms();
    randombytes_buf(secret, sizeof(secret));
    randombytes_buf(t.salt, sizeof(t.salt));
    for (unsigned i = 0; i < TOTP_RECOVERY_N; i++) {
        char canon[TOTP_RECOVERY_CHARS + 1];
        totp_recovery_make(codes[i]);
        totp_recovery_parse(codes[i], strlen(codes[i]), canon);
        totp_recovery_hash(t.salt, canon, t.recovery[i]);
        sodium_memzero(canon, sizeof(canon));
    }
    t.nrecovery = TOTP_RECOVERY_N;
    rc = totprec_seal(a->seal, &t, secret);
    if (rc) {
        rc = control_error(pk, CTL_FAILED,
                           rc == -ENOKEY ? "this PoP has no store key to seal the secret with "
                                           "(run the command at another PoP)"
                                         : "cannot seal the TOTP secret");
        goto out;
    }
    if (totp_uri(issuer, u.name, secret, uri, sizeof(uri))) {
        rc = control_error(pk, CTL_BAD_REQUEST, "the issuer and user name make too long a URI");
        goto out;
    }
    msgpack_sbuffer sb;
    msgpack_packer rp;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&rp, &sb, msgpack_sbuffer_write);
    totprec_pack(&rp, &t);
    totprec_key(u.name, key, sizeof(key));
    int prc = put(a->mesh, key, &sb);
    msgpack_sbuffer_destroy(&sb);
    if (prc) {
        rc = control_error(pk, CTL_FAILED, "cannot store %s: %s", key, store_last_error(store));
        goto out;
    }
    /* Sessions made before the second factor existed end here. */
    u.session_epoch++;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&rp, &sb, msgpack_sbuffer_write);
    auth_user_pack(&rp, &u);
    auth_user_key(u.name, key, sizeof(key));
    prc = put(a->mesh, key, &sb);
    msgpack_sbuffer_destroy(&sb);
    if (prc) {
        rc = control_error(pk, CTL_FAILED,
                           "TOTP stored, but the user's sessions could not be revoked (%s): "
                           "run meshctl session revoke %s",
                           store_last_error(store), u.name);
        goto out;
    }
    msgpack_pack_map(pk, 4);
    mpw_kv_str(pk, "name", u.name);
    mpw_kv_str(pk, "uri", uri);
    mpw_str(pk, "recovery");
    msgpack_pack_array(pk, TOTP_RECOVERY_N);
    for (unsigned i = 0; i < TOTP_RECOVERY_N; i++)
        mpw_str(pk, codes[i]);
    mpw_kv_u64(pk, "session_epoch", u.session_epoch);
    log_info("auth: user %s: TOTP enabled (%u recovery codes; sessions revoked, epoch %llu)",
             u.name, TOTP_RECOVERY_N, (unsigned long long)u.session_epoch);
    rc = CTL_OK;
out:
    sodium_memzero(secret, sizeof(secret));
    sodium_memzero(codes, sizeof(codes));
    sodium_memzero(uri, sizeof(uri));
    sodium_memzero(&u, sizeof(u));
    return rc;
}

static int cmd_disable(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    totpadmin_t *a = ctx;
    store_t *store = meshnode_store(a->mesh);
    auth_user_t u;
    totp_rec_t t;
    char key[TOTPREC_KEY_MAX];
    int rc = live_user(a, req, pk, &u);
    if (rc != CTL_OK)
        return rc;
    rc = totprec_get(store, u.name, &t);
    if (rc == -ENOENT)
        return control_error(pk, CTL_NOT_FOUND, "user '%s' has no TOTP", u.name);
    totprec_key(u.name, key, sizeof(key));
    if ((rc = meshnode_del_record(a->mesh, key, strlen(key), NULL)) && rc != -ENOENT)
        return control_error(pk, CTL_FAILED, "cannot remove %s: %s", key, store_last_error(store));
    totpuse_key(u.name, key, sizeof(key));
    if ((rc = meshnode_del_record(a->mesh, key, strlen(key), NULL)) && rc != -ENOENT)
        log_warn("auth: cannot remove %s: %s (harmless: it names the old enrolment)", key,
                 store_last_error(store));
    msgpack_pack_map(pk, 1);
    mpw_kv_str(pk, "name", u.name);
    log_info("auth: user %s: TOTP disabled", u.name);
    return CTL_OK;
}

int totpadmin_publish_jwk(meshnode_t *mesh, uint64_t node_id, const uint8_t pub[32])
{
    char key[24];
    uint8_t have[32];
    store_entry_t e;
    const char *why;
    idjwt_jwk_key(node_id, key);
    if (store_get(meshnode_store(mesh), key, strlen(key), &e) == 0) {
        int same =
            idjwt_jwk_parse(e.value, e.vlen, node_id, have, &why) == 0 && !memcmp(have, pub, 32);
        store_entry_free(&e);
        if (same)
            return 0;
    }
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    idjwt_jwk_pack(&pk, node_id, pub, clock_wall_ms());
    int rc = meshnode_put_record(mesh, key, &sb);
    msgpack_sbuffer_destroy(&sb);
    if (rc)
        log_warn("http: cannot publish this PoP's identity key %s: %s", key,
                 store_last_error(meshnode_store(mesh)));
    else
        log_info("http: identity JWT key published as %s", key);
    return rc;
}

const control_command_t totpadmin_commands[] = {
    {"user.totp.enable", cmd_enable,
     "name: str [issuer: str] -> {name, uri, recovery: [str], session_epoch}: the secret is "
     "shown once; sessions revoked"},
    {"user.totp.disable", cmd_disable, "name: str -> {name}"},
    {NULL, NULL, NULL},
};

int totpadmin_register_commands(totpadmin_t *a, control_t *ctl)
{
    return control_add_commands(ctl, totpadmin_commands, a);
}
