// SPDX-License-Identifier: MPL-2.0
// pubsub/publisher.hpp — the publishing side of zmesh pub/sub, peer to peer or through a broker.
//
// Implements the publisher half of docs/pubsub.md: every message goes out as
// [topic][header][payload...] on an XPUB socket, the header carrying a fresh id, this publisher's
// random source id, a sequence number per topic and the publish time, so that subscribers can
// detect gaps and measure lag. Because the socket is an XPUB, the publisher sees subscriptions
// and answers the readiness probes of zmesh subscribers that connect to it directly (through the
// broker, the forwarder answers them). Lossy by default like a plain PUB socket; lossless mode
// (ZMQ_XPUB_NODROP) makes a full subscriber block the publisher instead of losing messages.
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
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace zmesh {
class reactor;
} // namespace zmesh

namespace zmesh::pubsub {

/// Settings of a zmesh::pubsub::publisher.
struct publisher_options {
    /// Endpoints to bind (tcp://127.0.0.1:* picks a free port; see publisher::endpoints()).
    std::vector<std::string> bind{};
    /// Endpoints to connect to, e.g. the XSUB side of a broker's forwarder.
    std::vector<std::string> connect{};
    /// Socket settings: socket_options::send_hwm is the number of messages queued per
    /// subscriber; ZMTP heartbeats and linger are applied as given.
    socket_options socket{};
    /// ZMQ_XPUB_NODROP: a subscriber whose queue is full makes publish() wait (and try_publish()
    /// fail) instead of silently losing the message for that subscriber. Off by default: one slow
    /// subscriber should not stall every other one.
    bool lossless = false;
    /// Lossless mode: how long publish() may wait for room before it throws; negative = forever.
    std::chrono::milliseconds send_timeout{-1};
    /// CURVE client (docs/security.md): the server's public key (a broker's, or a subscriber's
    /// that binds with curve_server) and this publisher's certificate, for the endpoints it
    /// connects to. Unset: plain. Not with bind endpoints, nor with curve_server.
    std::optional<security::curve_client_keys> curve{};
    /// CURVE server, for a publisher that binds (docs/security.md, "Brokerless peers"): this
    /// publisher's certificate with its secret key, and the subscriber keys it admits. A plain
    /// (NULL) subscriber, an unknown key and a subscriber holding the wrong public key of this
    /// publisher all fail in the handshake and receive nothing. Not with connect endpoints, nor
    /// with curve: libzmq makes a socket either a CURVE client or a CURVE server.
    ///
    /// The publisher then runs the ZAP handler of @p ctx (security::zap_handler) for as long as
    /// it lives, since a CURVE server without one would admit any key. A context has one ZAP
    /// endpoint, and sharing one handler would merge the key lists of its servers, so a second
    /// peer with curve_server (or a broker, or any zap_handler) in the same context is refused:
    /// give each binding CURVE peer a zmq::context_t of its own.
    std::optional<security::curve_server_settings> curve_server{};
};

/// Counters of a publisher, for monitoring.
struct publisher_stats {
    std::uint64_t published = 0;       ///< data messages handed to the socket
    std::uint64_t refused = 0;         ///< lossless mode: publish attempts that found no room
    std::uint64_t subscribes = 0;      ///< subscribe messages seen (probes excluded)
    std::uint64_t unsubscribes = 0;    ///< unsubscribe messages seen (probes excluded)
    /// Of subscribes, those to the empty prefix (everything): what a forwarder with a last-value
    /// cache sends for itself, whether or not anyone subscribed downstream.
    std::uint64_t catch_all_subscribes = 0;
    std::uint64_t probes_answered = 0; ///< readiness probes answered
    std::uint64_t probes_dropped = 0;  ///< probe answers that found a full queue (re-probed later)
    /// With curve_server: handshakes the ZAP handler admitted and refused (unknown key). A plain
    /// subscriber or one with the wrong server key fails before ZAP and counts in neither.
    std::uint64_t connections_admitted = 0;
    std::uint64_t connections_refused = 0;
};

/// A zmesh pub/sub publisher on one XPUB socket.
///
/// Wire format: docs/pubsub.md. Each message is [topic][header][payload...]; the header holds a
/// fresh id, "sr" = source() (random per publisher instance, so a restarted publisher never
/// looks like a duplicate of its former self), "sq" = a per-topic sequence starting at 1, "ts" =
/// the system clock at publish time, and "ty" if a type is given. A sequence number is used only
/// by a message actually handed to the socket, so a refused try_publish() leaves no gap.
///
/// Subscriptions: an XPUB socket queues every subscription message for the application, and a
/// zmesh publisher must read them to answer readiness probes (ZMQ_XPUB_VERBOSE is set, so a
/// repeated probe is seen each time). publish() reads them without blocking. A publisher that
/// publishes rarely or not at all must call poll_subscriptions() when idle, or attach() it to a
/// zmesh::reactor; otherwise subscribers that probe it wait in vain and subscription messages
/// pile up in memory.
///
/// Not thread-safe: one thread at a time (a publisher may move between threads). The socket is
/// owned internally; @p ctx must outlive the publisher.
///
/// @par Example
/// @code
/// zmq::context_t ctx;
/// zmesh::pubsub::publisher pub(ctx, {.bind = {"tcp://*:5556"}});
/// zmesh::reactor r;
/// pub.attach(r);                                          // answers probes while idle
/// r.add_repeating_timer(std::chrono::seconds(1), [&] {
///     pub.publish("weather.paris", "21C", "weather.reading");
/// });
/// r.run();
/// @endcode
class ZMESH_EXPORT publisher {
  public:
    /// Creates the XPUB socket, applies the options (with curve_server, starts the ZAP handler),
    /// binds and connects.
    /// @throws zmesh::error errc::invalid_argument if there is no endpoint at all, for CURVE
    ///         settings that do not fit the endpoints (see curve and curve_server), and if
    ///         @p ctx has a ZAP handler already while curve_server is set;
    ///         errc::invalid_endpoint for a malformed endpoint.
    /// @throws zmesh::error naming the endpoint if libzmq refuses a bind (EADDRINUSE…) or a
    ///         connect; zmq::error_t if it refuses an option.
    publisher(zmq::context_t& ctx, publisher_options options);
    /// Closes the socket; queued messages are kept for socket_options::linger.
    ~publisher();
    publisher(publisher&&) noexcept;
    publisher& operator=(publisher&&) noexcept;
    publisher(const publisher&) = delete;
    publisher& operator=(const publisher&) = delete;

