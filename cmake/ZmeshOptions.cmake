# Every zmesh build option, prefixed so an embedding parent project sees no clashes.
option(ZMESH_BUILD_TESTS "Build the doctest suites and register them with ctest" ${PROJECT_IS_TOP_LEVEL})
option(ZMESH_BUILD_EXAMPLES "Build the examples" ${PROJECT_IS_TOP_LEVEL})
option(ZMESH_BUILD_BENCH "Build the benchmarks" ${PROJECT_IS_TOP_LEVEL})
option(ZMESH_BUILD_CLI "Build the zmesh command-line tool" ON)
option(ZMESH_INSTALL "Generate install rules" ${PROJECT_IS_TOP_LEVEL})
option(ZMESH_WERROR "Treat compiler warnings as errors" OFF)

set(ZMESH_SANITIZE "none" CACHE STRING "Sanitizers for zmesh's own targets")
set_property(CACHE ZMESH_SANITIZE PROPERTY STRINGS none address undefined thread "address,undefined")

# libFuzzer targets of tests/fuzz (clang only; see tests/fuzz/README.md). Turning it on also
# instruments zmesh's own libraries for coverage and builds everything with ASan and UBSan, so
# it belongs in a build directory of its own (scripts/fuzz uses build-fuzz/).
option(ZMESH_BUILD_FUZZ "Build the libFuzzer targets (needs clang)" OFF)

# Precompiled headers (zmesh_precompile_headers in ZmeshHelpers.cmake). Off by default: one
# source compiles faster with them (7.7 s of CPU against 10.3 s), but a whole build did not, since
# each target family's header is built first, alone, and weighs about 200 MB with -g (2026-12-05,
# 2 cores, clean RelWithDebInfo build: 1238 s of CPU without, 1338 s with, the same wall time).
option(ZMESH_PCH "Parse the heavy third-party headers once per target family (precompiled headers)"
       OFF)
