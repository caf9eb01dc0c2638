add_executable(bench_node bench_node.cpp)
target_link_libraries(bench_node PRIVATE gpulease_node_internal benchmark::benchmark)
