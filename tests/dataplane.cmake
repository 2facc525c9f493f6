# node/dataplane: the tunnel's messages (HELLO/WELCOME payloads, the OPEN descriptor, STATUS
# and INFO), their unit test and their decoders' fuzzer.
popmesh_unit_test(test_sitemsg popmesh_tconn)
popmesh_fuzz(fuzz_sitemsg popmesh_tconn)
# The byte pump with a layer on its TCP leg (as TLS at the ingress): a fake layer that reads
# ahead, works in small records and asks for the other readiness now and then.
popmesh_unit_test(test_splice popmesh_tconn)
# A recorded tunnel HELLO replayed to a PoP: refused, counted, never attached.
popmesh_integration(site_replay)
# Resources that loop into the mesh or clash with its ports: refused, or cut.
popmesh_integration(dataplane_loop)
# Past a tunnel's stream limit: refused at once and counted; 10,000 concurrent connections.
popmesh_integration(dataplane_limit)
# Configuration changes take effect when they are merged (the store's change feed), not on a poll.
popmesh_integration(config_change)
# Connection caps on the tunnel port (pending handshakes) and TCP resource ports.
popmesh_integration(dataplane_caps)
# PROXY protocol v1 and v2 on TCP resources, parsed by nginx (listen ... proxy_protocol), which
# logs the client's address; a client's own header is data; the bytes on the wire.
popmesh_integration(proxy_protocol)
# UDP resources: datagrams framed in a stream (unit test, the reader's fuzzer), and dig, flow
# caps, idle timeouts and a replica killed mid-flow with real processes.
popmesh_unit_test(test_udpframe popmesh_tconn)
popmesh_fuzz(fuzz_udpframe popmesh_tconn)
popmesh_integration(udp_resource)
# Datagram sizes at the payload limit over IPv6 (0, 65,507 carried; 65,508 and 65,527 dropped).
popmesh_integration(udp_oversize)
