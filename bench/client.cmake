# Client library: launches per second with pipelining vs waiting for each
# reply, in the same run (docs/BENCHMARKS.md, "Client library").
add_executable(bench_client ${CMAKE_CURRENT_LIST_DIR}/bench_client.cpp)
target_link_libraries(bench_client PRIVATE gpulease_client gpulease_node_internal gpulease_kernels benchmark::benchmark)
