# mesh/: the link-state codec and database, the route computation, the record decoder.
popmesh_unit_test(test_linkstate popmesh_mesh)
popmesh_unit_test(test_route popmesh_mesh)
popmesh_fuzz(fuzz_linkstate popmesh_mesh)
