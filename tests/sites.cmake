# Sites and TCP resources (issue 4): the resource record codec, the site record and the token's
# site field, and the fuzzer of those decoders. The integration test is in
# integration/integration.cmake (site_admin).
popmesh_unit_test(test_resource popmesh_node)
popmesh_fuzz(fuzz_resource popmesh_node)
