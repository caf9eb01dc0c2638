# Wire codec benchmark (scripts/bench runs every build/bin/bench_*).
add_executable(bench_wire ${CMAKE_CURRENT_LIST_DIR}/bench_wire.cpp)
target_link_libraries(bench_wire PRIVATE gpulease_wire benchmark::benchmark)
