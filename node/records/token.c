#include "node/records/token.h"

#include "common/b64url.h"
#include "common/mp.h"

#include <errno.h>
#include <sodium.h>
#include <string.h>

static const char join_label[] = "popmesh join key v1";

void token_mesh_id(const uint8_t mesh_pk[32], uint8_t out[16])
{
    crypto_generichash(out, 16, mesh_pk, 32, NULL, 0);
}

uint64_t token_id_of(const uint8_t join_pk[32])
{
    uint8_t h[16];
    crypto_generichash(h, sizeof(h), join_pk, 32, NULL, 0);
    uint64_t id = 0;
    for (int i = 0; i < 8; i++)
        id = (id << 8) | h[i];
    return id;
}

void token_join_keypair(const uint8_t secret[32], uint8_t pk[32], uint8_t sk[32])
{
    /* A labelled hash first, so the secret itself is never used as a key for anything. */
    crypto_generichash(sk, 32, secret, 32, (const uint8_t *)join_label, sizeof(join_label) - 1);
    crypto_scalarmult_base(pk, sk);
}

void token_public(const token_t *t, token_public_t *pub)
{
    uint8_t sk[32];
    token_join_keypair(t->secret, pub->join_pk, sk);
    sodium_memzero(sk, sizeof(sk));
    pub->id = token_id_of(pub->join_pk);
    token_mesh_id(t->mesh_pk, pub->mesh_id);
}

