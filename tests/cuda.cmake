# cuda backend tests (issue 6).
#   cuda_util_test, cuda_driver_api_test: run everywhere the backend builds.
#   cuda_backend_test: label `gpu`; skips with the reason without a device.
if(NOT TARGET gpulease_cuda)
  message(STATUS "gpulease: cuda backend not built: its tests are not built either")
  return()
endif()

gpulease_add_test(cuda_util_test SOURCES cuda_util_test.cpp LIBS gpulease_cuda)

# Fake drivers for the loader's failure paths (no GPU needed).
foreach(mode 1 2 3)
  add_library(gpulease_fake_cuda_${mode} MODULE cuda_fake_driver.c)
  target_compile_definitions(gpulease_fake_cuda_${mode} PRIVATE FAKE_MODE=${mode})
  target_include_directories(gpulease_fake_cuda_${mode} SYSTEM PRIVATE ${CUDAToolkit_INCLUDE_DIRS})
  set_target_properties(gpulease_fake_cuda_${mode} PROPERTIES
    LIBRARY_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/lib/fake_cuda)
endforeach()
gpulease_add_test(cuda_driver_api_test SOURCES cuda_driver_api_test.cpp LIBS gpulease_cuda)
add_dependencies(cuda_driver_api_test gpulease_fake_cuda_1 gpulease_fake_cuda_2 gpulease_fake_cuda_3)
target_compile_definitions(cuda_driver_api_test PRIVATE
  GPULEASE_FAKE_CUDA_NO_DEVICE="$<TARGET_FILE:gpulease_fake_cuda_1>"
  GPULEASE_FAKE_CUDA_TOO_OLD="$<TARGET_FILE:gpulease_fake_cuda_2>"
  GPULEASE_FAKE_CUDA_PRE_11_3="$<TARGET_FILE:gpulease_fake_cuda_3>")
# The toolkit's own stub libcuda (answers CUDA_ERROR_STUB_LIBRARY), if present.
find_file(GPULEASE_CUDA_STUB_LIB libcuda.so PATHS ${CUDAToolkit_LIBRARY_DIR}/stubs NO_DEFAULT_PATH)
if(GPULEASE_CUDA_STUB_LIB)
  target_compile_definitions(cuda_driver_api_test PRIVATE GPULEASE_CUDA_STUB_LIB="${GPULEASE_CUDA_STUB_LIB}")
endif()

gpulease_add_test(cuda_backend_test SOURCES cuda_backend_test.cpp
  LIBS gpulease_cuda gpulease_kernels LABELS gpu)
