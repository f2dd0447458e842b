# zmesh_check_test_names(<sources>...): stops the configure step when a doctest case name holds
# a ';'. doctest_discover_tests reads the names through a CMake list, which splits them there:
# the two halves become ctest entries whose filters match no case, and they pass having run
# nothing (eight cases went unrun that way before this check).
function(zmesh_check_test_names)
    foreach(src IN LISTS ARGN)
        file(STRINGS "${src}" lines REGEX "(TEST_CASE|SUBCASE)\\(\"[^\"]*;")
        if(lines)
            list(GET lines 0 first)
            message(FATAL_ERROR "${src}: a test case name holds ';', which ctest would split "
                "into entries that run nothing; use another word: ${first}")
        endif()
    endforeach()
endfunction()

# zmesh_precompile_headers(<target> <header>...): with ZMESH_PCH on, <target> parses these headers
# once, as a precompiled header, instead of once per source file.
# Why: libzmq's C++ header, msgpack-c and Boost.Program_options are 80 to 170 thousand
# preprocessed lines each, and nearly every zmesh source includes one or more of them; parsing them
# again in every translation unit was most of the build (and .ci/run builds three times).
# ZMESH_PCH_COMMON is what almost every zmesh source includes.
set(ZMESH_PCH_COMMON "<algorithm>" "<chrono>" "<cstdint>" "<cstring>" "<functional>" "<map>"
    "<memory>" "<optional>" "<string>" "<string_view>" "<unordered_map>" "<vector>"
    "<zmq.hpp>" "<msgpack.hpp>")
function(zmesh_precompile_headers tgt)
    if(ZMESH_PCH)
        target_precompile_headers(${tgt} PRIVATE ${ARGN})
        zmesh_pch_warnings(${tgt})
    endif()
endfunction()

# zmesh_pch_warnings(<target>): GCC 12's middle-end bounds warnings fire inside libstdc++ (a
# std::string moved into a vector, in tests/support/process.cpp) once the standard headers come
# from a precompiled header rather than from the system include path, where they are silenced:
# they are false positives (GCC bugs 105329 and 105651), and ASan checks bounds at run time in
# the sanitizer builds, so they are off where a target uses a precompiled header.
function(zmesh_pch_warnings tgt)
    if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
        target_compile_options(${tgt} PRIVATE -Wno-array-bounds -Wno-stringop-overflow
                                                  -Wno-stringop-overread -Wno-restrict)
    endif()
endfunction()

# zmesh_reuse_test_pch(<target>): a test executable uses the precompiled header of
# zmesh_test_support (doctest, libzmq, msgpack and the zmesh library's headers, tests/CMakeLists.txt)
# rather than building its own: one for every suite.
function(zmesh_reuse_test_pch tgt)
    if(ZMESH_PCH AND TARGET zmesh_test_support)
        target_precompile_headers(${tgt} REUSE_FROM zmesh_test_support)
        zmesh_pch_warnings(${tgt})
    endif()
endfunction()

# zmesh_add_test_suite(<name> SOURCES ... LIBS ...): one doctest executable, every case a ctest entry.
function(zmesh_add_test_suite name)
    cmake_parse_arguments(ARG "" "TIMEOUT" "SOURCES;LIBS" ${ARGN})
    zmesh_check_test_names(${ARG_SOURCES})
    if(NOT ARG_TIMEOUT)
        set(ARG_TIMEOUT 60)
    endif()
    add_executable(${name} ${ARG_SOURCES})
    zmesh_target_defaults(${name})
    target_link_libraries(${name} PRIVATE zmesh_test_support ${ARG_LIBS})
    zmesh_reuse_test_pch(${name})
    if(TARGET zmesh_cli)
        add_dependencies(${name} zmesh_cli)
    endif()
    doctest_discover_tests(${name}
        TEST_PREFIX "${name}."
        PROPERTIES TIMEOUT ${ARG_TIMEOUT})
endfunction()

# zmesh_add_fuzz_target(<name> SOURCES ... [LIBS ...]): the libFuzzer executable fuzz_<name>
# (ASan and UBSan, see tests/fuzz/README.md), linked with zmesh_fuzz_support (the frame scheme of
# fuzz_input.hpp, zmesh::nodes, and nodes/ on the include path for node internals), and the ctest
# entry fuzz.<name> (label fuzz), which runs it on a copy of corpus/<name>/ next to the caller's
# CMakeLists.txt for $ZMESH_FUZZ_SECONDS and fails on any finding.
# UBSan does not recover, so any undefined behaviour is a finding like a crash.
set(ZMESH_FUZZ_SANITIZERS -fsanitize=address,undefined -fno-sanitize-recover=undefined
    -fno-omit-frame-pointer)
function(zmesh_add_fuzz_target name)
    cmake_parse_arguments(ARG "" "" "SOURCES;LIBS" ${ARGN})
    set(tgt fuzz_${name})
    add_executable(${tgt} ${ARG_SOURCES})
    zmesh_target_defaults(${tgt})
    target_compile_options(${tgt} PRIVATE ${ZMESH_FUZZ_SANITIZERS} -fsanitize=fuzzer)
    target_link_options(${tgt} PRIVATE ${ZMESH_FUZZ_SANITIZERS} -fsanitize=fuzzer)
    target_link_libraries(${tgt} PRIVATE zmesh_fuzz_support ${ARG_LIBS})
    add_test(NAME fuzz.${name}
             COMMAND "${PROJECT_SOURCE_DIR}/tests/fuzz/run_target.sh" "$<TARGET_FILE:${tgt}>"
                     "${CMAKE_CURRENT_SOURCE_DIR}/corpus/${name}"
                     "${CMAKE_CURRENT_BINARY_DIR}/runs/${name}")
    set_tests_properties(fuzz.${name} PROPERTIES LABELS fuzz)
endfunction()
