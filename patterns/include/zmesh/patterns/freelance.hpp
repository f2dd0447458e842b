// SPDX-License-Identifier: MPL-2.0
// patterns/freelance.hpp — brokerless request/reply to a pool of equivalent servers (the third
// "Freelance" model of the ZeroMQ guide, rfc 10/FLP), over zmesh's ZMFL01 frames.
//
// A freelance::client holds one ROUTER socket connected to every server of its pool. It names
// each connection itself (ZMQ_CONNECT_ROUTING_ID, the server's endpoint string), so servers need
// no fixed identity and may bind an ephemeral port. It pings the servers, sends each request to
// one that answered recently, and when that one stays silent past the timeout, resends the same
// request (same request id) to the next live server. A freelance::server answers PINGs and runs a
// handler per REQUEST. The wire format is in docs/patterns/freelance.md.
//
// Servers must be idempotent: a request whose first server was only slow may run twice (the
// client keeps the first reply and drops the other as late).
#pragma once

#include <zmesh/export.hpp>
#include <zmesh/message.hpp>
#include <zmesh/security/zap.hpp>

#include <zmq.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace zmesh::patterns::freelance {

/// The protocol frame that starts every ZMFL01 message.
inline constexpr std::string_view protocol_v1 = "ZMFL01";

/// Command byte, the frame after the protocol frame.
enum class command : std::uint8_t {
    ping = 0x01,    ///< client -> server: are you there?
    pong = 0x02,    ///< server -> client: yes
    request = 0x03, ///< client -> server: request id (8 bytes), body frames
    reply = 0x04,   ///< server -> client: request id (8 bytes), body frames
    error = 0x05,   ///< server -> client: request id, status, reason: the request failed there
};

/// Settings of a freelance::client.
struct client_options {
    /// How long one attempt of request() waits for the reply (also: for any server to answer a
    /// ping, when none is known to be alive).
    std::chrono::milliseconds timeout{2500};
    /// Attempts of one request(), the first included; each retry goes to another live server if
    /// there is one. Must be at least 1.
    int retries{3};
    /// A server is pinged when it has been silent this long (the guide's PING_INTERVAL).
    std::chrono::milliseconds ping_interval{1000};
    /// A server silent this long is taken for expired (the guide's SERVER_TTL), as is one that
    /// left a request unanswered past the timeout; a PONG or reply makes it alive again.
    std::chrono::milliseconds server_ttl{3000};
    /// Largest message accepted from a server (ZMQ_MAXMSGSIZE); -1 = no limit.
    std::int64_t max_message_size{64 * 1024 * 1024};
    /// CURVE (docs/security.md): the servers' public key and this client's certificate. Every
    /// server of the pool must then be a CURVE server with that key (server_options::curve_server).
    /// Unset: plain.
    std::optional<security::curve_client_keys> curve{};
};

/// What the client knows of one server.
enum class server_state : std::uint8_t {
    unknown, ///< never heard from
    alive,   ///< answered within server_ttl
    expired, ///< silent past server_ttl, or left a request unanswered
};

/// One server of the pool, as the client sees it.
struct server_status {
    std::string endpoint;
    server_state state{server_state::unknown};
    std::chrono::steady_clock::time_point last_seen{}; ///< last message from it (epoch if never)
    std::chrono::steady_clock::time_point ping_due{};  ///< when the next PING goes out
};

/// Counters of a client (cumulative).
struct client_stats {
    std::uint64_t requests{0};     ///< request() calls
    std::uint64_t replies{0};      ///< requests answered (reply or error)
    std::uint64_t retries{0};      ///< attempts after the first
    std::uint64_t late_replies{0}; ///< replies to an earlier request, dropped
    std::uint64_t malformed{0};    ///< messages that were not ZMFL01, dropped
    std::uint64_t pings{0};        ///< PINGs sent
};

/// A server's answer that says the request failed there (command::error).
class ZMESH_EXPORT request_failed : public std::runtime_error {
  public:
    request_failed(std::string endpoint, std::string status, std::string reason);
    const std::string& endpoint() const noexcept { return endpoint_; }
    const std::string& status() const noexcept { return status_; }
    const std::string& reason() const noexcept { return reason_; }

  private:
    std::string endpoint_, status_, reason_;
};

/// The client side: synchronous requests to the first live server of a pool.
///
/// Pings are sent, and the servers' state kept, only while the client is inside request() or
/// poll(): a client idle for longer than server_ttl finds its servers expired and pings them
/// again before the next request (one round trip).
///
/// Thread safety: none; one thread uses a client at a time. The context must outlive it.
///
/// @par Example
/// @code
/// zmq::context_t ctx;
/// zmesh::patterns::freelance::client c(ctx, {"tcp://10.0.0.1:5555", "tcp://10.0.0.2:5555"});
/// zmesh::message reply = c.request(zmesh::message{"hello"});
/// @endcode
class ZMESH_EXPORT client {
  public:
    /// Connects to every endpoint of @p endpoints.
    /// @throws zmesh::error errc::invalid_argument if @p endpoints is empty, has duplicates or
    /// the options are out of range; errc::invalid_endpoint for a malformed endpoint;
    /// zmesh::error naming the endpoint if libzmq refuses a connect.
    client(zmq::context_t& ctx, std::vector<std::string> endpoints, client_options options = {});
    ~client();
    client(client&&) noexcept;
    client& operator=(client&&) noexcept;
    client(const client&) = delete;
    client& operator=(const client&) = delete;

