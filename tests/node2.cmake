# node/ decoders and gossip anti-entropy: bootstrap tokens, registry records, the join codec,
# and the digest exchange over two real stores.
popmesh_unit_test(test_token popmesh_node)
popmesh_unit_test(test_registry popmesh_node)
popmesh_unit_test(test_joinmsg popmesh_node)
popmesh_unit_test(test_antientropy popmesh_node)
set_tests_properties(unit.test_antientropy PROPERTIES TIMEOUT 120)
popmesh_fuzz(fuzz_token popmesh_node)
popmesh_fuzz(fuzz_registry popmesh_node)
popmesh_fuzz(fuzz_joinmsg popmesh_node)
popmesh_fuzz(fuzz_antientropy popmesh_node)
