# Lease execution (issue 11): isolation between tenants, lease ends that stop
# work, SYNC after cancellation, drain.
gpulease_add_test(server_isolation_test SOURCES server_isolation_test.cpp LIBS gpulease_node_internal LABELS server)
gpulease_add_test(leases_admission_test SOURCES leases_admission_test.cpp LIBS gpulease_node_internal LABELS server)
gpulease_add_test(leases_tombstones_test SOURCES leases_tombstones_test.cpp LIBS gpulease_node_internal LABELS server)
