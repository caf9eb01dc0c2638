# cuda backend benchmarks (issue 6): each skips (SkipWithError) without a device.
if(NOT TARGET gpulease_cuda)
  return()
endif()
add_executable(bench_cuda bench_cuda.cpp)
target_link_libraries(bench_cuda PRIVATE gpulease_cuda gpulease_kernels benchmark::benchmark)
