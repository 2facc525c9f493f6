/* Fuzzes what node/oidc reads from outside: the provider's discovery document, JWKS and token
 * response, the ID token (against a fixed JWKS: an RSA and an EC key), the callback's query,
 * the state cookie (any browser sends one) and the replicated idp/ record. The first byte
 * picks the reader, the rest is its input. Anything must be refused cleanly or give values
 * that hold the readers' promises: acceptable URLs, NUL-terminated bounded strings, groups
 * that are names; a record that decodes must re-encode and decode to the same fields. */
#include "node/oidc/idprec.h"
#include "node/oidc/oidcproto.h"

#include <errno.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/ec.h>
#include <openssl/rsa.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A JWKS of a fresh RSA key and a fresh P-256 key (public halves), made once. */
static char *make_jwks(void)
{
    static char out[4096];
    EVP_PKEY *r = EVP_RSA_gen(2048), *e = EVP_EC_gen("P-256");
    BIGNUM *n = NULL, *ex = NULL, *x = NULL, *y = NULL;
    if (!r || !e || !EVP_PKEY_get_bn_param(r, OSSL_PKEY_PARAM_RSA_N, &n) ||
        !EVP_PKEY_get_bn_param(r, OSSL_PKEY_PARAM_RSA_E, &ex) ||
        !EVP_PKEY_get_bn_param(e, OSSL_PKEY_PARAM_EC_PUB_X, &x) ||
        !EVP_PKEY_get_bn_param(e, OSSL_PKEY_PARAM_EC_PUB_Y, &y))
        abort();
    uint8_t b[512];
    char t[4][700];
    const BIGNUM *v[4] = {n, ex, x, y};
    for (int i = 0; i < 4; i++) {
        size_t l = i >= 2 ? 32 : (size_t)BN_num_bytes(v[i]);
        BN_bn2binpad(v[i], b, (int)l);
        sodium_bin2base64(t[i], sizeof(t[i]), b, l, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    }
    snprintf(out, sizeof(out),
             "{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"r1\",\"n\":\"%s\",\"e\":\"%s\"},"
             "{\"kty\":\"EC\",\"kid\":\"e1\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\"}]}",
             t[0], t[1], t[2], t[3]);
    BN_free(n);
    BN_free(ex);
    BN_free(x);
    BN_free(y);
    EVP_PKEY_free(r);
    EVP_PKEY_free(e);
    return out;
}

static oidc_jwks_t *keys;

static void text_ok(const char *s, size_t cap)
{
    if (strnlen(s, cap) >= cap)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *why = "";
    if (!keys) {
        const char *j = make_jwks();
        if (!(keys = oidc_jwks_parse(j, strlen(j), &why)) || oidc_jwks_count(keys) != 2)
            abort();
    }
    const char *in = (const char *)data + 1;
    size_t len = size - 1;
    switch (data[0] % 7) {
    case 0: {
        oidc_discovery_t d;
        if (oidc_discovery_parse(in, len, "https://idp.example.com", data[0] & 8, &d, &why) == 0 &&
            (!oidc_url_ok(d.token_endpoint, data[0] & 8) || !oidc_url_ok(d.jwks_uri, data[0] & 8) ||
             !oidc_url_ok(d.authorization_endpoint, data[0] & 8)))
            abort();
        break;
    }
    case 1: {
        oidc_jwks_t *k = oidc_jwks_parse(in, len, &why);
        if (k && (oidc_jwks_count(k) == 0 || oidc_jwks_count(k) > OIDC_JWKS_KEYS_MAX))
            abort();
        oidc_jwks_free(&k);
        break;
    }
    case 2: {
        char out[OIDC_TOKEN_MAX + 1];
        if (oidc_token_response_parse(in, len, out, sizeof(out), &why) == 0)
            text_ok(out, sizeof(out));
        break;
    }
    case 3: {
        oidc_claims_t c;
        oidc_expect_t ex = {.issuer = "https://idp.example.com",
                            .client_id = "popmesh",
                            .nonce = "n",
                            .groups_claim = "groups",
                            .now_ms = 1800000000000ull};
        int rc = oidc_idtoken_verify(in, len, keys, &ex, &c, &why);
        if (rc == 0) /* no valid signature can be forged by a fuzzer */
            abort();
        if (rc != -EACCES && rc != -ENOKEY)
            abort();
        break;
    }
    case 4: {
        oidc_callback_t cb;
        if (oidc_callback_parse(in, len, &cb, &why) == 0) {
            text_ok(cb.code, sizeof(cb.code));
            if (strlen(cb.state) != OIDC_RANDOM_LEN || (!cb.code[0] && !cb.error[0]))
                abort();
        }
        break;
    }
    case 5: {
        uint8_t k[32] = {1};
        oidc_state_t s;
        if (oidc_state_open(k, in, len, 0, &s, &why) == 0) /* no key: nothing opens */
            abort();
        break;
    }
    default: {
        idp_rec_t r, back;
        if (idp_parse((const uint8_t *)in, len, "corp", &r, &why) == 0) {
            msgpack_sbuffer sb;
            msgpack_packer pk;
            msgpack_sbuffer_init(&sb);
            msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
            idp_pack(&pk, &r);
            if (idp_parse((const uint8_t *)sb.data, sb.size, "corp", &back, &why) ||
                strcmp(back.issuer, r.issuer) || strcmp(back.client_id, r.client_id) ||
                back.ndomains != r.ndomains || back.secret_sealed_len != r.secret_sealed_len ||
                !idp_issuer_ok(r.issuer, r.allow_http) || !idp_scopes_ok(r.scopes))
                abort();
            idp_rec_free(&back);
            idp_rec_free(&r);
            msgpack_sbuffer_destroy(&sb);
        }
        break;
    }
    }
    return 0;
}
