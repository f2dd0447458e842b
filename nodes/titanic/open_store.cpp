// SPDX-License-Identifier: MPL-2.0
// open_store.cpp — picks the Titanic store's engine from the --store text.
#include "open_store.hpp"

namespace zmesh::nodes::titanic {

std::unique_ptr<store> open_store(const std::string& spec, sync_mode mode) {
    if (is_pg_target(spec)) return open_pg_store(spec);
    return open_sqlite_store(spec, mode);
}

std::string store_name(const std::string& spec) {
    if (!is_pg_target(spec)) return spec;
    try {
        return "postgresql '" + pg_target_name(spec) + "'";
    } catch (const std::exception&) {
        return "postgresql (invalid connection string)";
    }
}

} // namespace zmesh::nodes::titanic
