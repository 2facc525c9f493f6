# Edge authentication (issue 5): users, sessions, share links, API keys, access rules and the
# login rate limiter (node/auth.h), and the fuzzer of their decoders. The integration test is
# in integration/integration.cmake (auth_admin).
popmesh_unit_test(test_auth popmesh_node)
popmesh_fuzz(fuzz_auth popmesh_node)
