# sim backend: the PTX loader (issue 5). Seeds: fuzz/corpus/fuzz_ptx_loader/
# holds a copy of kernels/ptx/*.ptx.
if(TARGET gpulease_sim)
  gpulease_add_fuzzer(fuzz_ptx_loader SOURCE ${CMAKE_CURRENT_LIST_DIR}/fuzz_ptx_loader.cpp
                      LIBS gpulease_sim)
endif()
# sim backend: load and then execute (issue 12). Seeds: fuzz/corpus/fuzz_ptx_exec/
# (the kernels in kernels/ptx/ and hand-written warp/call/global cases).
if(TARGET gpulease_sim)
  gpulease_add_fuzzer(fuzz_ptx_exec SOURCE ${CMAKE_CURRENT_LIST_DIR}/fuzz_ptx_exec.cpp
                      LIBS gpulease_sim)
endif()
