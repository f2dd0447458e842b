// SPDX-License-Identifier: MPL-2.0
// mdp/client.hpp — the client side of zmesh request/reply: ZMCT03 (default), MDP/0.1, ZMCT01.
//
// Three protocols share one object (client_options::protocol):
//  - ZMCT03 (docs/protocol.md), the default, for zmesh brokers: "ZMCT03"+command service header
//    body... Every request carries a header (lib/include/zmesh/header.hpp) with a message id
//    that stays the same across retries, so the broker executes it once however often it is
//    resent; replies name that id (header `co`), errors are exact (a FINAL of type zmesh.error
//    with a status code), and a reply may stream as PARTIALs before its FINAL.
//  - MDP/0.1 (7/MDP, https://rfc.zeromq.org/spec/7/): "" "MDPC01" service body... both ways. It
//    works with any conforming broker (the zguide's mdbroker included).
//  - ZMCT01, zmesh's tagged MDP/0.1 (mdp/protocol.hpp): "" "ZMCT01" service tag body... both
//    ways, zmesh brokers only.
// Two modes share one object:
//  - request(): synchronous and reliable in the "Lazy Pirate" way (zguide mdcliapi): wait up to a
//    timeout, then resend, a bounded number of times;
//  - send()/recv(): asynchronous, with a window of requests in flight for throughput (zguide
//    mdcliapi2). No retries.
#pragma once

#include <zmesh/error.hpp>
#include <zmesh/export.hpp>
#include <zmesh/header.hpp>
#include <zmesh/message.hpp>
#include <zmesh/security/zap.hpp>

#include <zmq.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace zmesh::mdp {

/// The protocol a client speaks to its broker.
enum class client_protocol : std::uint8_t {
    zmesh,  ///< ZMCT03 (docs/protocol.md): header, message ids, exact errors, streaming. zmesh
            ///< brokers only: a plain MDP broker drops such requests, so each one times out.
    mdp,    ///< MDP/0.1 (MDPC01, 7/MDP): any conforming broker.
    tagged, ///< ZMCT01: MDP/0.1 with a tag per request (mdp/protocol.hpp). zmesh brokers only.
};

/// Settings of a zmesh::mdp::client.
struct client_options {
    /// How long one attempt of request() waits for its reply (for the next part of it, once a
    /// ZMCT03 reply streams), and how long send() waits for room in a full window. 7/MDP
    /// reference value: 2500 ms.
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
    /// Kept for source compatibility: true means protocol = client_protocol::tagged, whatever
    /// `protocol` says.
    bool tagged{false};
    /// The protocol spoken (see client_protocol). Placed last so that existing designated
    /// initialisers ({.timeout = …, .tagged = true}) still compile.
    client_protocol protocol{client_protocol::zmesh};
    /// CURVE (docs/security.md): the broker's public key and this client's certificate; unset
    /// for a broker without it. A client with the wrong server key never connects: its
    /// requests time out.
    std::optional<security::curve_client_keys> curve{};
    /// Latency mode: while request() and recv() waits, busy-poll the socket (zmq_poll with timeout 0, in a
    /// loop, for at most the caller's timeout) instead of sleeping in the kernel until a message
    /// comes. It saves the wake-up of a blocked thread on every message, at the price of one
    /// core kept at 100 % while waiting: for a thread pinned to a core of its own. Off (blocking)
    /// by default.
    bool spin = false;
};

/// Per-request settings of a ZMCT03 request (docs/protocol.md, "The header frame").
struct request_options {
    /// The message id; none = a fresh one (message_id::generate()). A caller that resends by
    /// hand with the id of an earlier request gets that request's reply, kept by the broker for
    /// its dedupe window, without the request running again.
    std::optional<message_id> id{};
    /// The request's type (header `ty`), carried to the worker; empty = none.
    std::string type{};
    /// 0 (lowest) … 9 (highest); the broker serves higher priorities first.
    std::uint8_t priority = default_priority;
    /// The request's deadline, counted from the first send (header `tl`, sent as the time then
    /// left). 0 = the client's whole wait, timeout × retries.
    std::chrono::milliseconds ttl{0};
    /// Ask the broker for an immediate 404 if no worker has ever served the service, rather than
    /// queueing the request (set_fail_fast()).
    bool fail_fast = false;
};

/// The final reply to a ZMCT03 request.
struct response {
    header head;  ///< the FINAL's header: head.correlation_id is the request's id
    message body; ///< the FINAL's body frames
};

/// Called with each PARTIAL of a streamed ZMCT03 reply, in order of arrival, before request()
/// returns the FINAL. The body may be moved from.
using part_handler = std::function<void(const header& head, message& body)>;

