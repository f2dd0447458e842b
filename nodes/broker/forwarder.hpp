// SPDX-License-Identifier: MPL-2.0
// forwarder.hpp — internal: the broker's pub/sub forwarder (XSUB -> XPUB), after zguide's
// "Espresso" proxy and docs/pubsub.md.
//
// Publishers connect to the XSUB socket, subscribers to the XPUB socket. Data flows downstream,
// subscriptions upstream. The forwarder runs in the broker's reactor, on the same thread as the
// MDP engine: that is what lets the last-value cache answer a `zmesh.lvc` snapshot that is exactly
// consistent with the stream (no message is forwarded while a snapshot is being taken).
//
// Beyond a zmq_proxy it:
//  - answers readiness probes (subscriptions to "\0zmesh.probe.*") itself and never passes them
//    upstream;
//  - bounds the subscriptions it passes upstream: at most max_subscriptions distinct prefixes,
//    all subscribers together; one more is refused, counted and logged (rate limited);
//  - makes slow subscribers visible: in the default lossy mode a message a full subscriber cannot
//    take is delivered to the others and counted as dropped; in lossless mode the forwarder holds
//    it and stops reading publishers until the subscriber has room, so back-pressure reaches the
//    publishers. Neither mode ever blocks the loop it shares with the MDP engine;
//  - optionally keeps a last-value cache of every topic it forwards.
//
// Not thread-safe: everything but fill() runs on the loop thread.
#pragma once

#include "last_value_cache.hpp"

#include <zmesh/log.hpp>
#include <zmesh/message.hpp>
#include <zmesh/nodes/broker.hpp>
#include <zmesh/reactor.hpp>

#include <zmq.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>

namespace zmesh::nodes::detail {

class forwarder {
  public:
    /// Creates and binds the XSUB and XPUB sockets of @p config.
    /// @throws zmesh::error (invalid endpoint), zmq::error_t (bind failed).
    forwarder(zmq::context_t& ctx, const broker_config& config);
    forwarder(const forwarder&) = delete;
    forwarder& operator=(const forwarder&) = delete;

    /// The endpoints actually bound.
    [[nodiscard]] const std::string& xsub_endpoint() const noexcept { return xsub_endpoint_; }
    [[nodiscard]] const std::string& xpub_endpoint() const noexcept { return xpub_endpoint_; }

    /// Registers the sockets with @p r (loop thread, before or while it runs).
    void attach(reactor& r);
    /// Unregisters them and stops waiting for room. A message held back by back-pressure is
    /// kept and sent after the next attach().
    void detach() noexcept;

    /// The cache, or nullptr if the broker runs without one.
    [[nodiscard]] last_value_cache* lvc() noexcept { return lvc_ ? &*lvc_ : nullptr; }

    /// Copies the forwarder's counters into @p s. Thread-safe.
    void fill(broker_stats& s) const noexcept;

  private:
    struct topic_hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const noexcept {
            return std::hash<std::string_view>{}(s);
        }
    };

    void on_upstream(zmq::socket_ref s);
    void on_downstream(zmq::socket_ref s);
    /// Sends in_ downstream. @returns false if it was held back (lossless, a subscriber full).
    bool forward();
    void on_subscription(zmq::message_t& frame);
    void refuse(std::string_view topic);
    void answer_probe(std::string_view topic);
    /// Sends @p m to every matching subscriber that has room, dropping it for the full ones.
    send_status send_dropping(message& m);
    /// Lossless: keeps in_, stops reading publishers and waits for room.
    void hold();
    [[nodiscard]] bool holding() const noexcept { return paused_ || !held_probes_.empty(); }
    /// Registers the wake-ups that tell the forwarder a subscriber may have room again.
    void wait_for_room();
    /// Sends what is held, if there is room now; resumes reading publishers once all is out.
    void on_room();
    void stop_waiting() noexcept;

    bool lossless_;
    std::size_t max_subscriptions_;
    zmq::socket_t xsub_;                     // publishers connect here
    zmq::socket_t xpub_;                     // subscribers connect here
    int xpub_fd_;                            // XPUB's ZMQ_FD: readable when libzmq has commands
    std::string xsub_endpoint_;
    std::string xpub_endpoint_;
    std::optional<last_value_cache> lvc_;
    reactor* reactor_ = nullptr;             // set while attached
    bool paused_ = false;                    // lossless: in_ is held back, XSUB not polled
    bool watching_ = false;                  // xpub_fd_ registered with the reactor
    std::optional<reactor::timer_id> retry_; // fallback timer, armed while something is held
    reactor::clock::duration retry_delay_;   // its next delay (backs off while nothing moves)
    std::deque<message> held_probes_;        // lossless: probe answers refused by a full pipe
    message in_;                             // reused for every data message
    message staged_;                         // in_'s frames shared for the cache, reused
    message sub_;                            // reused for every subscription message
    // Prefixes passed upstream, each once, whoever subscribed (see on_subscription()).
    std::unordered_set<std::string, topic_hash, std::equal_to<>> subscribed_;
    log_limiter refused_log_;

    std::atomic<std::uint64_t> forwarded_{0}, dropped_{0}, subscriptions_{0},
        subscriptions_refused_{0}, probes_{0}, stalls_{0};
};

} // namespace zmesh::nodes::detail
