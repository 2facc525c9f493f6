/* idprec: an OpenID provider the mesh signs users in with, replicated under idp/<name>:
 *
 *   {name: str, issuer: str, client_id: str, client_secret: bin (sealed), scopes: str,
 *    groups_claim: str, allowed_domains: [str], auto_create: bool, allow_http: bool,
 *    ca_pem: str (optional), created_ms: uint}
 *
 * Written by `meshctl idp add` at one PoP, read by every PoP's ingress. The client secret is
 * sealed under the store key (node/records/storeseal.h, field "client_secret", bound to the
 * record's key): a copy of data.mdb does not hold it in clear. allow_http lets the issuer and
 * its endpoints be plain http:// on a loopback address, for tests only; ca_pem replaces the
 * system's roots for the provider's TLS (a test CA, or a private provider).
 *
 * Decoded as untrusted bytes from another node (unknown fields skipped, a field seen twice
 * refused) and held to the rules idp.add applies. Loop-free; fuzzed (tests/fuzz/fuzz_oidc.c). */
#ifndef POPMESH_NODE_OIDC_IDPREC_H
#define POPMESH_NODE_OIDC_IDPREC_H

#include "node/nodecfg.h"
#include "node/oidc/oidcproto.h"
#include "node/records/storeseal.h"

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IDP_PREFIX        "idp/"
#define IDP_CLIENT_ID_MAX 255
#define IDP_SECRET_MAX    512        /* bytes of a client secret */
#define IDP_SCOPES_MAX    255        /* bytes of the scopes, space-separated */
#define IDP_CA_PEM_MAX    (32 << 10) /* bytes of a CA bundle */
#define IDP_MAX           32         /* providers the login page lists */
#define IDP_KEY_BUF       (sizeof(IDP_PREFIX) + NODECFG_NAME_MAX) /* bytes of idp/<name> */

typedef struct idp_rec {
    char name[NODECFG_NAME_MAX + 1];
    char issuer[OIDC_URL_MAX + 1];
    char client_id[IDP_CLIENT_ID_MAX + 1];
    uint8_t secret_sealed[IDP_SECRET_MAX + STORESEAL_OVERHEAD];
    size_t secret_sealed_len; /* 0 = no secret (a public client: PKCE alone) */
    char scopes[IDP_SCOPES_MAX + 1];  /* always holds "openid" */
    char groups_claim[OIDC_CLAIM_NAME_MAX + 1]; /* "" = no groups */
    char domains[OIDC_DOMAINS_MAX][OIDC_DOMAIN_MAX + 1];
    unsigned ndomains;
    bool auto_create;
    bool allow_http;
    char *ca_pem;        /* owned; NULL = the system's roots */
    uint64_t created_ms; /* Unix ms */
} idp_rec_t;

/* "idp/<name>": 0 or -EINVAL. */
int idp_key(const char *name, char *out, size_t len);
/* Whether the issuer URL is acceptable: https://, or http:// to a loopback host when
 * allow_http (127.0.0.0/8, [::1], localhost). */
bool idp_issuer_ok(const char *issuer, bool allow_http);
/* Whether s is a space-separated list of scopes (printable, no quotes) holding "openid". */
bool idp_scopes_ok(const char *s);
/* Whether d is an email domain (letters, digits, '-', '.'; stored lower case). */
bool idp_domain_ok(const char *d);

void idp_pack(msgpack_packer *pk, const idp_rec_t *r);
/* Decodes idp/<name>: 0 or -EBADMSG with *why; the record's name must equal name. On success
 * the caller frees with idp_rec_free. */
int idp_parse(const uint8_t *buf, size_t len, const char *name, idp_rec_t *r, const char **why);
void idp_rec_free(idp_rec_t *r);

/* The client secret sealed for r->name's record into r (0, -ENOKEY, -E2BIG), and opened into
 * out (cap bytes, NUL-terminated; caller wipes): 0 or storeseal_open's errors. */
int idp_secret_seal(const storeseal_t *k, idp_rec_t *r, const char *secret, size_t len);
int idp_secret_open(const storeseal_t *k, const idp_rec_t *r, char *out, size_t cap);

#endif
