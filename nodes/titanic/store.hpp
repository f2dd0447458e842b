// SPDX-License-Identifier: MPL-2.0
// store.hpp — internal: the durable storage interface of the Titanic node (rfc 9/TSP).
//
// The Titanic node (https://rfc.zeromq.org/spec/9/) acknowledges a request only once it is
// stored, dispatches stored requests until each has a reply, and keeps a dead-letter queue for
// requests that failed too often or outlived their TTL. Everything it must not forget goes
// through this interface, so that the node has one code path whatever the engine:
// open_sqlite_store() (sqlite_store.hpp) and open_pg_store() (pg_store.hpp); open_store()
// (open_store.hpp) picks one from the --store text.
//
// A request lives in one of three states: pending (waiting to be dispatched, or being retried),
// replied (its reply is stored, frame for frame), dead (in the dead-letter queue, with a reason).
// close() forgets it in any state. Writes are durable when they return (to the degree the engine
// was opened with), and the batch calls commit a whole batch at once: that is the group commit
// which lets the node acknowledge many requests per fsync.
//
// Claims: several nodes may share one store (PostgreSQL). A node takes due work with claim(), which
// marks each request it returns with the node's owner name and a lease expiry; no other owner gets
// a request while its lease runs, and a dead node's claims simply expire. The node renews the
// claims of what it is dispatching and releases all of its claims when it stops. A claim is only
// a hand-out rule: replies, failures and dead-lettering are accepted from anyone (the first reply
// stored wins).
//
// Ids are the 32 lowercase hex characters TSP uses. Lookups take ids straight from the network,
// so a malformed id is simply unknown there and never throws.
#pragma once

#include <zmesh/export.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace zmesh::nodes::titanic {

/// Wall-clock time with the millisecond precision the store keeps. Wall clock, not steady:
/// stored times must keep their meaning across restarts.
using time_point = std::chrono::sys_time<std::chrono::milliseconds>;

/// A message body: its frames, in order. Each frame is arbitrary bytes (may hold NUL), and a
/// body may have no frame at all.
using frames = std::vector<std::string>;

/// Where a stored request is in its life.
enum class request_state : std::uint8_t {
    pending = 0, ///< waiting for dispatch or for its next retry
    replied = 1, ///< its reply is stored
    dead = 2,    ///< in the dead-letter queue
};

/// A request as the node submits it. The store adds attempts = 0, next attempt = created,
/// state pending.
struct new_request {
    std::string id;      ///< 32 lowercase hex characters (the TSP UUID); unique in the store
    std::string service; ///< the MDP service the request is for
    frames body;
    time_point created;
    /// Time to live from @c created, when the client gave one. The store only keeps it; the
    /// node decides when it has passed.
    std::optional<std::chrono::milliseconds> ttl;
};

/// A stored request.
struct request_record {
    std::string id;
    std::string service;
    frames body;
    time_point created;
    std::optional<std::chrono::milliseconds> ttl;
    std::uint32_t attempts = 0; ///< failed dispatches so far (record_failure)
    time_point next_attempt;    ///< due() returns the request once this is reached
    request_state state = request_state::pending;
    std::string claimed_by;     ///< owner of the current claim (claim()); empty: never claimed
                                ///< or released
    time_point claimed_until{}; ///< when that claim's lease ends; meaningless if claimed_by is empty
};

/// A reply to store for a request.
struct reply_record {
    std::string id;
    frames body;
};

/// What reply() found for an id.
enum class reply_state {
    pending, ///< stored, no reply yet (TSP 300)
    replied, ///< the reply is in reply_status::body (TSP 200)
    dead,    ///< in the dead-letter queue: no reply unless an operator replays it
    unknown, ///< no such request, or it was closed (TSP 400)
};

/// Result of reply().
struct reply_status {
    reply_state state = reply_state::unknown;
    frames body; ///< the reply, frame for frame; empty unless state == replied
};

/// A request in the dead-letter queue.
struct dlq_entry {
    request_record request; ///< request.state is dead
    std::string reason;     ///< why it was moved, as given to move_to_dlq()
    time_point moved;       ///< when it was moved
};

/// How many requests the store holds in each state.
struct store_counts {
    std::size_t pending = 0;
    std::size_t replied = 0;
    std::size_t dead = 0;
};

/// The Titanic node's durable storage.
///
/// Every write has committed durably when it returns; if it throws, none of it is stored (a
/// batch is all or nothing), so the node never acknowledges what it has not stored. Reads see
/// every write committed before them, from this object or from another process.
///
/// Thread-safety: an object is used by one thread at a time (it holds one database connection
/// and its prepared statements). Several objects, in one process or several, may open the same
/// store: the engine serialises their writes. That is how `zmesh dlq` works on the store of a
/// running node.
///
/// @par Example
/// @code
/// auto st = zmesh::nodes::titanic::open_sqlite_store("titanic.db", sync_mode::full);
/// st->add_requests(batch);              // one commit for the whole batch, then acknowledge
/// for (auto& r : st->due(now, 100)) { /* dispatch r; later store_replies or record_failure */ }
/// @endcode
class ZMESH_EXPORT store {
  public:
    virtual ~store() = default;
    store(const store&) = delete;
    store& operator=(const store&) = delete;
    store(store&&) = delete;
    store& operator=(store&&) = delete;

    /// Stores new pending requests in one transaction; returns once it has committed.
    /// @throws zmesh::error errc::invalid_argument if an id is not 32 lowercase hex characters,
    ///         appears twice in the batch or is already stored; nothing of the batch is stored.
    /// @throws zmesh::error errc::storage if the engine fails (disk full, I/O error, lock wait
    ///         timed out); nothing of the batch is stored.
    virtual void add_requests(std::span<const new_request> batch) = 0;

