// SPDX-License-Identifier: MPL-2.0
// directory.hpp — internal: the broker's endpoint directory, the `zmesh.directory` service.
//
// Peers that talk directly (a publisher binding its own XPUB, say) register "name -> endpoint"
// here with a time to live, and others resolve the name. The broker is consulted for discovery
// only, never in the data path. The request and reply bodies are text frames, as docs/pubsub.md
// specifies:
//
//   register name endpoint ttl_ms  -> 200             resolve name -> 200 endpoint... | 404
//   unregister name endpoint       -> 200             list         -> 200 (name endpoint)...
//   anything malformed             -> 400 reason      table full   -> 503 reason
//
// Requests come from the network and are untrusted: every field is bounded and checked, the
// table holds at most max_entries registrations, and nothing here throws on bad input.
//
// Not thread-safe: it lives on the broker's loop thread. Only entries() is atomic.
#pragma once

#include <zmesh/log.hpp>
#include <zmesh/message.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace zmesh::nodes::detail {

class directory {
  public:
    using clock = std::chrono::steady_clock;

    /// Longest name accepted, in bytes (the bound on MDP service names).
    static constexpr std::size_t max_name = 255;
    /// Longest endpoint accepted, in bytes: more than any tcp host name or ipc path needs.
    static constexpr std::size_t max_endpoint = 1024;
    /// Longest ttl accepted: one day. A registration is a lease; a longer one is a leak.
    static constexpr std::chrono::milliseconds max_ttl{24 * 60 * 60 * 1000};

    /// @param max_entries registrations held at most (name/endpoint pairs, all names together).
    explicit directory(std::size_t max_entries = 10000);

    /// Answers one request body with a reply body (docs/pubsub.md). Never throws on bad input.
    void handle(const message& request, message& reply, clock::time_point now);

    /// Forgets every registration whose ttl has run out. Resolving already ignores them; this
    /// only gives their memory back, so the broker's tick is often enough.
    void expire(clock::time_point now);

    /// Registrations held (expired ones included until expire() runs). Any thread.
    [[nodiscard]] std::uint64_t entries() const noexcept {
        return entries_gauge_.load(std::memory_order_relaxed);
    }

  private:
    struct registration {
        std::string endpoint;
        clock::time_point expiry; // the registration is live while now < expiry
    };

    void do_register(const message& request, message& reply, clock::time_point now);
    void do_unregister(const message& request, message& reply);
    void do_resolve(const message& request, message& reply, clock::time_point now) const;
    void do_list(message& reply, clock::time_point now) const;
    void set_entries(std::size_t n) noexcept;

    std::size_t max_entries_;
    // Ordered, so that `list` comes out sorted by name; std::less<> finds by string_view.
    std::map<std::string, std::vector<registration>, std::less<>> names_;
    std::size_t entries_ = 0; // registrations in names_, all names together
    std::atomic<std::uint64_t> entries_gauge_{0};
    log_limiter full_log_{5, std::chrono::seconds(10)}; // refusals of a full directory
};

} // namespace zmesh::nodes::detail
