# Data plane messages (node/sitemsg.h): HELLO/WELCOME payloads, the OPEN target descriptor and
# the STATUS/INFO control messages a tunnel carries; their unit test and their decoders' fuzzer.
popmesh_unit_test(test_sitemsg popmesh_node)
popmesh_fuzz(fuzz_sitemsg popmesh_node)
