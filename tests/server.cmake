# The node's integration tests: a real node on loopback (sim backend).
gpulease_add_test(server_session_test SOURCES server_session_test.cpp LIBS gpulease_node_internal LABELS server)
gpulease_add_test(server_security_test SOURCES server_security_test.cpp LIBS gpulease_node_internal LABELS server)
gpulease_add_test(server_frames_test SOURCES server_frames_test.cpp LIBS gpulease_node_internal LABELS server)
# Every kernel in kernels/ through the node: the sim kernel suite compiled
# against a DeviceContext that sends each op as a frame to a real node.
gpulease_add_test(node_kernels_test SOURCES sim_kernels_test.cpp LIBS gpulease_node_internal gpulease_kernels LABELS server)
target_compile_definitions(node_kernels_test PRIVATE GPULEASE_KERNELS_THROUGH_NODE=1)
gpulease_add_test(server_config_test SOURCES server_config_test.cpp LIBS gpulease_node_internal LABELS server)
# The network layer under attack (issue 11): loopback, bounded loops.
gpulease_add_test(server_attack_test SOURCES server_attack_test.cpp LIBS gpulease_node_internal LABELS server)
# Attacks of the issue 11 attack session: memory a tenant had not paid for, connection slots.
gpulease_add_test(server_hostile_test SOURCES server_hostile_test.cpp LIBS gpulease_node_internal LABELS server)
# The per-address limit on failed token verifications (net/auth_limiter.hpp).
gpulease_add_test(server_auth_limiter_test SOURCES server_auth_limiter_test.cpp LIBS gpulease_node_internal LABELS server)
