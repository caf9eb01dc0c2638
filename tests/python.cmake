# The Python client's pytest suite (client/python/tests): every wire and token
# vector both ways, live tests against a gpuleased it starts (sim backend,
# loopback), and the Python ports of recipes 30 and 34. It runs under Debian's
# /usr/bin/python3 with python3-nacl, python3-xxhash, python3-numpy and
# python3-pytest (scripts/install-deps installs them).
set(GPULEASE_PYTHON "/usr/bin/python3" CACHE FILEPATH "Python interpreter for the Python client's tests")
add_test(NAME python_client
  COMMAND ${CMAKE_COMMAND} -E env
          GPULEASE_BIN_DIR=${CMAKE_RUNTIME_OUTPUT_DIRECTORY}
          PYTHONDONTWRITEBYTECODE=1
          ${GPULEASE_PYTHON} -m pytest -q -p no:cacheprovider ${PROJECT_SOURCE_DIR}/client/python/tests
  WORKING_DIRECTORY ${PROJECT_SOURCE_DIR}/client/python)
set_tests_properties(python_client PROPERTIES LABELS "client;python" TIMEOUT 600)
