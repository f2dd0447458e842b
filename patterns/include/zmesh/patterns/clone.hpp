// SPDX-License-Identifier: MPL-2.0
// patterns/clone.hpp — reliable replication of a key-value state (the "Clone" pattern of the
// ZeroMQ guide, rfc 12/CHP), over zmesh's ZMCL01 frames (docs/patterns/clone.md).
//
// A clone::server owns the state: a map of byte keys to byte values, and a sequence number that
// it increments on every change. It publishes each change on a PUB socket, answers snapshot
// requests and takes changes from clients on a ROUTER socket, and publishes a heartbeat (HUGZ,
// carrying the current sequence) when idle. A clone::client subscribes first, then asks for a
// snapshot, then applies the updates that follow it in sequence: one it has (at or below its
// sequence) is dropped, one that skips a number is a gap, and a gap, a HUGZ announcing a
// sequence it has not seen or another epoch (a restarted server), or a silent server makes it
// re-sync from a fresh snapshot. So a
// client that joins late, or misses updates, converges to exactly the server's state.
#pragma once

#include <zmesh/export.hpp>
#include <zmesh/patterns/binary_star.hpp>
#include <zmesh/security/zap.hpp>

#include <zmq.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace zmesh::patterns::clone {

/// The protocol frame of every ZMCL01 message.
inline constexpr std::string_view protocol_v1 = "ZMCL01";

/// Command byte, the frame after the protocol frame.
enum class command : std::uint8_t {
    snapshot_request = 0x01, ///< client -> server (ROUTER): prefix
    set = 0x02,              ///< client -> server (ROUTER): key, value[, change id]
    erase = 0x03,            ///< client -> server (ROUTER): key[, change id]
    follow = 0x04,           ///< passive -> active server (ROUTER): epoch, sequence held
    snapshot = 0x10,         ///< server -> client: epoch, sequence, then key/value pairs
    ack = 0x11,              ///< server -> client: the sequence a set or erase got
    refused = 0x12,          ///< server -> client: reason (a passive server of a pair)
    update = 0x20,           ///< server PUB: [key] protocol, command, sequence, value[, id]
    removal = 0x21,          ///< server PUB: [key] protocol, command, sequence[, id]
    hugz = 0x22,             ///< server PUB: [""] protocol, command, epoch, sequence
};

/// Settings of a clone::server.
struct server_options {
    /// Where clients ask for snapshots and send changes (ROUTER). tcp://host:* is allowed.
    std::string bind{};
    /// Where updates are published (PUB). Empty: derived from bind (docs/patterns/clone.md:
    /// tcp port + 1, or ipc path + ".updates"; tcp://host:* binds another ephemeral port).
    std::string publish{};
    /// A HUGZ (the current sequence) goes out this often.
    std::chrono::milliseconds hugz_interval{1000};
    /// ZMQ_SNDHWM of the PUB socket: updates queued per subscriber before the slowest one
    /// loses some (and re-syncs).
    int publish_hwm{10000};
    /// Largest message accepted from a client (ZMQ_MAXMSGSIZE); -1 = no limit.
    std::int64_t max_message_size{64 * 1024 * 1024};
    /// CURVE (docs/security.md) on both sockets: this server's certificate and the client keys
    /// it admits. The server then runs the ZAP handler of its context, so the context must have
    /// none yet (one CURVE server per context). An unknown key or a plain client gets neither
    /// snapshots nor updates, and its changes never arrive. Unset: plain.
    std::optional<security::curve_server_settings> curve_server{};

    /// Binary Star (docs/patterns/clone.md, "A pair of servers"): this server's role in a
    /// high-availability pair. Unset: a single server. Set: ha_bind and ha_peer are required, the
    /// server serves clients only while it is active, and a passive one follows the active as a
    /// Clone client of it. Not combined with curve_server yet.
    std::optional<binary_star::role> ha_role{};
    /// Where this server announces its state and its endpoints (PUB). tcp://host:* is allowed.
    std::string ha_bind{};
    /// The peer's ha_bind endpoint (this server's SUB connects to it).
    std::string ha_peer{};
    /// How often the state goes out on the HA link; the peer counts as silent after two.
    std::chrono::milliseconds ha_heartbeat{1000};
};

