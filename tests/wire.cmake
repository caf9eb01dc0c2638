# Wire protocol tests (one per wire source) and the golden vector checks.
gpulease_add_test(wire_frame_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/wire_frame_test.cpp
                  LIBS gpulease_wire_json LABELS wire)
gpulease_add_test(wire_messages_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/wire_messages_test.cpp
                  LIBS gpulease_wire LABELS wire)
gpulease_add_test(wire_status_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/wire_status_test.cpp
                  LIBS gpulease_wire LABELS wire)
gpulease_add_test(wire_vectors_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/wire_vectors_test.cpp
                  LIBS gpulease_wire_json LABELS wire)
gpulease_add_test(wire_utf8_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/wire_utf8_test.cpp
                  LIBS gpulease_wire LABELS wire)
gpulease_add_test(wire_opcodes_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/wire_opcodes_test.cpp
                  LIBS gpulease_wire gpulease_capability LABELS wire)
