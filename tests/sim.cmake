# sim backend tests (issue 5): the PTX loader, the interpreter's semantics,
# every kernel in kernels/ against a C++ reference, and the backend contract.
if(TARGET gpulease_sim)
  gpulease_add_test(ptx_parser_test
    SOURCES ptx_parser_test.cpp
    LIBS gpulease_sim gpulease_kernels
    LABELS sim)
  gpulease_add_test(ptx_semantics_test
    SOURCES ptx_semantics_test.cpp
    LIBS gpulease_sim gpulease_kernels
    LABELS sim)
  gpulease_add_test(ptx_slice_test
    SOURCES ptx_slice_test.cpp
    LIBS gpulease_sim gpulease_kernels
    LABELS sim)
  gpulease_add_test(ptx_corpus_test
    SOURCES ptx_corpus_test.cpp
    LIBS gpulease_sim gpulease_kernels
    LABELS sim)
  gpulease_add_test(ptx_math_test
    SOURCES ptx_math_test.cpp
    LIBS gpulease_sim gpulease_kernels
    LABELS sim)
  gpulease_add_test(ptx_ops_test
    SOURCES ptx_ops_test.cpp
    LIBS gpulease_sim gpulease_kernels
    LABELS sim)
  gpulease_add_test(ptx_ordinary_test
    SOURCES ptx_ordinary_test.cpp
    LIBS gpulease_sim gpulease_kernels
    LABELS sim)
  gpulease_add_test(ptx_intrinsics_test
    SOURCES ptx_intrinsics_test.cpp
    LIBS gpulease_sim gpulease_kernels
    LABELS sim)
  gpulease_add_test(ptx_half_test
    SOURCES ptx_half_test.cpp
    LIBS gpulease_sim gpulease_kernels
    LABELS sim)
  gpulease_add_test(ptx_fp16api_test
    SOURCES ptx_fp16api_test.cpp
    LIBS gpulease_sim gpulease_kernels
    LABELS sim)
  gpulease_add_test(ptx_async_test
    SOURCES ptx_async_test.cpp
    LIBS gpulease_sim gpulease_kernels
    LABELS sim)
  gpulease_add_test(ptx_wmma_test
    SOURCES ptx_wmma_test.cpp
    LIBS gpulease_sim gpulease_kernels
    LABELS sim)
  gpulease_add_test(sim_kernels_test
    SOURCES sim_kernels_test.cpp
    LIBS gpulease_sim gpulease_kernels
    LABELS sim)
  gpulease_add_test(sim_backend_test
    SOURCES sim_backend_test.cpp
    LIBS gpulease_sim gpulease_kernels
    LABELS sim)
endif()
