# storage/: hybrid logical clock, the LWW store, its record decoder.
popmesh_unit_test(test_hlc popmesh_storage)
popmesh_unit_test(test_store popmesh_storage)
popmesh_unit_test(test_store_property popmesh_storage)
set_tests_properties(unit.test_store unit.test_store_property PROPERTIES TIMEOUT 120)
popmesh_fuzz(fuzz_store_record popmesh_storage)
