// SPDX-License-Identifier: MPL-2.0
// titanic_status.cpp — the Titanic node's HTTP endpoint (titanic_status.hpp).
#include "titanic_status.hpp"

#include "../titanic/open_store.hpp"

#include <zmesh/nodes/metrics_text.hpp>

#include <nlohmann/json.hpp>

#include <mutex>
#include <optional>

namespace zmesh::cli {

namespace {

namespace ts = nodes::titanic;

/// A store connection for the counts, opened on first use and shared by the server's threads
/// (a store object is used by one thread at a time: the mutex).
struct store_reader {
    std::string spec;
    std::mutex mutex;
    std::unique_ptr<ts::store> store;
    std::string error; // why the counts are missing, if they are

    std::optional<ts::store_counts> counts() {
        std::lock_guard lock(mutex);
        try {
            if (!store) store = ts::open_store(spec);
            error.clear();
            return store->counts();
        } catch (const std::exception& e) {
            store.reset(); // opened again next time: the database may come back
            error = e.what();
            return std::nullopt;
        }
    }
};

constexpr const char page[] = R"html(<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>zmesh titanic</title>
<style>body{font:14px/1.4 system-ui,sans-serif;margin:1.5em}pre{background:#fff;border:1px solid #ddd;padding:.6em}</style>
</head><body><h1>zmesh titanic</h1>
<p><a href="/metrics">/metrics</a> (Prometheus) · <a href="/api/status">/api/status</a> (JSON) · <a href="/healthz">/healthz</a></p>
<pre id="status">loading…</pre>
<script>
async function poll() {
  try { const r = await fetch("/api/status", {cache: "no-store"});
        document.getElementById("status").textContent = JSON.stringify(await r.json(), null, 2); }
  catch (e) { document.getElementById("status").textContent = "unreachable: " + e.message; }
  setTimeout(poll, 1000);
}
poll();
</script></body></html>
)html";

} // namespace

http_status_sources titanic_status_sources(const nodes::titanic_node& node,
                                           const std::string& store_spec) {
    auto reader = std::make_shared<store_reader>();
    reader->spec = store_spec;
    const std::string name = ts::store_name(store_spec); // never a password
    http_status_sources s;
    s.metrics = [&node, reader] {
        const auto st = node.stats();
        std::string out;
        using nodes::append_metric;
        append_metric(out, "zmesh_titanic_stored_total", true,
                      "Requests stored and acknowledged (200): committed to the store.", st.stored);
        append_metric(out, "zmesh_titanic_store_errors_total", true,
                      "Submissions answered 500 because the store failed.", st.store_errors);
        append_metric(out, "zmesh_titanic_batches_total", true,
                      "Commits of submitted requests (group commit).", st.batches);
        append_metric(out, "zmesh_titanic_dispatched_total", true,
                      "Requests sent to their service, retries included.", st.dispatched);
        append_metric(out, "zmesh_titanic_replied_total", true, "Replies stored.", st.replied);
        append_metric(out, "zmesh_titanic_failures_total", true,
                      "Failed dispatches (error reply or timeout).", st.failures);
        append_metric(out, "zmesh_titanic_dead_lettered_total", true,
                      "Requests moved to the dead-letter queue.", st.dead_lettered);
        append_metric(out, "zmesh_titanic_malformed_total", true,
                      "TSP requests answered 400 for their form.", st.malformed);
        if (const auto c = reader->counts()) {
            append_metric(out, "zmesh_titanic_pending", false,
                          "Requests in the store waiting for dispatch or a retry.", c->pending);
            append_metric(out, "zmesh_titanic_replies_held", false,
                          "Requests in the store whose reply waits to be fetched.", c->replied);
            append_metric(out, "zmesh_titanic_dead", false,
                          "Requests in the store's dead-letter queue.", c->dead);
        }
        append_metric(out, "zmesh_titanic_up", false, "1 while the node's loop runs.",
                      node.running() ? 1 : 0);
        return out;
    };
    s.status_json = [&node, reader, name] {
        const auto st = node.stats();
        nlohmann::ordered_json j;
        j["node"] = "titanic";
        j["running"] = node.running();
        j["store"] = name;
        j["totals"] = {{"stored", st.stored},         {"store_errors", st.store_errors},
                       {"batches", st.batches},       {"largest_batch", st.largest_batch},
                       {"dispatched", st.dispatched}, {"replied", st.replied},
                       {"failures", st.failures},     {"dead_lettered", st.dead_lettered},
                       {"malformed", st.malformed}};
        if (const auto c = reader->counts())
            j["store_counts"] = {{"pending", c->pending}, {"replied", c->replied},
                                 {"dead", c->dead}};
        else
            j["store_counts_error"] = reader->error;
        return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
    };
    s.unhealthy = [&node] {
        return node.running() ? std::string() : std::string("titanic loop not running");
    };
    s.page = std::string_view(page, sizeof page - 1);
    return s;
}

} // namespace zmesh::cli
