# gossip/: the SWIM core (through its deterministic network simulator) and its wire decoder.
popmesh_unit_test(test_swim popmesh_swimsim)
set_tests_properties(unit.test_swim PROPERTIES TIMEOUT 120)
popmesh_fuzz(fuzz_swim popmesh_gossip)
popmesh_unit_test(test_swim_sync popmesh_gossip)
# Anti-entropy: the digest exchange over two real stores, and its message decoder.
popmesh_unit_test(test_antientropy popmesh_gossip)
set_tests_properties(unit.test_antientropy PROPERTIES TIMEOUT 120)
popmesh_fuzz(fuzz_antientropy popmesh_gossip)