    /// Sends @p body to a live server and returns the reply's body frames.
    /// @throws zmesh::error errc::timeout, naming every endpoint tried, when no server answered
    /// within retries attempts of timeout each (the call never takes longer than that, plus the
    /// time to send); request_failed if a server answered with an error (not retried: the
    /// request ran there); zmq::error_t on a socket failure.
    message request(message body);

    /// Answers pending PONGs and sends due PINGs, waiting at most @p wait for traffic: keeps the
    /// servers' state fresh between requests.
    void poll(std::chrono::milliseconds wait = std::chrono::milliseconds(0));

    /// The servers and what the client knows of each, in the order given.
    [[nodiscard]] std::vector<server_status> servers() const;
    [[nodiscard]] client_stats stats() const noexcept;

  private:
    class impl;
    std::unique_ptr<impl> impl_;
};

/// A server's answer to one request: a reply, or an error that the client reports as
/// request_failed.
struct answer {
    message body;       ///< the reply's frames (ok)
    bool ok{true};
    std::string status; ///< error only: e.g. "500"
    std::string reason; ///< error only: one line

    static answer reply(message body) { return answer{std::move(body), true, {}, {}}; }
    static answer fail(std::string status, std::string reason) {
        return answer{message{}, false, std::move(status), std::move(reason)};
    }
};

/// Settings of a freelance::server.
struct server_options {
    /// Largest message accepted from a client (ZMQ_MAXMSGSIZE); -1 = no limit.
    std::int64_t max_message_size{64 * 1024 * 1024};
    /// CURVE (docs/security.md): this server's certificate and the client keys it admits. The
    /// server then runs the ZAP handler of its context, so the context must have none yet (one
    /// CURVE server per context). A client with another key, or a plain one, gets nothing.
    /// Unset: plain.
    std::optional<security::curve_server_settings> curve_server{};
};

/// Counters of a server; readable from any thread while it runs.
struct server_stats {
    std::uint64_t requests{0};  ///< requests handled
    std::uint64_t pings{0};     ///< PINGs answered
    std::uint64_t malformed{0}; ///< messages that were not ZMFL01, dropped
    std::uint64_t connections_admitted{0}; ///< CURVE handshakes the ZAP handler admitted
    std::uint64_t connections_refused{0};  ///< CURVE handshakes it refused (unknown key)
    std::uint64_t forbidden{0}; ///< messages from a key that set_access() removed, dropped
};

/// The server side: a ROUTER bound to one or more endpoints that answers PINGs and calls a
/// handler per request, one at a time, on the thread that runs it.
///
/// Thread safety: stop() and stats() may be called from any thread; the rest belongs to the
/// thread that created the server and runs it. While the handler runs, PINGs wait: a handler
/// slower than the clients' server_ttl makes them take the server for expired until it answers.
///
/// @par Example
/// @code
/// zmq::context_t ctx;
/// zmesh::patterns::freelance::server s(ctx, {"tcp://*:5555"}, [](zmesh::message&& body) {
///     return zmesh::patterns::freelance::answer::reply(std::move(body)); // echo
/// });
/// s.run(); // until s.stop() from another thread, or context shutdown
/// @endcode
class ZMESH_EXPORT server {
  public:
    using handler = std::function<answer(message&& body)>;

    /// Binds every endpoint of @p endpoints (tcp://host:* allowed; see endpoints()).
    /// @throws zmesh::error errc::invalid_argument if @p endpoints is empty or @p h is empty;
    /// errc::invalid_endpoint for a malformed endpoint; zmesh::error naming the endpoint if a bind fails.
    server(zmq::context_t& ctx, const std::vector<std::string>& endpoints, handler h,
           server_options options = {});
    ~server();
    server(const server&) = delete;
    server& operator=(const server&) = delete;

    /// The endpoints actually bound (ports resolved).
    [[nodiscard]] const std::vector<std::string>& endpoints() const noexcept;

    /// Serves until stop() or context shutdown. Exceptions from the handler are answered to the
    /// client as error "500" with the exception's message; they do not end the loop.
    void run();
    /// Serves for at most @p duration (or until stop()).
    void run_for(std::chrono::milliseconds duration);
    /// Handles what is ready now, waiting at most @p wait: for a caller with a loop of its own.
    void run_once(std::chrono::milliseconds wait);
    /// Makes run() return soon. Thread-safe.
    void stop() noexcept;

    [[nodiscard]] server_stats stats() const noexcept;

    /// Replaces the client keys (and address lists) that curve_server admits, e.g. on SIGHUP.
    /// New handshakes follow it at once; a client already connected whose key is no longer
    /// admitted has its messages dropped from then on (counted in forbidden). Thread-safe.
    /// @throws zmesh::error errc::invalid_argument if curve_server is unset, or for a bad
    ///         address rule (the old policy stays).
    void set_access(security::access_policy policy);

  private:
    class impl;
    std::unique_ptr<impl> impl_;
};

} // namespace zmesh::patterns::freelance
