// SPDX-License-Identifier: MPL-2.0
// pubsub/subscriber.hpp — the subscribing side of zmesh pub/sub: readiness, gaps, lag, snapshot.
//
// Implements the subscriber half of docs/pubsub.md on a plain SUB socket. On top of ZeroMQ's
// prefix filtering it adds what ZeroMQ leaves to the application: a readiness probe that proves
// the subscriptions have reached a publisher or the broker's forwarder (no slow-joiner loss),
// sequence checking per (source, topic) that reports gaps and drops duplicates, lag measurement
// with an optional limit (the zguide's "suicidal snail"), and an optional last-value-cache
// snapshot from the broker merged with the live stream without duplicates or gaps at the seam.
// A SUB socket re-sends all its subscriptions whenever it reconnects, so a subscriber keeps
// receiving after its publisher or broker restarts, without resubscribing by hand.
#pragma once

#include <zmesh/export.hpp>
#include <zmesh/header.hpp>
#include <zmesh/message.hpp>
#include <zmesh/security/zap.hpp>
#include <zmesh/socket_options.hpp>

#include <zmq.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace zmesh::pubsub {

/// Settings of a zmesh::pubsub::subscriber.
struct subscriber_options {
    /// Endpoints to connect to: publishers that bind, or the XPUB side of a broker's forwarder.
    std::vector<std::string> connect{};
    /// Endpoints to bind, for publishers that connect.
    std::vector<std::string> bind{};
    /// Topic prefixes subscribed at construction ("" = every topic). More can be added with
    /// subscriber::subscribe().
    std::vector<std::string> topics{};
    /// Socket settings: socket_options::recv_hwm is the number of messages queued per publisher
    /// before that publisher drops (or, if lossless, waits); ZMTP heartbeats detect a dead
    /// connection so the socket reconnects (and resubscribes).
    socket_options socket{};
    /// If set, a message that arrives more than this long after its publish time makes recv()
    /// give up (see subscriber::recv()). Compares clocks of two hosts: keep them synchronised.
    std::optional<std::chrono::milliseconds> max_lag{};
    /// If not empty, a broker's MDP endpoint: after the subscriber is ready, the newest message of
    /// every cached topic matching each prefix is fetched from service "zmesh.lvc" and delivered
    /// before the live stream (docs/pubsub.md, "Last-value cache").
    std::string snapshot_from{};
    /// How long the snapshot requests may take in all.
    std::chrono::milliseconds snapshot_timeout{2500};
    /// At most this many (source, topic) streams are tracked for gap detection; beyond it, the
    /// least recently used tenth is forgotten (their next message starts a new stream).
    std::size_t max_streams = 100000;
    /// CURVE client (docs/security.md): the server's public key (a broker's, or a publisher's
    /// that binds with curve_server) and this subscriber's certificate, for the endpoints it
    /// connects to and the snapshot requests. Unset: plain. Not with bind endpoints, nor with
    /// curve_server.
    std::optional<security::curve_client_keys> curve{};
    /// CURVE server, for a subscriber that binds (docs/security.md, "Brokerless peers"): this
    /// subscriber's certificate with its secret key, and the publisher keys it admits. A plain
    /// (NULL) publisher, an unknown key and a publisher holding the wrong public key of this
    /// subscriber all fail in the handshake, and nothing they publish arrives. Not with connect
    /// endpoints, nor with curve: libzmq makes a socket either a CURVE client or a CURVE server.
    /// snapshot_from stays plain then (its CURVE keys would be those of curve).
    ///
    /// The subscriber then runs the ZAP handler of @p ctx (security::zap_handler) for as long as
    /// it lives, since a CURVE server without one would admit any key. A context has one ZAP
    /// endpoint, and sharing one handler would merge the key lists of its servers, so a second
    /// peer with curve_server (or a broker, or any zap_handler) in the same context is refused:
    /// give each binding CURVE peer a zmq::context_t of its own.
    std::optional<security::curve_server_settings> curve_server{};
    /// The connect endpoints are the XPUBs of the two brokers of a Binary Star pair
    /// (docs/patterns/binary_star.md). Only the active broker forwards; while the connection to
    /// one of them is down (watched with a socket monitor), recv() asks the others to take over
    /// every takeover_interval, with a subscription to "\0zmesh.ha.takeover" that a passive broker
    /// takes as a client's request for service: it becomes active if its peer is silent too.
    /// Needs at least two connect endpoints.
    bool binary_star = false;
    std::chrono::milliseconds takeover_interval{100};
    /// Latency mode: while recv() waits, busy-poll the socket (zmq_poll with timeout 0, in a
    /// loop, for at most the caller's timeout) instead of sleeping in the kernel until a message
    /// comes. It saves the wake-up of a blocked thread on every message, at the price of one
    /// core kept at 100 % while waiting: for a thread pinned to a core of its own. Off (blocking)
    /// by default.
    bool spin = false;
};

