// SPDX-License-Identifier: MPL-2.0
// mdp/durable_client.hpp — the client side of the Titanic Service Protocol (rfc 9/TSP).
//
// Client side of 9/TSP, https://rfc.zeromq.org/spec/9/. Titanic is a proxy service on top of
// MDP: a client hands a request to `titanic.request`, which answers "200" and an id only once the
// request is stored; the Titanic server then delivers it to the target service as often as needed,
// and the client collects the reply from `titanic.reply` ("200" and the reply, "300" while
// pending, "400" for an unknown id) whenever it likes, then forgets it with `titanic.close`.
// durable_client speaks TSP over a plain zmesh::mdp::client (synchronous, Lazy Pirate retries),
// so it works with any conforming MDP/0.1 broker and TSP server, not only zmesh's.
#pragma once

#include <zmesh/export.hpp>
#include <zmesh/mdp/client.hpp>
#include <zmesh/message.hpp>

#include <zmq.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace zmesh::mdp {

/// TSP service names (rfc 9).
inline constexpr std::string_view titanic_request = "titanic.request";
inline constexpr std::string_view titanic_reply = "titanic.reply";
inline constexpr std::string_view titanic_close = "titanic.close";
/// zmesh extension of titanic.request: when the frame after the service name is exactly this
/// marker, the next frame is a zmesh header (header.hpp) whose ttl_ms bounds how long the server
/// keeps trying; the body follows. Plain TSP clients never send it (docs/titanic.md).
inline constexpr std::string_view titanic_header_marker = "zmesh.header";

/// Settings of a zmesh::mdp::durable_client.
struct durable_client_options {
    /// The underlying MDP client: its timeout and retries bound each single TSP call (submit,
    /// poll, close), not the wait for a reply.
    client_options mdp{};
    /// First interval between two polls of wait(); each next interval doubles, up to
    /// poll_max. Must be positive.
    std::chrono::milliseconds poll_initial{50};
    /// Longest interval between two polls of wait(). Must be at least poll_initial.
    std::chrono::milliseconds poll_max{1000};
};

/// Whether @p id has the form of a TSP request id: exactly 32 hexadecimal digits (either case).
[[nodiscard]] constexpr bool is_tsp_id(std::string_view id) noexcept {
    if (id.size() != 32) return false;
    for (char c : id) {
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
            return false;
    }
    return true;
}

/// A Titanic (TSP, rfc 9) client: durable requests through a Titanic server.
///
/// Each call is one synchronous MDP request to a `titanic.*` service; a call that gets no answer
/// after the MDP client's retries throws errc::timeout, and the request it carried may or may not
/// have reached the server (a submit may then have been stored without the id reaching the
/// client: TSP offers no way to tell). Once submit() has returned an id, the request is stored
/// and the server delivers it at least once.
///
/// Status mapping of the server's answers: "200" is success; "300" (pending) is a value of
/// poll(); "400" (unknown id) throws errc::invalid_argument; "500" (server error, retry later)
/// throws errc::storage; anything else throws errc::protocol_violation. The reason frames the
/// server adds after a status are quoted in the exception's message.
///
/// Not thread-safe: use one durable_client per thread (it may move between threads). The socket
/// is owned internally; @p ctx must outlive the client.
///
/// @par Example
/// @code
/// zmq::context_t ctx;
/// zmesh::mdp::durable_client c(ctx, "tcp://broker:5555");
/// std::string id = c.submit("echo", zmesh::message{"hello"});   // stored once this returns
/// zmesh::message reply = c.wait(id, std::chrono::seconds(30)); // throws errc::timeout
/// c.close(id);                                                   // the server forgets it
/// @endcode
class ZMESH_EXPORT durable_client {
  public:
    /// Creates the MDP client and connects it to @p broker_endpoint.
    /// @throws zmesh::error (errc::invalid_argument) if an option is out of range.
    /// @throws zmq::error_t if libzmq rejects the endpoint.
    durable_client(zmq::context_t& ctx, std::string broker_endpoint,
                   durable_client_options options = {});
    /// Failover across brokers (a Binary Star pair): the MDP client is mdp::client's list
    /// constructor, which moves to the next broker after each silent attempt. Give
    /// options.mdp.retries at least one attempt per broker.
    /// @throws zmesh::error (errc::invalid_argument) if the list is empty or an option is out
    ///         of range; zmq::error_t if libzmq rejects the first endpoint.
    durable_client(zmq::context_t& ctx, std::vector<std::string> broker_endpoints,
                   durable_client_options options = {});
    ~durable_client();
    durable_client(durable_client&&) noexcept;
    durable_client& operator=(durable_client&&) noexcept;
    durable_client(const durable_client&) = delete;
    durable_client& operator=(const durable_client&) = delete;

