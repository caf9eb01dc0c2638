# Token vectors: gen_tokens writes vectors/tokens/*.json deterministically
# (fixed seed keys, fixed clock). `gen_tokens --check DIR` compares instead of
# writing; the test token_vectors_up_to_date (tests/capability.cmake) runs it.
add_executable(gen_tokens ${CMAKE_CURRENT_SOURCE_DIR}/gen_tokens.cpp)
target_link_libraries(gen_tokens PRIVATE gpulease_capability gpulease_sodium
                                         nlohmann_json::nlohmann_json)
