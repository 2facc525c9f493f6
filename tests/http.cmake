# node/http: the HTTP/1.1 message readers (limits, refusal rules, every-split-point
# equivalence), the header checks and rewrites (identity headers, Host, redirect targets,
# cross-site forms, cookies, the WebSocket handshake), and their fuzzers.
popmesh_unit_test(test_httpmsg popmesh_httpmsg)
popmesh_fuzz(fuzz_httpmsg popmesh_httpmsg)
popmesh_unit_test(test_httphdr popmesh_httpmsg)
popmesh_fuzz(fuzz_httphdr popmesh_httpmsg)
# The canonical path routing and rules compare: every spelling of //, %2f, %61, .., ., %00,
# trailing slashes and the query; the fuzzer checks it is idempotent and never longer.
popmesh_unit_test(test_httppath popmesh_httpmsg)
popmesh_fuzz(fuzz_httppath popmesh_httpmsg)
# A resource's request rules: prefix strip, heads rewritten, every refusal (Host, CR/LF,
# hop-by-hop and framing headers, what only the proxy says).
popmesh_unit_test(test_httprules popmesh_httprules)
# The ingress against an adversarial client and a misbehaving application.
popmesh_integration(http_hardening)
# What one client can hold: connection caps (per address, overall) and timeouts.
popmesh_integration(http_limits)
set_property(TEST integration.http_limits PROPERTY TIMEOUT 180)
# Configuration on change: a resource or rule added or removed at one PoP applies at another
# within the propagation time (under 500 ms).
popmesh_integration(http_config)
# The listener out of descriptors: accept() backs off instead of spinning, and recovers.
popmesh_integration(http_accept)
# Request rules per resource through a PoP to http_backend.py: set/remove headers, Host
# rewrite, prefix strip, response headers; refusals (Host, CR/LF, hop-by-hop); clear.
popmesh_integration(http_rules)
# HTTPS origins: an nginx origin with a certificate from a test CA, verified with --ca, refused
# (502, logged) with another CA or none, accepted with --insecure-skip-verify; the SNI nginx saw.
popmesh_integration(https_origin)
