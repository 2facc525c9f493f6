# node/httpmsg: the HTTP/1.1 message readers of the reverse proxy (limits, refusal rules,
# every-split-point equivalence) and the fuzzer of the request and response readers.
popmesh_unit_test(test_httpmsg popmesh_node)
popmesh_fuzz(fuzz_httpmsg popmesh_node)
