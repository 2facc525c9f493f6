# node/records: bootstrap tokens, registry records, sites and resources (the token's site
# field, resource checks against the mesh's own ports), and the fuzzers of their decoders.
popmesh_unit_test(test_token popmesh_records)
popmesh_unit_test(test_registry popmesh_records)
popmesh_unit_test(test_resource popmesh_records)
popmesh_fuzz(fuzz_token popmesh_records)
# Secrets in replicated records (storeseal): round trip, wrong key, moved, tampered, truncated,
# the older format accepted, the store key file; the sealed-format decoder fuzzed.
popmesh_unit_test(test_storeseal popmesh_records)
popmesh_fuzz(fuzz_storeseal popmesh_records)
popmesh_fuzz(fuzz_registry popmesh_records)
popmesh_fuzz(fuzz_resource popmesh_records)
# popd.conf (node/nodecfg) and the key file (node/records/identity).
popmesh_unit_test(test_nodecfg popmesh_records)
popmesh_fuzz(fuzz_nodecfg popmesh_records)
# node/records: edge authentication's records (users, API keys, rules, CIDRs); their decoders
# are fuzzed by fuzz_auth (auth.cmake), next to the tokens that name them.
popmesh_unit_test(test_authrec popmesh_records popmesh_storage)
# node/records: DNS steering's zones and geo rules (decoders fuzzed by fuzz_dnsrec).
popmesh_unit_test(test_dnsrec popmesh_records)
popmesh_fuzz(fuzz_dnsrec popmesh_records)
# The key hierarchy (nodecert): certificates, the root's endorsement, pinned roots, the root
# key file, signed token records; their decoders fuzzed.
popmesh_unit_test(test_nodecert popmesh_records)
popmesh_fuzz(fuzz_nodecert popmesh_records)
