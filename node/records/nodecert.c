/* nodecert: root key, node certificates, the root's endorsement (see nodecert.h).
 *
 * Threat model: nodecert/ and trust/root records arrive from any member, and a member may be
 * an attacker holding one PoP's data directory (node.key, mesh.key, store.key). So nothing in
 * a record is believed until a signature by a key this PoP pinned itself says so: a
 * certificate by an accepted root, a new root by the current root. The one exception is the
 * first root of a mesh that predates roots, endorsed by the mesh key, which every PoP of such
 * a mesh holds: believing it gives an attacker nothing they lacked before the upgrade.
 *
 * Signatures cover a context string and the fields packed again by us, not the received
 * bytes: a record with non-minimal integer encodings fails verification rather than being
 * taken for another spelling of the same certificate. */
#include "node/records/nodecert.h"

#include "node/records/identity.h"

#include "common/kvfile.h"
#include "common/mp.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CERT_CONTEXT  "popmesh nodecert v1"
#define ROOT_CONTEXT  "popmesh root v1"
#define RECORD_FORMAT 1

static const struct {
    uint32_t bit;
    const char *name;
} cap_names[] = {
    {CAP_VERIFY, "verify"},
    {CAP_ISSUE_SESSIONS, "issue-sessions"},
    {CAP_INVITE, "invite"},
    {CAP_ADMIN, "admin"},
};

int nodecert_caps_parse(const char *s, uint32_t *caps, char *err, size_t errlen)
{
    *caps = 0;
    if (!strcmp(s, "all")) {
        *caps = CAP_ALL;
        return 0;
    }
    const char *p = s;
    while (*p) {
        size_t n = strcspn(p, ",");
        bool found = false;
        for (size_t i = 0; i < sizeof(cap_names) / sizeof(cap_names[0]); i++)
            if (strlen(cap_names[i].name) == n && !strncmp(p, cap_names[i].name, n)) {
                *caps |= cap_names[i].bit;
                found = true;
            }
        if (!found) {
            snprintf(err, errlen,
                     "unknown capability '%.*s' (known: verify, issue-sessions, invite, admin, "
                     "all)",
                     (int)(n > 40 ? 40 : n), p);
            return -EINVAL;
        }
        p += n;
        if (*p == ',')
            p++;
    }
    if (!*caps) {
        snprintf(err, errlen, "no capability named");
        return -EINVAL;
    }
    /* Every PoP verifies: a certificate without it would describe no PoP we run. */
    *caps |= CAP_VERIFY;
    return 0;
}

void nodecert_caps_format(uint32_t caps, char *out, size_t len)
{
    size_t off = 0;
    out[0] = '\0';
    for (size_t i = 0; i < sizeof(cap_names) / sizeof(cap_names[0]); i++)
        if (caps & cap_names[i].bit) {
            int w = snprintf(out + off, len - off, "%s%s", off ? "," : "", cap_names[i].name);
            if (w < 0 || (size_t)w >= len - off)
                return;
            off += (size_t)w;
        }
    if (!off)
        snprintf(out, len, "none");
}

/* ---- keys --------------------------------------------------------------------------------- */

int rootkey_generate(rootkey_t *k)
{
    if (sodium_init() < 0)
        return -EIO;
    crypto_sign_keypair(k->pk, k->sk);
    return 0;
}

uint64_t rootkey_id(const uint8_t pk[32])
{
    static const char label[] = "popmesh root id v1";
    uint8_t h[32];
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, sizeof(h));
    crypto_generichash_update(&st, (const uint8_t *)label, sizeof(label) - 1);
    crypto_generichash_update(&st, pk, 32);
    crypto_generichash_final(&st, h, sizeof(h));
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | h[i];
    return v ? v : 1;
}

static int parse_u64(const char *v, size_t vl, uint64_t *out)
{
    uint64_t x = 0;
    if (vl == 0 || vl > 20)
        return -EINVAL;
    for (size_t i = 0; i < vl; i++) {
        if (v[i] < '0' || v[i] > '9' || x > (UINT64_MAX - (uint64_t)(v[i] - '0')) / 10)
            return -EINVAL;
        x = x * 10 + (uint64_t)(v[i] - '0');
    }
    *out = x;
    return 0;
}

