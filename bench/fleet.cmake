# The fleet directory's scaling (issue 16): simulated nodes against a real etcd
# on loopback. Not a Google Benchmark binary (a scenario with its own table);
# scripts/bench runs it at the end when etcd is installed. docs/BENCHMARKS.md.
add_executable(fleet_scale_bench fleet_scale_bench.cpp)
target_include_directories(fleet_scale_bench PRIVATE ${PROJECT_SOURCE_DIR}/tests)
target_link_libraries(fleet_scale_bench PRIVATE gpulease_node_internal gpulease_etcd
                                                nlohmann_json::nlohmann_json)
