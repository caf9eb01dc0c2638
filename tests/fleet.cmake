# The fleet (issue 16), node side: registration in the etcd directory with real
# gpuleased processes and a real etcd on loopback (skipped without the etcd
# binary; scripts/install-deps installs it), and the fleet audience.
gpulease_add_test(fleet_node_test SOURCES fleet_node_test.cpp
  LIBS gpulease_node gpulease_client gpulease_etcd nlohmann_json::nlohmann_json LABELS fleet server)
add_dependencies(fleet_node_test gpuleased)
gpulease_add_test(fleet_audience_test SOURCES fleet_audience_test.cpp
  LIBS gpulease_node gpulease_client LABELS fleet server)
add_dependencies(fleet_audience_test gpuleased gpulease)