int rootkey_save(const char *path, const rootkey_t *k, char *err, size_t errlen)
{
    char pub[65], comment[256];
    sodium_bin2hex(pub, sizeof(pub), k->pk, 32);
    snprintf(comment, sizeof(comment),
             "# popmesh root key: certifies PoPs. Keep it off-line or on one trusted PoP "
             "(mode 0600)\n# root-public = %s (id %016llx)\n",
             pub, (unsigned long long)rootkey_id(k->pk));
    /* The first 32 bytes of sk are the seed. */
    return seedfile_save(path, comment, "root-sign-seed", k->sk, err, errlen);
}

int rootkey_load(const char *path, rootkey_t *k, char *err, size_t errlen)
{
    return seedfile_load(path, "root-sign-seed", k->pk, k->sk, err, errlen);
}

/* ---- pinned roots ------------------------------------------------------------------------- */

struct roots_parse {
    trustroots_t *t;
    bool have_cur;
};

static int roots_setting(const char *name, size_t nlen, const char *v, size_t vlen, void *ctx,
                         char *err, size_t errlen)
{
    struct roots_parse *p = ctx;
    int rc = -EINVAL;
    if (kvfile_is(name, nlen, "root-public")) {
        rc = keyfile_hex32(v, vlen, p->t->cur);
        p->have_cur = rc == 0;
    } else if (kvfile_is(name, nlen, "root-previous")) {
        rc = keyfile_hex32(v, vlen, p->t->prev);
        p->t->has_prev = rc == 0;
    } else if (kvfile_is(name, nlen, "root-previous-until-ms")) {
        rc = parse_u64(v, vlen, &p->t->prev_until_ms);
    } else if (kvfile_is(name, nlen, "legacy-sessions-until-ms")) {
        rc = parse_u64(v, vlen, &p->t->legacy_until_ms);
    } else {
        snprintf(err, errlen, "unknown key '%.*s'", (int)(nlen > 40 ? 40 : nlen), name);
        return -EINVAL;
    }
    if (rc)
        snprintf(err, errlen, "bad value of %.*s", (int)nlen, name);
    return rc;
}

int trustroots_parse(const char *text, size_t len, trustroots_t *t, char *err, size_t errlen)
{
    memset(t, 0, sizeof(*t));
    struct roots_parse p = {.t = t};
    int rc = kvfile_parse(text, len, roots_setting, &p, err, errlen);
    if (rc == 0 && !p.have_cur) {
        snprintf(err, errlen, "missing root-public");
        rc = -EINVAL;
    }
    return rc;
}

int trustroots_save(const char *dir, const trustroots_t *t, char *err, size_t errlen)
{
    char path[4096], text[1024], cur[65], prev[65];
    sodium_bin2hex(cur, sizeof(cur), t->cur, 32);
    int off = snprintf(text, sizeof(text),
                       "# popmesh roots this PoP accepts (pinned; see docs/security.md)\n"
                       "root-public = %s\nlegacy-sessions-until-ms = %llu\n",
                       cur, (unsigned long long)t->legacy_until_ms);
    if (t->has_prev) {
        sodium_bin2hex(prev, sizeof(prev), t->prev, 32);
        snprintf(text + off, sizeof(text) - (size_t)off,
                 "root-previous = %s\nroot-previous-until-ms = %llu\n", prev,
                 (unsigned long long)t->prev_until_ms);
    }
    snprintf(path, sizeof(path), "%s/%s", dir, TRUSTROOTS_FILE);
    return keyfile_write(path, 0644, true, text, err, errlen);
}

int trustroots_load(const char *dir, trustroots_t *t, char *err, size_t errlen)
{
    char path[4096], text[2048], why[200];
    size_t n = 0;
    snprintf(path, sizeof(path), "%s/%s", dir, TRUSTROOTS_FILE);
    if (access(path, F_OK) != 0 && errno == ENOENT)
        return -ENOENT;
    int rc = keyfile_read(path, false, text, sizeof(text), &n, err, errlen);
    if (rc)
        return rc;
    if ((rc = trustroots_parse(text, n, t, why, sizeof(why))) != 0)
        snprintf(err, errlen, "%s: %s", path, why);
    return rc;
}

const uint8_t *trustroots_find(const trustroots_t *t, uint64_t key_id, uint64_t now_ms)
{
    if (rootkey_id(t->cur) == key_id)
        return t->cur;
    if (t->has_prev && now_ms < t->prev_until_ms && rootkey_id(t->prev) == key_id)
        return t->prev;
    return NULL;
}

