# The client library's tests: each runs a real node in-process (sim backend)
# and talks to it over loopback through the library.
foreach(t connection session lease renewal jobs grants)
  gpulease_add_test(client_${t}_test SOURCES client_${t}_test.cpp LIBS gpulease_client gpulease_node_internal
                    LABELS client)
endforeach()

# The recipe programs and the CLI against a real gpuleased process.
gpulease_add_test(examples_test SOURCES examples_test.cpp LIBS gpulease_capability LABELS client examples)
add_dependencies(examples_test gpuleased recipe30_scale_bias recipe34_pipeline recipe53_gateway recipe5_inference)
gpulease_add_test(client_cli_test SOURCES client_cli_test.cpp
                  LIBS gpulease_capability nlohmann_json::nlohmann_json LABELS client)
add_dependencies(client_cli_test gpuleased gpulease)

# The installed package works: cmake --install, then find_package(gpulease)
# from a separate project (tests/install_consumer).
add_test(NAME client_install_test
  COMMAND ${CMAKE_COMMAND} -DBUILD_DIR=${CMAKE_BINARY_DIR} -DSOURCE_DIR=${PROJECT_SOURCE_DIR}
          -DWORK_DIR=${CMAKE_CURRENT_BINARY_DIR}/install_consumer_work -DGENERATOR=${CMAKE_GENERATOR}
          -DCXX=${CMAKE_CXX_COMPILER} -P ${PROJECT_SOURCE_DIR}/tests/install_consumer/run.cmake)
set_tests_properties(client_install_test PROPERTIES LABELS "client;install" TIMEOUT 300)
