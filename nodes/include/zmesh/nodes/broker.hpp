// SPDX-License-Identifier: MPL-2.0
// nodes/broker.hpp — the zmesh broker node: a Majordomo (7/MDP 0.1) service broker.
//
// Clients and workers connect to one ROUTER socket. The broker routes each request to a worker of
// the named service (least recently used first), heartbeats every worker it knows, idle or busy,
// and forgets those that fall silent. Unlike the reference broker of 7/MDP it tracks the request
// each worker holds and puts it back at the head of its queue when that worker dies, so every
// request is delivered at least once. Requests for a service with no worker wait in a bounded
// queue. It answers 8/MMI `mmi.service` and the zmesh extensions `zmesh.services` and
// `zmesh.stats` itself.
//
// Optionally the same node runs a pub/sub forwarder (docs/pubsub.md, docs/broker.md): publishers
// connect to an XSUB socket, subscribers to an XPUB socket. It answers readiness probes, counts
// what slow subscribers lose (or, lossless, pushes back on publishers), and can keep a
// last-value cache served as `zmesh.lvc`. The directory service `zmesh.directory` (name ->
// endpoints, with expiry) is always on. All of it runs in the one loop thread of the broker.
//
// The broker is a class a program can embed: run() on the calling thread, or start() on a thread
// of its own, stop() from anywhere, stats() at any time.
#pragma once

#include <zmesh/export.hpp>
#include <zmesh/patterns/binary_star.hpp>
#include <zmesh/security/acl.hpp>
#include <zmesh/security/zap.hpp>

#include <zmq.hpp>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace zmesh::nodes {

/// Broker settings. The defaults are the 7/MDP reference values and a loopback endpoint.
struct broker_config {
    /// Endpoint of the MDP ROUTER socket; tcp://127.0.0.1:* picks a free port (see endpoints()).
    std::string mdp_endpoint = "tcp://127.0.0.1:5555";
    /// Heartbeat interval towards workers; also how often expiry is checked.
    std::chrono::milliseconds heartbeat_interval{2500};
    /// A worker silent for heartbeat_interval × liveness is declared dead.
    int liveness = 3;
    /// Requests a service may hold waiting for a worker; past it the client gets a rejection.
    std::size_t max_queue = 10000;
    /// Deliveries of one request to workers that then died, after which it is rejected instead of
    /// re-queued (a request that kills every worker it meets must not circulate forever).
    std::uint32_t max_attempts = 5;
    /// A request still waiting for a worker this long after it arrived is rejected (504): its
    /// client has given up long before, and a worker should not spend time on it. 0 = never.
    std::chrono::milliseconds request_ttl{60000};
    /// How long the reply to a request with a message id (ZMCT02/03) is kept, so that a retry gets
    /// it instead of running the request again (docs/protocol.md, "Executed once"). Kept
    /// replies count against max_memory and give way, oldest first, to new requests. 0 = off:
    /// retries still join a pending request.
    std::chrono::milliseconds dedupe_window{60000};
    /// Dead-lettered requests kept in memory (zmesh.dlq), the oldest dropped first. 0 = none.
    std::size_t dlq_max = 10000;
    /// The one memory bound: bytes the broker may hold for its peers, all together. It counts
    /// requests queued and in flight, and replies on their way to clients until libzmq has
    /// written them, in real bytes (docs/broker.md, "Memory"). Past it, new requests are
    /// rejected (503) at once and a reply that does not fit is dropped.
    std::size_t max_memory = std::size_t{512} << 20;
    /// Bytes one client may hold of max_memory: its requests held plus its replies not yet
    /// read. Past it, its new requests are rejected (503) and further replies to it dropped,
    /// counted (broker_stats::replies_dropped) and logged, so one client that floods, or sends
    /// and never reads, cannot take the memory the others need. At most max_memory.
    std::size_t max_client_memory = std::size_t{64} << 20;
    /// Services the broker keeps track of; a request that would create one more is rejected
    /// (503), so a peer inventing service names cannot grow the table without bound.
    std::size_t max_services = 10000;
    /// Clients the broker tracks at most (a client is a connection that sent a request and
    /// still has one outstanding, or sent one within service_ttl); a request from one more is
    /// rejected (503).
    std::size_t max_clients = 100000;
    /// Requests one client may have outstanding (queued or with a worker); past it its new
    /// requests are rejected (503), so one client cannot fill the queues alone.
    std::size_t max_client_requests = 10000;
    /// With CURVE: requests one key may have outstanding over all its connections together, so
    /// that an authenticated client cannot get round max_client_requests by opening more
    /// connections and starve the others (503 past it).
    std::size_t max_key_requests = 20000;
    /// With CURVE: messages per second one key may publish through the forwarder, over all its
    /// connections together, with bursts of up to one second's worth; past it its messages are
    /// dropped, counted in broker_stats::publications_throttled and logged with the key's name,
    /// so that one publisher cannot flood the subscribers of everyone else. 0: no limit.
    std::uint32_t max_key_publish_rate = 0;
    /// A service with no worker, no queued and no in-flight request is forgotten after this long.
    std::chrono::milliseconds service_ttl{30000};
    /// Largest frame accepted from any peer (ZMQ_MAXMSGSIZE); larger ones close that connection.
    std::int64_t max_frame_size = 64 << 20;
    /// Messages queued per peer on the ROUTER towards it (replies, requests to workers). What
    /// they hold is counted against max_memory as well.
    int hwm = 100000;
    /// Messages libzmq reads ahead per peer before the broker takes them. This is the one
    /// buffer outside max_memory: a peer that sends faster than the broker reads can make it
    /// hold up to recv_hwm of its messages (each in a slice of an 8 KiB receive buffer, or its
    /// own size if larger). The broker drains up to 1000 messages per turn of its loop.
    int recv_hwm = 1000;

