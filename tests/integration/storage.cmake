# storage/ integration: acknowledged writes survive SIGKILL of the writer.
# Included from tests/integration/integration.cmake; paths are relative to this file.
add_executable(store_writer ${CMAKE_CURRENT_LIST_DIR}/store_writer.c)
target_link_libraries(store_writer PRIVATE popmesh_storage)
add_test(NAME integration.store_durability
         COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/store_durability.sh $<TARGET_FILE:store_writer>)
set_tests_properties(integration.store_durability PROPERTIES LABELS integration TIMEOUT 90)