/// One message handed to the application.
struct delivery {
    std::string topic{};        ///< frame 0
    zmesh::header header{};     ///< frame 1, decoded
    message payload{};          ///< frames 2…, moved from the socket
    std::chrono::nanoseconds lag{0}; ///< receive time − header.timestamp_ns; 0 if no timestamp
    bool from_snapshot = false; ///< true for messages of a last-value-cache snapshot
};

/// A sequence gap on one (source, topic) stream: messages expected … got − 1 were lost.
struct gap {
    message_id source{}; ///< the publisher ("sr"; nil if the publisher sent none)
    std::string topic{};
    std::uint64_t expected = 0; ///< the sequence that should have come next
    std::uint64_t got = 0;      ///< the sequence that came
    /// Number of messages lost.
    [[nodiscard]] std::uint64_t missed() const noexcept { return got - expected; }
};

/// Counters of a subscriber, for monitoring.
struct subscriber_stats {
    std::uint64_t received = 0;   ///< messages delivered to the application, snapshot included
    std::uint64_t gaps = 0;       ///< gap events
    std::uint64_t missed = 0;     ///< messages lost in those gaps
    std::uint64_t duplicates = 0; ///< dropped: sequence not above the last one of its stream
    std::uint64_t malformed = 0;  ///< dropped: no header frame, undecodable header, bad snapshot
    std::uint64_t lagged_out = 0; ///< 1 once max_lag was exceeded and the subscriber gave up
    std::uint64_t control = 0;    ///< control messages consumed (probe answers…), never delivered
    std::uint64_t snapshot = 0;   ///< messages delivered from snapshots
    /// Live messages dropped because a snapshot had already delivered them or a newer one (the
    /// expected overlap at the seam; not counted as duplicates).
    std::uint64_t snapshot_overlap = 0;
    std::uint64_t streams_evicted = 0; ///< streams forgotten because of max_streams
    /// With curve_server: handshakes the ZAP handler admitted and refused (unknown key). A plain
    /// publisher or one with the wrong server key fails before ZAP and counts in neither.
    std::uint64_t connections_admitted = 0;
    std::uint64_t connections_refused = 0;
    /// binary_star: takeover requests sent while a broker's connection was down.
    std::uint64_t takeover_requests = 0;
};

/// A zmesh pub/sub subscriber on one SUB socket.
///
/// recv() delivers data messages only: control topics ("\0zmesh." …) are consumed, malformed
/// messages (no header frame, undecodable header) are counted and dropped, never thrown.
/// Messages that carry a sequence ("sq" ≠ 0) are checked per (source, topic): the first one of a
/// stream is taken as given, a jump is a gap (counted, and reported to the gap handler or kept
/// for take_gaps()), and one not above the last is a duplicate (counted, dropped).
///
/// Readiness: ZeroMQ does not say when a subscription has reached the publisher; messages sent
/// before that are lost. wait_ready() runs the probe of docs/pubsub.md and returns once a zmesh
/// publisher or forwarder has answered, that is, once every subscription made before it is in
/// force there. With several publishers connected, the first answer counts.
///
/// Reconnection: after a publisher or broker restart, the SUB socket re-sends every subscription
/// by itself. libzmq does that on the application's thread, inside a call on the socket, so it
/// happens while recv() or wait_ready() runs (or the socket is polled), not while the subscriber
/// sits untouched.
///
/// Not thread-safe: one thread at a time (a subscriber may move between threads). The socket is
/// owned internally; @p ctx must outlive the subscriber.
///
/// @par Example
/// @code
/// zmq::context_t ctx;
/// zmesh::pubsub::subscriber sub(ctx, {.connect = {"tcp://broker:5557"},
///                                     .topics = {"weather."},
///                                     .max_lag = std::chrono::seconds(1)});
/// sub.on_gap([](const zmesh::pubsub::gap& g) { std::cerr << g.missed() << " lost\n"; });
/// if (!sub.wait_ready(std::chrono::seconds(2))) { /* no publisher answered yet */ }
/// while (auto d = sub.recv(std::chrono::seconds(5)))
///     std::cout << d->topic << " " << zmesh::view(d->payload[0]) << "\n";
/// @endcode
class ZMESH_EXPORT subscriber {
  public:
    using gap_handler = std::function<void(const gap&)>;