    /// Endpoint of the forwarder's XSUB socket, where publishers connect. The forwarder runs
    /// only if both xsub_endpoint and xpub_endpoint are set; both empty turns it off.
    std::string xsub_endpoint;
    /// Endpoint of the forwarder's XPUB socket, where subscribers connect.
    std::string xpub_endpoint;
    /// Lossy (false, the default): a subscriber at its high-water mark misses messages, which
    /// are counted in broker_stats::dropped, and never slows the others down. Lossless (true):
    /// the forwarder stops reading publishers until every matching subscriber has room, so one
    /// slow subscriber slows the whole stream down to its pace.
    bool lossless = false;
    /// Keep the newest message of every topic and serve snapshots as `zmesh.lvc`.
    bool lvc = false;
    /// Topics the last-value cache holds at most; a new topic then evicts the one updated least
    /// recently.
    std::size_t lvc_max_topics = 100000;
    /// Messages queued per publisher and per subscriber on the forwarder's sockets (both
    /// directions); 0 means no limit. What a slow subscriber may buffer before it loses messages
    /// (lossy) or holds the stream back (lossless).
    int pubsub_hwm = 10000;
    /// Distinct subscriptions (topic prefixes, all subscribers together) the forwarder tracks
    /// and passes upstream at most; past it a new subscription is refused, counted in
    /// broker_stats::subscriptions_refused and logged, so subscribers inventing topics cannot
    /// grow the forwarder's tables without bound.
    std::size_t max_subscriptions = 100000;

    /// Registrations (name/endpoint pairs) the directory service `zmesh.directory` holds at most.
    std::size_t max_directory_entries = 10000;

    /// How often the loop snapshots its services for metrics(); 0 takes no snapshot (metrics()
    /// then has the totals only).
    std::chrono::milliseconds metrics_interval{1000};

    // Security (docs/security.md). With curve set, every socket of the broker (MDP, XSUB, XPUB)
    // is a CURVE server and admits only the client keys of access.keys; a NULL (plain) peer
    // gets nothing. The broker then runs the ZAP handler of its context (one per context).
    /// The broker's own certificate, with its secret key; unset: no encryption.
    std::optional<security::certificate> curve;
    /// Who is admitted: client keys (with curve) and address lists (with or without it).
    security::access_policy access;
    /// What each admitted key may do (security/acl.hpp), by its name; null: everything. Needs
    /// curve (without it no peer has a name).
    std::shared_ptr<const security::access_list> acl;

