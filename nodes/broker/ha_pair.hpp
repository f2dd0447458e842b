// SPDX-License-Identifier: MPL-2.0
// ha_pair.hpp — internal: the broker's side of a Binary Star pair (docs/patterns/binary_star.md).
//
// Owns the HA link (a PUB bound at broker_config::ha_bind, a SUB connected to the peer's) and the
// state machine of zmesh::patterns::binary_star. Every heartbeat, and at once on a change, it
// publishes this broker's state; each state heard from the peer is a peer event. Every message
// the MDP ROUTER reads passes admit() first: while this broker is not active, worker commands are
// answered with DISCONNECT (so the worker moves to the next broker of its list) and client
// requests are dropped, each one a client_request event that may make this broker active.
#pragma once

#include <zmesh/message.hpp>
#include <zmesh/nodes/broker.hpp>
#include <zmesh/patterns/binary_star.hpp>
#include <zmesh/reactor.hpp>

#include <zmq.hpp>

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

namespace zmesh::nodes::detail {

class outbox;

class ha_pair {
  public:
    /// Binds the PUB at config.ha_bind and connects the SUB to config.ha_peer.
    /// @throws zmesh::error (missing endpoints), zmq::error_t (bind failed).
    ha_pair(zmq::context_t& ctx, const broker_config& config, reactor::clock::time_point now);

    /// The HA endpoint actually bound (ephemeral port resolved).
    [[nodiscard]] const std::string& endpoint() const noexcept { return endpoint_; }

    /// Starts reading the peer and announcing this broker's state on @p r. @p on_fatal is called
    /// (on the loop thread) when the machine reports the guide's fatal error.
    void attach(reactor& r, std::function<void(std::string_view why)> on_fatal);
    void detach() noexcept;

    /// Whether the MDP engine may handle @p m (as read from the ROUTER, routing id first). If not,
    /// the message has been dealt with: a worker told DISCONNECT through @p out, or a client
    /// request dropped (and counted).
    bool admit(const message& m, outbox& out, reactor::clock::time_point now);

    /// Adds the HA counters to @p s. Thread-safe.
    void fill(broker_stats& s) const noexcept;

    [[nodiscard]] patterns::binary_star::state current() const noexcept { return machine_.current(); }

  private:
    void on_peer(reactor::clock::time_point now);
    void apply(const patterns::binary_star::outcome& o, patterns::binary_star::event e);
    void announce();

    patterns::binary_star::machine machine_;
    zmq::socket_t pub_;                    // this broker's state, every heartbeat
    zmq::socket_t sub_;                    // the peer's
    std::string endpoint_;
    std::chrono::milliseconds heartbeat_;
    reactor* reactor_ = nullptr;
    std::optional<reactor::timer_id> beat_;
    std::function<void(std::string_view)> on_fatal_;
    message in_;
    message disconnect_;                   // reused for every DISCONNECT sent
    std::atomic<std::uint64_t> state_{0};          // broker_stats::ha_state
    std::atomic<std::uint64_t> changes_{0};
    std::atomic<std::uint64_t> clients_dropped_{0};
    std::atomic<std::uint64_t> workers_refused_{0};
    std::atomic<std::uint64_t> peer_updates_{0};
    std::atomic<std::uint64_t> malformed_{0};
};

} // namespace zmesh::nodes::detail
