/* Sessions and share links signed by the PoP that made them (node/auth/session.h: pms2.,
 * pmsh2.), and the mesh-key formats' window: round trips, the signer's refusal (no
 * certificate, no issue-sessions, removed), tampering, truncation, trailing bytes, signer 0,
 * another signer's key, a PoP that may not issue, pms1./pmsh1. inside and outside the window. */
#include "node/auth/session.h"

#include "common/b64url.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <msgpack.h>
#include <sodium.h>

#define NOW 1800000000000ull
#define A   11 /* a PoP that may issue sessions */
#define B   22 /* a verify-only PoP */
#define R   33 /* a removed PoP */

static uint8_t pka[32], ska[64], pkb[32], skb[64], pkr[32], skr[64];
static meshkey_t mesh;

static int signer_key(void *ctx, uint64_t signer, uint32_t need, uint64_t now_ms, uint8_t pk[32],
                      const char **why)
{
    (void)ctx;
    (void)now_ms;
    if (signer == A) {
        memcpy(pk, pka, 32);
        return 0;
    }
    if (signer == B) {
        if (need & AUTH_CAP_ISSUE_SESSIONS) {
            *why = "certificate lacks the capability";
            return -EACCES;
        }
        memcpy(pk, pkb, 32);
        return 0;
    }
    *why = signer == R ? "the signer was removed from the mesh" : "the signer has no certificate";
    return -EACCES;
}

static auth_keys_t keys_of(uint64_t self, const uint8_t *sk, uint64_t legacy_until)
{
    return (auth_keys_t){.signer_key = signer_key,
                         .self_id = self,
                         .self_sk = sk,
                         .mesh = &mesh,
                         .legacy_until_ms = legacy_until};
}

static int setup(void **state)
{
    (void)state;
    if (sodium_init() < 0)
        return -1;
    crypto_sign_keypair(pka, ska);
    crypto_sign_keypair(pkb, skb);
    crypto_sign_keypair(pkr, skr);
    meshkey_generate(&mesh);
    return 0;
}

static void test_round_trip(void **state)
{
    (void)state;
    auth_keys_t k = keys_of(A, ska, 0);
    char c[AUTH_TOKEN_MAX + 1];
    const char *why = "";
    auth_session_t s;
    assert_int_equal(auth_cookie_make(&k, "alice", 3, NOW, 60000, "", c, sizeof(c), &why), 0);
    assert_int_equal(strncmp(c, AUTH_SESSION2_PREFIX, 5), 0);
    assert_int_equal(auth_cookie_verify(&k, c, strlen(c), NOW, &s, &why), 0);
    assert_string_equal(s.user, "alice");
    assert_true(s.epoch == 3 && s.signer == A && s.expires_ms == NOW + 60000);
    assert_int_equal(auth_cookie_signer_check(&k, &s, NOW, &why), 0);
    assert_int_equal(auth_cookie_verify(&k, c, strlen(c), NOW + 60000, &s, &why), -EACCES);
    assert_string_equal(why, "session expired");
    /* Share links, and the session a link becomes. */
    auth_share_t sh;
    assert_int_equal(auth_link_make(&k, "web", NOW, NOW + 1000, c, sizeof(c), &why), 0);
    assert_int_equal(strncmp(c, AUTH_SHARE2_PREFIX, 6), 0);
    assert_int_equal(auth_link_verify(&k, c, strlen(c), NOW, &sh, &why), 0);
    assert_string_equal(sh.resource, "web");
    assert_true(sh.signer == A);
    assert_int_equal(auth_cookie_from_share(&k, &sh, NOW, 60000, c, sizeof(c), &why), 0);
    assert_int_equal(auth_cookie_verify(&k, c, strlen(c), NOW, &s, &why), 0);
    assert_true(!s.user[0] && !strcmp(s.scope, "web") && s.expires_ms == NOW + 1000);
}

