// SPDX-License-Identifier: MPL-2.0
// mdp/worker.hpp — the worker side of the Majordomo Protocol 0.1, and of zmesh's workers with
// credit.
//
// Worker side of 7/MDP, https://rfc.zeromq.org/spec/7/. A worker registers one service with a
// broker (READY), receives REQUESTs, answers each with a REPLY, and keeps the link alive with
// HEARTBEATs both ways. When the broker falls silent for heartbeat × liveness, or says DISCONNECT,
// the worker starts over on a new socket and registers again (zguide mdwrkapi, with exponential
// reconnect backoff). With the default credit of 1 it works with any conforming MDP/0.1 broker,
// not only zmesh's. With a larger credit it speaks zmesh's ZMWC01 extension (mdp/protocol.hpp,
// docs/broker.md "Workers with credit"): the broker keeps up to that many requests at the worker,
// each tagged, and the worker may answer them in any order.
#pragma once

#include <zmesh/export.hpp>
#include <zmesh/message.hpp>

#include <zmq.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>

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
    /// How many requests the broker may hand this worker before it has their replies.
    ///
    /// 1 is plain MDP/0.1: header "MDPW01", works with any MDP broker, one request at a time.
    /// 2..mdp::max_worker_credit speaks zmesh's ZMWC01 extension, whose READY carries the credit
    /// (it needs a zmesh broker; an MDP/0.1 broker ignores or rejects the unknown header). The
    /// broker then keeps up to `credit` requests queued at the worker, so the next request is
    /// already local when the handler finishes, and take() can gather several to batch them.
    /// Each REPLY returns one unit of credit: with credit > 1 every request must be answered,
    /// since an unanswered one holds its unit until the next reconnect.
    std::uint32_t credit{1};
};

/// Counters of a worker, for monitoring.
struct worker_stats {
    std::uint64_t requests = 0;        ///< REQUESTs returned by recv() or take()
    std::uint64_t replies = 0;         ///< REPLYs sent
    std::uint64_t heartbeats = 0;      ///< HEARTBEATs sent
    std::uint64_t reconnects = 0;      ///< new sockets after broker silence or DISCONNECT
    std::uint64_t disconnects = 0;     ///< DISCONNECTs received from the broker
    std::uint64_t malformed = 0;       ///< broker messages dropped as invalid commands of the
                                       ///< worker's protocol (MDPW01 or ZMWC01)
    std::uint64_t replies_dropped = 0; ///< replies not sent: request from an earlier connection,
                                       ///< or the socket at its high-water mark
};

class worker;

/// What worker::reply(reply_token&&, message&&) needs to answer one request: the client address,
/// the request's tag (ZMWC01 only) and the connection it came on. Opaque and move-only.
///
/// A token is empty when default-constructed or moved from; it is valid for the worker that
/// issued it until that worker starts over on a new socket, after which replying with it drops
/// the reply (the broker that sent the request has forgotten it).
class reply_token {
  public:
    /// An empty token; reply() rejects it.
    reply_token() noexcept = default;
    reply_token(reply_token&& other) noexcept
        : client_(std::move(other.client_)), tag_(std::move(other.tag_)),
          epoch_(std::exchange(other.epoch_, 0)) {}
    reply_token& operator=(reply_token&& other) noexcept {
        client_ = std::move(other.client_);
        tag_ = std::move(other.tag_);
        epoch_ = std::exchange(other.epoch_, 0);
        return *this;
    }
    reply_token(const reply_token&) = delete;
    reply_token& operator=(const reply_token&) = delete;
    ~reply_token() = default;

    /// Whether the token names a request (it is not empty).
    [[nodiscard]] explicit operator bool() const noexcept { return epoch_ != 0; }

  private:
    friend class worker;
    zmq::message_t client_;   // client address frame, for the REPLY
    zmq::message_t tag_;      // the broker's tag (ZMWC01); empty frame in MDPW01 mode
    std::uint64_t epoch_ = 0; // connection it came on, unique in the process; 0 = empty
};

/// A request taken with worker::take(): its body and what answering it needs.
struct held_request {
    message body;      ///< the request body frames
    reply_token token; ///< pass to worker::reply(reply_token&&, message&&)
};

