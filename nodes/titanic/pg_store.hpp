// SPDX-License-Identifier: MPL-2.0
// pg_store.hpp — internal: the PostgreSQL engine of the Titanic store (store.hpp), through libpq.
//
// One table, zmesh_titanic_requests, holds every request, its reply, its dead-letter state and
// its claim, like the SQLite engine's one table; zmesh_titanic_meta records the schema version.
// Both are created if missing (under an advisory lock, so nodes starting together do not race).
// Several Titanic nodes may share the store: claim() hands out due requests with
// `FOR UPDATE SKIP LOCKED`, so two nodes never get the same request while its lease runs.
//
// Every write commits with synchronous_commit on (set on the session, whatever the server's
// default): when a call returns, the server has flushed the commit to its WAL.
#pragma once

#include "store.hpp"

#include <zmesh/export.hpp>

#include <memory>
#include <string>
#include <string_view>

namespace zmesh::nodes::titanic {

/// The schema version this build reads and writes (zmesh_titanic_meta, key schema_version).
inline constexpr int pg_schema_version = 1;

/// Whether @p spec names a PostgreSQL store rather than a SQLite file: a postgresql:// or
/// postgres:// URI, or a libpq key=value connection string (its first word is `key=`, such as
/// `host=/run/pg port=5432 dbname=zmesh`). A path with '=' in its first word is taken as a
/// connection string: write it as ./a=b to mean a file.
[[nodiscard]] ZMESH_EXPORT bool is_pg_target(std::string_view spec) noexcept;

/// The connection target of @p conninfo for messages: its host, port, database and user as
/// key=value pairs, never its password; "(libpq defaults)" if it names none.
[[nodiscard]] ZMESH_EXPORT std::string pg_target_name(const std::string& conninfo);

/// Connects to the PostgreSQL server of @p conninfo (any libpq connection string or URI) and
/// opens the Titanic store there, creating its tables if missing and @p create is true. The
/// result is used by one thread at a time (see store); it reconnects once per call when the
/// connection was lost.
/// @throws zmesh::error errc::storage naming the target (never the password) if the server cannot
///         be reached, refuses the login, holds a Titanic schema of another version, or (with
///         @p create false) holds no Titanic store.
ZMESH_EXPORT std::unique_ptr<store> open_pg_store(const std::string& conninfo, bool create = true);

} // namespace zmesh::nodes::titanic
