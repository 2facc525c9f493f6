# node/auth: users, sessions, share links, API keys, access rules and the login rate limiter,
# and the fuzzer of their decoders. The integration test is auth_admin (integration.cmake).
popmesh_unit_test(test_auth popmesh_auth)
popmesh_fuzz(fuzz_auth popmesh_auth)
