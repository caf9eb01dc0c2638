# sim backend: interpreted PTX instructions per second (issue 5).
if(TARGET gpulease_sim)
  add_executable(bench_ptx ${CMAKE_CURRENT_LIST_DIR}/bench_ptx.cpp)
  target_link_libraries(bench_ptx PRIVATE gpulease_sim gpulease_kernels benchmark::benchmark)
endif()
