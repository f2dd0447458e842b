// SPDX-License-Identifier: MPL-2.0
// worker_table.hpp — internal: what the broker does with each worker command, by the state the
// worker is in: the (state × event) table of 7/MDP's worker dialogue, https://rfc.zeromq.org/spec/7/
//
// A worker is `unknown` until its READY is accepted, then `registered` until it is forgotten
// (DISCONNECT either way, expiry, its connection closing). Each row names the clause of 7/MDP
// it implements, quoted, or says why zmesh departs from it. The engine (mdp_engine.cpp) looks
// the row up and performs its action; nothing else decides how a worker command is handled.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace zmesh::nodes::detail {

enum class worker_state : std::uint8_t { unknown, registered };

enum class worker_event : std::uint8_t {
    ready,             ///< READY
    reply,             ///< REPLY
    heartbeat,         ///< HEARTBEAT
    disconnect,        ///< DISCONNECT
    request,           ///< REQUEST (a broker-to-worker command, sent the wrong way)
    malformed_command, ///< a valid command byte with wrong frames after it
    malformed_frames,  ///< no valid command at all
    other_protocol,    ///< a registered worker's message under the other worker header
};
inline constexpr std::size_t worker_event_count = 8;

enum class worker_action : std::uint8_t {
    register_worker,   ///< accept the READY, unless the name or a limit forbids it (then refuse)
    refuse,            ///< send DISCONNECT and nothing else; the peer stays unknown
    deliver_reply,     ///< route the REPLY to its client; one naming no held request disconnects
    refresh,           ///< nothing more than the sign of life every command is
    forget,            ///< forget the worker, re-queue its requests, send nothing
    disconnect_worker, ///< send DISCONNECT, forget the worker, re-queue its requests
    ignore,            ///< nothing
    drop,              ///< nothing, but count and log the message as malformed
};

struct worker_transition {
    worker_state state;
    worker_event event;
    worker_action action;
    bool protocol_error;   ///< counted in broker_stats::malformed and logged
    std::string_view rule; ///< the 7/MDP clause, or why zmesh departs from it
};

// clang-format off
inline constexpr std::array<worker_transition, 2 * worker_event_count> worker_table{{
    {worker_state::unknown, worker_event::ready, worker_action::register_worker, false,
     "7/MDP: \"The worker ... sending a READY command\"; one service per worker. zmesh refuses "
     "reserved (mmi.*, zmesh.*), invalid and over-limit names with one DISCONNECT, and answers "
     "an accepted READY with a HEARTBEAT (\"valid at any time, after a READY command\")"},
    {worker_state::unknown, worker_event::reply, worker_action::refuse, true,
     "7/MDP: \"MUST respond to any valid but unexpected command by sending DISCONNECT\""},
    {worker_state::unknown, worker_event::heartbeat, worker_action::refuse, false,
     "7/MDP: \"The broker MAY send DISCONNECT at any time\": a worker the broker has forgotten "
     "(restart, expiry) learns it must register again"},
    {worker_state::unknown, worker_event::disconnect, worker_action::ignore, false,
     "7/MDP: \"The worker MAY send DISCONNECT at any time, including before READY\""},
    {worker_state::unknown, worker_event::request, worker_action::refuse, true,
     "7/MDP: \"MUST respond to any valid but unexpected command by sending DISCONNECT\""},
    {worker_state::unknown, worker_event::malformed_command, worker_action::refuse, true,
     "departs from 7/MDP (\"SHOULD respond to invalid messages by dropping them\"): a peer whose "
     "command byte is valid is a worker, and is told to stop rather than left waiting"},
    {worker_state::unknown, worker_event::malformed_frames, worker_action::drop, true,
     "7/MDP: \"SHOULD respond to invalid messages by dropping them\""},
    {worker_state::unknown, worker_event::other_protocol, worker_action::drop, true,
     "cannot happen: an unknown peer has no protocol to switch from"},

    {worker_state::registered, worker_event::ready, worker_action::disconnect_worker, true,
     "7/MDP: \"The worker MUST NOT send a further READY\"; a valid but unexpected command"},
    {worker_state::registered, worker_event::reply, worker_action::deliver_reply, false,
     "7/MDP: REPLY \"MUST contain precisely one client address frame\"; one naming a request the "
     "worker does not hold (or a stale ZMWC01 tag) is valid but unexpected: DISCONNECT"},
    {worker_state::registered, worker_event::heartbeat, worker_action::refresh, false,
     "7/MDP: \"Any received command except DISCONNECT acts as a heartbeat\""},
    {worker_state::registered, worker_event::disconnect, worker_action::forget, false,
     "7/MDP: \"When the broker receives DISCONNECT from a worker it MUST send no further "
     "commands to that worker\"; its requests go to other workers (zmesh: at-least-once)"},
    {worker_state::registered, worker_event::request, worker_action::disconnect_worker, true,
     "7/MDP: \"MUST respond to any valid but unexpected command by sending DISCONNECT\""},
    {worker_state::registered, worker_event::malformed_command, worker_action::disconnect_worker,
     true, "7/MDP: \"treating that peer as invalid\": it must not hold requests, so it is "
     "disconnected and its requests re-queued"},
    {worker_state::registered, worker_event::malformed_frames, worker_action::disconnect_worker,
     true, "7/MDP: \"treating that peer as invalid\", as above"},
    {worker_state::registered, worker_event::other_protocol, worker_action::disconnect_worker,
     true, "zmesh: a worker keeps the protocol (MDPW01 or ZMWC01) of its READY"},
}};
// clang-format on

/// The row for @p state and @p event.
[[nodiscard]] constexpr const worker_transition& worker_transition_for(worker_state state,
                                                                       worker_event event) noexcept {
    return worker_table[static_cast<std::size_t>(state) * worker_event_count +
                        static_cast<std::size_t>(event)];
}

// Every row sits at the index worker_transition_for() reads.
static_assert([] {
    for (std::size_t i = 0; i < worker_table.size(); ++i)
        if (static_cast<std::size_t>(worker_table[i].state) * worker_event_count +
                static_cast<std::size_t>(worker_table[i].event) != i)
            return false;
    return true;
}());

} // namespace zmesh::nodes::detail
