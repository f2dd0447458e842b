// SPDX-License-Identifier: MPL-2.0
// titanic_status.hpp — internal: what `zmesh titanic --http ADDR` serves (docs/metrics.md): the
// node's counters and, read through a store connection of its own, how many requests the store
// holds pending, replied and dead.
#pragma once

#include "http_status.hpp"

#include <zmesh/nodes/titanic.hpp>

#include <memory>
#include <string>

namespace zmesh::cli {

/// The sources for http_status_server: /metrics, /api/status, /healthz and a small page at /.
/// @p node must outlive the server. The store named by @p store_spec is opened again, lazily, on
/// the server's thread, for the counts (several connections to one store are allowed); if it
/// cannot be opened, the counts are left out and the reason is in /api/status.
http_status_sources titanic_status_sources(const nodes::titanic_node& node,
                                           const std::string& store_spec);

} // namespace zmesh::cli