/// Counters of a server; readable from any thread.
struct server_stats {
    std::uint64_t sequence{0};  ///< the current sequence number (changes so far)
    std::uint64_t keys{0};      ///< keys in the state
    std::uint64_t snapshots{0}; ///< snapshots served
    std::uint64_t malformed{0}; ///< client messages that were not ZMCL01, dropped
    std::uint64_t connections_admitted{0}; ///< CURVE handshakes the ZAP handler admitted
    std::uint64_t connections_refused{0};  ///< CURVE handshakes it refused (unknown key)
    std::uint64_t forbidden{0}; ///< requests from a key set_access() removed, dropped
    std::uint64_t cut_off{0};   ///< update connections closed because their key was removed
    /// Binary Star: 0 single server; else 1 primary, 2 backup, 3 active, 4 passive.
    int ha_state{0};
    /// Binary Star: the pair's fatal error (both servers primary, or both backup, or two
    /// actives): the server stopped its loop, for an operator to look.
    bool ha_fatal{false};
    std::uint64_t ha_takeovers{0};  ///< times this server became active after being passive
    std::uint64_t ha_refused{0};    ///< client requests refused while not active
    std::uint64_t duplicates{0};    ///< re-sent changes recognised by their id, not applied again
    std::uint64_t followed{0};      ///< changes taken from the active while passive
    std::uint64_t acks_held{0};     ///< acks held until the passive had the change
};

/// The endpoint updates are published on when server_options::publish is empty: for
/// tcp://host:port, port + 1; for ipc://path, ipc://path.updates; std::nullopt otherwise (a
/// wildcard port, inproc).
[[nodiscard]] ZMESH_EXPORT std::optional<std::string>
default_updates_endpoint(std::string_view bind);

/// The server: owns the state and its sequence.
///
/// Thread safety: stop() and stats() from any thread; the rest on the thread that runs it.
///
/// @par Example
/// @code
/// zmq::context_t ctx;
/// zmesh::patterns::clone::server s(ctx, {.bind = "tcp://*:5556"}); // updates on tcp://*:5557
/// s.run(); // until s.stop() or context shutdown
/// @endcode
class ZMESH_EXPORT server {
  public:
    /// Binds both sockets.
    /// @throws zmesh::error errc::invalid_endpoint / errc::invalid_argument (no publish endpoint
    /// can be derived, a non-positive hugz interval); zmesh::error naming the endpoint if a bind fails.
    server(zmq::context_t& ctx, server_options options);
    ~server();
    server(const server&) = delete;
    server& operator=(const server&) = delete;

    /// The snapshot/change endpoint actually bound (port resolved).
    [[nodiscard]] const std::string& endpoint() const noexcept;
    /// The update endpoint actually bound.
    [[nodiscard]] const std::string& updates_endpoint() const noexcept;
    /// Binary Star: the HA endpoint actually bound (empty for a single server).
    [[nodiscard]] const std::string& ha_endpoint() const noexcept;

    void run();
    void run_for(std::chrono::milliseconds duration);
    void run_once(std::chrono::milliseconds wait);
    /// Thread-safe.
    void stop() noexcept;

    [[nodiscard]] server_stats stats() const noexcept;

    /// Replaces the client keys (and address lists) that curve_server admits, e.g. on SIGHUP.
    /// New handshakes follow it at once. A client already connected whose key is no longer
    /// admitted has its snapshot requests and changes dropped from then on (counted in
    /// forbidden), and its update connection is closed within 100 ms (cut_off); libzmq then
    /// reconnects it, and the handshake refuses it. Thread-safe.
    /// @throws zmesh::error errc::invalid_argument if curve_server is unset, or for a bad
    ///         address rule (the old policy stays).
    void set_access(security::access_policy policy);

  private:
    class impl;
    std::unique_ptr<impl> impl_;
};

/// One server of a client's list: its snapshot/change endpoint and its update endpoint.
struct server_address {
    std::string server{};
    /// Empty: default_updates_endpoint(server).
    std::string updates{};
};

/// Settings of a clone::client.
struct client_options {
    /// The server's snapshot/change endpoint.
    std::string server{};
    /// Its update endpoint; empty: default_updates_endpoint(server).
    std::string updates{};
    /// More servers, after `server` (if set): the two of a Binary Star pair. The client uses
    /// one at a time and moves to the next when the current one is silent for server_ttl, does
    /// not answer within timeout, or refuses (a passive server); it then takes a snapshot there.
    /// A set or erase not acknowledged is sent again to the next server, with the same change
    /// id, so that a server that already applied it acknowledges it without applying it twice.
    std::vector<server_address> servers{};
    /// Only keys starting with this are kept (the snapshot is asked for this prefix; updates of
    /// other keys are read, for their sequence numbers, and skipped).
    std::string prefix{};
    /// How long sync() waits for a snapshot, and set()/erase() for their ack, from one server
    /// (with several, each is tried in turn, up to that many times this in all).
    std::chrono::milliseconds timeout{2000};
    /// A server silent this long (no update, no HUGZ) is asked for a snapshot again. Keep it
    /// above the server's hugz_interval.
    std::chrono::milliseconds server_ttl{5000};
    /// ZMQ_RCVHWM of the SUB socket (updates queued before the oldest are dropped).
    int updates_hwm{10000};
    /// CURVE (docs/security.md): the server's public key and this client's certificate, for
    /// both of the client's connections. Unset: plain.
    std::optional<security::curve_client_keys> curve{};
    /// Test hook: return true to drop the update with this sequence unread, as a full queue
    /// would.
    std::function<bool(std::uint64_t sequence)> drop_update{};
};

