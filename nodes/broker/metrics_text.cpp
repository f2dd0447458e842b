// SPDX-License-Identifier: MPL-2.0
// metrics_text.cpp — broker_metrics as Prometheus text (nodes/metrics_text.hpp).
#include <zmesh/nodes/metrics_text.hpp>

#include <charconv>
#include <cstdint>
#include <string_view>

namespace zmesh::nodes {
namespace {

enum class kind { counter, gauge };

// clang-format off
constexpr broker_stat_field totals[] = {
    {"requests", "requests_total", true, &broker_stats::requests, "Valid client requests received."},
    {"replies", "replies_total", true, &broker_stats::replies, "Replies routed back to clients."},
    {"dispatched", "dispatched_total", true, &broker_stats::dispatched, "Requests sent to workers, re-deliveries included."},
    {"requeued", "requeued_total", true, &broker_stats::requeued, "In-flight requests put back after their worker died."},
    {"rejected", "rejected_total", true, &broker_stats::rejected, "Requests refused: limits, attempts, expiry, worker refusals."},
    {"expired", "expired_total", true, &broker_stats::expired, "Requests whose deadline passed before a worker took them."},
    {"mmi", "internal_requests_total", true, &broker_stats::mmi, "Requests the broker answered itself (mmi.*, zmesh.*)."},
    {"malformed", "malformed_total", true, &broker_stats::malformed, "Messages dropped as malformed."},
    {"workers_registered", "workers_registered_total", true, &broker_stats::workers_registered, "Worker registrations."},
    {"workers_expired", "workers_expired_total", true, &broker_stats::workers_expired, "Workers forgotten after heartbeat expiry."},
    {"workers_disconnected", "workers_disconnected_total", true, &broker_stats::workers_disconnected, "Workers sent or sending DISCONNECT."},
    {"undeliverable", "undeliverable_total", true, &broker_stats::undeliverable, "Replies whose client was gone or at its high-water mark."},
    {"disconnects", "disconnects_total", true, &broker_stats::disconnects, "Peer connections seen closing."},
    {"abandoned", "abandoned_total", true, &broker_stats::abandoned, "Queued requests dropped because their client's connection closed."},
    {"duplicates", "duplicates_total", true, &broker_stats::duplicates, "Retries that joined a pending request or got a kept reply."},
    {"dead_lettered", "dead_lettered_total", true, &broker_stats::dead_lettered, "Requests moved to the dead-letter queue."},
    {"dlq_dropped", "dlq_dropped_total", true, &broker_stats::dlq_dropped, "Dead letters dropped at dlq_max or the memory bound."},
    {"partials", "partials_total", true, &broker_stats::partials, "PARTIAL replies from workers."},
    {"parts_dropped", "parts_dropped_total", true, &broker_stats::parts_dropped, "PARTIAL replies not passed on."},
    {"failed_fast", "failed_fast_total", true, &broker_stats::failed_fast, "Fail-fast requests answered 404."},
    {"replies_dropped", "replies_dropped_total", true, &broker_stats::replies_dropped, "Replies dropped at the memory bounds."},
    {"workers", "workers", false, &broker_stats::workers, "Workers registered now."},
    {"services", "services", false, &broker_stats::services, "Services known now."},
    {"queued", "queued", false, &broker_stats::queued, "Requests waiting for a worker now."},
    {"queued_bytes", "queued_bytes", false, &broker_stats::queued_bytes, "Body bytes of the requests waiting now."},
    {"clients", "clients", false, &broker_stats::clients, "Clients tracked now."},
    {"memory", "memory_bytes", false, &broker_stats::memory, "Bytes counted against the memory bound now."},
    {"kept_replies", "kept_replies", false, &broker_stats::kept_replies, "Replies kept for retries now."},
    {"dlq", "dlq_entries", false, &broker_stats::dlq, "Entries in the dead-letter queue now."},
    {"forwarded", "forwarded_total", true, &broker_stats::forwarded, "Pub/sub: messages passed from publishers to subscribers."},
    {"dropped", "forward_dropped_total", true, &broker_stats::dropped, "Pub/sub: messages a slow subscriber lost."},
    {"subscriptions", "subscriptions_total", true, &broker_stats::subscriptions, "Pub/sub: subscriptions passed from subscribers to publishers."},
    {"subscriptions_refused", "subscriptions_refused_total", true, &broker_stats::subscriptions_refused, "Pub/sub: subscriptions refused at max_subscriptions."},
    {"probes", "probes_total", true, &broker_stats::probes, "Pub/sub: readiness probes answered."},
    {"stalls", "stalls_total", true, &broker_stats::stalls, "Pub/sub, lossless: times a full subscriber stopped the stream."},
    {"lvc_topics", "lvc_topics", false, &broker_stats::lvc_topics, "Pub/sub: topics in the last-value cache now."},
    {"lvc_evictions", "lvc_evictions_total", true, &broker_stats::lvc_evictions, "Pub/sub: topics evicted from the full last-value cache."},
    {"directory_entries", "directory_entries", false, &broker_stats::directory_entries, "Registrations in the directory now."},
    {"connections_admitted", "connections_admitted_total", true, &broker_stats::connections_admitted, "CURVE handshakes admitted."},
    {"connections_refused", "connections_refused_total", true, &broker_stats::connections_refused, "CURVE handshakes refused."},
    {"cut_off", "cut_off_total", true, &broker_stats::cut_off, "Connections closed because their key was removed."},
    {"forbidden", "forbidden_total", true, &broker_stats::forbidden, "Requests and registrations the access list refused."},
    {"publications_forbidden", "publications_forbidden_total", true, &broker_stats::publications_forbidden, "Pub/sub: publications the access list refused."},
    {"subscriptions_forbidden", "subscriptions_forbidden_total", true, &broker_stats::subscriptions_forbidden, "Pub/sub: subscriptions the access list refused."},
    {"publications_throttled", "publications_throttled_total", true, &broker_stats::publications_throttled, "Pub/sub: publications over a key's rate."},
    {"ha_state", "ha_state", false, &broker_stats::ha_state, "Binary Star: 1 primary, 2 backup, 3 active, 4 passive; 0 alone."},
    {"ha_changes", "ha_changes_total", true, &broker_stats::ha_changes, "Binary Star: state changes."},
    {"ha_clients_dropped", "ha_clients_dropped_total", true, &broker_stats::ha_clients_dropped, "Binary Star: client requests dropped while not active."},
    {"ha_workers_refused", "ha_workers_refused_total", true, &broker_stats::ha_workers_refused, "Binary Star: worker commands answered DISCONNECT while not active."},
    {"ha_peer_updates", "ha_peer_updates_total", true, &broker_stats::ha_peer_updates, "Binary Star: states heard from the peer."},
    {"ha_malformed", "ha_malformed_total", true, &broker_stats::ha_malformed, "Binary Star: malformed messages on the HA link."},
    {"ha_ledger", "ha_ledger_total", true, &broker_stats::ha_ledger, "Binary Star: request ids heard from the active peer."},
    {"ha_held", "ha_held_total", true, &broker_stats::ha_held, "Binary Star: retries held for a reply a worker may replay."},
    {"ha_released", "ha_released_total", true, &broker_stats::ha_released, "Binary Star: held retries passed on when no replay came."},
    {"ha_replays", "ha_replays_total", true, &broker_stats::ha_replays, "Binary Star: replies workers replayed."},
    {"ha_replay_answers", "ha_replay_answers_total", true, &broker_stats::ha_replay_answers, "Binary Star: retries answered from a replayed reply."},
};
// clang-format on

/// A service's counter or gauge.
struct service_metric {
    const char* name;
    kind type;
    std::uint64_t service_metrics::*field;
    const char* help;
};

constexpr service_metric per_service[] = {
    {"requests_total", kind::counter, &service_metrics::requests, "Requests for the service."},
    {"replies_total", kind::counter, &service_metrics::replies, "Final replies from its workers."},
    {"requeued_total", kind::counter, &service_metrics::requeued,
     "Its in-flight requests put back after their worker died."},
    {"rejected_total", kind::counter, &service_metrics::rejected, "Its requests refused."},
    {"expired_total", kind::counter, &service_metrics::expired,
     "Its requests whose deadline passed in the queue."},
    {"queued", kind::gauge, &service_metrics::queued, "Its requests waiting for a worker now."},
    {"workers", kind::gauge, &service_metrics::workers, "Its workers registered now."},
    {"in_flight", kind::gauge, &service_metrics::in_flight, "Its requests held by workers now."},
};

void append_number(std::string& out, std::uint64_t v) {
    char buf[24];
    const auto r = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, r.ptr);
}

/// Shortest round-trip form; @p fixed for bucket bounds, so that le reads "0.0001" as client
/// libraries write it, not "1e-04" (the label is compared as text).
void append_number(std::string& out, double v, bool fixed = false) {
    char buf[400]; // room for any double in fixed notation
    const auto r = fixed ? std::to_chars(buf, buf + sizeof buf, v, std::chars_format::fixed)
                         : std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, r.ptr);
}

