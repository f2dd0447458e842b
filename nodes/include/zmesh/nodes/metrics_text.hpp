// SPDX-License-Identifier: MPL-2.0
// nodes/metrics_text.hpp — a broker's metrics in the Prometheus text exposition format.
//
// `zmesh broker --http ADDR` serves this at /metrics (docs/metrics.md); a program that embeds a
// broker can serve it from its own HTTP server. The format is Prometheus's text format 0.0.4
// (https://prometheus.io/docs/instrumenting/exposition_formats/): for each metric a # HELP and a
// # TYPE line, then its samples. Counters end in _total; per-service samples carry the label
// service="NAME", escaped as the format requires.
#pragma once

#include <zmesh/export.hpp>
#include <zmesh/nodes/broker.hpp>

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace zmesh::nodes {

/// The Content-Type of prometheus_text()'s output.
inline constexpr const char* prometheus_content_type = "text/plain; version=0.0.4; charset=utf-8";

/// One counter or gauge of broker_stats, named for people and for Prometheus.
struct broker_stat_field {
    const char* name;   ///< the broker_stats member, as /api/status names it
    const char* metric; ///< its Prometheus name after "zmesh_broker_" (counters end in _total)
    bool counter;       ///< a counter (only grows); else a gauge (a level now)
    std::uint64_t broker_stats::*field;
    const char* help;   ///< one sentence, the # HELP line
};

/// Every field of broker_stats, in the order /metrics shows them.
[[nodiscard]] ZMESH_EXPORT std::span<const broker_stat_field> broker_stat_fields() noexcept;

/// Appends one metric to @p out in the text format: its # HELP and # TYPE lines and one sample
/// without labels. For nodes with a few counters of their own (Titanic), written here once.
ZMESH_EXPORT void append_metric(std::string& out, std::string_view name, bool counter,
                                std::string_view help, std::uint64_t value);

/// @p m as Prometheus text: the broker's counters and gauges (zmesh_broker_*), and per service
/// its counters, state and a latency histogram (zmesh_service_*).
[[nodiscard]] ZMESH_EXPORT std::string prometheus_text(const broker_metrics& m);

} // namespace zmesh::nodes
