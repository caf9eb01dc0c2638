# Wire vectors: the JSON mapping shared by the generator, the tests and the
# fuzz round-trip target; the generator; and the test that the checked-in
# vectors and seed corpora are what the generator writes.
add_library(gpulease_wire_json STATIC ${CMAKE_CURRENT_LIST_DIR}/wire_json.cpp)
target_include_directories(gpulease_wire_json PUBLIC ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(gpulease_wire_json PUBLIC gpulease_wire nlohmann_json::nlohmann_json)

add_executable(gen_wire ${CMAKE_CURRENT_LIST_DIR}/gen_wire.cpp)
target_link_libraries(gen_wire PRIVATE gpulease_wire_json)

if(GPULEASE_BUILD_TESTS)
  set(_wire_gen_dir ${CMAKE_CURRENT_BINARY_DIR}/wire_generated)
  add_test(NAME wire_vectors_up_to_date
    COMMAND sh -c "rm -rf '${_wire_gen_dir}' && '$<TARGET_FILE:gen_wire>' '${_wire_gen_dir}/wire' --corpus '${_wire_gen_dir}/corpus' && diff -r '${_wire_gen_dir}/wire' '${PROJECT_SOURCE_DIR}/vectors/wire' && for t in fuzz_frame_header fuzz_request_payloads fuzz_reply_payloads fuzz_roundtrip; do diff -r \"${_wire_gen_dir}/corpus/$t\" \"${PROJECT_SOURCE_DIR}/fuzz/corpus/$t\" || exit 1; done")
  set_tests_properties(wire_vectors_up_to_date PROPERTIES LABELS wire)
endif()