/// An error a broker answered a ZMCT03 request with: a FINAL of type zmesh.error (docs/
/// protocol.md, "Errors are exact"). code() is status_to_errc(status()); what() reads
/// "service 'x' failed: 404 reason".
class ZMESH_EXPORT service_error : public error {
  public:
    service_error(std::string service, std::string status, std::string reason);
    /// The service the request named.
    [[nodiscard]] const std::string& service() const noexcept { return service_; }
    /// The status code as received: 3 ASCII digits from a conforming broker ("404").
    [[nodiscard]] const std::string& status() const noexcept { return status_; }
    /// The one-line reason.
    [[nodiscard]] const std::string& reason() const noexcept { return reason_; }

  private:
    std::string service_, status_, reason_;
};

/// The errc of a broker status code: 400 bad_request, 403 forbidden, 404 not_found, 422
/// refused, 500 exhausted, 503 unavailable, 504 timeout, anything else remote_error.
[[nodiscard]] ZMESH_EXPORT errc status_to_errc(std::string_view status) noexcept;

/// Counters of a client, for monitoring.
struct client_stats {
    std::uint64_t requests = 0;   ///< requests accepted by request() and send(), resends excluded
    std::uint64_t replies = 0;    ///< valid replies (FINALs) handed to the application
    std::uint64_t resends = 0;    ///< Lazy Pirate resends
    std::uint64_t failures = 0;   ///< request() calls that ran out of attempts
    std::uint64_t malformed = 0;  ///< messages dropped for not being a reply in the protocol
                                  ///< spoken (a ZMCT03 header that does not decode included)
    std::uint64_t unexpected = 0; ///< well-formed replies dropped: another service, none awaited;
                                  ///< tagged: a tag not outstanding; ZMCT03: an id not awaited
    std::uint64_t parts = 0;      ///< ZMCT03: PARTIALs received for awaited requests
    std::uint64_t failovers = 0;  ///< moves to the next broker of the list after a silent attempt
};

/// One reply of the asynchronous mode.
struct reply {
    std::string service;   ///< the service that answered (frame 2 of the reply)
    message body;          ///< the reply body frames (ZMCT03: see client::recv())
    std::uint64_t tag = 0; ///< tagged mode: the tag of the request it answers; 0 otherwise
    message_id id;         ///< ZMCT03: the id of the request it answers; nil otherwise
    header head;           ///< ZMCT03: the FINAL's header; default otherwise
};

/// A zmesh request/reply client: ZMCT03 by default, MDP/0.1 or ZMCT01 on request.
///
/// The client owns one DEALER socket connected to the broker. A REQ socket would need no
/// delimiter, but its strict send/recv alternation forbids resending after a timeout without
/// recreating the socket, and it cannot keep several requests in flight; with DEALER one socket
/// type serves both modes.
///
/// Retries differ by protocol. Lazy Pirate recreates the socket on every retry for two reasons:
/// a REQ socket's state machine (not ours: we use DEALER), and stale replies — MDP/0.1 has no
/// request id, so a late reply to a timed-out attempt would be taken for the next one's answer
/// unless it lands on a socket that no longer exists. In MDP/0.1 and ZMCT01 modes request()
/// still does that. In ZMCT03 mode neither reason holds: every reply names the id of the request
/// it answers (header `co`), so a stale one is recognised and dropped. So ZMCT03 retries resend,
/// with the same message id, on the SAME socket: the broker joins a retry to the request still
/// queued or running under that id (or answers it from its dedupe window), and keeping the
/// connection keeps the client's identity at the broker, hence its place in the fair queue and
/// the route of the reply. A new socket would make each retry a stranger.
///
/// Replies are matched to requests by id (ZMCT03), by tag (ZMCT01), or by service name only
/// (MDP/0.1, which has no request id: in the asynchronous mode, correlating a reply with its
/// request is then the application's job).
///
/// Not thread-safe: use one client per thread (a client may move between threads). The socket is
/// owned internally; @p ctx must outlive the client.
///
/// @par Example
/// @code
/// zmq::context_t ctx;
/// zmesh::mdp::client c(ctx, "tcp://broker:5555", {.timeout = std::chrono::seconds(1)});
/// try {
///     auto r = c.request("echo", zmesh::message{"hello"}, {.priority = 7},
///                        [](const zmesh::header&, zmesh::message& part) { show(part); });
///     use(r.head.type, r.body);
/// } catch (const zmesh::mdp::service_error& e) {         // exact: a zmesh.error FINAL
///     report(e.status(), e.reason());
/// }                                                      // zmesh::error (timeout): no reply
///
/// for (int i = 0; i < 1000; ++i)                         // asynchronous mode
///     c.send("echo", zmesh::message{std::to_string(i)}); // blocks on a full window
/// while (c.outstanding() > 0)
///     if (!c.recv(std::chrono::seconds(1))) break;       // broker gone
///
/// zmesh::mdp::client plain(ctx, "tcp://mdbroker:5555",
///                          {.protocol = zmesh::mdp::client_protocol::mdp}); // any MDP broker
/// @endcode
class ZMESH_EXPORT client {
  public:
    /// Creates the socket and connects it to @p broker_endpoint.
    /// @throws zmesh::error (errc::invalid_argument) if an option is out of range.
    /// @throws zmq::error_t if libzmq rejects the endpoint.
    client(zmq::context_t& ctx, std::string broker_endpoint, client_options options = {});
    /// Failover across brokers (e.g. the two of a Binary Star pair, docs/patterns/
    /// binary_star.md): connects to the first of @p broker_endpoints and, whenever an attempt of
    /// request() times out, moves to the next one (round robin) for the following attempt. A
    /// ZMCT03 request keeps its message id across brokers, so a broker that has the request (or
    /// its kept reply) joins the retry to it. The asynchronous mode (send()/recv()) stays on the
    /// broker it is connected to. Give client_options::retries enough attempts to cover the
    /// pair's failover (two of its heartbeats) plus one attempt on each broker.
    /// @throws zmesh::error (errc::invalid_argument) if the list is empty or an option is out
    ///         of range.
    /// @throws zmq::error_t if libzmq rejects the first endpoint.
    client(zmq::context_t& ctx, std::vector<std::string> broker_endpoints,
           client_options options = {});
    ~client();
    client(client&&) noexcept;
    client& operator=(client&&) noexcept;
    client(const client&) = delete;
    client& operator=(const client&) = delete;

