// SPDX-License-Identifier: MPL-2.0
// mdp/worker.hpp — the worker side of the Majordomo Protocol 0.1, and of zmesh's ZMWC02 workers
// (credit, message headers, streamed and refused replies).
//
// Worker side of 7/MDP, https://rfc.zeromq.org/spec/7/. A worker registers one service with a
// broker (READY), receives REQUESTs, answers each with a REPLY, and keeps the link alive with
// HEARTBEATs both ways. When the broker falls silent for heartbeat × liveness while the worker
// holds no request, or says DISCONNECT, the worker starts over on a new socket and registers again
// (zguide mdwrkapi, with exponential reconnect backoff). It works behind any conforming MDP/0.1
// broker, not only zmesh's: silence while a request is held is normal (the zguide broker sends no
// HEARTBEAT to a busy worker), so a reply is delivered however long the work took.
//
// By default it speaks zmesh's ZMWC02 (docs/protocol.md, "ZMWC02: the zmesh worker"): 18/MDP's
// layout and command numbering, with a credit (the broker keeps up to that many requests at the
// worker, each tagged, answered in any order), the request's message header (type, priority, id,
// time left), PARTIAL replies for streaming and refusals. A broker that does not answer a ZMWC02
// READY makes it fall back to plain MDP/0.1 with one warning; worker_options::protocol skips that
// probe for brokers known to be plain.
#pragma once

#include <zmesh/export.hpp>
#include <zmesh/header.hpp>
#include <zmesh/message.hpp>
#include <zmesh/security/zap.hpp>

#include <zmq.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>
#include <string_view>
#include <utility>

namespace zmesh::mdp {

/// The protocol a zmesh::mdp::worker speaks to its broker.
enum class worker_protocol {
    /// zmesh's ZMWC02 (docs/protocol.md): credit, the request's header, PARTIAL, refusals. A
    /// broker that does not answer its READY within one heartbeat makes the worker fall back to
    /// mdp for the rest of its life.
    zmesh,
    /// Plain MDP/0.1 (7/MDP, header "MDPW01") from the start: any MDP broker, credit 1, no
    /// header; no fallback wait.
    mdp,
};

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
    /// How many requests the broker may hand this worker before it has their replies
    /// (1..mdp::max_worker_credit; more than 1 needs worker_protocol::zmesh).
    ///
    /// The broker keeps up to `credit` requests queued at the worker, so the next request is
    /// already local when the handler finishes, and take() can gather several to batch them.
    /// Each FINAL returns one unit of credit: with credit > 1 every request must be answered,
    /// since an unanswered one holds its unit until the next reconnect.
    std::uint32_t credit{1};
    /// What to speak. With worker_protocol::zmesh (the default, for every credit) the worker
    /// sends a ZMWC02 READY with the credit. A zmesh broker answers an accepted one at once (a
    /// HEARTBEAT); a plain MDP/0.1 broker drops the unknown protocol frame and says nothing. So
    /// if no ZMWC02 message arrives within one heartbeat interval of the READY reaching a
    /// connected broker, the worker sends DISCONNECT, falls back to MDPW01 (credit 1) on a new
    /// socket for the rest of its life, and logs one warning naming the broker. worker::credit()
    /// and worker::protocol() tell what is in effect. Set worker_protocol::mdp for a broker known
    /// to be plain MDP/0.1, to skip that wait.
    worker_protocol protocol{worker_protocol::zmesh};
    /// CURVE (docs/security.md): the broker's public key and this worker's certificate; unset
    /// for a broker without it.
    std::optional<security::curve_client_keys> curve{};
    /// Exactly once across a broker's death (docs/patterns/binary_star.md), ZMWC02 only: keep
    /// the reply to every request with a message id this long. A request delivered again with
    /// that id is answered from it without running again, and after registering with another
    /// broker the worker sends it every reply it keeps (a ZMCT02 request to `zmesh.replay`,
    /// which a Binary Star broker answers), so that a reply lost with the dead broker reaches
    /// the client's retry. Replies are kept even when the connection they came for has gone.
    /// 0 (the default): off.
    std::chrono::milliseconds replay_window{0};
    /// Latency mode: while recv() and take() wait, busy-poll the socket (zmq_poll with timeout 0, in a
    /// loop, for at most the caller's timeout) instead of sleeping in the kernel until a request
    /// comes. It saves the wake-up of a blocked thread on every message, at the price of one
    /// core kept at 100 % while waiting: for a thread pinned to a core of its own. Off (blocking)
    /// by default.
    bool spin = false;
};

