# The node's integration tests: a real node on loopback (sim backend).
gpulease_add_test(server_session_test SOURCES server_session_test.cpp LIBS gpulease_node)
gpulease_add_test(server_security_test SOURCES server_security_test.cpp LIBS gpulease_node)
gpulease_add_test(server_frames_test SOURCES server_frames_test.cpp LIBS gpulease_node)