static void test_signers(void **state)
{
    (void)state;
    char c[AUTH_TOKEN_MAX + 1];
    const char *why = "";
    auth_session_t s;
    /* A verify-only PoP makes nothing. */
    auth_keys_t kb = keys_of(B, skb, 0);
    assert_int_equal(auth_cookie_make(&kb, "alice", 0, NOW, 60000, "", c, sizeof(c), &why), -EPERM);
    assert_int_equal(auth_link_make(&kb, "web", NOW, NOW + 1000, c, sizeof(c), &why), -EPERM);
    /* A's session verifies; after A's removal (a lookup that refuses it) it does not. What a
     * stolen key signs is in test_forged_and_malformed. */
    auth_keys_t verifier = keys_of(A, ska, 0);
    auth_keys_t ka = keys_of(A, ska, 0);
    assert_int_equal(auth_cookie_make(&ka, "alice", 0, NOW, 60000, "", c, sizeof(c), &why), 0);
    assert_int_equal(auth_cookie_verify(&verifier, c, strlen(c), NOW, &s, &why), 0);
    auth_keys_t after = verifier;
    after.signer_key = NULL;
    assert_int_equal(auth_cookie_verify(&after, c, strlen(c), NOW, &s, &why), -EACCES);
    assert_int_equal(auth_cookie_verify(&verifier, c, strlen(c), NOW, &s, &why), 0);
    s.signer = R;
    assert_int_equal(auth_cookie_signer_check(&verifier, &s, NOW, &why), -EACCES);
    assert_string_equal(why, "the signer was removed from the mesh");
    s.signer = B;
    assert_int_equal(auth_cookie_signer_check(&verifier, &s, NOW, &why), -EACCES);
}

/* A cookie text with payload p signed by sk (what a thief holding sk can make). */
static void forge(const uint8_t *p, size_t n, const uint8_t *sk, const char *ctx, const char *pre,
                  char *out, size_t outlen)
{
    uint8_t msg[512], body[512];
    size_t cl = strlen(ctx) + 1, pl = strlen(pre);
    memcpy(msg, ctx, cl);
    memcpy(msg + cl, p, n);
    memcpy(body, p, n);
    crypto_sign_detached(body + n, NULL, msg, cl + n, sk);
    memcpy(out, pre, pl);
    sodium_bin2base64(out + pl, outlen - pl, body, n + 64,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

static size_t payload(uint8_t *out, uint64_t signer, int variant)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, variant == 1 ? 7 : 8);
    msgpack_pack_uint32(&pk, variant == 2 ? 1 : 2);
    msgpack_pack_str(&pk, 5);
    msgpack_pack_str_body(&pk, "alice", 5);
    msgpack_pack_uint64(&pk, 0);
    msgpack_pack_uint64(&pk, NOW);
    msgpack_pack_uint64(&pk, NOW + 1000);
    msgpack_pack_str(&pk, 0);
    msgpack_pack_bin(&pk, 8);
    msgpack_pack_bin_body(&pk, "12345678", 8);
    if (variant != 1)
        msgpack_pack_uint64(&pk, signer);
    if (variant == 3)
        msgpack_pack_nil(&pk); /* trailing */
    memcpy(out, sb.data, sb.size);
    size_t n = sb.size;
    msgpack_sbuffer_destroy(&sb);
    return n;
}