/// A Majordomo (MDP/0.1) worker for one service, optionally with credit (zmesh ZMWC01).
///
/// The worker owns a DEALER socket connected to the broker. It only does I/O inside recv(),
/// take(), reply() and keepalive(): while a request is handled nothing is heartbeated. A handler
/// that runs longer than heartbeat × liveness without calling keepalive() is seen as dead by the
/// broker, which may re-queue its requests to another worker (work must be idempotent, as 7/MDP
/// assumes).
///
/// Two ways to serve: recv() + reply(message&&) answers one request at a time; take() +
/// reply(reply_token&&, message&&) holds several at once and answers them in any order (to batch
/// them, or to hand them to other threads and send the replies from this one). Both work with
/// any credit. With worker_options::credit of 1 (plain MDP/0.1) the broker sends the next request
/// only after the reply, so a second take() waits until the first is answered. With credit > 1
/// every request must be answered: an unanswered one holds a unit of the worker's credit until
/// the next reconnect, and a worker that leaves `credit` requests unanswered gets no more work.
///
/// When the worker starts over on a new socket (broker silence or DISCONNECT), requests received
/// on the old one are abandoned: the broker has forgotten them and the client's retry covers them.
/// A reply to such a request is dropped (counted in worker_stats::replies_dropped), so a
/// restarted broker never gets a REPLY it did not ask for; the credit starts afresh.
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
///
/// @par Example: batches with credit (needs a zmesh broker)
/// @code
/// zmesh::mdp::worker w(ctx, "tcp://broker:5556", "store", {.credit = 16});
/// std::vector<zmesh::mdp::held_request> batch;
/// while (!stopping) {
///     for (auto wait = std::chrono::milliseconds(500); batch.size() < 16; wait = {}) {
///         auto r = w.take(wait); // the first waits, the rest only gather what is already here
///         if (!r) break;
///         batch.push_back(std::move(*r));
///     }
///     store_all(batch); // one transaction
///     for (auto& r : batch) w.reply(std::move(r.token), zmesh::message{"200"});
///     batch.clear();
/// }
/// @endcode
class ZMESH_EXPORT worker {
  public:
    /// Connects to @p broker_endpoint and sends READY for @p service (with the credit, if
    /// worker_options::credit > 1).
    /// @throws zmesh::error (errc::invalid_argument) if @p service is empty or reserved
    ///         (8/MMI "mmi." prefix), or an option is out of range (credit 0 or above
    ///         mdp::max_worker_credit included).
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
    /// counted and dropped. A previous request from recv() not yet replied to is abandoned (with
    /// credit > 1 it keeps its unit of credit until the next reconnect; see take()).
    /// @returns the request body; std::nullopt if none arrived within @p timeout, or if the
    ///          context is terminating (the worker is then closed).
    /// @throws zmesh::error (errc::not_running) after close() or a move.
    /// @throws zmq::error_t on a socket error other than context termination.
    std::optional<message> recv(std::chrono::milliseconds timeout);

    /// Like recv(), but hands over what answering the request needs instead of keeping it, so
    /// several requests can be held and answered in any order with reply(reply_token&&,
    /// message&&). Does not change which request reply(message&&) answers.
    /// @returns the request body and its token; std::nullopt if none arrived within @p timeout,
    ///          or if the context is terminating (the worker is then closed).
    /// @throws zmesh::error (errc::not_running) after close() or a move.
    /// @throws zmq::error_t on a socket error other than context termination.
    std::optional<held_request> take(std::chrono::milliseconds timeout);

    /// Sends REPLY for the request recv() last returned: "" "MDPW01" 0x03 client "" body..., or
    /// "" "ZMWC01" 0x03 tag client "" body... with credit. Never blocks: a reply the socket
    /// cannot take at once, or that answers a request from before a reconnect, is dropped and
    /// counted.
    /// @throws zmesh::error (errc::invalid_argument) if there is no pending request.
    /// @throws zmesh::error (errc::not_running) after close() or a move.
    /// @throws zmq::error_t on a socket error other than context termination.
    void reply(message&& body);

    /// Sends REPLY for the request @p token came with (from take()); requests may be answered
    /// in any order. Never blocks: a reply the socket cannot take at once (high-water mark), or
    /// whose token is from before a reconnect, is dropped and counted in
    /// worker_stats::replies_dropped. The token is consumed either way. With credit, a reply
    /// dropped at the high-water mark leaves its unit of credit held until the next reconnect.
    /// @throws zmesh::error (errc::invalid_argument) if @p token is empty (default-constructed
    ///         or already used).
    /// @throws zmesh::error (errc::not_running) after close() or a move.
    /// @throws zmq::error_t on a socket error other than context termination.
    void reply(reply_token&& token, message&& body);

    /// For long handlers: reads incoming traffic (queueing requests for recv() and take()), sends a
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

    /// worker_options::credit: 1 for plain MDP/0.1, more for ZMWC01 (0 after a move).
    [[nodiscard]] std::uint32_t credit() const noexcept;

    /// The counters so far.
    [[nodiscard]] worker_stats stats() const noexcept;

    /// The current socket, for multiplexing several workers (or other sockets) in one
    /// zmq::poll: readable means recv() or take() with a zero timeout may return a request. Only
    /// poll it, never read or write it. The socket changes on reconnect (fetch it again before
    /// every poll) and is null while the worker waits to reconnect or after close(); heartbeats
    /// are sent only inside recv()/take()/keepalive(), so call one of them at least every
    /// heartbeat. Requests already read by keepalive() do not make it readable: call recv() or
    /// take() with a zero timeout after keepalive() too.
    [[nodiscard]] zmq::socket_ref socket() const noexcept;

  private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

} // namespace zmesh::mdp
