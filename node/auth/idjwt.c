/* idjwt: see idjwt.h. */
#include "node/auth/idjwt.h"

#include "common/log.h"
#include "common/logesc.h"
#include "common/mp.h"
#include "common/mpfields.h"
#include "common/xmalloc.h"
#include "node/records/registry.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- the key file ------------------------------------------------------------------------- */

static int parse_key_text(const char *text, idjwt_key_t *k)
{
    /* "# comment\nseed = <64 hex>\n" */
    const char *p = strstr(text, "seed = ");
    uint8_t seed[32];
    size_t bl = 0;
    if (!p || sodium_hex2bin(seed, sizeof(seed), p + 7, 64, NULL, &bl, NULL) || bl != 32)
        return -EINVAL;
    crypto_sign_seed_keypair(k->pk, k->sk, seed);
    sodium_memzero(seed, sizeof(seed));
    return 0;
}

int idjwt_key_load_or_create(const char *dir, idjwt_key_t *k, bool *created, char *err,
                             size_t errlen)
{
    char path[4096], text[256];
    snprintf(path, sizeof(path), "%s/%s", dir, IDJWT_KEY_FILE);
    *created = false;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd >= 0) {
        struct stat st;
        if (fstat(fd, &st) || (st.st_mode & 077)) {
            close(fd);
            snprintf(err, errlen, "%s may be read by others: chmod 600 it (it signs identities)",
                     path);
            return -EPERM;
        }
        ssize_t n = read(fd, text, sizeof(text) - 1);
        close(fd);
        if (n < 0) {
            int e = errno;
            snprintf(err, errlen, "cannot read %s: %s", path, strerror(e));
            return -e;
        }
        text[n] = '\0';
        int rc = parse_key_text(text, k);
        sodium_memzero(text, sizeof(text));
        if (rc)
            snprintf(err, errlen,
                     "%s: not a popmesh identity key (seed = 64 hex digits): move it "
                     "away to make a new one",
                     path);
        return rc;
    }
    if (errno != ENOENT) {
        int e = errno;
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(e));
        return -e;
    }
    uint8_t seed[32];
    char hex[65];
    randombytes_buf(seed, sizeof(seed));
    sodium_bin2hex(hex, sizeof(hex), seed, sizeof(seed));
    snprintf(text, sizeof(text),
             "# popmesh identity JWT signing key of this PoP: keep private (mode 0600)\n"
             "seed = %s\n",
             hex);
    crypto_sign_seed_keypair(k->pk, k->sk, seed);
    sodium_memzero(seed, sizeof(seed));
    sodium_memzero(hex, sizeof(hex));
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    int rc = 0;
    if (fd < 0) {
        rc = -errno;
    } else {
        size_t len = strlen(text), off = 0;
        while (off < len && rc == 0) {
            ssize_t w = write(fd, text + off, len - off);
            if (w < 0 && errno != EINTR)
                rc = -errno;
            else if (w > 0)
                off += (size_t)w;
        }
        if (rc == 0 && (fchmod(fd, 0600) || fsync(fd)))
            rc = -errno;
        close(fd);
        if (rc)
            unlink(path);
    }
    sodium_memzero(text, sizeof(text));
    if (rc) {
        snprintf(err, errlen, "cannot create %s: %s", path, strerror(-rc));
        return rc;
    }
    *created = true;
    return 0;
}

/* ---- the jwk/ record ---------------------------------------------------------------------- */

void idjwt_jwk_key(uint64_t node_id, char out[24])
{
    snprintf(out, 24, IDJWT_JWK_PREFIX "%016llx", (unsigned long long)node_id);
}

void idjwt_jwk_pack(msgpack_packer *pk, uint64_t node_id, const uint8_t pub[32],
                    uint64_t created_ms)
{
    char kid[17];
    snprintf(kid, sizeof(kid), "%016llx", (unsigned long long)node_id);
    msgpack_pack_map(pk, 3);
    mpw_kv_str(pk, "kid", kid);
    mpw_kv_bin(pk, "pk", pub, 32);
    mpw_kv_u64(pk, "created_ms", created_ms);
}

int idjwt_jwk_parse(const uint8_t *buf, size_t len, uint64_t node_id, uint8_t pub[32],
                    const char **why)
{
    char kid[17], want[17];
    uint64_t created = 0;
    mpf_t fs[] = {
        {"kid", MPF_STR, kid, sizeof(kid), true, false, NULL},
        {"pk", MPF_BIN32, pub, 0, true, false, NULL},
        {"created_ms", MPF_U64, &created, 0, false, false, NULL},
    };
    if (mpf_parse(buf, len, fs, sizeof(fs) / sizeof(fs[0]), why))
        return -EBADMSG;
    snprintf(want, sizeof(want), "%016llx", (unsigned long long)node_id);
    if (strcmp(kid, want)) {
        *why = "kid is not the node id of the record's key";
        return -EBADMSG;
    }
    return 0;
}

