# Token verification benchmarks (docs/BENCHMARKS.md, "Capability tokens").
add_executable(bench_token ${CMAKE_CURRENT_LIST_DIR}/bench_token.cpp)
target_link_libraries(bench_token PRIVATE gpulease_capability gpulease_sodium benchmark::benchmark)
