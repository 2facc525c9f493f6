# tunnel/: the stream multiplexer (two cores back to back over an in-memory link, virtual
# time) and its frame decoder.
popmesh_unit_test(test_tunnel popmesh_tunnel)
set_tests_properties(unit.test_tunnel PROPERTIES TIMEOUT 120)
popmesh_fuzz(fuzz_tunnel_frame popmesh_tunnel)
# The secure channel: handshakes, records, suites, tampering, replay, limits, wrong states.
popmesh_unit_test(test_secchan popmesh_tunnel)
popmesh_fuzz(fuzz_secchan popmesh_tunnel)
# End-to-end stream sealing: key agreement at both ends, records, tampering, suites.
popmesh_unit_test(test_seal popmesh_tunnel)
# The site's choice of PoPs (sans-I/O): first choice, hysteresis, drain, backoff, fail-back,
# and a seeded random driver checking the invariants.
popmesh_unit_test(test_popsel popmesh_tunnel)
