// SPDX-License-Identifier: MPL-2.0
// sqlite_store.hpp — internal: the SQLite engine of the Titanic store (store.hpp).
//
// One SQLite file in WAL mode holds every request, its reply and its dead-letter state. WAL lets
// readers in other processes (`zmesh dlq list`) run while the node writes, and a writer from
// another process (`zmesh dlq replay`) waits for its turn through a busy timeout.
//
// The file is marked as ours with PRAGMA application_id = application_id and PRAGMA
// user_version = schema_version. A file that is not SQLite, not ours, of another schema version
// or corrupt is refused before anything is written to it. A new store is built in a temporary
// file next to the path and linked into place only once complete, so a crash while creating it
// never leaves a half-made store behind.
#pragma once

#include "store.hpp"

#include <zmesh/export.hpp>

#include <cstdint>
#include <filesystem>
#include <memory>

namespace zmesh::nodes::titanic {

/// How hard a commit pushes data to the disk. Both survive the process being killed (SIGKILL,
/// crash): the difference is a power loss or OS crash.
enum class sync_mode {
    /// PRAGMA synchronous=FULL: each commit is fsync'ed before it returns, so an acknowledged
    /// request survives a power loss. The default of the node.
    full,
    /// PRAGMA synchronous=NORMAL: in WAL mode the log is fsync'ed only at checkpoints, so the
    /// last commits may be lost on power loss (never corrupting the store).
    normal,
};

/// PRAGMA application_id of a zmesh Titanic store: "ZMTI" in ASCII.
inline constexpr std::int32_t sqlite_application_id = 0x5A4D5449;
/// PRAGMA user_version: the version of the schema this build reads and writes.
/// Version 2 added claims (store::claim()); a version 1 store is upgraded when it is opened.
inline constexpr std::int32_t sqlite_schema_version = 2;

/// Opens the SQLite store at @p path, creating it if the path does not exist or is an empty
/// file. The result is used by one thread at a time (see store).
/// @throws zmesh::error errc::storage naming @p path if the file cannot be opened or created,
///         is not a SQLite database, is a SQLite database of another application or schema
///         version, or is corrupt. Such a file is left exactly as it was.
ZMESH_EXPORT std::unique_ptr<store> open_sqlite_store(const std::filesystem::path& path,
                                                      sync_mode mode = sync_mode::full);

} // namespace zmesh::nodes::titanic