    /// Publishes one message on @p topic.
    ///
    /// Lossy mode never blocks: a subscriber at its high-water mark loses the message (it will
    /// see a sequence gap). Lossless mode waits until every matching subscriber has room, at most
    /// publisher_options::send_timeout. Pending subscription messages are processed first.
    /// @param payload frames moved into libzmq (left empty on success).
    /// @param type the header's "ty"; empty to omit it.
    /// @throws zmesh::error errc::invalid_argument if @p topic starts with "\0zmesh." (control
    ///         topics are reserved); errc::timeout if lossless mode found no room within
    ///         send_timeout (@p payload is then unchanged); errc::not_running if the context is
    ///         terminated or the publisher was moved from.
    /// @throws zmq::error_t EINTR if a signal interrupted a lossless wait (nothing was sent), or
    ///         on any other socket error.
    void publish(std::string_view topic, message&& payload, std::string_view type = {});

    /// Publishes a single-frame message holding a copy of @p payload.
    /// @throws as publish(std::string_view, message&&, std::string_view).
    void publish(std::string_view topic, std::string_view payload, std::string_view type = {});

    /// Publishes one message unless a matching subscriber stays full for @p timeout.
    ///
    /// In lossy mode this always succeeds at once, as publish() does.
    /// @param payload moved from on success, left unchanged on failure.
    /// @returns true if the message was handed to the socket; false if lossless mode found no
    ///          room within @p timeout (0 = do not wait). No sequence number is used then.
    /// @throws as publish(), except that running out of time is not an error.
    [[nodiscard]] bool try_publish(std::string_view topic, message& payload,
                                   std::chrono::milliseconds timeout = std::chrono::milliseconds(0),
                                   std::string_view type = {});

    /// Processes the subscription messages queued on the socket, waiting at most @p timeout for
    /// the first one: counts subscriptions and answers readiness probes.
    /// @returns the number of subscription messages processed.
    /// @throws zmesh::error errc::not_running if the publisher was moved from.
    /// @throws zmq::error_t on a socket error other than context termination or EINTR (both only
    ///         end the wait).
    std::size_t
    poll_subscriptions(std::chrono::milliseconds timeout = std::chrono::milliseconds(0));

    /// Waits until at least @p count subscribe messages (probes excluded) have been seen since
    /// construction, processing subscriptions meanwhile. A subscriber sends one per topic prefix,
    /// again after each reconnect. Useful before publishing to subscribers known to be starting.
    /// @returns whether the count was reached within @p timeout.
    /// @throws as poll_subscriptions().
    bool wait_for_subscribers(std::size_t count, std::chrono::milliseconds timeout);

    /// Registers the socket on @p r so that poll_subscriptions() runs whenever subscriptions
    /// arrive. The publisher must stay alive (and not be used from another thread) while it is
    /// registered: call detach() first, or destroy @p r first.
    /// @throws as reactor::add().
    void attach(reactor& r);

    /// Removes the socket from @p r.
    /// @returns whether it was registered.
    bool detach(reactor& r) noexcept;

    /// The XPUB socket, to poll it with other sockets. Readable means subscriptions are waiting:
    /// call poll_subscriptions(). Do not read or write it directly.
    [[nodiscard]] zmq::socket_ref socket() noexcept;

    /// This publisher's source id (the header's "sr"), random per instance.
    [[nodiscard]] const message_id& source() const noexcept;

    /// The endpoints actually bound, in the order given (wildcard ports resolved).
    [[nodiscard]] const std::vector<std::string>& endpoints() const noexcept;

    /// Replaces the subscriber keys (and address lists) that curve_server admits, e.g. after
    /// the --allow directory changed. The next handshake uses them; a subscriber already
    /// connected stays connected until its connection breaks. Thread-safe, unlike the rest of
    /// the publisher (a SIGHUP thread may call it).
    /// @throws zmesh::error errc::invalid_argument if curve_server is unset, or for a bad
    ///         address rule (the old policy stays); errc::not_running if moved from.
    void set_access(security::access_policy policy);

    /// The counters so far.
    [[nodiscard]] publisher_stats stats() const noexcept;

  private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

} // namespace zmesh::pubsub
