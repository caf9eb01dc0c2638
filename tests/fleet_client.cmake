# The client's fleet against a real etcd and gpuleased processes on loopback
# (tests/etcd_cluster.hpp; skipped without the etcd binary): the directory
# view and watch, `gpulease nodes`, the replicated idempotency store and the
# recipe-53 gateway race; three registered nodes: placement, recipe 34 through
# a node's kill -9 and the etcd leader's death. Placement without etcd:
# client_fleet_test.
gpulease_add_test(fleet_client_test SOURCES fleet_client_test.cpp
                  LIBS gpulease_client gpulease_etcd gpulease_capability nlohmann_json::nlohmann_json
                  LABELS fleet)
add_dependencies(fleet_client_test gpuleased gpulease recipe34_pipeline recipe53_gateway)
