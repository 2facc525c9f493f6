# node/tls: certificates and session-ticket keys as replicated records, and their commands.
# The store: sealing, PEM import of certificates made in the test, names, records.
popmesh_unit_test(test_certstore popmesh_tls)
# The ticket-key rule (rendezvous rank, due times) and the ring driven on a real store.
popmesh_unit_test(test_ticketkeys popmesh_tls)
popmesh_fuzz(fuzz_certrec popmesh_tls)
# Three PoPs: cert import/list/rm replicate, bad imports refused, no key in clear in LMDB, the
# same ticket key everywhere.
popmesh_integration(tls_certs)
set_property(TEST integration.tls_certs PROPERTY TIMEOUT 120)
