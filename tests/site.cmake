# node/site: TCP and HTTP checks against real sockets on 127.0.0.1, the site's set of its own
# target connections, and the fuzzer of the checks' HTTP response parser.
popmesh_unit_test(test_healthcheck popmesh_site)
set_tests_properties(unit.test_healthcheck PROPERTIES TIMEOUT 60)
popmesh_fuzz(fuzz_hc_response popmesh_site)
# The PROXY protocol header (v1 and v2, IPv4 and IPv6) against bytes written out from the spec.
popmesh_unit_test(test_proxyproto popmesh_site)
# A site's tunnels spread over two regions and move to the surviving one when a region dies.
popmesh_integration(site_regions)
