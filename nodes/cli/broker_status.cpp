// SPDX-License-Identifier: MPL-2.0
// broker_status.cpp — the broker's /api/status document (docs/metrics.md), with nlohmann-json.
#include "broker_status.hpp"

#include <zmesh/nodes/metrics_text.hpp>

#include <nlohmann/json.hpp>

#include <chrono>

namespace zmesh::cli {

std::string broker_status_json(const nodes::broker_metrics& m,
                               const std::vector<std::string>& endpoints) {
    nlohmann::ordered_json doc;
    doc["node"] = "broker";
    doc["running"] = m.running;
    doc["endpoints"] = endpoints;
    doc["max_memory"] = m.max_memory;
    auto& totals = doc["totals"] = nlohmann::ordered_json::object();
    for (const auto& f : nodes::broker_stat_fields()) totals[f.name] = m.totals.*f.field;
    // How old the per-service part is: it is a snapshot the broker's loop takes periodically.
    const auto now = std::chrono::steady_clock::now();
    doc["services_age_ms"] =
        m.taken == std::chrono::steady_clock::time_point{}
            ? nlohmann::ordered_json(nullptr)
            : nlohmann::ordered_json(
                  std::chrono::duration_cast<std::chrono::milliseconds>(now - m.taken).count());
    doc["latency_bounds"] = nodes::service_metrics::latency_bounds;
    auto& services = doc["services"] = nlohmann::ordered_json::array();
    for (const auto& s : m.services) {
        nlohmann::ordered_json j;
        j["name"] = s.name;
        j["requests"] = s.requests;
        j["replies"] = s.replies;
        j["requeued"] = s.requeued;
        j["rejected"] = s.rejected;
        j["expired"] = s.expired;
        j["queued"] = s.queued;
        j["workers"] = s.workers;
        j["in_flight"] = s.in_flight;
        j["latency_counts"] = s.latency_counts;
        j["latency_sum"] = s.latency_sum;
        services.push_back(std::move(j));
    }
    // Service names are bytes from the network (printable ASCII, checked by the broker), so
    // replace rather than throw should one ever not be UTF-8.
    return doc.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

} // namespace zmesh::cli
