// SPDX-License-Identifier: MPL-2.0
// nodes/titanic.hpp — the zmesh Titanic node: durable request/reply (rfc 9/TSP) over MDP/0.1.
//
// The node is a worker of an MDP broker for the three TSP services. `titanic.request`
// [service][body...] stores the request and answers ["200", id] only once it has committed;
// `titanic.reply` [id] answers ["200", reply...], ["300"] while pending or ["400"] for an unknown
// id; `titanic.close` [id] forgets it and answers ["200"]. A dead-lettered request is answered
// ["500", "dead-lettered: <reason>"]: rfc 9's "error, retry later" fits, since an operator may
// replay it (`400` would tell the client to give up on a request that still exists). A
// malformed TSP request gets ["400", reason], a store failure ["500", reason], never a false
// "200". Requests for the `titanic.` services themselves are refused, as they would recurse.
// Through the same broker it is
// also a client: a dispatcher sends each stored request to its service, stores the reply, retries
// failures with exponential backoff and moves a request that keeps failing (or outlives its TTL)
// to a durable dead-letter queue. Requests are stored in an SQLite file (WAL) or in PostgreSQL,
// so whatever was acknowledged survives the node being killed, and every request without a reply
// is dispatched again when the node starts. Several nodes may share a PostgreSQL store: each
// claims the work it dispatches for a lease, and a dead node's work goes to the others.
//
// Group commit: requests that arrive together are stored in one transaction (one fsync) and
// acknowledged together. That needs several submissions in hand at once. By default the node
// registers for `titanic.request` as a zmesh worker with credit (ZMWC01, docs/broker.md): the
// broker queues up to titanic_config::request_credit submissions at each of its
// titanic_config::request_connections connections. With a broker that is not zmesh's, set the
// credit to 1: each connection is then a plain MDP/0.1 worker holding one submission, and more
// connections give the concurrency. TSP clients work unchanged either way.
#pragma once

#include <zmesh/export.hpp>
#include <zmesh/security/zap.hpp>

#include <zmq.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace zmesh::nodes {

/// How hard a commit of the Titanic store pushes data to the disk.
enum class titanic_sync {
    /// Each commit is fsync'ed: an acknowledged request survives a power loss.
    full,
    /// The log is fsync'ed at checkpoints only: an acknowledged request survives the process
    /// being killed, but the last commits may be lost on power loss.
    normal,
};

/// Titanic node settings.
struct titanic_config {
    /// The MDP broker's endpoint; the node is a worker and a client of it.
    std::string broker_endpoint = "tcp://127.0.0.1:5555";
    /// Failover across brokers (a Binary Star pair, docs/patterns/binary_star.md): if not
    /// empty, used instead of broker_endpoint, in order. The node's workers move to the next
    /// broker when the current one is silent or refuses them (a passive broker does), and its
    /// dispatch client moves to the next broker when a dispatch times out with no reply from
    /// the current one since it was sent (that dispatch counts as a failed attempt and is retried
    /// with its backoff).
    std::vector<std::string> broker_endpoints;
    /// The store: the path of a SQLite file (created if missing; a file that is not a Titanic
    /// store is refused), or a PostgreSQL connection string (postgresql://… or postgres://…, or
    /// libpq's key=value form such as "host=/run/pg dbname=zmesh"; docs/titanic.md), where the
    /// tables are created if missing and several nodes may share the store.
    std::filesystem::path store_path = "zmesh-titanic.db";
    titanic_sync sync = titanic_sync::full;
    /// MDP worker connections registered for `titanic.request`. The node holds up to
    /// request_connections × request_credit submissions at once: the largest group of requests
    /// one commit can acknowledge.
    std::size_t request_connections = 2;
    /// Credit of each worker connection (for titanic.request, .reply and .close): 1 = plain
    /// MDP/0.1, for any broker; more = zmesh workers with credit, zmesh broker only.
    std::uint32_t request_credit = 64;
    /// Failed dispatches (error reply or timeout) after which a request is dead-lettered.
    std::uint32_t max_attempts = 5;
    /// Wait before the retry after the first failure; doubled per further failure.
    std::chrono::milliseconds retry_initial{100};
    /// Longest wait between retries.
    std::chrono::milliseconds retry_max{10000};
    /// How long one dispatch attempt waits for the service's reply before it counts as failed.
    std::chrono::milliseconds request_timeout{30000};
    /// Requests dispatched to their services at once. With the zmesh extensions (request_credit
    /// above 1) they share one ZMCT03 client, each request sent with its TSP id as message id
    /// (a retry after a failure with an id derived from it), so the broker runs an attempt once
    /// however often (and by whichever node) it is resent;
    /// with request_credit 1 (plain MDP/0.1, which has no request id) each has its own client.
    /// More gives more throughput, and more requests executed again after the node is killed
    /// (those in flight, whose replies were not stored).
    std::size_t dispatch_concurrency = 64;
    /// How long the requests for a service that has no worker (8/MMI `mmi.service` says 404)
    /// wait before the service is asked about again. Such a wait is not a failed attempt.
    std::chrono::milliseconds service_poll{500};
    /// Heartbeat of the worker connections: give the broker's interval.
    std::chrono::milliseconds heartbeat{2500};
    /// Heartbeat intervals of broker silence after which a worker connection starts over.
    int liveness = 3;
    /// CURVE (docs/security.md): the broker's public key and the node's certificate, for every
    /// connection the node makes to the broker; unset: plain.
    std::optional<security::curve_client_keys> curve{};
    /// The name this node claims stored requests under; must differ between nodes that share a
    /// store. Empty: a unique one (host:pid:random) for PostgreSQL, "local" for SQLite (so a
    /// node restarted after a crash takes its predecessor's requests at once).
    std::string node_id{};
    /// How long a claim holds a request for this node. It is renewed every third of it while
    /// the request is in flight; a node that dies loses its requests to the others this long
    /// after its last renewal. Keep it well under the broker's dedupe window (60 s by default),
    /// so a request the dead node had dispatched joins its kept reply instead of running again.
    std::chrono::milliseconds claim_lease{10000};
};