    /// Stores replies in one transaction; returns once it has committed. A reply is stored only
    /// for a request that is pending or dead (a dead one leaves the dead-letter queue); one for
    /// an unknown, closed or already replied request is dropped, so the first reply stored wins
    /// when a request was executed twice.
    /// @param now recorded as the reply time
    /// @returns how many replies were stored
    /// @throws zmesh::error errc::storage if the engine fails; nothing of the batch is stored.
    virtual std::size_t store_replies(std::span<const reply_record> batch, time_point now) = 0;

    /// What is known of request @p id, and its reply if there is one (TSP `titanic.reply`).
    /// @throws zmesh::error errc::storage if the engine fails.
    virtual reply_status reply(std::string_view id) = 0;

    /// The stored request @p id, in any state.
    /// @returns std::nullopt if there is no such request
    /// @throws zmesh::error errc::storage if the engine fails.
    virtual std::optional<request_record> find(std::string_view id) = 0;

    /// Forgets request @p id and its reply, in any state (TSP `titanic.close`). Idempotent.
    /// @returns whether there was something to forget
    /// @throws zmesh::error errc::storage if the engine fails.
    virtual bool close(std::string_view id) = 0;

    /// The dispatcher's work list: pending requests whose next attempt is at or before @p now,
    /// earliest next attempt first, then in the order they were added; at most @p limit. After a
    /// restart this includes every request that still has no reply.
    /// @throws zmesh::error errc::storage if the engine fails.
    virtual std::vector<request_record> due(time_point now, std::size_t limit) = 0;

    /// due(), claimed for @p owner: the pending requests due at @p now that nobody holds (never
    /// claimed, released, or whose lease ended at or before @p now) or that @p owner holds
    /// already, earliest next attempt first, at most @p limit; each is marked as held by @p owner
    /// until @p now + @p lease, in one transaction. Two owners calling at once never get the
    /// same request. Claims survive failures (record_failure() leaves the claim, so the owner
    /// takes the request up again after its backoff, or another owner once the lease ends).
    /// @throws zmesh::error errc::invalid_argument if @p owner is empty.
    /// @throws zmesh::error errc::storage if the engine fails.
    virtual std::vector<request_record> claim(std::string_view owner, time_point now,
                                              std::chrono::milliseconds lease,
                                              std::size_t limit) = 0;

    /// Extends to @p until the claims that @p owner still holds on the pending requests @p ids
    /// (one transaction). A claim another owner has taken meanwhile is left alone.
    /// @returns how many claims were extended
    /// @throws zmesh::error errc::storage if the engine fails.
    virtual std::size_t renew(std::string_view owner, std::span<const std::string> ids,
                              time_point until) = 0;

    /// Gives up every claim of @p owner, so that other owners may take the requests at once (a
    /// node that stops cleanly).
    /// @returns how many claims were released
    /// @throws zmesh::error errc::storage if the engine fails.
    virtual std::size_t release(std::string_view owner) = 0;

    /// Counts a failed dispatch of pending request @p id and sets its next attempt.
    /// @returns the attempts so far, or std::nullopt if @p id is not a pending request
    /// @throws zmesh::error errc::storage if the engine fails.
    virtual std::optional<std::uint32_t> record_failure(std::string_view id,
                                                        time_point next_attempt) = 0;

    /// Moves pending request @p id to the dead-letter queue.
    /// @returns whether it was pending (and so was moved)
    /// @throws zmesh::error errc::storage if the engine fails.
    virtual bool move_to_dlq(std::string_view id, std::string_view reason, time_point now) = 0;

    /// The dead-letter queue, oldest move first, at most @p limit entries.
    /// @throws zmesh::error errc::storage if the engine fails.
    virtual std::vector<dlq_entry> dlq_list(std::size_t limit) = 0;

    /// The dead-letter entry of @p id.
    /// @returns std::nullopt if @p id is not in the dead-letter queue
    /// @throws zmesh::error errc::storage if the engine fails.
    virtual std::optional<dlq_entry> dlq_show(std::string_view id) = 0;

    /// Puts dead request @p id back to pending, due at @p now, unclaimed, with its attempts reset
    /// and its TTL dropped (an operator who replays an expired request wants it to run).
    /// @returns whether it was in the dead-letter queue
    /// @throws zmesh::error errc::storage if the engine fails.
    virtual bool dlq_replay(std::string_view id, time_point now) = 0;

    /// dlq_replay() for every dead request, in one transaction.
    /// @returns how many were replayed
    /// @throws zmesh::error errc::storage if the engine fails.
    virtual std::size_t dlq_replay_all(time_point now) = 0;

    /// Deletes dead request @p id.
    /// @returns whether it was in the dead-letter queue
    /// @throws zmesh::error errc::storage if the engine fails.
    virtual bool dlq_purge(std::string_view id) = 0;

    /// Deletes every dead request, in one transaction.
    /// @returns how many were deleted
    /// @throws zmesh::error errc::storage if the engine fails.
    virtual std::size_t dlq_purge_all() = 0;

    /// How many requests are in each state. Costs a scan of the store: for stats, not hot paths.
    /// @throws zmesh::error errc::storage if the engine fails.
    virtual store_counts counts() = 0;

  protected:
    store() = default;
};

/// Whether @p id has the TSP id form: exactly 32 lowercase hex characters.
[[nodiscard]] constexpr bool is_valid_id(std::string_view id) noexcept {
    if (id.size() != 32) return false;
    for (char c : id) {
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    }
    return true;
}

} // namespace zmesh::nodes::titanic
