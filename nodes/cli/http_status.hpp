// SPDX-License-Identifier: MPL-2.0
// http_status.hpp — internal: the HTTP endpoint of `zmesh broker --http ADDR` (docs/metrics.md).
//
// One small HTTP server on a thread of its own (cpp-httplib), serving what a node exposes for
// operators: /metrics (Prometheus text), /healthz (for a load balancer or a supervisor),
// /api/status (the same state as JSON) and / (a status page that polls /api/status). It only
// reads: every handler takes a fresh snapshot through the callbacks it was given, which must be
// thread-safe. The node's own loop never waits for it.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace zmesh::cli {

/// What the endpoint serves; each callback runs on one of the server's threads.
struct http_status_sources {
    std::function<std::string()> metrics;     ///< Prometheus text (/metrics)
    std::function<std::string()> status_json; ///< one JSON document (/api/status)
    /// /healthz: an empty string when healthy (200 "ok"), else why not (503 and the reason).
    std::function<std::string()> unhealthy;
    std::string_view page;                    ///< the HTML of / (static, inside the binary)
};

class http_status_server {
  public:
    /// Listens on @p address, "HOST:PORT" (PORT 0: a free port, see url()), and serves on a
    /// thread of its own until destroyed.
    /// @throws std::runtime_error naming @p address if it is malformed or cannot be bound.
    http_status_server(const std::string& address, http_status_sources sources);
    ~http_status_server();
    http_status_server(const http_status_server&) = delete;
    http_status_server& operator=(const http_status_server&) = delete;

    /// Where it listens, as "http://HOST:PORT/", with the port it was given.
    [[nodiscard]] const std::string& url() const noexcept;

  private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

/// The HTML of the broker's status page: self-contained (no CDN), it polls /api/status every
/// second and redraws its tables and its chart without reloading.
std::string_view broker_status_page();

} // namespace zmesh::cli
