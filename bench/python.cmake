# The C++ side of the Python client's benchmark (client/python/bench/
# bench_client.py, run by scripts/bench): the same measurements through the
# C++ client against the same node. Not named bench_* because it is not a
# Google Benchmark binary; scripts/bench runs it through the Python script.
add_executable(client_bench_peer ${CMAKE_CURRENT_LIST_DIR}/python_peer.cpp)
target_link_libraries(client_bench_peer PRIVATE gpulease_client)
