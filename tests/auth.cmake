# node/auth: passwords, sessions, share links, API keys, access rules and the login rate
# limiter, and the fuzzer of every decoder they and their records (node/records: user, apikey,
# rule, cidr) have. The integration test is auth_admin (integration.cmake).
popmesh_unit_test(test_auth popmesh_auth popmesh_records popmesh_storage)
popmesh_fuzz(fuzz_auth popmesh_auth popmesh_records popmesh_nodecfg)
# Login attempts counted mesh-wide: the summary codec, the counters and a simulated mesh; the
# integration test is login_mesh (integration.cmake).
popmesh_unit_test(test_loginshare popmesh_auth)
popmesh_fuzz(fuzz_loginshare popmesh_auth)
# The second factor (TOTP, recovery codes, the totp/ and totpuse/ records) and the identity JWT
# (tokens, the jwk/ record, the key file); the integration test is totp_identity.
popmesh_unit_test(test_totp popmesh_totp popmesh_records popmesh_storage)
popmesh_fuzz(fuzz_totp popmesh_totp popmesh_records)
# Sessions and share links signed by the PoP that made them (pms2., pmsh2.) and the mesh-key
# formats' upgrade window; the decoder fuzzed (its payload is parsed before the signature).
popmesh_unit_test(test_sessionsig popmesh_auth popmesh_records)
popmesh_fuzz(fuzz_sessionsig popmesh_auth popmesh_records popmesh_nodecfg)
