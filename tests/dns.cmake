# node/dns: the choice of PoPs, the wire, rate limiting, and the name server in a mesh.
popmesh_unit_test(test_dnssel popmesh_dnscore)
