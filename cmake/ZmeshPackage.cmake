# Install the export set (zmesh::zmesh, zmesh::patterns and zmesh::nodes), the package config and zmesh.pc.
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
