# node/ctl: the control protocol's codec and the fuzzer of its request decoder.
popmesh_unit_test(test_ctlproto popmesh_ctlproto)
popmesh_fuzz(fuzz_ctl_request popmesh_ctlproto)
