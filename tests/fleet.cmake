# The fleet (issue 16), node side: registration in the etcd directory with real
# gpuleased processes and a real etcd on loopback (skipped without the etcd
# binary; scripts/install-deps installs it), and the fleet audience.
gpulease_add_test(fleet_node_test SOURCES fleet_node_test.cpp
  LIBS gpulease_node_internal gpulease_client gpulease_etcd nlohmann_json::nlohmann_json LABELS fleet server)
add_dependencies(fleet_node_test gpuleased)
gpulease_add_test(fleet_audience_test SOURCES fleet_audience_test.cpp
  LIBS gpulease_node_internal gpulease_client LABELS fleet server)
add_dependencies(fleet_audience_test gpuleased gpulease)
# server/deploy/kubernetes: YAML syntax and consistency (python3-yaml).
add_test(NAME k8s_manifests COMMAND /usr/bin/python3 ${PROJECT_SOURCE_DIR}/tests/k8s_manifests_test.py)
set_tests_properties(k8s_manifests PROPERTIES LABELS "fleet" TIMEOUT 60)
