// SPDX-License-Identifier: MPL-2.0
// mdp/worker.hpp — the worker side of the Majordomo Protocol 0.1.
//
// Worker side of 7/MDP, https://rfc.zeromq.org/spec/7/. A worker registers one service with a
// broker (READY), receives REQUESTs, answers each with a REPLY, and keeps the link alive with
// HEARTBEATs both ways. When the broker falls silent for heartbeat × liveness, or says DISCONNECT,
// the worker starts over on a new socket and registers again (zguide mdwrkapi, with exponential
// reconnect backoff). It works with any conforming MDP/0.1 broker, not only zmesh's.
#pragma once

#include <zmesh/export.hpp>
#include <zmesh/message.hpp>

#include <zmq.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

namespace zmesh::mdp {

/// Settings of a zmesh::mdp::worker.
///
/// 7/MDP has no way to agree on heartbeat settings: give the worker the broker's interval
/// (2500 ms for the zguide broker and zmesh's default). A worker whose heartbeat × liveness is
/// shorter than the broker's interval declares a healthy idle broker dead and reconnects over and
/// over; one whose interval exceeds the broker's expiry is dropped by the broker.
struct worker_options {
    /// Interval of HEARTBEATs to the broker, and the unit of silence counted by liveness.
    std::chrono::milliseconds heartbeat{2500};
    /// Heartbeat intervals of broker silence after which the broker is taken for dead.
    int liveness{3};
    /// Wait before the first reconnect after broker silence; doubled on each further silent
    /// reconnect up to reconnect_max, back to reconnect_initial as soon as the broker speaks.
    std::chrono::milliseconds reconnect_initial{250};
    /// Longest wait between reconnects.
    std::chrono::milliseconds reconnect_max{32000};
    /// How long the context may keep the socket after close() to flush DISCONNECT. close()
    /// itself never blocks; zmq_ctx_term waits up to this long if the broker is unreachable.
    std::chrono::milliseconds disconnect_linger{200};
};

/// Counters of a worker, for monitoring.
struct worker_stats {
    std::uint64_t requests = 0;        ///< REQUESTs returned by recv()
    std::uint64_t replies = 0;         ///< REPLYs sent
    std::uint64_t heartbeats = 0;      ///< HEARTBEATs sent
    std::uint64_t reconnects = 0;      ///< new sockets after broker silence or DISCONNECT
    std::uint64_t disconnects = 0;     ///< DISCONNECTs received from the broker
    std::uint64_t malformed = 0;       ///< broker messages dropped as invalid MDP/0.1 worker commands
    std::uint64_t replies_dropped = 0; ///< replies not sent: request from an earlier connection,
                                       ///< or the socket at its high-water mark
};

/// A Majordomo (MDP/0.1) worker for one service.
///
/// The worker owns a DEALER socket connected to the broker. It only does I/O inside recv(),
/// reply() and keepalive(): while a request is handled nothing is heartbeated. A handler that
/// runs longer than heartbeat × liveness without calling keepalive() is seen as dead by the
/// broker, which may re-queue its request to another worker (work must be idempotent, as 7/MDP
/// assumes).
///
/// When the worker starts over on a new socket (broker silence or DISCONNECT), requests received
/// on the old one are abandoned: the broker has forgotten them and the client's retry covers them.
/// A reply to such a request is dropped (counted in worker_stats::replies_dropped), so a
/// restarted broker never gets a REPLY it did not ask for.
///
/// Not thread-safe: use a worker from one thread at a time. The socket is owned internally;
/// @p ctx must outlive the worker.
///
/// @par Example
/// @code
/// zmq::context_t ctx;
/// zmesh::mdp::worker w(ctx, "tcp://broker:5556", "echo");
/// while (!stopping) {
///     auto request = w.recv(std::chrono::milliseconds(500)); // heartbeats while waiting
///     if (!request) continue;
///     w.reply(std::move(*request));                          // echo the body back
/// }
/// w.close(); // DISCONNECT; also done by the destructor
/// @endcode
class ZMESH_EXPORT worker {
  public:
    /// Connects to @p broker_endpoint and sends READY for @p service.
    /// @throws zmesh::error (errc::invalid_argument) if @p service is empty or reserved
    ///         (8/MMI "mmi." prefix), or an option is out of range.
    /// @throws zmq::error_t if libzmq rejects the endpoint.
    worker(zmq::context_t& ctx, std::string broker_endpoint, std::string service,
           worker_options options = {});
    /// Calls close().
    ~worker();
    worker(worker&&) noexcept;
    worker& operator=(worker&&) noexcept;
    worker(const worker&) = delete;
    worker& operator=(const worker&) = delete;

    /// Waits for the next REQUEST and returns its body; its client address is kept for reply().
    ///
    /// While waiting, sends HEARTBEAT whenever nothing else was sent for one heartbeat interval,
    /// takes every valid broker command as a sign of life, and reconnects (new socket, READY) after
    /// heartbeat × liveness of silence or at once on DISCONNECT. Malformed broker messages are
    /// counted and dropped. A previous request not yet replied to is abandoned.
    /// @returns the request body; std::nullopt if none arrived within @p timeout, or if the
    ///          context is terminating (the worker is then closed).
    /// @throws zmesh::error (errc::not_running) after close() or a move.
    /// @throws zmq::error_t on a socket error other than context termination.
    std::optional<message> recv(std::chrono::milliseconds timeout);

    /// Sends REPLY "" "MDPW01" 0x03 client "" body... for the request recv() last returned.
    /// Never blocks: a reply the socket cannot take at once, or that answers a request from
    /// before a reconnect, is dropped and counted.
    /// @throws zmesh::error (errc::invalid_argument) if there is no pending request.
    /// @throws zmesh::error (errc::not_running) after close() or a move.
    /// @throws zmq::error_t on a socket error other than context termination.
    void reply(message&& body);

    /// For long handlers: reads incoming traffic (queueing requests for recv()), sends a
    /// HEARTBEAT if one is due and reconnects if the broker is dead. Never waits.
    /// @throws zmesh::error (errc::not_running) after close() or a move.
    /// @throws zmq::error_t on a socket error other than context termination.
    void keepalive();

    /// Sends DISCONNECT (best effort, without blocking) and closes the socket, leaving it
    /// worker_options::disconnect_linger to flush. Idempotent.
    void close() noexcept;

    /// True until close() (or context termination seen by the worker).
    [[nodiscard]] bool is_open() const noexcept;

    /// The service this worker registers.
    [[nodiscard]] const std::string& service() const noexcept;

    /// The counters so far.
    [[nodiscard]] worker_stats stats() const noexcept;

    /// The current socket, for multiplexing several workers (or other sockets) in one
    /// zmq::poll: readable means recv() with a zero timeout may return a request. Only poll it,
    /// never read or write it. The socket changes on reconnect (fetch it again before every
    /// poll) and is null while the worker waits to reconnect or after close(); heartbeats are
    /// sent only inside recv()/keepalive(), so call one of them at least every heartbeat.
    [[nodiscard]] zmq::socket_ref socket() const noexcept;

  private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

} // namespace zmesh::mdp