/// Counters of a worker, for monitoring.
struct worker_stats {
    std::uint64_t requests = 0;        ///< REQUESTs returned by recv() or take()
    std::uint64_t replies = 0;         ///< FINALs (ZMWC02) or REPLYs (MDPW01) sent, refusals included
    std::uint64_t partials = 0;        ///< PARTIALs sent (ZMWC02), or parts kept for the REPLY
                                       ///< (MDPW01)
    std::uint64_t refusals = 0;        ///< requests refused with refuse()
    std::uint64_t failures = 0;        ///< requests answered with fail()
    std::uint64_t heartbeats = 0;      ///< HEARTBEATs sent
    std::uint64_t reconnects = 0;      ///< new sockets after broker silence or DISCONNECT
    std::uint64_t disconnects = 0;     ///< DISCONNECTs received from the broker
    std::uint64_t malformed = 0;       ///< broker messages dropped as invalid commands of the
                                       ///< worker's protocol (MDPW01 or ZMWC02), and
                                       ///< ZMWC02 REQUESTs whose header does not decode
                                       ///< (refused at once, so their credit comes back)
    std::uint64_t replies_dropped = 0; ///< replies not sent: request from an earlier connection,
                                       ///< or the connection stuck (see reply())
    std::uint64_t reply_waits = 0;     ///< replies that found the socket at its high-water mark
                                       ///< and had to wait for the broker to read
    std::uint64_t failovers = 0;       ///< moves to the next broker of the list
    std::uint64_t replayed = 0;        ///< requests delivered again and answered from a kept reply
    std::uint64_t replays_sent = 0;    ///< kept replies sent to a new broker (zmesh.replay)
};

class worker;

/// What answering one request needs (worker::reply(reply_token&&, message&&, std::string_view),
/// worker::partial(reply_token&, message&&), worker::refuse(reply_token&&, std::string_view)): the
/// client address, the request's tag (ZMWC02), its message id (for the reply's `co`), the
/// connection it came on, and over MDPW01 the parts given to partial() so far. Opaque and
/// move-only.
///
/// A token is empty when default-constructed or moved from; it is valid for the worker that
/// issued it until that worker starts over on a new socket, after which replying with it drops
/// the reply (the broker that sent the request has forgotten it). While a valid token exists the
/// worker counts its request as held (see worker); destroying a token without replying abandons
/// the request. A token may be moved to and destroyed on another thread.
class reply_token {
  public:
    /// An empty token; reply() rejects it.
    reply_token() noexcept = default;
    reply_token(reply_token&& other) noexcept
        : client_(std::move(other.client_)), tag_(std::move(other.tag_)),
          request_id_(other.request_id_), parts_(std::move(other.parts_)),
          hold_(std::move(other.hold_)), epoch_(std::exchange(other.epoch_, 0)) {}
    reply_token& operator=(reply_token&& other) noexcept {
        client_ = std::move(other.client_);
        tag_ = std::move(other.tag_);
        request_id_ = other.request_id_;
        parts_ = std::move(other.parts_);
        hold_ = std::move(other.hold_);
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
    zmq::message_t client_;   // client address frame, for the reply
    zmq::message_t tag_;      // the broker's tag (ZMWC02); empty frame in MDPW01 mode
    std::optional<message_id> request_id_; // the request header's id: the reply's `co`
    message parts_;           // MDPW01 only: partial() bodies, sent before the REPLY's own
    std::shared_ptr<const void> hold_; // shared by the held requests of one connection: its
                                       // use count tells the worker whether any is still held
    std::uint64_t epoch_ = 0; // connection it came on, unique in the process; 0 = empty
};

/// A request taken with worker::take(): its body, its header and deadline, and what answering it
/// needs.
struct held_request {
    message body;      ///< the request body frames
    reply_token token; ///< pass to worker::reply(), partial() or refuse()
    /// The request's message header (type, priority, id, time left `ttl_ms`, attempt) as the
    /// broker sent it; std::nullopt over MDPW01, which has no header, or if the broker sent an
    /// empty header frame.
    std::optional<zmesh::header> header;
    /// When the client stops waiting, on this process's steady clock: the time the REQUEST was
    /// read plus the header's time left (`tl`, header::ttl_ms). std::nullopt if `tl` is 0 or
    /// absent, or over MDPW01. A reply after it is discarded by the broker, so a handler may
    /// give up then.
    std::optional<std::chrono::steady_clock::time_point> deadline;

