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

#include <zmesh/header.hpp>

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

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
    /// (on the loop thread) when the machine reports the guide's fatal error; @p release hands
    /// a held request to the MDP engine when its hold ends without a replayed reply.
    void attach(reactor& r, std::function<void(std::string_view why)> on_fatal,
                std::function<void(message&)> release);
    void detach() noexcept;

    /// Whether the MDP engine may handle @p m (as read from the ROUTER, routing id first). If not,
    /// the message has been dealt with: a worker told DISCONNECT through @p out, a client
    /// request dropped (and counted), answered from a replayed reply, or held (moved from).
    bool admit(message& m, outbox& out, reactor::clock::time_point now);

    /// `zmesh.replay` (a worker's kept reply, mdp::worker_options::replay_window): keeps it, and
    /// answers the retries held for it through @p out. @returns false if @p body is malformed.
    bool on_replay(message& body, outbox& out, reactor::clock::time_point now);

    /// Called (loop thread) with whether this broker serves, at attach() and at each change of
    /// state: the broker's forwarder forwards only while it does.
    void on_serving(std::function<void(bool)> f) { on_serving_ = std::move(f); }

    /// A Binary Star subscriber lost its connection to the other broker and asks this one for
    /// service (a subscription to pubsub_wire::takeover_prefix): a client_request event, which
    /// makes a passive broker active if its peer is silent. Counted in ha_clients_dropped when
    /// it does not.
    void pubsub_request(reactor::clock::time_point now);

    /// Adds the HA counters to @p s. Thread-safe.
    void fill(broker_stats& s) const noexcept;

    [[nodiscard]] patterns::binary_star::state current() const noexcept { return machine_.current(); }

  private:
    void on_peer(reactor::clock::time_point now);
    void apply(const patterns::binary_star::outcome& o, patterns::binary_star::event e);
    void announce();
    void prune(reactor::clock::time_point now);
    void answer(message& request, const message_id& id, outbox& out);
    bool screen_request(message& m, outbox& out, reactor::clock::time_point now);

    /// A reply a worker replayed: what a retry of its request gets.
    struct replayed {
        std::string service;
        zmq::message_t head;
        message body;
        reactor::clock::time_point at;
    };
    /// The retries of one request held until its reply is replayed, or until `until` (set by
    /// the first: later retries do not extend the hold).
    struct held {
        std::vector<message> requests;
        reactor::clock::time_point until;
    };

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
    std::function<void(message&)> release_;
    std::function<void(bool)> on_serving_;
    // Exactly once across failover (docs/patterns/binary_star.md): the ids of requests the peer
    // received while active (its ledger, sent as they come), replies workers replayed, and
    // retries held until one of those replies comes.
    std::chrono::milliseconds keep_;       // how long ledger ids and replayed replies are kept
    std::chrono::milliseconds hold_;       // how long a retry waits for its replayed reply
    std::unordered_set<message_id> peer_seen_;
    std::deque<std::pair<reactor::clock::time_point, message_id>> peer_seen_order_;
    std::unordered_map<message_id, replayed> replies_;
    std::deque<std::pair<reactor::clock::time_point, message_id>> replies_order_;
    std::unordered_map<message_id, held> held_;
    std::size_t held_count_ = 0;
    std::atomic<std::uint64_t> state_{0};          // broker_stats::ha_state
    std::atomic<std::uint64_t> changes_{0};
    std::atomic<std::uint64_t> clients_dropped_{0};
    std::atomic<std::uint64_t> workers_refused_{0};
    std::atomic<std::uint64_t> peer_updates_{0};
    std::atomic<std::uint64_t> malformed_{0};
    std::atomic<std::uint64_t> ledger_{0};        // request ids heard from the peer
    std::atomic<std::uint64_t> held_total_{0};    // retries held for a replayed reply
    std::atomic<std::uint64_t> released_{0};      // held retries passed on at the end of the hold
    std::atomic<std::uint64_t> replays_{0};       // replies workers replayed
    std::atomic<std::uint64_t> answered_{0};      // retries answered from a replayed reply
};

} // namespace zmesh::nodes::detail
