# Capability token fuzz target. Seeds in fuzz/corpus/fuzz_token/ are written by
# `gen_tokens --corpus fuzz/corpus/fuzz_token`.
if(COMMAND gpulease_add_fuzzer)
  gpulease_add_fuzzer(fuzz_token SOURCE ${CMAKE_CURRENT_LIST_DIR}/fuzz_token.cpp
                      LIBS gpulease_capability)
elseif(GPULEASE_BUILD_FUZZ)
  add_executable(fuzz_token ${CMAKE_CURRENT_LIST_DIR}/fuzz_token.cpp)
  target_compile_options(fuzz_token PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_options(fuzz_token PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_libraries(fuzz_token PRIVATE gpulease_capability)
endif()
