# The client library's tests: each runs a real node in-process (sim backend)
# and talks to it over loopback through the library.
foreach(t connection session lease renewal jobs grants)
  gpulease_add_test(client_${t}_test SOURCES client_${t}_test.cpp LIBS gpulease_client gpulease_node
                    LABELS client)
endforeach()

# The recipe programs and the CLI against a real gpuleased process.
gpulease_add_test(examples_test SOURCES examples_test.cpp LIBS gpulease_capability LABELS client examples)
add_dependencies(examples_test gpuleased recipe30_scale_bias recipe34_pipeline recipe53_gateway recipe5_inference)
