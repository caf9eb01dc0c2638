# gpuleased: the node library (everything but main, so tests run a node
# in-process) and the daemon.
add_library(gpulease_node
  src/backend_factory.cpp
  src/config.cpp
  src/log.cpp
  src/metrics.cpp
  src/net/auth_limiter.cpp
  src/net/connection.cpp
  src/net/frame_budget.cpp
  src/net/net.cpp
  src/net/reply_budget.cpp
  src/node.cpp
  src/leases/admission.cpp
  src/leases/tombstones.cpp
  src/leases/lease_executor.cpp
  src/fleet/registrar.cpp
)
# src/ and src/net/ are the library's own (PRIVATE). In-tree tests and
# benches that run a node in-process include node.hpp / net.hpp through
# gpulease_node_internal, which says so by its name; the library is not
# installed. Flag and config-file parsing (CLI11, toml++) stay inside config.cpp.
target_include_directories(gpulease_node PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/src
                                                 ${CMAKE_CURRENT_SOURCE_DIR}/src/net)
add_library(gpulease_node_internal INTERFACE)
target_include_directories(gpulease_node_internal INTERFACE ${CMAKE_CURRENT_SOURCE_DIR}/src
                                                            ${CMAKE_CURRENT_SOURCE_DIR}/src/net)
target_link_libraries(gpulease_node_internal INTERFACE gpulease_node)
target_link_libraries(gpulease_node
  PUBLIC gpulease_wire gpulease_capability gpulease_backend_api gpulease_sim gpulease_asio
         gpulease_etcd
         Threads::Threads
  PRIVATE CLI11::CLI11 tomlplusplus::tomlplusplus gpulease_sodium
          nlohmann_json::nlohmann_json)
if(TARGET gpulease_cuda)
  target_link_libraries(gpulease_node PUBLIC gpulease_cuda)
  target_compile_definitions(gpulease_node PRIVATE GPULEASE_HAVE_CUDA_BACKEND=1)
endif()

add_executable(gpuleased src/main.cpp)
target_link_libraries(gpuleased PRIVATE gpulease_node_internal)
install(TARGETS gpuleased RUNTIME DESTINATION bin)