    /// The time left until deadline, never negative, at @p now; std::nullopt if there is no
    /// deadline.
    [[nodiscard]] std::optional<std::chrono::milliseconds>
    time_left(std::chrono::steady_clock::time_point now = std::chrono::steady_clock::now()) const {
        if (!deadline) return std::nullopt;
        if (*deadline <= now) return std::chrono::milliseconds(0);
        return std::chrono::ceil<std::chrono::milliseconds>(*deadline - now);
    }
};

/// A Majordomo worker for one service: zmesh ZMWC02 by default, plain MDP/0.1 on request or
/// when the broker does not speak ZMWC02.
///
/// The worker owns a DEALER socket connected to the broker. It only does I/O inside recv(),
/// take(), reply(), partial(), refuse() and keepalive(): while a request is handled nothing is heartbeated. A handler
/// that runs longer than heartbeat × liveness without calling keepalive() is seen as dead by a
/// broker that expects heartbeats from busy workers (zmesh's does), which may re-queue its
/// requests to another worker (work must be idempotent, as 7/MDP assumes).
///
/// Broker silence. While the worker holds a request (returned by recv() and not yet replied to,
/// or taken with take() and its token neither used nor destroyed), silence from the broker is
/// normal and never makes the worker reconnect: 7/MDP does not require a broker to heartbeat a
/// busy worker, and the zguide's reference broker does not. Once nothing is held, the broker gets
/// a fresh heartbeat × liveness to speak before it is taken for dead. A broker that dies while a
/// request is held is therefore noticed only after the reply (or when the broker's DISCONNECT or
/// a new connection's traffic arrives).
///
/// Registration. A plain MDP/0.1 worker queues READY at once; a ZMWC02 worker sends it once the
/// connection to the broker is up (ZMQ_IMMEDIATE), from inside recv(), take() or keepalive(), so
/// that its one-heartbeat wait for a ZMWC02 answer never counts time when no broker was there to
/// answer. A DISCONNECT that is the first thing the broker says after READY,
/// before the worker has sent anything else, means the broker refused the registration (zmesh's
/// broker does this for a reserved or invalid name, or past its service limit): the worker does
/// not retry; it closes, and recv(), take() and reply() throw zmesh::error with
/// errc::invalid_argument and a message naming the broker, the service and the likely reasons,
/// every time they are called from then on. keepalive() notices a refusal without throwing (so a
/// handler calling it needs no error path); the next recv(), take() or reply() reports it. Any
/// later DISCONNECT is the broker forgetting the worker: it registers again at once. Over inproc,
/// a broker that binds after the worker connected counts as reached as soon as it binds.
///
/// Two ways to serve: recv() + reply(message&&) answers one request at a time (its header is
/// current_header(), its deadline deadline()); take() + reply(reply_token&&, message&&) holds
/// several at once and answers them in any order (to batch them, or to hand them to other threads
/// and send the replies from this one). Both work with any credit. With a credit of 1 the broker
/// sends the next request only after the reply, so a second take() waits until the first is
/// answered. With credit > 1
/// every request must be answered: an unanswered one holds a unit of the worker's credit until
/// the next reconnect, and a worker that leaves `credit` requests unanswered gets no more work.
///
/// Replies. Under ZMWC02 reply() sends a FINAL, partial() a PARTIAL that the broker passes to the
/// client at once (streaming), refuse() a FINAL of type mdp::refused_type that the client sees
/// as a 422 and the broker keeps in its dead-letter queue, and fail() a FINAL of type
/// mdp::error_type with a status and a reason. Their header frame is a fresh header: a new id,
/// `co` = the request's id, `ty` = the reply type given. Under MDPW01, which has neither headers
/// nor PARTIAL, reply types are dropped, partial() keeps its frames in the token and the REPLY
/// carries them first, then reply()'s own (what zmesh's broker sends an MDP/0.1 client from a
/// streaming worker, so the client sees the same frames either way, only not before the end),
/// and refuse() and fail() answer "zmesh.error" status reason (422 for a refusal).
///
/// When the worker starts over on a new socket (broker silence, DISCONNECT, a connection stuck at
/// its high-water mark, or the fallback from credit), it first sends DISCONNECT on the old one,
/// unless the broker itself said DISCONNECT, so that the broker forgets it at once. Requests
/// received on the old socket are abandoned: the broker has forgotten them and the client's retry
/// covers them. A reply to such a request is dropped (counted in worker_stats::replies_dropped),
/// so a restarted broker never gets a REPLY it did not ask for; the credit starts afresh.
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
/// @par Example: a type, a deadline and a stream
/// @code
/// while (auto r = w.take(std::chrono::milliseconds(500))) {
///     if (r->header && r->header->type != "report.daily") {
///         w.refuse(std::move(r->token), "unknown type '" + r->header->type + "'");
///         continue;
///     }
///     for (auto& row : rows_until(r->deadline)) // stop early when the client gives up
///         w.partial(r->token, zmesh::message{row});
///     w.reply(std::move(r->token), zmesh::message{"done"}, "report.end");
/// }
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
    /// Connects to @p broker_endpoint and sends READY for @p service: ZMWC02 with the credit as
    /// soon as the connection is up, or MDPW01 at once with worker_protocol::mdp.
    ///
    /// The name is checked here so that a bad one never reaches the wire: 1 to
    /// mdp::max_service_name bytes of printable ASCII (0x21..0x7E: no space, no control or
    /// non-ASCII bytes), and not reserved (mmi.*, zmesh.*: the broker answers those itself). See
    /// mdp::worker_service_name_problem().
    /// @throws zmesh::error (errc::invalid_argument) naming the service if it breaks those rules,
    ///         or if an option is out of range (credit 0 or above mdp::max_worker_credit
    ///         included, and credit > 1 with worker_protocol::mdp, which has no credit).
    /// @throws zmq::error_t if libzmq rejects the endpoint.
    worker(zmq::context_t& ctx, std::string broker_endpoint, std::string service,
           worker_options options = {});
    /// Failover across brokers (e.g. the two of a Binary Star pair, docs/patterns/
    /// binary_star.md): registers with the first of @p broker_endpoints and moves to the next one
    /// (round robin) whenever it would reconnect: the broker silent for heartbeat × liveness, a
    /// DISCONNECT, or no connection within that time. A READY answered with DISCONNECT (what a
    /// passive Binary Star broker does) is then no refusal that ends the worker: it moves on,
    /// with the reconnect backoff, so a worker never settles on a broker that does not serve.
    /// @throws as the constructor above; zmesh::error (errc::invalid_argument) if the list is
    ///         empty.
    worker(zmq::context_t& ctx, std::vector<std::string> broker_endpoints, std::string service,
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
    /// heartbeat × liveness of silence while no request is held, or at once on DISCONNECT.
    /// Malformed broker messages are counted and dropped. A previous request from recv() not yet
    /// replied to is abandoned (with credit > 1 it keeps its unit of credit until the next
    /// reconnect; see take()). The request's header and deadline are current_header() and
    /// deadline() until it is answered.
    /// @returns the request body; std::nullopt if none arrived within @p timeout, or if the
    ///          context is terminating (the worker is then closed).
    /// @throws zmesh::error (errc::invalid_argument) if the broker refused the registration
    ///         (see the class description); the worker is then closed.
    /// @throws zmesh::error (errc::not_running) after close() or a move.
    /// @throws zmq::error_t on a socket error other than context termination.
    std::optional<message> recv(std::chrono::milliseconds timeout);

    /// Like recv(), but hands over what answering the request needs instead of keeping it, so
    /// several requests can be held and answered in any order with reply(reply_token&&,
    /// message&&). Does not change which request reply(message&&) answers.
    /// @returns the request body, its token, header and deadline; std::nullopt if none arrived within @p timeout,
    ///          or if the context is terminating (the worker is then closed).
    /// @throws zmesh::error (errc::invalid_argument) if the broker refused the registration
    ///         (see the class description); the worker is then closed.
    /// @throws zmesh::error (errc::not_running) after close() or a move.
    /// @throws zmq::error_t on a socket error other than context termination.
    std::optional<held_request> take(std::chrono::milliseconds timeout);

    /// Sends the reply to the request recv() last returned, and ends it.
    ///
    /// Under ZMWC02 a FINAL: "ZMWC02" 0x04 tag client "" header body..., the header with a fresh
    /// id, `co` = the request's id and `ty` = @p type if not empty. Under MDPW01 a REPLY: ""
    /// "MDPW01" 0x03 client "" parts... body..., where parts are the frames given to partial()
    /// for this request; @p type is dropped (MDP/0.1 has no header). A reply to a request from
    /// before a reconnect is dropped and counted. Otherwise the reply is never dropped while the
    /// connection lives: if the socket is at its high-water mark (the broker reads more slowly
    /// than the worker replies) it waits for room, reading broker traffic meanwhile, for up to
    /// heartbeat × liveness, the time after which a broker that heard nothing from the worker
    /// would have expired it. If the socket is still full then, the connection is stuck: the
    /// reply is dropped and counted, and the worker starts over on a new socket, which frees
    /// whatever the broker still holds for it (zmesh's broker notices the closed connection).
    /// @param type the reply's type (header `ty`); mdp::error_type and mdp::refused_type are
    ///        reserved (use fail() and refuse()).
    /// @throws zmesh::error (errc::invalid_argument) if there is no pending request, if @p type
    ///         is reserved, or if the broker refused the registration (see the class
    ///         description).
    /// @throws zmesh::error (errc::not_running) after close() or a move.
    /// @throws zmq::error_t on a socket error other than context termination.
    void reply(message&& body, std::string_view type = {});

    /// Sends the reply to the request @p token came with (from take()), as reply(message&&,
    /// std::string_view); requests may be answered in any order. A reply whose token is from
    /// before a reconnect is dropped and counted in worker_stats::replies_dropped; at the
    /// high-water mark it waits up to heartbeat × liveness for room, then starts over on a new
    /// socket. The token is consumed either way.
    /// @throws zmesh::error (errc::invalid_argument) if @p token is empty (default-constructed
    ///         or already used), if @p type is reserved, or if the broker refused the
    ///         registration.
    /// @throws zmesh::error (errc::not_running) after close() or a move.
    /// @throws zmq::error_t on a socket error other than context termination.
    void reply(reply_token&& token, message&& body, std::string_view type = {});

    /// Sends one part of a streamed reply to the request recv() last returned; the request stays
    /// pending until reply() or refuse().
    ///
    /// Under ZMWC02 a PARTIAL: "ZMWC02" 0x03 tag client "" header body..., which the broker
    /// passes on at once to a client that can stream (ZMCT02/03, MDP/0.2) and keeps for the one
    /// reply of any other. Under MDPW01 there is no PARTIAL: the frames are kept (in memory,
    /// unbounded: the caller bounds what it streams) and sent first in the REPLY. Either way the
    /// client gets every frame, in order. Sending waits at the high-water mark as reply() does.
    /// @throws as reply(message&&, std::string_view).
    void partial(message&& body);

    /// Sends one part of a streamed reply to the request @p token came with, as
    /// partial(message&&). The token is not consumed: answer with reply() or refuse() at the
    /// end. A part for a request from before a reconnect is dropped and counted.
    /// @throws zmesh::error (errc::invalid_argument) if @p token is empty, or if the broker
    ///         refused the registration.
    /// @throws zmesh::error (errc::not_running) after close() or a move.
    /// @throws zmq::error_t on a socket error other than context termination.
    void partial(reply_token& token, message&& body);

    /// Refuses the request recv() last returned, and ends it: the worker will not do it (a type
    /// it does not serve, a body it cannot parse, a deadline it cannot meet).
    ///
    /// Under ZMWC02 a FINAL of type mdp::refused_type whose body is the one frame @p reason: the
    /// broker answers the client 422 with the reason, and keeps the request in its dead-letter
    /// queue instead of giving it to another worker. Under MDPW01 the REPLY "zmesh.error" "422"
    /// @p reason (parts given to partial() are not sent). Counted in worker_stats::refusals.
    /// @param reason one line for the client and the dead-letter queue.
    /// @throws as reply(message&&, std::string_view).
    void refuse(std::string_view reason);

    /// Refuses the request @p token came with, as refuse(std::string_view). The token is
    /// consumed.
    /// @throws as reply(reply_token&&, message&&, std::string_view).
    void refuse(reply_token&& token, std::string_view reason);

    /// Answers the request recv() last returned with an error, and ends it: the worker tried and
    /// failed (a command that exited non-zero, a deadline it ran out of).
    ///
    /// Under ZMWC02 a FINAL of type mdp::error_type whose body is @p status and @p reason, which
    /// a ZMCT02/03 client sees as an error with exactly that status and reason; under MDPW01 the
    /// REPLY "zmesh.error" @p status @p reason, the convention by which a zmesh broker marks
    /// errors for plain clients (docs/protocol.md). Parts given to partial() under MDPW01 are
    /// not sent. Unlike refuse(), the broker neither dead-letters the request nor counts it as
    /// refused: it is answered.
    /// @param status 3 ASCII digits (500 for a failure, 504 for a deadline, ...).
    /// @param reason one line for the client.
    /// @throws zmesh::error (errc::invalid_argument) if @p status is not 3 digits; otherwise as
    ///         reply(message&&, std::string_view).
    void fail(std::string_view status, std::string_view reason);

    /// Answers the request @p token came with with an error, as fail(std::string_view,
    /// std::string_view). The token is consumed, unless @p status is invalid.
    /// @throws as reply(reply_token&&, message&&, std::string_view), and zmesh::error
    ///         (errc::invalid_argument) if @p status is not 3 digits.
    void fail(reply_token&& token, std::string_view status, std::string_view reason);

    /// The header of the request recv() last returned, while it is pending (not yet answered by
    /// reply() or refuse(), nor abandoned by the next recv()).
    /// @returns a pointer valid until then; nullptr if no request is pending or it came without
    ///          a header (MDPW01, or an empty header frame).
    [[nodiscard]] const zmesh::header* current_header() const noexcept;

    /// The deadline of the request recv() last returned, while it is pending: as
    /// held_request::deadline.
    /// @returns std::nullopt if no request is pending or it has no deadline.
    [[nodiscard]] std::optional<std::chrono::steady_clock::time_point> deadline() const noexcept;

    /// The time left until deadline(), never negative; std::nullopt if there is no deadline.
    [[nodiscard]] std::optional<std::chrono::milliseconds> time_left() const;

    /// For long handlers: reads incoming traffic (queueing requests for recv() and take()), sends a
    /// HEARTBEAT if one is due and reconnects if the broker is dead. Never waits. A refusal of a
    /// re-registration is noted without throwing (the worker closes); the next recv(), take(),
    /// reply(), partial() or refuse() reports it.
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

    /// Whether the broker has answered on the current connection: a valid HEARTBEAT or REQUEST
    /// came since READY. False while no broker is reachable at the endpoint (or none answers), on
    /// each new socket until the broker speaks again, and after close(). Lets a caller tell
    /// "registered" from "still waiting" (zmesh worker warns while it waits).
    [[nodiscard]] bool broker_answered() const noexcept;

    /// The broker endpoint the worker is connected (or connecting) to now.
    [[nodiscard]] const std::string& endpoint() const noexcept;

    /// The credit in effect: worker_options::credit, or 1 once the worker fell back to plain
    /// MDP/0.1 because the broker did not answer ZMWC02 (0 after a move).
    [[nodiscard]] std::uint32_t credit() const noexcept;

    /// The protocol in effect: worker_options::protocol, or worker_protocol::mdp once the worker
    /// fell back because the broker did not answer ZMWC02. Until then a ZMWC02 worker reports
    /// zmesh, even before its broker answered.
    [[nodiscard]] worker_protocol protocol() const noexcept;

    /// The counters so far.
    [[nodiscard]] worker_stats stats() const noexcept;

    /// The current socket, for multiplexing several workers (or other sockets) in one
    /// zmq::poll: readable means recv() or take() with a zero timeout may return a request. Only
    /// poll it, never read or write it. The socket changes on reconnect (fetch it again before
    /// every poll) and is null while the worker waits to reconnect or after close(); heartbeats
    /// are sent only inside recv()/take()/keepalive(), so call one of them at least every
    /// heartbeat. Requests already read by keepalive() do not make it readable: call recv() or
    /// take() with a zero timeout after keepalive() too. Under ZMWC02, READY waits for the
    /// connection and goes out from recv()/take()/keepalive(), so registration may lag by up to
    /// the interval at which the caller calls them.
    [[nodiscard]] zmq::socket_ref socket() const noexcept;

  private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

} // namespace zmesh::mdp
