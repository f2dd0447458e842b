# Finds zmesh's dependencies once, the CMake way.
#
# Debian's libzmq3-dev ships only libzmq.pc; cppzmq's own config falls back to its bundled
# pkg-config finder, which defines the imported target `libzmq`. msgpack-c is `msgpack-cxx`
# upstream from 6.0 and `msgpackc-cxx` (package `msgpack`) before that, as on Debian 12.
include(CMakeFindDependencyMacro)
find_package(cppzmq CONFIG REQUIRED)

find_package(msgpack-cxx CONFIG QUIET)
if(msgpack-cxx_FOUND)
    set(ZMESH_MSGPACK_PACKAGE msgpack-cxx)
    set(ZMESH_MSGPACK_TARGET msgpack-cxx)
else()
    find_package(msgpack CONFIG REQUIRED)
    set(ZMESH_MSGPACK_PACKAGE msgpack)
    set(ZMESH_MSGPACK_TARGET msgpackc-cxx)
endif()

if(ZMESH_BUILD_CLI OR ZMESH_BUILD_BENCH)
    find_package(Boost 1.71 REQUIRED COMPONENTS program_options)
endif()
if(ZMESH_BUILD_CLI)
    # The CLI's configuration file (nodes/cli/config.cpp) is TOML, read with toml++ (Debian 12:
    # libtomlplusplus-dev, whose CMake config gives tomlplusplus::tomlplusplus).
    find_package(tomlplusplus 3 CONFIG REQUIRED)
    # The broker's --http endpoint (nodes/cli/http_status.cpp): HTTP with cpp-httplib (Debian
    # 12: libcpp-httplib-dev, a compiled library found through its cpp-httplib.pc) and JSON with
    # nlohmann-json (nlohmann-json3-dev, header-only, CMake config nlohmann_json).
    find_package(PkgConfig REQUIRED)
    pkg_check_modules(ZMESH_HTTPLIB REQUIRED IMPORTED_TARGET cpp-httplib)
    find_package(nlohmann_json 3 CONFIG REQUIRED)
endif()
find_package(Threads REQUIRED)
# The Titanic node's store (nodes/titanic); CMake's FindSQLite3 gives SQLite::SQLite3.
find_package(SQLite3 REQUIRED)
# Its PostgreSQL engine talks to the server through libpq, the PostgreSQL client library (Debian
# 12: libpq-dev); CMake's FindPostgreSQL gives PostgreSQL::PostgreSQL.
find_package(PostgreSQL REQUIRED)
