// SPDX-License-Identifier: MPL-2.0
// machine.cpp — the Binary Star state machine: one function of (state, event, peer silence).
//
// The transitions are those of the guide's Binary Star, written out as a table in
// docs/patterns/binary_star.md. Two additions: two servers configured with the same role are
// reported as fatal (the guide leaves them to run, and both then take over on their first client),
// and every outcome carries the reason the broker logs.
#include <zmesh/patterns/binary_star.hpp>

#include <zmesh/error.hpp>

namespace zmesh::patterns::binary_star {

std::string_view to_string(state s) noexcept {
    switch (s) {
    case state::primary: return "primary";
    case state::backup: return "backup";
    case state::active: return "active";
    case state::passive: return "passive";
    }
    return "unknown";
}

std::string_view to_string(event e) noexcept {
    switch (e) {
    case event::peer_primary: return "peer_primary";
    case event::peer_backup: return "peer_backup";
    case event::peer_active: return "peer_active";
    case event::peer_passive: return "peer_passive";
    case event::client_request: return "client_request";
    }
    return "unknown";
}

std::string_view to_string(role r) noexcept { return r == role::primary ? "primary" : "backup"; }

std::optional<role> parse_role(std::string_view text) noexcept {
    if (text == "primary") return role::primary;
    if (text == "backup") return role::backup;
    return std::nullopt;
}

event peer_event(state s) noexcept {
    switch (s) {
    case state::primary: return event::peer_primary;
    case state::backup: return event::peer_backup;
    case state::active: return event::peer_active;
    case state::passive: return event::peer_passive;
    }
    return event::peer_passive;
}

std::uint8_t state_byte(state s) noexcept {
    switch (s) {
    case state::primary: return 1;
    case state::backup: return 2;
    case state::active: return 3;
    case state::passive: return 4;
    }
    return 0;
}

std::optional<state> byte_state(std::uint8_t b) noexcept {
    switch (b) {
    case 1: return state::primary;
    case 2: return state::backup;
    case 3: return state::active;
    case 4: return state::passive;
    default: return std::nullopt;
    }
}

machine::machine(role r, std::chrono::milliseconds heartbeat, clock::time_point now)
    : role_(r), state_(r == role::primary ? state::primary : state::backup), heartbeat_(heartbeat) {
    if (heartbeat.count() <= 0)
        throw error(errc::invalid_argument, "binary star: heartbeat must be positive");
    peer_expiry_ = now + failover_timeout();
}

outcome machine::on_event(event e, clock::time_point now) noexcept {
    outcome o;
    o.from = state_;
    const bool from_peer = e != event::client_request;
    if (from_peer) peer_expiry_ = now + failover_timeout();
    auto go = [&](state to, std::string_view why) {
        state_ = to;
        o.reason = why;
    };
    auto fatal = [&](std::string_view why) {
        o.fatal = true;
        o.accepted = false;
        o.reason = why;
    };
    auto refuse = [&](std::string_view why) {
        o.accepted = false;
        o.reason = why;
    };

    switch (state_) {
    case state::primary:
        if (e == event::peer_backup) go(state::active, "the backup is up and waiting: we become active");
        else if (e == event::peer_active)
            go(state::passive, "the backup is active (it took over): we become passive");
        else if (e == event::peer_primary) fatal("both servers are configured as primary");
        else if (e == event::client_request) {
            // A primary that hears nothing may be one restarted while its backup serves: it
            // takes clients only once it would have heard the backup.
            if (now >= peer_expiry_)
                go(state::active, "a client asks and no backup was heard: we become active");
            else refuse("not serving yet: waiting to hear the backup");
        }
        break;
    case state::backup:
        if (e == event::peer_active) go(state::passive, "the primary is active: we become passive");
        else if (e == event::peer_backup) fatal("both servers are configured as backup");
        else if (e == event::client_request) refuse("a backup serves nobody until it hears the primary");
        break;
    case state::active:
        if (e == event::peer_active) fatal("dual actives: both servers are active");
        break;
    case state::passive:
        if (e == event::peer_primary)
            go(state::active, "the primary restarted (it was active): we become active");
        else if (e == event::peer_backup)
            go(state::active, "the backup restarted (it was active): we become active");
        else if (e == event::peer_passive) fatal("dual passives: neither server is active");
        else if (e == event::client_request) {
            // The rule against split brain: both the peer silent and a client asking us.
            if (now >= peer_expiry_)
                go(state::active, "failover: the active is silent and a client asks us");
            else refuse("passive: the active is alive");
        }
        break;
    }
    o.to = state_;
    return o;
}

} // namespace zmesh::patterns::binary_star