    // Binary Star (docs/patterns/binary_star.md): two brokers, a primary and a backup, of which
    // one at a time serves. They tell each other their state every heartbeat_interval over the
    // HA link; the passive one takes over when the active has been silent for two heartbeats
    // and a client asks it for service. Unset: a broker on its own.
    /// This broker's role in the pair.
    std::optional<patterns::binary_star::role> ha_role{};
    /// Where this broker announces its state (a PUB socket); tcp://127.0.0.1:* picks a port
    /// (see ha_endpoint()).
    std::string ha_bind{};
    /// The peer's ha_bind endpoint.
    std::string ha_peer{};
    /// With curve: the peer's public key. The HA link is then encrypted like every other
    /// socket: this broker's ha_bind is a CURVE server that admits the peer only if this key is
    /// in access.keys too, and its connection to ha_peer trusts this key. Required with curve.
    std::optional<security::key_bytes> ha_peer_key{};
};

/// Counters, read with stats(). All are totals since start.
struct broker_stats {
    std::uint64_t requests = 0;          ///< valid client requests received
    std::uint64_t replies = 0;           ///< replies routed back to clients
    std::uint64_t dispatched = 0;        ///< requests sent to workers (re-deliveries included)
    std::uint64_t requeued = 0;          ///< in-flight requests put back after their worker died
    std::uint64_t rejected = 0;          ///< requests refused (queue/memory/service limits, attempts, expiry)
    std::uint64_t expired = 0;           ///< requests rejected for waiting longer than request_ttl
    std::uint64_t mmi = 0;               ///< requests answered by the broker itself
    std::uint64_t malformed = 0;         ///< messages dropped as malformed
    std::uint64_t workers_registered = 0;
    std::uint64_t workers_expired = 0;   ///< forgotten after heartbeat expiry
    std::uint64_t workers_disconnected = 0; ///< sent DISCONNECT, or sent us DISCONNECT
    std::uint64_t undeliverable = 0;     ///< replies whose client was gone or at its HWM
    std::uint64_t workers = 0;           ///< currently registered
    std::uint64_t services = 0;          ///< currently known
    std::uint64_t queued = 0;            ///< currently waiting for a worker
    std::uint64_t queued_bytes = 0;      ///< body bytes of the requests waiting
    std::uint64_t clients = 0;           ///< clients currently tracked
    std::uint64_t disconnects = 0;       ///< peer connections seen closing (TCP and IPC)
    std::uint64_t abandoned = 0;         ///< queued requests dropped because their client's
                                         ///< connection closed
    std::uint64_t memory = 0;            ///< bytes counted against max_memory now
    std::uint64_t duplicates = 0;        ///< retries that joined a pending request or got a kept reply
    std::uint64_t kept_replies = 0;      ///< replies kept for retries now
    std::uint64_t dead_lettered = 0;     ///< requests that expired, ran out of attempts or were refused
    std::uint64_t dlq = 0;               ///< entries in the dead-letter queue now
    std::uint64_t dlq_dropped = 0;       ///< dead letters dropped (dlq_max, memory)
    std::uint64_t partials = 0;          ///< PARTIAL replies from workers
    std::uint64_t parts_dropped = 0;     ///< PARTIALs not passed on: memory bound, client gone or at its HWM
    std::uint64_t failed_fast = 0;       ///< fail-fast requests answered 404
    std::uint64_t replies_dropped = 0;   ///< replies dropped: past max_memory or the client's
                                         ///< max_client_memory

