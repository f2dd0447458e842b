// SPDX-License-Identifier: MPL-2.0
// mdp/client.hpp — the client side of the Majordomo Protocol 0.1.
//
// Client side of 7/MDP, https://rfc.zeromq.org/spec/7/. A client sends "" "MDPC01" service body...
// to a broker and gets "" "MDPC01" service body... back. It works with any conforming MDP/0.1
// broker (the zguide's mdbroker included), not only zmesh's. Two modes share one object:
//  - request(): synchronous and reliable in the "Lazy Pirate" way (zguide mdcliapi): wait up to a
//    timeout, then drop the socket, open a new one and resend, a bounded number of times;
//  - send()/recv(): asynchronous, with a window of requests in flight for throughput (zguide
//    mdcliapi2). No retries: MDP/0.1 carries no request id, so only the application can tell
//    which request a late reply answers.
// With client_options::tagged the client speaks zmesh's tagged client protocol instead
// (mdp/protocol.hpp, ZMCT01: "" "ZMCT01" service tag body... both ways), which only a zmesh broker
// understands: every request carries an 8-byte tag that its reply names.
#pragma once

#include <zmesh/export.hpp>
#include <zmesh/message.hpp>

#include <zmq.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

namespace zmesh::mdp {

/// Settings of a zmesh::mdp::client.
struct client_options {
    /// How long one attempt of request() waits for its reply, and how long send() waits for room
    /// in a full window. 7/MDP reference value: 2500 ms.
    std::chrono::milliseconds timeout{2500};
    /// Attempts of one request(), the first one included, as in zguide's mdcliapi: 3 means send,
    /// then resend at most twice. Must be at least 1.
    int retries{3};
    /// Asynchronous mode: how many requests may await their reply from the broker at once.
    /// Must be at least 1.
    std::size_t window{64};
    /// ZMQ_LINGER of the client socket. 0 (the default) drops whatever is still queued when a
    /// socket is replaced or the client destroyed: an abandoned request is worth nothing.
    std::chrono::milliseconds linger{0};
    /// Speak zmesh's tagged client protocol (ZMCT01, mdp/protocol.hpp) instead of MDP/0.1: every
    /// request carries a tag and every reply names it, so replies are matched to requests
    /// exactly, in any order (reply::tag, send() with a tag, abandon()). Needs a zmesh broker: a
    /// plain MDP/0.1 broker drops such requests, so each one simply times out.
    bool tagged{false};
};

/// Counters of a client, for monitoring.
struct client_stats {
    std::uint64_t requests = 0;   ///< requests accepted by request() and send(), resends excluded
    std::uint64_t replies = 0;    ///< valid replies handed to the application
    std::uint64_t resends = 0;    ///< Lazy Pirate resends on a fresh socket
    std::uint64_t failures = 0;   ///< request() calls that ran out of attempts
    std::uint64_t malformed = 0;  ///< messages dropped for not being "" "MDPC01" service ...
                                  ///< (tagged: "" "ZMCT01" service <8-byte tag> ...)
    std::uint64_t unexpected = 0; ///< well-formed replies dropped: another service, none awaited;
                                  ///< tagged: a tag not outstanding, an abandon()ed request's
};

/// One reply of the asynchronous mode.
struct reply {
    std::string service;   ///< the service that answered (frame 2 of the reply)
    message body;          ///< the reply body frames
    std::uint64_t tag = 0; ///< tagged mode: the tag of the request it answers; 0 otherwise
};

/// A Majordomo (MDP/0.1) client.
///
/// The client owns one DEALER socket connected to the broker and writes the empty delimiter frame
/// itself. A REQ socket would need no delimiter, but its strict send/recv alternation forbids
/// resending after a timeout without recreating the socket, and it cannot keep several requests
/// in flight; with DEALER one socket type serves both modes. Lazy Pirate recreates the socket on
/// every retry all the same (see request()).
///
/// Replies are matched to requests by service name only: MDP/0.1 has no request id. In the
/// asynchronous mode, correlating a reply with its request (for example by an id the worker
/// echoes in the body) is the application's job. Tagged mode (client_options::tagged, zmesh
/// brokers only) removes that limit: each request carries a tag, each reply returns it in
/// reply::tag, and only a reply whose tag is outstanding is accepted. The caller may choose the
/// tags (send() with a tag) or let send() pick fresh ones; request() uses a fresh tag per attempt,
/// so a late reply to an earlier attempt can never be taken for the answer to the current one.
///
/// Not thread-safe: use one client per thread (a client may move between threads). The socket is
/// owned internally; @p ctx must outlive the client.
///
/// @par Example
/// @code
/// zmq::context_t ctx;
/// zmesh::mdp::client c(ctx, "tcp://broker:5555", {.timeout = std::chrono::seconds(1)});
/// zmesh::message reply = c.request("echo", zmesh::message{"hello"}); // throws on timeout
///
/// for (int i = 0; i < 1000; ++i)                                     // asynchronous mode
///     c.send("echo", zmesh::message{std::to_string(i)});             // blocks on a full window
/// while (c.outstanding() > 0)
///     if (!c.recv(std::chrono::seconds(1))) break;                   // broker gone
///
/// zmesh::mdp::client t(ctx, "tcp://broker:5555", {.tagged = true});  // zmesh brokers only
/// t.send("echo", zmesh::message{"a"}, 1);
/// t.send("echo", zmesh::message{"b"}, 2);
/// if (auto r = t.recv(std::chrono::seconds(1))) handle(r->tag, r->body); // 1 or 2, any order
/// @endcode
class ZMESH_EXPORT client {
  public:
    /// Creates the socket and connects it to @p broker_endpoint.
    /// @throws zmesh::error (errc::invalid_argument) if an option is out of range.
    /// @throws zmq::error_t if libzmq rejects the endpoint.
    client(zmq::context_t& ctx, std::string broker_endpoint, client_options options = {});
    ~client();
    client(client&&) noexcept;
    client& operator=(client&&) noexcept;
    client(const client&) = delete;
    client& operator=(const client&) = delete;

