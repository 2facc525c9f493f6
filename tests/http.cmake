# node/httpmsg: the HTTP/1.1 message readers of the reverse proxy (limits, refusal rules,
# every-split-point equivalence) and the fuzzer of the request and response readers.
popmesh_unit_test(test_httpmsg popmesh_node)
popmesh_fuzz(fuzz_httpmsg popmesh_node)
# The ingress against an adversarial client and a misbehaving application (real popd, popsite
# and http_backend.py). Registered here rather than in integration.cmake: the HTTP area keeps
# its own list.
add_test(NAME integration.http_hardening
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/integration/http_hardening.sh)
set_property(TEST integration.http_hardening PROPERTY ENVIRONMENT
             "POPD=$<TARGET_FILE:popd>;MESHCTL=$<TARGET_FILE:meshctl>;POPSITE=$<TARGET_FILE:popsite>")
set_property(TEST integration.http_hardening PROPERTY LABELS integration)
set_property(TEST integration.http_hardening PROPERTY TIMEOUT 300)
# node/httphdr: the proxy's header checks and rewrites (identity headers, Host, redirect
# targets, cross-site forms, cookies, the WebSocket handshake) and common/logesc.
popmesh_unit_test(test_httphdr popmesh_node)
popmesh_fuzz(fuzz_httphdr popmesh_node)
# The ingress's bounds on what one client can hold: connection caps (per address, overall)
# and timeouts (request body, response, response idle), with the test knobs of docs/http.md.
add_test(NAME integration.http_limits
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/integration/http_limits.sh)
set_property(TEST integration.http_limits PROPERTY ENVIRONMENT
             "POPD=$<TARGET_FILE:popd>;MESHCTL=$<TARGET_FILE:meshctl>;POPSITE=$<TARGET_FILE:popsite>")
set_property(TEST integration.http_limits PROPERTY LABELS integration)
set_property(TEST integration.http_limits PROPERTY TIMEOUT 180)
