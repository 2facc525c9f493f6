# node/dns: the choice of PoPs, the wire, rate limiting, and the name server in a mesh.
# Four PoPs in two regions behind a real resolver (unbound): answers, ECS, kills, bad input.
popmesh_integration(dns_steering)
set_property(TEST integration.dns_steering PROPERTY TIMEOUT 240)
# The wire (node/dns/dnsanswer): every answer rule, EDNS, ECS, truncation, bad input; it also
# prints the worst UDP amplification and ns per query. RRL: buckets, slip, bounded memory.
popmesh_unit_test(test_dnsanswer popmesh_dnswire)
popmesh_unit_test(test_dnsrrl popmesh_dnswire)
popmesh_fuzz(fuzz_dnsanswer popmesh_dnswire)
popmesh_unit_test(test_dnssel popmesh_dnscore)