struct jwks_ctx {
    char *buf;  /* n entries of id (8 bytes, host order) | public key (32) */
    size_t cap; /* bytes used */
    unsigned n;
};

static int collect_jwk(const store_entry_t *e, void *ctx)
{
    struct jwks_ctx *jc = ctx;
    size_t pl = strlen(IDJWT_JWK_PREFIX);
    uint64_t id = 0;
    uint8_t pub[32];
    const char *why = "the key is not jwk/<16 hex>";
    char ek[LOG_ESC_MAX];
    if (e->klen != pl + 16)
        goto bad;
    for (size_t i = 0; i < 16; i++) {
        char c = e->key[pl + i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0)
            goto bad;
        id = id << 4 | (uint64_t)d;
    }
    if (idjwt_jwk_parse(e->value, e->vlen, id, pub, &why))
        goto bad;
    /* Only the keys of PoPs still in the registry (the registry is read after the list:
     * store_list's callback must not read the store). */
    jc->buf = xrealloc(jc->buf, jc->cap + 40);
    memcpy(jc->buf + jc->cap, &id, 8);
    memcpy(jc->buf + jc->cap + 8, pub, 32);
    jc->cap += 40;
    jc->n++;
    return 0;
bad:
    log_warn("http: skipping unreadable record %s: %s", log_esc(ek, sizeof(ek), e->key, e->klen),
             why);
    return 0;
}

