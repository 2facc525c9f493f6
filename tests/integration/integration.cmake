# Integration tests: real popd and meshctl processes on this machine.
# popmesh_integration(NAME): tests/integration/NAME.sh with POPD, MESHCTL, LATRELAY and POPSITE set.
set(POPMESH_INTEGRATION_DIR ${CMAKE_CURRENT_LIST_DIR})
function(popmesh_integration name)
  add_test(NAME integration.${name} COMMAND bash ${POPMESH_INTEGRATION_DIR}/${name}.sh)
  set_property(TEST integration.${name} PROPERTY ENVIRONMENT
               "POPD=$<TARGET_FILE:popd>;MESHCTL=$<TARGET_FILE:meshctl>;LATRELAY=$<TARGET_FILE:latrelay>;POPSITE=$<TARGET_FILE:popsite>;FAKE_POP=$<TARGET_FILE:fake_pop>;MESH_SEND=$<TARGET_FILE:mesh_send>;ARTEFACT_DIR=${CMAKE_BINARY_DIR}/artefacts")
  set_property(TEST integration.${name} PROPERTY LABELS integration)
  set_property(TEST integration.${name} PROPERTY TIMEOUT 300)
  set_property(TEST integration.${name} PROPERTY SKIP_RETURN_CODE 77)
endfunction()

include(${CMAKE_CURRENT_LIST_DIR}/storage.cmake)
# A PoP that misbehaves on purpose, for popsite's bad-input test.
add_executable(fake_pop ${CMAKE_CURRENT_LIST_DIR}/fake_pop.c)
target_link_libraries(fake_pop PRIVATE popmesh_tconn popmesh_records)
# A member sending one raw mesh message, for the message-version test.
add_executable(mesh_send ${CMAKE_CURRENT_LIST_DIR}/mesh_send.c)
target_link_libraries(mesh_send PRIVATE popmesh_records PkgConfig::ZMQ)
popmesh_integration(popd_basic)
popmesh_integration(popd_badinput)
popmesh_integration(popd_durability)
popmesh_integration(mesh_join)
popmesh_integration(join_arbiter)
popmesh_integration(mesh_failure)
popmesh_integration(mesh_partition)
popmesh_integration(mesh_loss)
popmesh_integration(mesh_unauth)
popmesh_integration(mesh_clock)
popmesh_integration(mesh_version)
popmesh_integration(mesh_health)
popmesh_integration(mesh_no_inbound)
popmesh_integration(mesh_no_inbound_learned)
set_property(TEST integration.mesh_no_inbound_learned PROPERTY TIMEOUT 90)
popmesh_integration(relay_sealed)
popmesh_integration(tunnel_rekey)
popmesh_integration(site_admin)
popmesh_integration(dataplane)
popmesh_integration(site_failover)
popmesh_integration(site_replicas)
popmesh_integration(site_replicas_netns)
popmesh_integration(site_replicas_regions)
popmesh_integration(dataplane_load)
popmesh_integration(dataplane_targets)
popmesh_integration(health_config)
popmesh_integration(resource_sites)
popmesh_integration(resource_transit)
popmesh_integration(site_badinput)
popmesh_integration(http_ingress)
popmesh_integration(access_log)
popmesh_integration(login_mesh)
popmesh_integration(auth_admin)
popmesh_integration(dataplane_reroute)
popmesh_integration(mesh_ipv6)
popmesh_integration(latrelay)
set_property(TEST integration.latrelay PROPERTY TIMEOUT 60)

add_test(NAME integration.meshsim_determinism
         COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/meshsim_determinism.sh)
set_property(TEST integration.meshsim_determinism PROPERTY ENVIRONMENT
             "MESHSIM=$<TARGET_FILE:meshsim>")
set_property(TEST integration.meshsim_determinism PROPERTY LABELS integration)
popmesh_integration(dns_admin)
popmesh_integration(admin_badinput)
popmesh_integration(admin_prometheus)
# Webhook alerts: 3 PoPs, a site and a receiver that logs every POST; exactly one alert per event.
popmesh_integration(alerts_webhook)
set_property(TEST integration.alerts_webhook PROPERTY TIMEOUT 180)
popmesh_integration(admin_status_page)
set_property(TEST integration.admin_status_page PROPERTY TIMEOUT 120)
# OpenID Connect sign-in: a real oidc-provider, 2 PoPs, headless Chromium starting at one PoP
# and finishing at the other; refusals (domain, tampered state cookie).
popmesh_integration(oidc_login)
set_property(TEST integration.oidc_login PROPERTY TIMEOUT 120)
# The key hierarchy: 3 PoPs (full, verify-only), sessions signed by their PoP, a verify-only
# PoP's refusals, its copied directory's forgeries refused, node rm revoking sessions.
popmesh_integration(trust_sessions)
# TOTP second factor (enrol, codes once mesh-wide, recovery codes, --require-2fa) and the identity
# JWT the app gets, verified with the key set of another PoP: 2 PoPs, a site, an app.
popmesh_integration(totp_identity)
# The root key's life: an off-line root and key certify --root, export-root, rotate-root with
# its rollover, and the upgrade of a mesh made before roots.
popmesh_integration(trust_root)
# Signed configuration: records signed by their origin, checked on merge (an issue-sessions
# PoP writes only IdP users), adopted after node rm and after an unsigned (older) popd.
popmesh_integration(trust_config)
# Root rotation under load: a site, an app behind login, sessions from both PoPs used without
# pause through rotate-root and past its rollover; every request answered 200.
popmesh_integration(trust_rotation)
# The admin listener over HTTPS on the same port as plain HTTP: the mesh's certificate by SNI,
# a Secure cookie, an unknown name refused, garbage hellos counted.
popmesh_integration(admin_https)
