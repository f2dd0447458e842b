# Install the export set (zmesh::zmesh, zmesh::patterns and zmesh::nodes), the package config,
# zmesh.pc and zmesh-nodes.pc.
# Included from the top level once every exported target exists.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)
set(ZMESH_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/zmesh)
install(EXPORT zmeshTargets NAMESPACE zmesh:: DESTINATION ${ZMESH_CMAKE_DIR})
export(EXPORT zmeshTargets NAMESPACE zmesh:: FILE "${PROJECT_BINARY_DIR}/zmeshTargets.cmake")
configure_package_config_file("${PROJECT_SOURCE_DIR}/cmake/zmeshConfig.cmake.in"
    "${PROJECT_BINARY_DIR}/zmeshConfig.cmake" INSTALL_DESTINATION ${ZMESH_CMAKE_DIR})
write_basic_package_version_file("${PROJECT_BINARY_DIR}/zmeshConfigVersion.cmake"
    COMPATIBILITY SameMajorVersion)
install(FILES "${PROJECT_BINARY_DIR}/zmeshConfig.cmake" "${PROJECT_BINARY_DIR}/zmeshConfigVersion.cmake"
    DESTINATION ${ZMESH_CMAKE_DIR})

file(RELATIVE_PATH ZMESH_PC_TO_PREFIX "/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/")
configure_file("${PROJECT_SOURCE_DIR}/cmake/zmesh.pc.in" "${PROJECT_BINARY_DIR}/zmesh.pc" @ONLY)
install(FILES "${PROJECT_BINARY_DIR}/zmesh.pc" DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
# zmesh-nodes.pc: the nodes for pkg-config users, as zmesh::nodes is for CMake ones. The patterns
# library exists once a pattern has sources (patterns/CMakeLists.txt).
get_target_property(zmesh_patterns_type zmesh_patterns TYPE)
if(zmesh_patterns_type STREQUAL "INTERFACE_LIBRARY")
    set(ZMESH_PC_PATTERNS_LIB "")
else()
    set(ZMESH_PC_PATTERNS_LIB "-lzmesh_patterns")
endif()
configure_file("${PROJECT_SOURCE_DIR}/cmake/zmesh-nodes.pc.in" "${PROJECT_BINARY_DIR}/zmesh-nodes.pc" @ONLY)
install(FILES "${PROJECT_BINARY_DIR}/zmesh-nodes.pc" DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