    /// Sends one request and waits for its reply (Lazy Pirate).
    ///
    /// Each attempt waits up to client_options::timeout. On timeout the socket is closed with
    /// linger 0, a new one is connected and the request resent, until client_options::retries
    /// attempts have been made. Messages that are not a reply from @p service are counted and
    /// dropped, and the wait goes on until the attempt's deadline. In tagged mode each attempt
    /// carries a fresh tag and only a reply from @p service naming that tag is accepted.
    /// @param body request frames, moved from (kept internally until the last attempt).
    /// @returns the reply body frames (the MDP header and service frame removed).
    /// @throws zmesh::error (errc::timeout) "no reply from service 'x' after N attempts".
    /// @throws zmesh::error (errc::invalid_argument) if @p service is empty or asynchronous
    ///         requests are outstanding (their replies would be lost with the socket).
    /// @throws zmesh::error (errc::not_running) if the context is terminated or the client moved.
    /// @throws zmq::error_t on any other socket error.
    message request(std::string_view service, message&& body);

    /// As request(service, body), reporting through @p ec instead of zmesh::error.
    /// @returns the reply body, or std::nullopt with @p ec set (errc::timeout,
    ///          errc::invalid_argument, errc::not_running).
    /// @throws zmq::error_t on a socket error other than context termination.
    std::optional<message> request(std::string_view service, message&& body,
                                   std::error_code& ec);

    /// Asynchronous mode: sends a request without waiting for its reply.
    ///
    /// If client_options::window requests already await a reply, first waits up to
    /// client_options::timeout for replies to arrive and queues them for recv(). No retries: a
    /// lost request simply never gets a reply. In tagged mode the request gets a fresh tag (one
    /// not outstanding); use the overload with a tag to know which reply answers it.
    /// @throws zmesh::error (errc::timeout) if the window stayed full or the socket would not
    ///         take the message; @p body is then left as it was.
    /// @throws zmesh::error (errc::invalid_argument) if @p service is empty.
    /// @throws zmesh::error (errc::not_running) if the context is terminated or the client moved.
    /// @throws zmq::error_t on any other socket error.
    void send(std::string_view service, message&& body);

    /// As send(service, body), reporting through @p ec instead of zmesh::error.
    /// @returns true if the request was sent.
    bool send(std::string_view service, message&& body, std::error_code& ec);

    /// Tagged mode: as send(service, body), with a tag chosen by the caller. The reply that
    /// recv() returns for this request has reply::tag == @p tag.
    /// @param tag any value not outstanding (sent, and its reply not yet returned by recv() nor
    ///        the request abandon()ed). It is sent as 8 bytes in host byte order.
    /// @throws zmesh::error (errc::invalid_argument) if the client is not tagged, @p service is
    ///         empty or @p tag is outstanding; @p body is then left as it was.
    /// @throws zmesh::error (errc::timeout), zmesh::error (errc::not_running), zmq::error_t: as
    ///         send(service, body).
    void send(std::string_view service, message&& body, std::uint64_t tag);

    /// As send(service, body, tag), reporting through @p ec instead of zmesh::error.
    /// @returns true if the request was sent.
    bool send(std::string_view service, message&& body, std::uint64_t tag, std::error_code& ec);

    /// Tagged mode: forgets an outstanding request, for example one the caller has timed out.
    /// Its window slot is freed at once; its reply, queued already or arriving later, is dropped
    /// and counted in client_stats::unexpected. Do not send with that tag again while its late
    /// reply may still come: it would be taken for the new request's (fresh tags never clash).
    /// @returns whether @p tag was outstanding; always false in untagged mode.
    /// @throws zmesh::error (errc::not_running) if the client was moved from.
    bool abandon(std::uint64_t tag);

    /// Asynchronous mode: the next reply, in order of arrival (in tagged mode, only replies whose
    /// tag is outstanding; the tag is then no longer outstanding).
    /// @returns a queued or newly arrived reply; std::nullopt if none arrives within
    ///          @p timeout, at once if outstanding() is 0, or if the context is terminating.
    /// @throws zmesh::error (errc::not_running) if the client was moved from.
    /// @throws zmq::error_t on a socket error other than context termination.
    std::optional<reply> recv(std::chrono::milliseconds timeout);

    /// Requests sent by send() whose reply recv() has not returned yet (queued ones included),
    /// abandon()ed ones excluded. In tagged mode: the number of outstanding tags.
    [[nodiscard]] std::size_t outstanding() const noexcept;

    /// The counters so far.
    [[nodiscard]] client_stats stats() const noexcept;

    /// The broker endpoint given at construction.
    [[nodiscard]] const std::string& endpoint() const noexcept;

    /// The current socket, for multiplexing several clients (or other sockets) in one
    /// zmq::poll in the asynchronous mode: readable means recv() with a zero timeout may return
    /// a reply. Only poll it, never read or write it. request() replaces it on every resend
    /// (fetch it again before every poll); null after a move.
    [[nodiscard]] zmq::socket_ref socket() const noexcept;

  private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

} // namespace zmesh::mdp