/// One change of the client's copy, as given to the on_change callback.
struct change {
    std::string key;
    std::optional<std::string> value; ///< std::nullopt: the key was removed
    std::uint64_t sequence{0};        ///< the state's sequence after it
};

/// Counters of a client.
struct client_stats {
    std::uint64_t snapshots{0}; ///< snapshots received (first sync and re-syncs)
    std::uint64_t updates{0};   ///< updates applied
    std::uint64_t overlap{0};   ///< updates at or below the sequence already held, dropped
    std::uint64_t gaps{0};      ///< sequence gaps seen (each followed by a re-sync)
    std::uint64_t resyncs{0};   ///< snapshots asked for after the first
    std::uint64_t malformed{0}; ///< server messages that were not ZMCL01, dropped
    std::uint64_t dropped_by_hook{0}; ///< updates client_options::drop_update dropped
    std::uint64_t failovers{0}; ///< moves to the next server of the list
    std::uint64_t refused{0};   ///< refusals from a server that was not active
    std::uint64_t resent{0};    ///< changes sent again (to the next server)
};

/// The client: a copy of the server's state (or of the keys under a prefix), kept current.
///
/// Thread safety: none; one thread at a time. The context must outlive it.
///
/// @par Example
/// @code
/// zmq::context_t ctx;
/// zmesh::patterns::clone::client c(ctx, {.server = "tcp://10.0.0.1:5556"});
/// c.sync();                                  // snapshot
/// c.set("/config/level", "3");               // through the server
/// c.poll(std::chrono::milliseconds(100));    // follow updates
/// auto level = c.get("/config/level");
/// @endcode
class ZMESH_EXPORT client {
  public:
    /// Connects and subscribes (nothing is waited for).
    /// @throws zmesh::error errc::invalid_endpoint / errc::invalid_argument; zmq::error_t.
    client(zmq::context_t& ctx, client_options options);
    ~client();
    client(client&&) noexcept;
    client& operator=(client&&) noexcept;

    /// Replaces the copy with a fresh snapshot. The on_change callback sees each difference.
    /// @throws zmesh::error errc::timeout, naming the server, if no snapshot came in time.
    void sync();

    /// Reads updates for up to @p wait (re-syncing on a gap or a silent server).
    /// sync() first if never synced.
    /// @throws as sync().
    void poll(std::chrono::milliseconds wait);

    /// Polls until the copy holds sequence @p sequence or later, or @p timeout passes.
    /// @returns whether it does.
    bool wait_for(std::uint64_t sequence, std::chrono::milliseconds timeout);

    /// Sets @p key to @p value through the server; returns the sequence of the change once the
    /// server has applied it. The copy here follows when poll() reads the update.
    /// @throws zmesh::error errc::invalid_argument for an empty key; errc::timeout, naming the
    /// server, if it did not answer in time.
    std::uint64_t set(std::string_view key, std::string_view value);
    /// Removes @p key through the server; as set().
    std::uint64_t erase(std::string_view key);

    /// The value of @p key in the copy.
    [[nodiscard]] std::optional<std::string> get(std::string_view key) const;
    /// The whole copy.
    [[nodiscard]] const std::map<std::string, std::string, std::less<>>& state() const noexcept;
    /// The sequence of the copy: that of the last change applied.
    [[nodiscard]] std::uint64_t sequence() const noexcept;
    /// The snapshot/change endpoint of the server in use.
    [[nodiscard]] const std::string& current_server() const noexcept;
    [[nodiscard]] client_stats stats() const noexcept;

    /// Called for each change of the copy (from sync() and poll()).
    void on_change(std::function<void(const change&)> callback);

  private:
    class impl;
    std::unique_ptr<impl> impl_;
};

} // namespace zmesh::patterns::clone
