# Client library: launches per second with pipelining vs waiting for each
# reply, in the same run (docs/BENCHMARKS.md, "Client library").
add_executable(bench_client ${CMAKE_CURRENT_LIST_DIR}/bench_client.cpp)
target_link_libraries(bench_client PRIVATE gpulease_client gpulease_node_internal gpulease_kernels benchmark::benchmark)

# Fleet placement: LeaseBuilder(fleet) vs a named node, and ranking N nodes
# (docs/BENCHMARKS.md, "Fleet placement").
add_executable(bench_fleet_placement ${CMAKE_CURRENT_LIST_DIR}/bench_fleet_placement.cpp)
target_link_libraries(bench_fleet_placement PRIVATE gpulease_client gpulease_node_internal
                                                    benchmark::benchmark)