static void test_forged_and_malformed(void **state)
{
    (void)state;
    auth_keys_t v = keys_of(A, ska, 0);
    char c[AUTH_TOKEN_MAX + 64];
    const char *why = "";
    auth_session_t s;
    uint8_t p[200];
    size_t n = payload(p, A, 0);
    forge(p, n, ska, "popmesh session v2", "pms2.", c, sizeof(c));
    assert_int_equal(auth_cookie_verify(&v, c, strlen(c), NOW, &s, &why), 0); /* the control */
    /* Signed by B's key but naming A; naming B (may not issue); naming R (removed); 0. */
    forge(p, n, skb, "popmesh session v2", "pms2.", c, sizeof(c));
    assert_int_equal(auth_cookie_verify(&v, c, strlen(c), NOW, &s, &why), -EACCES);
    assert_non_null(strstr(why, "signature does not verify"));
    n = payload(p, B, 0);
    forge(p, n, skb, "popmesh session v2", "pms2.", c, sizeof(c));
    assert_int_equal(auth_cookie_verify(&v, c, strlen(c), NOW, &s, &why), -EACCES);
    assert_string_equal(why, "certificate lacks the capability");
    n = payload(p, R, 0);
    forge(p, n, skr, "popmesh session v2", "pms2.", c, sizeof(c));
    assert_int_equal(auth_cookie_verify(&v, c, strlen(c), NOW, &s, &why), -EACCES);
    n = payload(p, 0, 0);
    forge(p, n, ska, "popmesh session v2", "pms2.", c, sizeof(c));
    assert_int_equal(auth_cookie_verify(&v, c, strlen(c), NOW, &s, &why), -EACCES);
    assert_string_equal(why, "malformed session payload");
    /* 7 elements, version 1 in a pms2., a trailing object: malformed. */
    for (int variant = 1; variant <= 3; variant++) {
        n = payload(p, A, variant);
        forge(p, n, ska, "popmesh session v2", "pms2.", c, sizeof(c));
        assert_int_equal(auth_cookie_verify(&v, c, strlen(c), NOW, &s, &why), -EACCES);
        assert_string_equal(why, "malformed session payload");
    }
    /* A share link's context, or the v1 context, does not make a session. */
    n = payload(p, A, 0);
    forge(p, n, ska, "popmesh share v2", "pms2.", c, sizeof(c));
    assert_int_equal(auth_cookie_verify(&v, c, strlen(c), NOW, &s, &why), -EACCES);
    forge(p, n, ska, "popmesh session v1", "pms2.", c, sizeof(c));
    assert_int_equal(auth_cookie_verify(&v, c, strlen(c), NOW, &s, &why), -EACCES);
    /* Every flipped character and every truncation of a good cookie. */
    forge(p, n, ska, "popmesh session v2", "pms2.", c, sizeof(c));
    size_t len = strlen(c);
    unsigned passed = 0;
    for (size_t i = 0; i < len; i++) {
        char o = c[i];
        c[i] = o == 'A' ? 'B' : 'A';
        passed += auth_cookie_verify(&v, c, len, NOW, &s, &why) == 0;
        c[i] = o;
    }
    assert_int_equal(passed, 0);
    for (size_t l = 0; l < len; l++)
        assert_int_equal(auth_cookie_verify(&v, c, l, NOW, &s, &why), -EACCES);
}

static void test_legacy_window(void **state)
{
    (void)state;
    char c[AUTH_TOKEN_MAX + 1];
    const char *why = "";
    auth_session_t s;
    auth_share_t sh;
    /* A mesh before roots: the mesh key signs and is accepted. */
    auth_keys_t old = keys_of(0, NULL, UINT64_MAX);
    assert_int_equal(auth_cookie_make(&old, "alice", 0, NOW, 60000, "", c, sizeof(c), &why), 0);
    assert_int_equal(strncmp(c, AUTH_SESSION_PREFIX, 5), 0);
    assert_int_equal(auth_cookie_verify(&old, c, strlen(c), NOW, &s, &why), 0);
    assert_true(s.signer == 0);
    /* Upgraded at NOW + 1: cookies issued before pass, after do not. */
    auth_keys_t up = keys_of(A, ska, NOW + 1);
    assert_int_equal(auth_cookie_verify(&up, c, strlen(c), NOW + 10, &s, &why), 0);
    assert_int_equal(auth_session_make(&mesh, "alice", 0, NOW + 1, 60000, "", c, sizeof(c)), 0);
    assert_int_equal(auth_cookie_verify(&up, c, strlen(c), NOW + 10, &s, &why), -EACCES);
    /* A mesh born with a root: never. */
    auth_keys_t born = keys_of(A, ska, 0);
    assert_int_equal(auth_session_make(&mesh, "alice", 0, NOW, 60000, "", c, sizeof(c)), 0);
    assert_int_equal(auth_cookie_verify(&born, c, strlen(c), NOW, &s, &why), -EACCES);
    /* pmsh1.: only while the window is open. */
    assert_int_equal(auth_share_make(&mesh, "web", NOW + 100, c, sizeof(c)), 0);
    assert_int_equal(auth_link_verify(&old, c, strlen(c), NOW, &sh, &why), 0);
    assert_int_equal(auth_link_verify(&up, c, strlen(c), NOW + 2, &sh, &why), -EACCES);
    /* Without the mesh key at all, pms1. is refused. */
    auth_keys_t nomesh = born;
    nomesh.mesh = NULL;
    assert_int_equal(auth_session_make(&mesh, "alice", 0, NOW, 60000, "", c, sizeof(c)), 0);
    assert_int_equal(auth_cookie_verify(&nomesh, c, strlen(c), NOW, &s, &why), -EACCES);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_signers),
        cmocka_unit_test(test_forged_and_malformed),
        cmocka_unit_test(test_legacy_window),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