    // Pub/sub forwarder (all 0 when it is off).
    std::uint64_t forwarded = 0;     ///< messages read from publishers and passed to subscribers
    /// Lossy mode: messages at which a subscriber was found at its high-water mark and missed
    /// them. This counts overflows, not every lost message: libzmq then skips that subscriber
    /// silently until it has drained half its queue (docs/broker.md). Subscribers see the exact
    /// loss as sequence gaps.
    std::uint64_t dropped = 0;
    std::uint64_t subscriptions = 0; ///< subscribe requests passed upstream (probes excluded)
    std::uint64_t subscriptions_refused = 0; ///< new subscriptions refused at max_subscriptions
    std::uint64_t probes = 0;        ///< readiness probes answered
    std::uint64_t stalls = 0;        ///< lossless: times a full subscriber stopped the stream
    std::uint64_t lvc_topics = 0;    ///< topics in the last-value cache now
    std::uint64_t lvc_evictions = 0; ///< topics evicted from the full last-value cache
    std::uint64_t directory_entries = 0; ///< registrations in the directory now

    // Security (all 0 when it is off).
    std::uint64_t connections_admitted = 0; ///< handshakes the ZAP handler admitted
    std::uint64_t connections_refused = 0;  ///< handshakes it refused (unknown key, address)
    std::uint64_t cut_off = 0;              ///< connections closed because their key was removed
    std::uint64_t forbidden = 0;            ///< requests and READYs the access list refused
    /// Publications the access list refused (dropped, never forwarded).
    std::uint64_t publications_forbidden = 0;
    /// Subscriptions the access list refused; the subscriber's connection is cut off.
    std::uint64_t subscriptions_forbidden = 0;
    /// Publications dropped because their key was over max_key_publish_rate.
    std::uint64_t publications_throttled = 0;

    // Binary Star (all 0 when the broker runs alone).
    /// The broker's state: 1 primary, 2 backup (waiting for the peer), 3 active, 4 passive.
    std::uint64_t ha_state = 0;
    std::uint64_t ha_changes = 0;         ///< state changes
    std::uint64_t ha_clients_dropped = 0; ///< client requests dropped while not active
    std::uint64_t ha_workers_refused = 0; ///< worker commands answered DISCONNECT while not active
    std::uint64_t ha_peer_updates = 0;    ///< states heard from the peer
    std::uint64_t ha_malformed = 0;       ///< malformed messages on the HA link
    std::uint64_t ha_ledger = 0;          ///< request ids heard from the active peer
    std::uint64_t ha_held = 0;            ///< retries held for a reply a worker may replay
    std::uint64_t ha_released = 0;        ///< held retries passed on when no replay came
    std::uint64_t ha_replays = 0;         ///< replies workers replayed (zmesh.replay)
    std::uint64_t ha_replay_answers = 0;  ///< retries answered from a replayed reply
};

/// The broker node.
///
/// Thread safety: run() or start() once; stop(), stats(), endpoints() and running() are
/// thread-safe. The broker owns its sockets; the context is shared with the caller and must
/// outlive the broker.
///
/// @par Example
/// @code
/// zmq::context_t ctx;
/// zmesh::nodes::broker_config cfg;
/// cfg.mdp_endpoint = "tcp://127.0.0.1:*";
/// cfg.xsub_endpoint = "tcp://127.0.0.1:*"; // optional: the pub/sub forwarder
/// cfg.xpub_endpoint = "tcp://127.0.0.1:*";
/// zmesh::nodes::broker b(ctx, cfg);    // binds here, so endpoints() is known at once
/// b.start();                           // own thread
/// std::string ep = b.endpoints().front();   // MDP; [1] XSUB, [2] XPUB
/// ...
/// b.stop();                            // workers get DISCONNECT; the thread is joined
/// @endcode
/// One service as the broker's metrics show it (broker::metrics()): counters since the service
/// appeared (a service forgotten after service_ttl starts again from zero, as Prometheus expects
/// of a counter that resets), and its state when the snapshot was taken.
struct service_metrics {
    /// Upper bounds, in seconds, of the latency histogram's buckets (the last, +Inf, is implied):
    /// from 100 us, where a reply through a broker on one machine lands, to 10 s.
    static constexpr std::array<double, 16> latency_bounds{
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
        0.05,   0.1,     0.25,   0.5,   1.0,    2.5,   5.0,   10.0};
    std::string name;
    std::uint64_t requests = 0; ///< requests for it that reached its queue's door
    std::uint64_t replies = 0;  ///< final replies from its workers
    std::uint64_t requeued = 0; ///< in-flight requests put back after their worker died
    std::uint64_t rejected = 0; ///< requests refused (limits, attempts, expiry, worker refusal)
    std::uint64_t expired = 0;  ///< of those, requests whose deadline passed in the queue
    std::uint64_t queued = 0;   ///< waiting for a worker now
    std::uint64_t workers = 0;  ///< registered now
    std::uint64_t in_flight = 0; ///< held by workers now
    /// Time from a request's arrival to its final reply, per bucket (not cumulative); the last
    /// entry counts those over the last bound.
    std::array<std::uint64_t, latency_bounds.size() + 1> latency_counts{};
    double latency_sum = 0; ///< seconds, over every reply counted
};

