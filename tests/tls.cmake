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
# Secrets sealed under the store key: 2 PoPs, the key handed over in JOIN_OK, an imported
# certificate served at both while no spelling of its key is in data.mdb (searched, with a
# control that finds it), a restart, a wrong store key, and the upgrade from the older format.
popmesh_integration(store_secrets)
set_property(TEST integration.store_secrets PROPERTY TIMEOUT 90)
# TLS termination (tlsctx): host names, the certificate an SNI picks, real handshakes against
# a context loaded from a store (alerts, ALPN, versions, records followed as they change).
popmesh_unit_test(test_tlsctx popmesh_tls popmesh_storage)
# The HTTPS listener of 3 PoPs: curl at every PoP, TLS 1.2/1.3, ALPN, unknown SNI, Secure
# cookie, X-Forwarded-Proto, 308 and HSTS, resumption across PoPs, bad input.
popmesh_integration(https_ingress)
# ACME (node/acme): keys, JWS, EAB, CSR, the CA's JSON and the records (loop-free), DNS-01's
# TXT answers and wildcard resource hosts; the readers of the CA's answers and of the records
# fuzzed.
popmesh_unit_test(test_acme popmesh_acmeproto popmesh_dnswire popmesh_records)
popmesh_fuzz(fuzz_acme popmesh_acmeproto)
# Pebble on loopback, three PoPs: HTTP-01, DNS-01 (wildcard), failure, a SIGKILL mid-order,
# renewal.
popmesh_integration(acme_pebble)
set_property(TEST integration.acme_pebble PROPERTY TIMEOUT 420)
popmesh_integration(acme_eab)
set_property(TEST integration.acme_eab PROPERTY TIMEOUT 300)
# TLS on a TCP resource (resource add --tcp-port P --tls): 2 PoPs, a site, the echo backend;
# 1 MiB each way through each PoP, s_client, unknown SNI, a stalled handshake, a plain
# resource beside it, resumption across PoPs.
popmesh_integration(tcp_tls)
set_property(TEST integration.tcp_tls PROPERTY TIMEOUT 120)
# A login over HTTPS in headless Chromium (browser_login.py): 2 PoPs with --https-listen, the
# test certificate trusted by its SPKI hash only; the session cookie Secure and HttpOnly, the
# app at pop-2 with the cookie from pop-1. Skipped without chromium.
popmesh_integration(browser_https)
set_property(TEST integration.browser_https PROPERTY TIMEOUT 150)
# OCSP (node/tls/ocsprec, ocspfetch): the ocsp/ record, the checks a response passes before it
# is stored or stapled (signer, certificate, times, status), the request, who fetches, and
# what a PoP hands tlsctx from stored records (on a real store and loop).
popmesh_unit_test(test_ocsp popmesh_ocsp popmesh_storage)
popmesh_fuzz(fuzz_ocsprec popmesh_tls)
# OCSP stapling against Debian's `openssl ocsp` responder: 2 PoPs staple a good response (one
# fetched it), a certificate without a responder gets no fetch, a revoked leaf is not stapled.
popmesh_integration(tls_ocsp)
set_property(TEST integration.tls_ocsp PROPERTY TIMEOUT 180)
