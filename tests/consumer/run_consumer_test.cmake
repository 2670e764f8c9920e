# tests/consumer/run_consumer_test.cmake -- cmake -P script behind the ctest consumer.find_package:
# install the build tree into PREFIX, configure tests/consumer against it (CMAKE_PREFIX_PATH only),
# build it and run it. Any failing step stops the script with an error.
# Inputs (-D): BUILD_DIR, CONFIG, PREFIX, CONSUMER_SOURCE_DIR, CONSUMER_BINARY_DIR, GENERATOR,
#              CXX_COMPILER.
cmake_minimum_required(VERSION 3.21)

foreach(var BUILD_DIR PREFIX CONSUMER_SOURCE_DIR CONSUMER_BINARY_DIR GENERATOR CXX_COMPILER)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "run_consumer_test.cmake: -D ${var}=... is required")
  endif()
endforeach()
if(NOT CONFIG)
  set(CONFIG Release)
endif()

function(step what)
  message(STATUS "consumer test: ${what}")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "consumer test: '${what}' failed (${rc})")
  endif()
endfunction()

# Start from nothing, so that nothing left over from an earlier run can make the test pass.
file(REMOVE_RECURSE "${PREFIX}" "${CONSUMER_BINARY_DIR}")

step("install into ${PREFIX}"
  "${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${PREFIX}" --config "${CONFIG}")
step("configure"
  "${CMAKE_COMMAND}" -S "${CONSUMER_SOURCE_DIR}" -B "${CONSUMER_BINARY_DIR}" -G "${GENERATOR}"
  "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}" "-DCMAKE_BUILD_TYPE=${CONFIG}"
  "-DCMAKE_PREFIX_PATH=${PREFIX}" "-DVITIQ_EXPECTED_PREFIX=${PREFIX}"
  -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF)
step("build" "${CMAKE_COMMAND}" --build "${CONSUMER_BINARY_DIR}" --config "${CONFIG}")

find_program(consumer_exe consumer PATHS "${CONSUMER_BINARY_DIR}" "${CONSUMER_BINARY_DIR}/${CONFIG}"
             NO_DEFAULT_PATH REQUIRED)
step("run ${consumer_exe}" "${consumer_exe}")
# consumer_blas exists where vitiq was installed with vitiq::blas (tests/consumer/CMakeLists.txt).
find_program(consumer_blas_exe consumer_blas PATHS "${CONSUMER_BINARY_DIR}" "${CONSUMER_BINARY_DIR}/${CONFIG}"
             NO_DEFAULT_PATH)
if(consumer_blas_exe)
  step("run ${consumer_blas_exe}" "${consumer_blas_exe}")
endif()
message(STATUS "consumer test: passed")