    /// Stores a request for @p service with the Titanic server (`titanic.request`).
    /// @param body request frames, moved from.
    /// @returns the request id the server gave: 32 hex digits.
    /// @throws zmesh::error (errc::invalid_argument) if @p service is empty.
    /// @throws zmesh::error (errc::timeout) if the server did not answer after every attempt.
    /// @throws zmesh::error (errc::storage) if the server answered "500" (not stored).
    /// @throws zmesh::error (errc::protocol_violation) on any other answer, a malformed id
    ///         included.
    /// @throws zmesh::error (errc::not_running) if the context is terminated or the client moved.
    /// @throws zmq::error_t on any other socket error.
    std::string submit(std::string_view service, message&& body);

    /// As submit(service, body), with a time to live: if the service has not answered within
    /// @p ttl of the submission, the server stops trying and dead-letters the request. Sent as
    /// the zmesh header extension of docs/titanic.md, which only a zmesh Titanic server reads.
    /// @throws as submit(); zmesh::error (errc::invalid_argument) if @p ttl is not positive.
    std::string submit(std::string_view service, message&& body, std::chrono::milliseconds ttl);

    /// Asks once for the reply to request @p id (`titanic.reply`).
    /// @returns the reply frames if the server has it ("200"); std::nullopt while it is pending
    ///          ("300").
    /// @throws zmesh::error (errc::invalid_argument) if @p id is not 32 hex digits (nothing is
    ///         sent), or the server does not know it ("400": never submitted, or closed).
    /// @throws zmesh::error (errc::timeout) if the server did not answer after every attempt.
    /// @throws zmesh::error (errc::storage) if the server answered "500".
    /// @throws zmesh::error (errc::protocol_violation) on any other answer.
    /// @throws zmesh::error (errc::not_running) if the context is terminated or the client moved.
    /// @throws zmq::error_t on any other socket error.
    std::optional<message> poll(std::string_view id);

    /// Polls for the reply to request @p id until it comes or @p timeout passes. The interval
    /// between polls grows from durable_client_options::poll_initial to poll_max. A poll that
    /// fails with errc::timeout or errc::storage (Titanic or broker restarting, "500") is retried
    /// like a pending one until the deadline. The deadline is checked between polls, so a wait
    /// can overrun @p timeout by up to one poll (the MDP client's timeout times its retries).
    /// @returns the reply frames.
    /// @throws zmesh::error (errc::timeout) if no reply came in time; the message names the
    ///         last error seen, if any.
    /// @throws zmesh::error (errc::invalid_argument), (errc::protocol_violation),
    ///         (errc::not_running), zmq::error_t: as poll().
    message wait(std::string_view id, std::chrono::milliseconds timeout);

    /// Tells the server to forget request @p id and its reply (`titanic.close`). Idempotent: the
    /// server answers "200" for an unknown id too.
    /// @throws zmesh::error (errc::invalid_argument) if @p id is not 32 hex digits.
    /// @throws zmesh::error (errc::timeout), (errc::storage), (errc::protocol_violation),
    ///         (errc::not_running), zmq::error_t: as poll().
    void close(std::string_view id);

    /// The counters of the underlying MDP client.
    [[nodiscard]] client_stats stats() const noexcept;

  private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

} // namespace zmesh::mdp
