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
//  - optionally keeps a last-value cache of every topic it forwards;
//  - with CURVE, screens by key (docs/security.md): a publication the access list refuses or
//    that is over its key's publish rate is dropped and counted; a subscriber that subscribes to
//    a topic prefix the access list refuses is cut off; connections of a key the broker no
//    longer admits are cut off on reload.
//
// Not thread-safe: everything but fill() runs on the loop thread.
#pragma once

#include "key_rate_limiter.hpp"
#include "last_value_cache.hpp"

#include <zmesh/log.hpp>
#include <zmesh/message.hpp>
#include <zmesh/nodes/broker.hpp>
#include <zmesh/reactor.hpp>
#include <zmesh/security/acl.hpp>

#include <zmq.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

namespace zmesh::nodes::detail {

/// The bytes of docs/pubsub.md the forwarder reads.
namespace pubsub_wire {
/// Subscriptions to topics starting with this are readiness probes.
inline constexpr std::string_view probe_prefix{"\0zmesh.probe.", 13};
/// A subscription to a topic starting with this is a Binary Star subscriber's request for
/// service: it has lost its connection to one broker of the pair (docs/patterns/binary_star.md).
inline constexpr std::string_view takeover_prefix{"\0zmesh.ha.takeover", 18};
/// Subscription messages as XPUB hands them up and XSUB takes them: one byte, then the topic.
inline constexpr char unsubscribe_byte = 0;
inline constexpr char subscribe_byte = 1;
} // namespace pubsub_wire

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

    /// With CURVE: applies @p acl (null: everything allowed) to publications and subscriptions
    /// from now on, and cuts off every subscriber that holds a subscription it refuses. Loop
    /// thread.
    void set_access_list(std::shared_ptr<const security::access_list> acl);

    /// With CURVE: cuts off every publisher and subscriber connection whose key @p admits
    /// refuses now (after the broker's allowed keys changed). Loop thread.
    /// @returns the connections cut off.
    std::size_t cut_off_removed(const std::function<bool(std::string_view)>& admits);

    /// Binary Star (docs/patterns/binary_star.md): whether the subscriptions go upstream to the
    /// publishers. Off in a broker that is not active: publishers connected to both brokers of a
    /// pair then send to the active one only. The subscriptions keep being counted, and go
    /// upstream (with the cache's catch-all) when it is turned on; turning it off cancels them
    /// upstream. On by default. Loop thread.
    void set_upstream(bool on);

    /// Binary Star: called (loop thread) for each subscription to pubsub_wire::takeover_prefix,
    /// a subscriber's request for service that may make a passive broker active. Never passed
    /// upstream.
    void on_takeover(std::function<void()> f) { takeover_ = std::move(f); }

  private:
    struct topic_hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const noexcept {
            return std::hash<std::string_view>{}(s);
        }
    };

    static void inc(std::atomic<std::uint64_t>& c) noexcept {
        c.fetch_add(1, std::memory_order_relaxed);
    }

    void on_upstream(zmq::socket_ref s);
    void on_downstream(zmq::socket_ref s);
    /// Reads and handles up to @p limit messages from subscribers.
    void read_subscriptions(int limit);
    /// Passes the subscription @p frame to @p topic upstream, unless it is there already or the
    /// table is full (refused).
    void subscribe_upstream(zmq::message_t& frame, std::string_view topic);
    /// Passes the cancel @p frame upstream if @p topic is there.
    void cancel_upstream(zmq::message_t& frame, std::string_view topic);

    // Screening (forwarder_screening.cpp).
    /// Whether in_ may be forwarded (access list, publish rate).
    bool admit_publication();
    /// read_subscriptions() of a screening forwarder: the XPUB is in manual mode.
    void read_screened(int limit);
    void on_screened_frame(zmq::message_t& frame);
    /// A subscriber's connection now holds @p topic in libzmq's table (applied or not).
    void add_holder(std::string_view topic);
    /// One holder of @p topic fewer; the last one cancels it upstream.
    void remove_holder(std::string_view topic, zmq::message_t& frame);
    /// Shuts down the connection on descriptor @p fd under libzmq.
    static void cut_off(int fd) noexcept;
    /// cut_off() for a subscriber's descriptor, unless it may belong to someone else by now.
    void cut_off_subscriber(int fd) noexcept;
    /// Forgets the connections the monitors report closed.
    void drain_monitors();
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
    bool upstream_ = true;                   // Binary Star: subscriptions go to publishers
    std::function<void()> takeover_;
    void send_upstream(char what, std::string_view topic);

    // Screening by key (CURVE only: other peers have no key name). What each connection is,
    // by the descriptor libzmq reports with its messages (ZMQ_SRCFD), so that a connection can
    // be cut off; the monitors tell when a descriptor opens and closes. A descriptor is reused
    // at once, and a closed connection's messages may still be read after its close was
    // reported, so an entry also holds the connection's identity: the address of its metadata's
    // "__fd" string, unique while the metadata lives, which the entry pins with a frame of it.
    struct peer {
        std::string key;
        const char* identity = nullptr;
        zmq::message_t pin; // keeps the metadata, and so the identity, alive
    };
    struct subscriber_peer : peer {
        std::unordered_set<std::string, topic_hash, std::equal_to<>> prefixes; // as it sent them
    };
    /// The connection's identity (see peer), or nullptr for a peer without metadata.
    static const char* identity_of(const zmq::message_t& frame) noexcept {
        return zmq_msg_gets(frame.handle(), "__fd");
    }
    /// Makes @p p the entry of @p frame's connection if it is another one's.
    static bool claim(peer& p, std::string_view key, zmq::message_t& frame, const char* identity);
    bool screening_ = false;
    // libzmq 4.3.4's manual XPUB applies ZMQ_SUBSCRIBE to "the last pipe", which it takes from a
    // queue that two things can make wrong (forwarder_screening.cpp): a message a subscriber
    // sends upstream (tainted_), and a connection that closed while its subscription waited
    // (closed_since_quiet_: descriptors the monitor reported closed since the queue was last
    // seen empty). Either way nothing is applied until the queue has been empty once.
    bool tainted_ = false;
    std::unordered_set<int> closed_since_quiet_;
    std::unordered_set<int> reaccepted_since_quiet_; // of those, accepted by the XPUB again
    zmq::message_t sub_frame_; // reused for every frame from subscribers
    // Connections holding each prefix in libzmq's table, whether applied or refused, so that
    // the last one to go cancels it upstream.
    std::unordered_map<std::string, std::uint32_t, topic_hash, std::equal_to<>> holders_;
    std::shared_ptr<const security::access_list> acl_; // null: everything allowed
    key_rate_limiter publish_rate_;
    std::optional<zmq::socket_t> xsub_monitor_, xpub_monitor_; // PAIR, screening only
    std::unordered_map<int, peer> publishers_;                 // fd -> key
    std::unordered_map<int, subscriber_peer> subscribers_;     // fd -> key, prefixes
    std::unordered_set<int> xsub_live_, xpub_live_; // accepted and not reported closed since
    const char* last_publisher_ = nullptr; // identity of the last publication's connection
    log_limiter acl_log_;

    std::atomic<std::uint64_t> forwarded_{0}, dropped_{0}, subscriptions_{0},
        subscriptions_refused_{0}, probes_{0}, stalls_{0}, publications_forbidden_{0},
        subscriptions_forbidden_{0}, publications_throttled_{0};
};

} // namespace zmesh::nodes::detail
