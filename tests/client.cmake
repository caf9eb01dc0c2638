# The client library's tests: each runs a real node in-process (sim backend)
# and talks to it over loopback through the library.
foreach(t connection session lease renewal jobs grants)
  gpulease_add_test(client_${t}_test SOURCES client_${t}_test.cpp LIBS gpulease_client gpulease_node
                    LABELS client)
endforeach()
