// SPDX-License-Identifier: MPL-2.0
// patterns/binary_star.hpp — the Binary Star high-availability pair (ZeroMQ guide, chapter 4):
// its finite-state machine as a pure class, with no sockets and no clock.
//
// Two servers, a primary and a backup, tell each other their state every heartbeat. At any time
// at most one of them is *active* (serves clients); the other is *passive* (serves nothing and
// waits). Each starts in its role's state (primary or backup) until it hears its peer. The events
// are the peer's state as last announced and a client asking this server for service.
//
// The rule against split brain: a passive server takes over only when *both* its peer has been
// silent for the failover timeout (twice the heartbeat) *and* a client asks it for service. Clients
// move to the backup only when they cannot reach the primary, so a cut between the two servers
// alone (peers silent, clients still served by the active) never makes two actives.
//
// Time is passed in with every event, so the machine is a pure function of its inputs and can be
// tested without sockets (tests/patterns/test_binary_star.cpp). docs/patterns/binary_star.md
// describes the states, the frames on the HA link and the guarantees.
#pragma once

#include <zmesh/export.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string_view>

namespace zmesh::patterns::binary_star {

/// A server's state. primary and backup are the start states of the two roles, until the peer
/// is heard from (or, primary only, a client asks after the failover timeout).
enum class state { primary, backup, active, passive };

/// What the machine reacts to: the state the peer announced, or a client asking for service.
enum class event { peer_primary, peer_backup, peer_active, peer_passive, client_request };

/// The role a server is configured with; it decides the start state.
enum class role { primary, backup };

/// Names for logs and stats ("primary", "peer_active", ...).
[[nodiscard]] ZMESH_EXPORT std::string_view to_string(state s) noexcept;
[[nodiscard]] ZMESH_EXPORT std::string_view to_string(event e) noexcept;
[[nodiscard]] ZMESH_EXPORT std::string_view to_string(role r) noexcept;
/// Parses "primary" or "backup".
[[nodiscard]] ZMESH_EXPORT std::optional<role> parse_role(std::string_view text) noexcept;
/// The peer event that announces state @p s (what a server sends on the HA link is its state;
/// the receiver turns it into this event).
[[nodiscard]] ZMESH_EXPORT event peer_event(state s) noexcept;

/// The byte that stands for state @p s on an HA link (the broker's ZMBS01, the Clone pair's
/// ZMCLHA): primary 1, backup 2, active 3, passive 4.
[[nodiscard]] ZMESH_EXPORT std::uint8_t state_byte(state s) noexcept;
/// The state of an HA link's state byte; nullopt for any other byte (a malformed message).
[[nodiscard]] ZMESH_EXPORT std::optional<state> byte_state(std::uint8_t b) noexcept;

/// What one event did.
struct outcome {
    state from = state::primary;  ///< state before the event
    state to = state::primary;    ///< state after it (== from if nothing changed)
    /// For client_request: whether the client may be served now. For peer events: true.
    bool accepted = true;
    /// The guide's fatal error: both servers active, or both passive. The pair cannot resolve
    /// it; the guide's server stops, and zmesh's broker does too (to be restarted by its
    /// supervisor once an operator has looked).
    bool fatal = false;
    /// Why, in words, for the log ("backup is restarting, we become active", ...).
    std::string_view reason;

    [[nodiscard]] bool changed() const noexcept { return from != to; }
};

/// The state machine of one server of the pair.
///
/// Not thread-safe: one owner (the broker's loop) feeds it events.
///
/// @par Example
/// @code
/// using namespace zmesh::patterns::binary_star;
/// machine m(role::backup, std::chrono::milliseconds(1000), clock::now());
/// m.on_event(event::peer_active, clock::now());          // backup -> passive
/// auto o = m.on_event(event::client_request, clock::now());
/// // o.accepted == false: the active is alive, the passive serves nobody
/// @endcode
class ZMESH_EXPORT machine {
  public:
    using clock = std::chrono::steady_clock;

    /// @param heartbeat how often the two servers send their state; the peer counts as silent
    ///        (failover_timeout()) after two of them without news.
    /// @param now the start: a primary that hears nothing waits one failover timeout from here
    ///        before a client may make it active (it may be a primary restarted while its backup
    ///        is active, and must not take over before it could have heard that).
    /// @throws zmesh::error errc::invalid_argument if @p heartbeat is not positive.
    machine(role r, std::chrono::milliseconds heartbeat, clock::time_point now);

    /// Feeds one event that happened at @p now. Every peer event also marks the peer alive until
    /// now + failover_timeout().
    outcome on_event(event e, clock::time_point now) noexcept;

    [[nodiscard]] state current() const noexcept { return state_; }
    [[nodiscard]] role configured_role() const noexcept { return role_; }
    /// Whether this server serves clients (is active).
    [[nodiscard]] bool serving() const noexcept { return state_ == state::active; }
    /// Whether the peer has been heard from within the failover timeout before @p now.
    [[nodiscard]] bool peer_alive(clock::time_point now) const noexcept { return now < peer_expiry_; }
    /// The silence after which the peer counts as gone: two heartbeats.
    [[nodiscard]] std::chrono::milliseconds failover_timeout() const noexcept { return 2 * heartbeat_; }
    [[nodiscard]] std::chrono::milliseconds heartbeat() const noexcept { return heartbeat_; }

  private:
    role role_;
    state state_;
    std::chrono::milliseconds heartbeat_;
    clock::time_point peer_expiry_; // the peer is alive until then
};

} // namespace zmesh::patterns::binary_star
