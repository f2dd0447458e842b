# zmesh_add_test_suite(<name> SOURCES ... LIBS ...): one doctest executable, every case a ctest entry.
function(zmesh_add_test_suite name)
    cmake_parse_arguments(ARG "" "TIMEOUT" "SOURCES;LIBS" ${ARGN})
    if(NOT ARG_TIMEOUT)
        set(ARG_TIMEOUT 60)
    endif()
    add_executable(${name} ${ARG_SOURCES})
    zmesh_target_defaults(${name})
    target_link_libraries(${name} PRIVATE zmesh_test_support ${ARG_LIBS})
    if(TARGET zmesh_cli)
        add_dependencies(${name} zmesh_cli)
    endif()
    doctest_discover_tests(${name}
        TEST_PREFIX "${name}."
        PROPERTIES TIMEOUT ${ARG_TIMEOUT})
endfunction()
