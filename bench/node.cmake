add_executable(bench_node bench_node.cpp)
target_link_libraries(bench_node PRIVATE gpulease_node_internal benchmark::benchmark)
# A good session under a flood of bad-signature tokens, with and without the
# per-address limit on failed verifications.
add_executable(bench_auth_flood bench_auth_flood.cpp)
target_link_libraries(bench_auth_flood PRIVATE gpulease_node_internal benchmark::benchmark)
