# The etcd client library (fleet directory, issue 16) against a real etcd on
# loopback (tests/etcd_cluster.hpp starts it; skipped without the binary).
# Labelled client too: the client links it, and the TSan pass runs it.
gpulease_add_test(etcd_client_test SOURCES etcd_client_test.cpp LIBS gpulease_etcd LABELS fleet client)
