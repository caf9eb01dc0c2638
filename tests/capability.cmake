# Capability tokens (issue 3): library tests, token vectors, CLI round trip.
gpulease_add_test(capability_test
  SOURCES
    capability_encoding_test.cpp
    capability_permissions_test.cpp
    capability_token_test.cpp
    capability_keys_test.cpp
    capability_key_ring_test.cpp
    capability_authority_test.cpp
    capability_signature_cache_test.cpp
    capability_revocation_test.cpp
    capability_verifier_test.cpp
    capability_docs_test.cpp
  LIBS gpulease_capability gpulease_sodium
  LABELS capability)

gpulease_add_test(capability_vectors_test
  SOURCES capability_vectors_test.cpp
  LIBS gpulease_capability gpulease_sodium nlohmann_json::nlohmann_json
  LABELS capability vectors)

gpulease_add_test(cli_keys_test
  SOURCES cli_keys_test.cpp
  LIBS
  LABELS capability cli)
add_dependencies(cli_keys_test gpulease)

# The checked-in vectors are exactly what the generator writes.
add_test(NAME token_vectors_up_to_date
         COMMAND gen_tokens --check ${PROJECT_SOURCE_DIR}/vectors/tokens)
set_tests_properties(token_vectors_up_to_date PROPERTIES LABELS "capability;vectors")