    /// Creates the SUB socket, applies the options (with curve_server, starts the ZAP handler),
    /// subscribes, binds and connects.
    /// @throws zmesh::error errc::invalid_argument if there is no endpoint at all, max_streams
    ///         is 0, for CURVE settings that do not fit the endpoints (see curve and
    ///         curve_server), and if @p ctx has a ZAP handler already while curve_server is set;
    ///         errc::invalid_endpoint for a malformed endpoint (snapshot_from included).
    /// @throws zmesh::error naming the endpoint if libzmq refuses a bind or a connect;
    ///         zmq::error_t if it refuses an option.
    subscriber(zmq::context_t& ctx, subscriber_options options);
    ~subscriber();
    subscriber(subscriber&&) noexcept;
    subscriber& operator=(subscriber&&) noexcept;
    subscriber(const subscriber&) = delete;
    subscriber& operator=(const subscriber&) = delete;

    /// Adds a topic prefix. Prefixes count like ZeroMQ's: subscribing one twice needs two
    /// unsubscribe() calls. With a snapshot source, the prefix's snapshot is fetched at the next
    /// wait_ready() (or recv(), which calls it).
    /// @throws zmesh::error errc::not_running if the subscriber gave up or was moved from.
    void subscribe(std::string_view prefix);

    /// Removes one subscription of @p prefix.
    /// @returns false if @p prefix was not subscribed.
    /// @throws zmesh::error errc::not_running if the subscriber gave up or was moved from.
    bool unsubscribe(std::string_view prefix);

    /// Proves that every subscription made so far is in force at a publisher or forwarder
    /// (docs/pubsub.md, readiness probe), then fetches the pending snapshots if a snapshot source
    /// is set. Data messages that arrive meanwhile are kept for recv(). The probe is repeated
    /// every 500 ms, in case an answer was lost at a full queue.
    /// @returns true once a probe was answered (and the snapshots fetched); false if no answer
    ///          came within @p timeout, or a signal interrupted the wait.
    /// @throws zmesh::error errc::timeout if the snapshot source did not answer within
    ///         subscriber_options::snapshot_timeout (the next call tries again);
    ///         errc::not_running if the subscriber gave up or was moved from.
    /// @throws zmq::error_t on a socket error other than context termination.
    bool wait_ready(std::chrono::milliseconds timeout);

    /// Whether a probe has been answered since construction.
    [[nodiscard]] bool ready() const noexcept;

    /// The next data message, waiting at most @p timeout.
    ///
    /// With a snapshot source and snapshots still to fetch, first calls wait_ready(@p timeout).
    /// @returns the message; std::nullopt if none arrived in time, a signal interrupted the wait,
    ///          or the context is terminating.
    /// @throws zmesh::error errc::timeout "subscriber fell N ms behind (limit M ms)" if a live
    ///         message's lag exceeds subscriber_options::max_lag: the subscriber gives up, closes
    ///         its socket, counts it in stats().lagged_out, and every later call throws
    ///         errc::not_running. Also errc::not_running if moved from, and as wait_ready().
    /// @throws whatever the gap handler throws.
    /// @throws zmq::error_t on a socket error other than context termination.
    std::optional<delivery> recv(std::chrono::milliseconds timeout);

    /// Calls @p handler (on the thread calling recv()) for each gap, instead of keeping gaps for
    /// take_gaps(). An empty handler restores keeping them.
    void on_gap(gap_handler handler);

    /// The gaps seen since the last call, oldest first, when no gap handler is set. At most the
    /// 1024 newest are kept; stats() counts them all.
    [[nodiscard]] std::vector<gap> take_gaps();

    /// The SUB socket, to poll it with other sockets: call recv() when it is readable or when
    /// buffered() is not 0. Do not read it directly, nor change its subscriptions.
    [[nodiscard]] zmq::socket_ref socket() noexcept;

    /// Messages already read from the socket and waiting for recv() (during wait_ready()).
    [[nodiscard]] std::size_t buffered() const noexcept;

    /// The endpoints actually bound, in the order given (wildcard ports resolved).
    [[nodiscard]] const std::vector<std::string>& endpoints() const noexcept;

    /// Replaces the publisher keys (and address lists) that curve_server admits, e.g. after
    /// the --allow directory changed. The next handshake uses them; a publisher already
    /// connected stays connected until its connection breaks. Thread-safe, unlike the rest of
    /// the subscriber (a SIGHUP thread may call it).
    /// @throws zmesh::error errc::invalid_argument if curve_server is unset, or for a bad
    ///         address rule (the old policy stays); errc::not_running if moved from.
    void set_access(security::access_policy policy);

    /// The counters so far.
    [[nodiscard]] subscriber_stats stats() const noexcept;

  private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

} // namespace zmesh::pubsub
