// SPDX-License-Identifier: MPL-2.0
// broker_status.hpp — internal: the JSON of the broker's /api/status (docs/metrics.md).
#pragma once

#include <zmesh/nodes/broker.hpp>

#include <string>
#include <vector>

namespace zmesh::cli {

/// @p m as one JSON object: node, running, endpoints, max_memory, totals (every broker_stats
/// field by name), services_age_ms, latency_bounds, and services (name, counters, state and
/// latency_counts per bucket of latency_bounds, the last over the last bound).
std::string broker_status_json(const nodes::broker_metrics& m,
                               const std::vector<std::string>& endpoints);

} // namespace zmesh::cli
