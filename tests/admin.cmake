# node/admin: the status page's decoders and pages (the listener itself: integration tests
# admin_badinput, admin_prometheus, admin_status_page).
popmesh_unit_test(test_adminweb popmesh_adminweb)
popmesh_fuzz(fuzz_adminweb popmesh_adminweb)