int idjwt_jwks(store_t *store, char **out, size_t *len)
{
    struct jwks_ctx jc = {0};
    int rc = store_list(store, IDJWT_JWK_PREFIX, strlen(IDJWT_JWK_PREFIX), collect_jwk, &jc);
    if (rc) {
        free(jc.buf);
        return rc;
    }
    size_t cap = 32 + (size_t)jc.n * 160, o = 0;
    char *s = xmalloc(cap);
    o += (size_t)snprintf(s, cap, "{\"keys\":[");
    unsigned shown = 0;
    for (unsigned i = 0; i < jc.n; i++) {
        uint64_t id;
        uint8_t pub[32];
        memcpy(&id, jc.buf + (size_t)i * 40, 8);
        memcpy(pub, jc.buf + (size_t)i * 40 + 8, 32);
        char nk[64];
        store_entry_t e;
        reg_node_t node;
        const char *why;
        reg_node_key(id, nk, sizeof(nk));
        if (store_get(store, nk, strlen(nk), &e))
            continue; /* no such node (any more) */
        int prc = reg_node_parse(e.value, e.vlen, id, &node, &why);
        store_entry_free(&e);
        if (prc || node.removed || node.role != ROLE_POP)
            continue;
        char x[64];
        sodium_bin2base64(x, sizeof(x), pub, 32, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
        o += (size_t)snprintf(s + o, cap - o,
                              "%s{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"%s\",\"kid\":"
                              "\"%016llx\",\"alg\":\"EdDSA\",\"use\":\"sig\"}",
                              shown++ ? "," : "", x, (unsigned long long)id);
    }
    o += (size_t)snprintf(s + o, cap - o, "]}\n");
    free(jc.buf);
    *out = s;
    *len = o;
    return 0;
}

/* ---- tokens ------------------------------------------------------------------------------- */

struct slot {
    uint8_t h[crypto_generichash_BYTES]; /* of the claims: which token this is */
    uint64_t iat;                        /* Unix s; 0 = empty */
    size_t len;
    char tok[IDJWT_MAX];
};

struct idjwt {
    idjwt_key_t key;
    char kid[17];
    char iss[64];
    char pop[128];
    char head_b64[160]; /* the encoded header: the same for every token */
    struct slot *cache; /* IDJWT_CACHE */
};

idjwt_t *idjwt_new(const idjwt_key_t *k, uint64_t node_id, const char *mesh_id_hex,
                   const char *pop_name)
{
    if (!k || !mesh_id_hex || !pop_name || strlen(pop_name) > 100 || strlen(mesh_id_hex) > 40) {
        errno = EINVAL;
        return NULL;
    }
    idjwt_t *j = xcalloc(1, sizeof(*j));
    j->key = *k;
    snprintf(j->kid, sizeof(j->kid), "%016llx", (unsigned long long)node_id);
    snprintf(j->iss, sizeof(j->iss), "popmesh:%s", mesh_id_hex);
    snprintf(j->pop, sizeof(j->pop), "%s", pop_name);
    char head[96];
    int hl =
        snprintf(head, sizeof(head), "{\"alg\":\"EdDSA\",\"typ\":\"JWT\",\"kid\":\"%s\"}", j->kid);
    sodium_bin2base64(j->head_b64, sizeof(j->head_b64), (const uint8_t *)head, (size_t)hl,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    j->cache = xcalloc(IDJWT_CACHE, sizeof(*j->cache));
    return j;
}

void idjwt_destroy(idjwt_t **jp)
{
    if (!jp || !*jp)
        return;
    idjwt_t *j = *jp;
    sodium_memzero(&j->key, sizeof(j->key));
    free(j->cache);
    free(j);
    *jp = NULL;
}

bool idjwt_json_str(char *out, size_t cap, size_t *o, const char *s)
{
    size_t p = *o;
    if (p + 1 >= cap)
        return false;
    out[p++] = '"';
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (p + 7 >= cap)
            return false;
        if (c == '"' || c == '\\') {
            out[p++] = '\\';
            out[p++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            p += (size_t)snprintf(out + p, cap - p, "\\u%04x", c);
        } else {
            out[p++] = (char)c;
        }
    }
    if (p + 1 >= cap)
        return false;
    out[p++] = '"';
    out[p] = '\0';
    *o = p;
    return true;
}

/* The claims that do not depend on the time, as JSON members (without braces). */
static bool claims_json(const idjwt_t *j, const idjwt_claims_t *c, char *out, size_t cap,
                        size_t *len)
{
    size_t o = 0;
    const char *name = c->name && c->name[0] ? c->name : c->user;
#define LIT(s)                                                                                     \
    do {                                                                                           \
        size_t l_ = strlen(s);                                                                     \
        if (o + l_ + 1 >= cap)                                                                     \
            return false;                                                                          \
        memcpy(out + o, s, l_ + 1);                                                                \
        o += l_;                                                                                   \
    } while (0)
#define STR(s)                                                                                     \
    do {                                                                                           \
        if (!idjwt_json_str(out, cap, &o, s))                                                      \
            return false;                                                                          \
    } while (0)
    LIT("\"iss\":");
    STR(j->iss);
    LIT(",\"sub\":");
    STR(c->user);
    LIT(",\"user\":");
    STR(c->user);
    LIT(",\"groups\":[");
    for (unsigned i = 0; i < c->ngroups; i++) {
        if (i)
            LIT(",");
        STR(c->groups[i]);
    }
    LIT("]");
    if (c->email && c->email[0]) {
        LIT(",\"email\":");
        STR(c->email);
    }
    LIT(",\"name\":");
    STR(name);
    LIT(",\"aud\":");
    STR(c->resource);
    LIT(",\"pop\":");
    STR(j->pop);
#undef LIT
#undef STR
    *len = o;
    return true;
}

int idjwt_token(idjwt_t *j, const idjwt_claims_t *c, uint64_t now_s, const char **tok, size_t *len)
{
    char body[IDJWT_MAX];
    size_t bl;
    if (!claims_json(j, c, body, sizeof(body) - 64, &bl))
        return -ENOSPC;
    uint8_t h[crypto_generichash_BYTES];
    crypto_generichash(h, sizeof(h), (const uint8_t *)body, bl, NULL, 0);
    uint32_t idx;
    memcpy(&idx, h, sizeof(idx));
    struct slot *sl = &j->cache[idx % IDJWT_CACHE];
    /* Reused while it has more than half its life left (and not from a clock that went back). */
    if (sl->iat && !memcmp(sl->h, h, sizeof(h)) && now_s >= sl->iat &&
        now_s - sl->iat < IDJWT_TTL_S / 2) {
        *tok = sl->tok;
        *len = sl->len;
        return 0;
    }
    bl += (size_t)snprintf(body + bl, sizeof(body) - bl, ",\"iat\":%llu,\"exp\":%llu}",
                           (unsigned long long)now_s, (unsigned long long)(now_s + IDJWT_TTL_S));
    char payload[IDJWT_MAX + 2];
    payload[0] = '{';
    memcpy(payload + 1, body, bl + 1);
    size_t pl = bl + 1;
    size_t hl = strlen(j->head_b64);
    size_t need = hl + 1 + sodium_base64_ENCODED_LEN(pl, sodium_base64_VARIANT_URLSAFE_NO_PADDING) +
                  1 + sodium_base64_ENCODED_LEN(64, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    if (need > sizeof(sl->tok))
        return -ENOSPC;
    char *t = sl->tok;
    memcpy(t, j->head_b64, hl);
    t[hl] = '.';
    sodium_bin2base64(t + hl + 1, sizeof(sl->tok) - hl - 1, (const uint8_t *)payload, pl,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    size_t signed_len = strlen(t);
    uint8_t sig[64];
    crypto_sign_detached(sig, NULL, (const uint8_t *)t, signed_len, j->key.sk);
    t[signed_len] = '.';
    sodium_bin2base64(t + signed_len + 1, sizeof(sl->tok) - signed_len - 1, sig, sizeof(sig),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sl->len = strlen(t);
    memcpy(sl->h, h, sizeof(h));
    sl->iat = now_s;
    *tok = sl->tok;
    *len = sl->len;
    return 0;
}