int token_encode(const token_t *t, const uint8_t mesh_sk[64], char *out, size_t outlen)
{
    if ((t->role != ROLE_POP && t->role != ROLE_SITE) || t->nseeds == 0 ||
        t->nseeds > TOKEN_MAX_SEEDS)
        return -EINVAL;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    /* The site name is a 7th field only when set, so PoP tokens stay as they were. */
    msgpack_pack_array(&pk, t->site[0] ? 7 : 6);
    msgpack_pack_uint32(&pk, TOKEN_FORMAT);
    mpw_bin(&pk, t->mesh_pk, 32);
    mpw_str(&pk, node_role_name(t->role));
    msgpack_pack_uint64(&pk, t->expires_ms);
    mpw_bin(&pk, t->secret, 32);
    msgpack_pack_array(&pk, t->nseeds);
    for (unsigned i = 0; i < t->nseeds; i++) {
        size_t al = strlen(t->seeds[i].addr);
        if (al == 0 || al > TOKEN_ADDR_MAX) {
            msgpack_sbuffer_destroy(&sb);
            return -EINVAL;
        }
        msgpack_pack_array(&pk, 2);
        mpw_str(&pk, t->seeds[i].addr);
        mpw_bin(&pk, t->seeds[i].curve_pk, 32);
    }
    if (t->site[0])
        mpw_str(&pk, t->site);
    uint8_t sig[crypto_sign_BYTES];
    crypto_sign_detached(sig, NULL, (const uint8_t *)sb.data, sb.size, mesh_sk);
    msgpack_sbuffer_write(&sb, (const char *)sig, sizeof(sig));

    size_t prefix = strlen(TOKEN_PREFIX);
    size_t need =
        prefix + sodium_base64_encoded_len(sb.size, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    int rc = 0;
    if (need > outlen || need > TOKEN_TEXT_MAX + 1) {
        rc = -E2BIG;
    } else {
        memcpy(out, TOKEN_PREFIX, prefix);
        sodium_bin2base64(out + prefix, outlen - prefix, (const uint8_t *)sb.data, sb.size,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    }
    sodium_memzero(sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

static int bin32(mpr_t *r, uint8_t out[32])
{
    const uint8_t *b;
    uint32_t n;
    if (mpr_bin(r, &b, &n) || n != 32)
        return -1;
    memcpy(out, b, 32);
    return 0;
}

int token_decode(const char *text, size_t len, token_t *t, const char **why)
{
    uint8_t body[TOKEN_TEXT_MAX];
    size_t blen = 0;
    size_t prefix = strlen(TOKEN_PREFIX);
    memset(t, 0, sizeof(*t));
    /* Whitespace around a pasted token is the terminal's doing, not the token's. */
    while (len && (text[0] == ' ' || text[0] == '\t' || text[0] == '\n' || text[0] == '\r'))
        text++, len--;
    while (len && (text[len - 1] == ' ' || text[len - 1] == '\t' || text[len - 1] == '\n' ||
                   text[len - 1] == '\r'))
        len--;
    if (len < prefix || memcmp(text, TOKEN_PREFIX, prefix) != 0) {
        *why = "not a popmesh token (it must start with " TOKEN_PREFIX ")";
        return -EINVAL;
    }
    if (len > TOKEN_TEXT_MAX) {
        *why = "too long to be a popmesh token";
        return -EINVAL;
    }
    /* Strict (common/b64url.h): an altered byte must not still decode to the signed body. */
    if (b64url_decode(text + prefix, len - prefix, body, sizeof(body), &blen)) {
        *why = "garbled (not valid base64url after " TOKEN_PREFIX ")";
        return -EINVAL;
    }
    if (blen <= crypto_sign_BYTES) {
        *why = "truncated";
        return -EINVAL;
    }
    size_t plen = blen - crypto_sign_BYTES;
    mpr_t r;
    uint32_t n;
    uint64_t fmt;
    const char *role;
    uint32_t rl;
    mpr_init(&r, body, plen);
    uint32_t fields;
    if (mpr_array(&r, &fields) || fields < 6) {
        /* A cut-off token usually fails here: its signature bytes became payload. */
        *why = "truncated or garbled (payload is not a token)";
        return -EINVAL;
    }
    if (mpr_uint(&r, &fmt) || fmt != TOKEN_FORMAT) {
        *why = r.err ? "truncated or garbled" : "made by a newer popmesh (unknown token format)";
        return -EINVAL;
    }
    if (bin32(&r, t->mesh_pk) || mpr_str(&r, &role, &rl) || node_role_parse(role, rl, &t->role) ||
        mpr_uint(&r, &t->expires_ms) || bin32(&r, t->secret) || mpr_array(&r, &n) || n == 0 ||
        n > TOKEN_MAX_SEEDS) {
        *why = "truncated or garbled (bad field)";
        goto bad;
    }
    t->nseeds = n;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t pair, al;
        const char *addr;
        if (mpr_array(&r, &pair) || pair != 2 || mpr_str(&r, &addr, &al) || al == 0 ||
            al > TOKEN_ADDR_MAX || memchr(addr, '\0', al) || bin32(&r, t->seeds[i].curve_pk)) {
            *why = "truncated or garbled (bad seed)";
            goto bad;
        }
        memcpy(t->seeds[i].addr, addr, al);
        t->seeds[i].addr[al] = '\0';
    }
    if (fields >= 7) { /* the site a site token enrolls */
        const char *sn;
        uint32_t snl;
        if (mpr_str(&r, &sn, &snl) || snl >= sizeof(t->site) || memchr(sn, '\0', snl)) {
            *why = "truncated or garbled (bad site name)";
            goto bad;
        }
        memcpy(t->site, sn, snl);
        t->site[snl] = '\0';
    }
    /* Later versions of format 1 may append fields; skip them. */
    for (uint32_t extra = 7; extra < fields; extra++)
        mpr_skip(&r);
    if (r.err || r.left != 0) { /* a failed read leaves r.left at 0: check r.err too */
        *why = "truncated or garbled (trailing bytes)";
        goto bad;
    }
    if (crypto_sign_verify_detached(body + plen, body, plen, t->mesh_pk) != 0) {
        *why = "tampered (its signature does not verify)";
        goto bad;
    }
    sodium_memzero(body, sizeof(body));
    return 0;
bad:
    sodium_memzero(body, sizeof(body));
    sodium_memzero(t, sizeof(*t));
    return -EINVAL;
}