    /// Sends one ZMCT03 request and waits for its reply (Lazy Pirate on one socket).
    ///
    /// The request's header has the id of @p options (or a fresh one), the same on every
    /// attempt; `at` = the attempt (0 first); `tl` = what is left, at that send, of the
    /// deadline (request_options::ttl, or timeout × retries, from the first send), so a retry
    /// carries less; the type, priority and fail-fast flag of @p options. Each attempt waits up
    /// to client_options::timeout for the next message of the reply; a PARTIAL restarts that
    /// wait (the reply is making progress: a resend would only join it) and goes to @p on_part
    /// at once. Once the deadline has passed no retry is sent (a request with no time left would
    /// be read as one with no deadline). If the deadline falls within the client's wait, the last
    /// attempt waits up to 200 ms past it for the broker's exact 504, which the broker sends at
    /// the deadline by its own clock. Messages whose `co` is not this request's id (late
    /// replies to earlier requests), from another service, or malformed are counted and dropped.
    /// @param body request frames, moved from (kept internally until the last attempt).
    /// @param on_part may be empty (PARTIALs are then dropped). May throw: the exception ends
    ///        the request and propagates; a later reply to it is dropped as stale.
    /// @returns the FINAL's header and body.
    /// @throws mdp::service_error if the FINAL is of type zmesh.error (its status and reason).
    /// @throws zmesh::error (errc::timeout) "no reply from service 'x' after N attempts".
    /// @throws zmesh::error (errc::invalid_argument) if the client does not speak ZMCT03, @p
    ///         service is empty, the priority is above 9, the ttl is negative or above
    ///         2^32-1 ms, or asynchronous requests are outstanding.
    /// @throws zmesh::error (errc::not_running) if the context is terminated or the client moved.
    /// @throws zmq::error_t on any other socket error.
    response request(std::string_view service, message&& body, const request_options& options,
                     const part_handler& on_part = {});

    /// As the throwing request(service, body, options, on_part), reporting through @p ec.
    /// @returns the FINAL; std::nullopt with @p ec set (errc::timeout, errc::invalid_argument,
    ///          errc::not_running) if there is none. A zmesh.error FINAL is returned too, with
    ///          @p ec set to status_to_errc() of its status: its body is the status and reason.
    /// @throws zmq::error_t on a socket error other than context termination.
    std::optional<response> request(std::string_view service, message&& body,
                                    const request_options& options, std::error_code& ec,
                                    const part_handler& on_part = {});