/* ---- certificates ------------------------------------------------------------------------- */

void nodecert_key(uint64_t node_id, char *out, size_t len)
{
    snprintf(out, len, NODECERT_PREFIX "%016llx", (unsigned long long)node_id);
}

int nodecert_key_id(const char *key, size_t klen, uint64_t *id)
{
    size_t pl = strlen(NODECERT_PREFIX);
    if (klen != pl + 16 || memcmp(key, NODECERT_PREFIX, pl) != 0)
        return -EINVAL;
    uint64_t v = 0;
    for (size_t i = pl; i < klen; i++) {
        char c = key[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0)
            return -EINVAL;
        v = (v << 4) | (uint64_t)d;
    }
    *id = v;
    return 0;
}

static void pack_tbs(msgpack_packer *pk, const nodecert_t *c, uint32_t n)
{
    msgpack_pack_array(pk, n);
    msgpack_pack_uint32(pk, RECORD_FORMAT);
    msgpack_pack_uint64(pk, c->node_id);
    mpw_bin(pk, c->sign_pk, 32);
    msgpack_pack_uint32(pk, c->caps);
    msgpack_pack_uint64(pk, c->not_before_ms);
    msgpack_pack_uint64(pk, c->not_after_ms);
    msgpack_pack_uint64(pk, c->serial);
    msgpack_pack_uint64(pk, c->issuer);
}

/* context || 0x00 || packed fields, into a fresh buffer the caller destroys. */
static void signed_message(msgpack_sbuffer *sb, const char *context)
{
    msgpack_sbuffer_init(sb);
    msgpack_sbuffer_write(sb, context, strlen(context) + 1);
}

void nodecert_sign(nodecert_t *c, const rootkey_t *root)
{
    randombytes_buf(&c->serial, sizeof(c->serial));
    c->issuer = rootkey_id(root->pk);
    msgpack_sbuffer sb;
    msgpack_packer pk;
    signed_message(&sb, CERT_CONTEXT);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    pack_tbs(&pk, c, 8);
    crypto_sign_detached(c->sig, NULL, (const uint8_t *)sb.data, sb.size, root->sk);
    msgpack_sbuffer_destroy(&sb);
}

void nodecert_pack(msgpack_packer *pk, const nodecert_t *c)
{
    pack_tbs(pk, c, 9);
    mpw_bin(pk, c->sig, 64);
}

static int read_bin_exact(mpr_t *r, uint8_t *out, uint32_t want)
{
    const uint8_t *b;
    uint32_t n;
    if (mpr_bin(r, &b, &n) || n != want)
        return -EBADMSG;
    memcpy(out, b, want);
    return 0;
}

int nodecert_parse(const uint8_t *buf, size_t len, nodecert_t *c, const char **why)
{
    mpr_t r;
    uint32_t n;
    uint64_t fmt, caps;
    memset(c, 0, sizeof(*c));
    mpr_init(&r, buf, len);
    if (mpr_array(&r, &n) || n != 9 || mpr_uint(&r, &fmt) || fmt != RECORD_FORMAT ||
        mpr_uint(&r, &c->node_id) || read_bin_exact(&r, c->sign_pk, 32) || mpr_uint(&r, &caps) ||
        caps > UINT32_MAX || mpr_uint(&r, &c->not_before_ms) || mpr_uint(&r, &c->not_after_ms) ||
        mpr_uint(&r, &c->serial) || mpr_uint(&r, &c->issuer) || read_bin_exact(&r, c->sig, 64) ||
        r.left) {
        memset(c, 0, sizeof(*c));
        *why = "malformed node certificate";
        return -EBADMSG;
    }
    c->caps = (uint32_t)caps;
    return 0;
}

int nodecert_verify(const nodecert_t *c, const trustroots_t *roots, uint32_t need, uint64_t now_ms,
                    const char **why)
{
    const uint8_t *root = roots ? trustroots_find(roots, c->issuer, now_ms) : NULL;
    if (!root) {
        *why = "certificate issued by a root this PoP does not accept";
        return -EACCES;
    }
    msgpack_sbuffer sb;
    msgpack_packer pk;
    signed_message(&sb, CERT_CONTEXT);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    pack_tbs(&pk, c, 8);
    int bad = crypto_sign_verify_detached(c->sig, (const uint8_t *)sb.data, sb.size, root);
    msgpack_sbuffer_destroy(&sb);
    if (bad) {
        *why = "certificate signature does not verify (tampered)";
        return -EACCES;
    }
    if (now_ms < c->not_before_ms) {
        *why = "certificate not valid yet";
        return -EACCES;
    }
    if (now_ms >= c->not_after_ms) {
        *why = "certificate expired";
        return -EACCES;
    }
    if ((c->caps & need) != need) {
        *why = "certificate lacks the capability";
        return -EACCES;
    }
    return 0;
}