/// Counters, read with stats(). All are totals since the node was created.
struct titanic_stats {
    std::uint64_t stored = 0;        ///< requests stored and acknowledged with 200
    std::uint64_t store_errors = 0;  ///< submissions answered 500 because the store failed
    std::uint64_t batches = 0;       ///< commits of submitted requests
    std::uint64_t largest_batch = 0; ///< most requests acknowledged by one commit
    std::uint64_t dispatched = 0;    ///< requests sent to their service (retries included)
    std::uint64_t replied = 0;       ///< replies stored
    std::uint64_t failures = 0;      ///< failed dispatches (error reply or timeout)
    std::uint64_t dead_lettered = 0; ///< requests moved to the dead-letter queue
    std::uint64_t malformed = 0;     ///< TSP requests answered 400 for their form
};

/// The Titanic node. (Named titanic_node because zmesh::nodes::titanic is the namespace of its
/// internals, the store.)
///
/// Thread safety: run() or start() once at a time; stop(), running() and stats() are
/// thread-safe. The context is shared with the caller and must outlive the node.
///
/// @par Example
/// @code
/// zmq::context_t ctx;
/// zmesh::nodes::titanic_node node(ctx, {.broker_endpoint = "tcp://127.0.0.1:5555",
///                                       .store_path = "titanic.db"});
/// node.start();   // own thread
/// ...
/// node.stop();    // the worker connections say DISCONNECT; the thread is joined
/// @endcode
class ZMESH_EXPORT titanic_node {
  public:
    /// Validates @p config and opens (or creates) the store.
    /// @throws zmesh::error errc::invalid_argument for a setting out of range.
    /// @throws zmesh::error errc::storage if the store cannot be opened, or the file is not a
    ///         Titanic store (left unchanged).
    titanic_node(zmq::context_t& ctx, titanic_config config);
    /// Stops the node if it is running.
    ~titanic_node();
    titanic_node(const titanic_node&) = delete;
    titanic_node& operator=(const titanic_node&) = delete;

    /// Registers with the broker and serves until stop().
    /// @throws zmesh::error errc::invalid_argument if already running.
    void run();

    /// Runs the node on a new thread.
    /// @throws zmesh::error errc::invalid_argument if already running.
    void start();

    /// Ends the loop and joins the thread start() made. Thread-safe, idempotent.
    void stop() noexcept;

    /// Whether the loop is running.
    [[nodiscard]] bool running() const noexcept;

    /// A snapshot of the counters. Thread-safe.
    [[nodiscard]] titanic_stats stats() const noexcept;

  private:
    class impl;
    std::unique_ptr<impl> impl_;
};

} // namespace zmesh::nodes