    /// Sends one request with default settings and waits for its reply (Lazy Pirate), in the
    /// protocol of client_options.
    ///
    /// MDP/0.1 and ZMCT01: each attempt waits up to client_options::timeout. On timeout the
    /// socket is closed with linger 0, a new one is connected and the request resent, until
    /// client_options::retries attempts have been made. Messages that are not a reply from
    /// @p service are counted and dropped. In tagged mode each attempt carries a fresh tag and
    /// only a reply from @p service naming that tag is accepted.
    ///
    /// ZMCT03: as request(service, body, {}), with the reply presented as an MDP/0.1 client of
    /// a zmesh broker sees it, so code written for MDP/0.1 keeps working: the frames of every
    /// PARTIAL, then the FINAL's; an error FINAL as the body "zmesh.error" status reason.
    /// @param body request frames, moved from (kept internally until the last attempt).
    /// @returns the reply body frames (the protocol frames removed).
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
    /// not outstanding); use the overload with a tag to know which reply answers it. In ZMCT03
    /// mode it gets a fresh id and the default request_options (deadline timeout × retries);
    /// use the overload with options to choose them.
    /// @throws zmesh::error (errc::timeout) if the window stayed full or the socket would not
    ///         take the message; @p body is then left as it was.
    /// @throws zmesh::error (errc::invalid_argument) if @p service is empty.
    /// @throws zmesh::error (errc::not_running) if the context is terminated or the client moved.
    /// @throws zmq::error_t on any other socket error.
    void send(std::string_view service, message&& body);

    /// As send(service, body), reporting through @p ec instead of zmesh::error.
    /// @returns true if the request was sent.
    bool send(std::string_view service, message&& body, std::error_code& ec);

    /// ZMCT03 asynchronous mode: as send(service, body), with the header built from @p options.
    /// The reply that recv() returns for this request has reply::id == the request's id.
    /// Write request_options{} for the defaults: a bare {} selects send(service, body, tag).
    /// @returns the request's message id.
    /// @throws zmesh::error (errc::invalid_argument) if the client does not speak ZMCT03, an
    ///         option is out of range (see request()) or @p options.id is outstanding.
    /// @throws zmesh::error (errc::timeout), zmesh::error (errc::not_running), zmq::error_t: as
    ///         send(service, body).
    message_id send(std::string_view service, message&& body, const request_options& options);

    /// As send(service, body, options), reporting through @p ec instead of zmesh::error.
    /// @returns the request's id, or std::nullopt with @p ec set.
    std::optional<message_id> send(std::string_view service, message&& body,
                                   const request_options& options, std::error_code& ec);

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
    /// @returns whether @p tag was outstanding; always false in other modes.
    /// @throws zmesh::error (errc::not_running) if the client was moved from.
    bool abandon(std::uint64_t tag);

    /// ZMCT03 mode: as abandon(tag), for the request with message id @p id. Sending with that id
    /// again is safe: the broker joins it to the abandoned request, or answers it from its
    /// dedupe window.
    /// @returns whether @p id was outstanding; always false in other modes.
    /// @throws zmesh::error (errc::not_running) if the client was moved from.
    bool abandon(const message_id& id);

    /// Asynchronous mode: the next reply, in order of arrival (in tagged and ZMCT03 modes, only
    /// replies to outstanding requests, which are then no longer outstanding).
    ///
    /// ZMCT03: a reply is returned once its FINAL arrives, with the frames of any PARTIALs before
    /// the FINAL's (the asynchronous mode does not stream), reply::id and reply::head set. An
    /// error FINAL (reply::head.type == error_type, which is exact) has, as in request(service,
    /// body), the body "zmesh.error" status reason.
    /// @returns a queued or newly arrived reply; std::nullopt if none arrives within
    ///          @p timeout, at once if outstanding() is 0, or if the context is terminating.
    /// @throws zmesh::error (errc::not_running) if the client was moved from.
    /// @throws zmq::error_t on a socket error other than context termination.
    std::optional<reply> recv(std::chrono::milliseconds timeout);

    /// Requests sent by send() whose reply recv() has not returned yet (queued ones included),
    /// abandon()ed ones excluded.
    [[nodiscard]] std::size_t outstanding() const noexcept;

    /// The counters so far.
    [[nodiscard]] client_stats stats() const noexcept;

    /// The protocol this client speaks (client_options::tagged folded in).
    [[nodiscard]] client_protocol protocol() const noexcept;

    /// The broker endpoint the client is connected to now: the one given at construction, or,
    /// with a list, the one failover has reached.
    [[nodiscard]] const std::string& endpoint() const noexcept;

    /// The current socket, for multiplexing several clients (or other sockets) in one
    /// zmq::poll in the asynchronous mode: readable means recv() with a zero timeout may return
    /// a reply. Only poll it, never read or write it. In MDP/0.1 and ZMCT01 modes request()
    /// replaces it on every resend, and in every mode on a move to the next broker of a list
    /// (fetch it again before every poll); null after a move.
    [[nodiscard]] zmq::socket_ref socket() const noexcept;

  private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

} // namespace zmesh::mdp
