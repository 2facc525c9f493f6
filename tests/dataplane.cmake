# Data plane messages (node/sitemsg.h): HELLO/WELCOME payloads, the OPEN target descriptor and
# the STATUS/INFO control messages a tunnel carries; their unit test and their decoders' fuzzer.
popmesh_unit_test(test_sitemsg popmesh_node)
popmesh_fuzz(fuzz_sitemsg popmesh_node)
# Data plane integration tests registered here (integration.cmake's helper looks for the
# script next to the file that calls it): same environment, labels and timeout.
function(popmesh_dataplane_integration name)
  add_test(NAME integration.${name} COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/integration/${name}.sh)
  set_property(TEST integration.${name} PROPERTY ENVIRONMENT
               "POPD=$<TARGET_FILE:popd>;MESHCTL=$<TARGET_FILE:meshctl>;POPSITE=$<TARGET_FILE:popsite>;ARTEFACT_DIR=${CMAKE_BINARY_DIR}/artefacts")
  set_property(TEST integration.${name} PROPERTY LABELS integration)
  set_property(TEST integration.${name} PROPERTY TIMEOUT 300)
  set_property(TEST integration.${name} PROPERTY SKIP_RETURN_CODE 77)
endfunction()
# A recorded tunnel HELLO replayed to a PoP: refused, counted, never attached.
popmesh_dataplane_integration(site_replay)
# Resources that loop into the mesh or clash with its ports: refused, or cut.
popmesh_dataplane_integration(dataplane_loop)
# Past a tunnel's stream limit: refused at once and counted; 10,000 concurrent connections.
popmesh_dataplane_integration(dataplane_limit)
