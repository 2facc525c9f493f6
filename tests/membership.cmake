# node/membership: the edge-triggered ZMQ_FD rules (zsock_watch) and the join codec.
popmesh_unit_test(test_zsock_watch popmesh_membership)
popmesh_unit_test(test_joinmsg popmesh_join)
popmesh_fuzz(fuzz_joinmsg popmesh_join)
# The health vector codec.
popmesh_unit_test(test_healthvec popmesh_healthvec)
popmesh_fuzz(fuzz_healthvec popmesh_healthvec)