/// What broker::metrics() returns: the counters of stats() and the services, as of the last
/// snapshot the broker's loop took (every metrics_interval), for a metrics or status endpoint.
struct broker_metrics {
    broker_stats totals;                  ///< stats() when the snapshot was read
    std::vector<service_metrics> services; ///< sorted by name
    std::uint64_t max_memory = 0;         ///< the bound totals.memory counts against
    bool running = false;                 ///< the loop is running
    /// When the services were snapshot (steady clock), or 0 before the first snapshot.
    std::chrono::steady_clock::time_point taken{};
};

class ZMESH_EXPORT broker {
  public:
    /// Validates @p config and binds the broker's sockets (the forwarder's too, if configured).
    /// @throws zmesh::error (invalid endpoint or setting), zmq::error_t (bind failed).
    broker(zmq::context_t& ctx, broker_config config);
    /// Stops the broker if it is running.
    ~broker();
    broker(const broker&) = delete;
    broker& operator=(const broker&) = delete;

    /// The endpoints actually bound (ephemeral ports resolved): MDP, then, if the forwarder
    /// runs, XSUB and XPUB.
    [[nodiscard]] std::vector<std::string> endpoints() const;

    /// Binary Star: the HA endpoint actually bound; empty for a broker on its own.
    [[nodiscard]] std::string ha_endpoint() const;

    /// Runs the loop on the calling thread until stop() or, if @p handle_signals, SIGINT/SIGTERM.
    /// On the way out every known worker gets DISCONNECT.
    /// @throws zmesh::error errc::invalid_argument if already running.
    void run(bool handle_signals = false);

    /// Runs the loop on a new thread.
    /// @throws zmesh::error errc::invalid_argument if already running.
    void start();

    /// Ends the loop (workers get DISCONNECT) and joins the thread start() made. Thread-safe,
    /// idempotent.
    void stop() noexcept;

    /// Whether the loop is running.
    [[nodiscard]] bool running() const noexcept;

    /// A snapshot of the counters. Thread-safe.
    [[nodiscard]] broker_stats stats() const noexcept;

    /// The counters and the per-service state for a metrics endpoint (docs/metrics.md). The
    /// services are a snapshot the loop takes every broker_config::metrics_interval, so they
    /// may be that much behind totals; thread-safe.
    [[nodiscard]] broker_metrics metrics() const;

    /// Replaces who is admitted (as broker_config::access), e.g. on SIGHUP after re-reading
    /// the allowed keys. New handshakes use it at once; connections whose key it no longer
    /// admits are closed by the loop thread right after, and their workers and requests are
    /// handled as if they had disconnected. Thread-safe.
    /// @throws zmesh::error errc::invalid_argument for a bad address rule (nothing changes), or
    ///         if the broker runs without security (no curve and no address lists at start).
    void set_access(security::access_policy access);

    /// Replaces the access list (as broker_config::acl), e.g. on SIGHUP; it applies to the
    /// next request and READY. Workers already registered stay. Thread-safe.
    /// @throws zmesh::error errc::invalid_argument if the broker runs without CURVE.
    void set_acl(std::shared_ptr<const security::access_list> acl);

  private:
    class impl;
    std::unique_ptr<impl> impl_;
};

} // namespace zmesh::nodes