/* ---- the root's endorsement --------------------------------------------------------------- */

static void pack_root_tbs(msgpack_packer *pk, const trustroot_rec_t *r, uint32_t n)
{
    msgpack_pack_array(pk, n);
    msgpack_pack_uint32(pk, RECORD_FORMAT);
    mpw_bin(pk, r->root_pk, 32);
    msgpack_pack_uint64(pk, r->created_ms);
    mpw_bin(pk, r->endorser_pk, 32);
    msgpack_pack_uint64(pk, r->prev_until_ms);
    msgpack_pack_uint64(pk, r->legacy_until_ms);
}

void trustroot_sign(trustroot_rec_t *r, const uint8_t endorser_sk[64])
{
    crypto_sign_ed25519_sk_to_pk(r->endorser_pk, endorser_sk);
    msgpack_sbuffer sb;
    msgpack_packer pk;
    signed_message(&sb, ROOT_CONTEXT);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    pack_root_tbs(&pk, r, 6);
    crypto_sign_detached(r->sig, NULL, (const uint8_t *)sb.data, sb.size, endorser_sk);
    msgpack_sbuffer_destroy(&sb);
}

void trustroot_pack(msgpack_packer *pk, const trustroot_rec_t *r)
{
    pack_root_tbs(pk, r, 7);
    mpw_bin(pk, r->sig, 64);
}

int trustroot_parse(const uint8_t *buf, size_t len, trustroot_rec_t *rec, const char **why)
{
    mpr_t r;
    uint32_t n;
    uint64_t fmt;
    memset(rec, 0, sizeof(*rec));
    mpr_init(&r, buf, len);
    if (mpr_array(&r, &n) || n != 7 || mpr_uint(&r, &fmt) || fmt != RECORD_FORMAT ||
        read_bin_exact(&r, rec->root_pk, 32) || mpr_uint(&r, &rec->created_ms) ||
        read_bin_exact(&r, rec->endorser_pk, 32) || mpr_uint(&r, &rec->prev_until_ms) ||
        mpr_uint(&r, &rec->legacy_until_ms) || read_bin_exact(&r, rec->sig, 64) || r.left) {
        memset(rec, 0, sizeof(*rec));
        *why = "malformed trust/root record";
        return -EBADMSG;
    }
    msgpack_sbuffer sb;
    msgpack_packer pk;
    signed_message(&sb, ROOT_CONTEXT);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    pack_root_tbs(&pk, rec, 6);
    int bad =
        crypto_sign_verify_detached(rec->sig, (const uint8_t *)sb.data, sb.size, rec->endorser_pk);
    msgpack_sbuffer_destroy(&sb);
    if (bad) {
        *why = "trust/root signature does not verify";
        return -EACCES;
    }
    return 0;
}

int trustroots_apply(trustroots_t *t, bool have, const trustroot_rec_t *r,
                     const uint8_t mesh_pk[32], const char **why)
{
    if (!have) {
        if (sodium_memcmp(r->endorser_pk, mesh_pk, 32) != 0) {
            *why = "the first root must be endorsed by the mesh key";
            return -EACCES;
        }
        memset(t, 0, sizeof(*t));
        memcpy(t->cur, r->root_pk, 32);
        t->legacy_until_ms = r->legacy_until_ms;
        return 1;
    }
    if (!memcmp(r->root_pk, t->cur, 32))
        return 0; /* the root we have (perhaps re-endorsed): nothing to do */
    if (memcmp(r->endorser_pk, t->cur, 32) != 0) {
        *why = "a new root not endorsed by the current root";
        return -EACCES;
    }
    t->has_prev = true;
    memcpy(t->prev, t->cur, 32);
    t->prev_until_ms = r->prev_until_ms;
    memcpy(t->cur, r->root_pk, 32);
    return 1;
}