void append_header(std::string& out, std::string_view name, kind type, std::string_view help) {
    out += "# HELP ";
    out += name;
    out += ' ';
    out += help;
    out += "\n# TYPE ";
    out += name;
    out += type == kind::counter ? " counter\n" : " gauge\n";
}

/// A label value as the format wants it: backslash, double quote and newline escaped.
void append_label_value(std::string& out, std::string_view v) {
    for (char c : v) {
        if (c == '\\') out += "\\\\";
        else if (c == '"') out += "\\\"";
        else if (c == '\n') out += "\\n";
        else out += c;
    }
}

void append_service_label(std::string& out, std::string_view service) {
    out += "{service=\"";
    append_label_value(out, service);
    out += '"';
}

} // namespace

std::span<const broker_stat_field> broker_stat_fields() noexcept { return totals; }

void append_metric(std::string& out, std::string_view name, bool counter, std::string_view help,
                   std::uint64_t value) {
    append_header(out, name, counter ? kind::counter : kind::gauge, help);
    out += name;
    out += ' ';
    append_number(out, value);
    out += '\n';
}

std::string prometheus_text(const broker_metrics& m) {
    std::string out;
    out.reserve(8192 + m.services.size() * 2048);
    for (const auto& t : totals) {
        const std::string name = std::string("zmesh_broker_") + t.metric;
        append_header(out, name, t.counter ? kind::counter : kind::gauge, t.help);
        out += name;
        out += ' ';
        append_number(out, m.totals.*t.field);
        out += '\n';
    }
    append_header(out, "zmesh_broker_memory_limit_bytes", kind::gauge,
                  "The memory bound (max_memory) memory_bytes counts against.");
    out += "zmesh_broker_memory_limit_bytes ";
    append_number(out, m.max_memory);
    out += '\n';
    append_header(out, "zmesh_broker_up", kind::gauge, "1 while the broker's loop runs.");
    out += m.running ? "zmesh_broker_up 1\n" : "zmesh_broker_up 0\n";

    for (const auto& sm : per_service) {
        const std::string name = std::string("zmesh_service_") + sm.name;
        append_header(out, name, sm.type, sm.help);
        for (const auto& s : m.services) {
            out += name;
            append_service_label(out, s.name);
            out += "} ";
            append_number(out, s.*sm.field);
            out += '\n';
        }
    }
    out += "# HELP zmesh_service_latency_seconds Time from a request's arrival at the broker to "
           "its final reply.\n# TYPE zmesh_service_latency_seconds histogram\n";
    for (const auto& s : m.services) {
        std::uint64_t cumulative = 0;
        for (std::size_t b = 0; b <= service_metrics::latency_bounds.size(); ++b) {
            cumulative += s.latency_counts[b];
            out += "zmesh_service_latency_seconds_bucket";
            append_service_label(out, s.name);
            out += ",le=\"";
            if (b < service_metrics::latency_bounds.size())
                append_number(out, service_metrics::latency_bounds[b], true);
            else
                out += "+Inf";
            out += "\"} ";
            append_number(out, cumulative);
            out += '\n';
        }
        out += "zmesh_service_latency_seconds_sum";
        append_service_label(out, s.name);
        out += "} ";
        append_number(out, s.latency_sum);
        out += "\nzmesh_service_latency_seconds_count";
        append_service_label(out, s.name);
        out += "} ";
        append_number(out, cumulative);
        out += '\n';
    }
    return out;
}

} // namespace zmesh::nodes
