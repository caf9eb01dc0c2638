# Wire protocol fuzz targets: one per decoder family plus the round trip.
# Seeds in fuzz/corpus/<target>/ are written by gen_wire from the vectors.
gpulease_add_fuzzer(fuzz_frame_header SOURCE ${CMAKE_CURRENT_LIST_DIR}/fuzz_frame_header.cpp
                    LIBS gpulease_wire)
gpulease_add_fuzzer(fuzz_request_payloads SOURCE ${CMAKE_CURRENT_LIST_DIR}/fuzz_request_payloads.cpp
                    LIBS gpulease_wire)
gpulease_add_fuzzer(fuzz_reply_payloads SOURCE ${CMAKE_CURRENT_LIST_DIR}/fuzz_reply_payloads.cpp
                    LIBS gpulease_wire)
gpulease_add_fuzzer(fuzz_roundtrip SOURCE ${CMAKE_CURRENT_LIST_DIR}/fuzz_roundtrip.cpp
                    LIBS gpulease_wire_json)
