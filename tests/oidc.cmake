# node/oidc: OpenID Connect sign-in. The ID token, discovery, JWKS, token response, callback
# and state cookie readers, admission and the idp/ record (loop-free); the integration test is
# oidc_login (a real oidc-provider and headless Chromium).
popmesh_unit_test(test_oidc popmesh_oidcproto popmesh_records)
popmesh_fuzz(fuzz_oidc popmesh_oidcproto popmesh_records)
