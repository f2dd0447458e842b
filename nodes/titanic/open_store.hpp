// SPDX-License-Identifier: MPL-2.0
// open_store.hpp — internal: opens the Titanic store that a --store text names, on its engine.
//
// A postgresql:// or postgres:// URI, or a libpq key=value connection string, is a PostgreSQL
// store (pg_store.hpp); anything else is the path of a SQLite file (sqlite_store.hpp), as it
// always was.
#pragma once

#include "pg_store.hpp"
#include "sqlite_store.hpp"

#include <zmesh/export.hpp>

#include <memory>
#include <string>

namespace zmesh::nodes::titanic {

/// Opens the store @p spec names (see is_pg_target()). @p mode applies to SQLite only: a
/// PostgreSQL commit is always flushed to the server's WAL (synchronous_commit on).
/// @throws zmesh::error errc::storage as open_sqlite_store() or open_pg_store().
ZMESH_EXPORT std::unique_ptr<store> open_store(const std::string& spec,
                                               sync_mode mode = sync_mode::full);

/// @p spec for messages: a SQLite path as it is, a PostgreSQL target without its password.
[[nodiscard]] ZMESH_EXPORT std::string store_name(const std::string& spec);

} // namespace zmesh::nodes::titanic
