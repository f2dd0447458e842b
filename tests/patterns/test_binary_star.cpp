// SPDX-License-Identifier: MPL-2.0
// The Binary Star state machine, as a pure function: every (state, event) pair, the failover
// timeout, the rule against split brain and the fatal cases. No sockets, no clock.
#include <zmesh/patterns/binary_star.hpp>

#include <zmesh/error.hpp>

#include <doctest/doctest.h>

#include <chrono>
#include <string>

using namespace std::chrono_literals;
namespace bs = zmesh::patterns::binary_star;
using bs::event;
using bs::state;
using clk = bs::machine::clock;

namespace {

const clk::time_point t0{std::chrono::seconds(1000)};
constexpr auto hb = 100ms;

/// A machine of @p r brought into state @p s at t0 by the events that lead there.
bs::machine in_state(bs::role r, state s) {
    bs::machine m(r, hb, t0);
    if (s == state::active) (void)m.on_event(r == bs::role::primary ? event::peer_backup : event::peer_primary, t0);
    if (s == state::active && r == bs::role::backup) {
        (void)m.on_event(event::peer_active, t0);           // passive
        (void)m.on_event(event::peer_primary, t0);          // primary restarted: active
    }
    if (s == state::passive) (void)m.on_event(event::peer_active, t0);
    REQUIRE(m.current() == s);
    return m;
}

struct row {
    bs::role role;
    state from;
    event ev;
    state to;
    bool accepted;
    bool fatal;
};

} // namespace

TEST_CASE("binary_star: every state and peer event while the peer is fresh") {
    // Events at t0 + 1 ms: the peer was heard (or the machine started) at t0, so it counts as
    // alive for every row.
    const row rows[] = {
        {bs::role::primary, state::primary, event::peer_primary, state::primary, false, true},
        {bs::role::primary, state::primary, event::peer_backup, state::active, true, false},
        {bs::role::primary, state::primary, event::peer_active, state::passive, true, false},
        {bs::role::primary, state::primary, event::peer_passive, state::primary, true, false},
        {bs::role::primary, state::primary, event::client_request, state::primary, false, false},
        {bs::role::backup, state::backup, event::peer_primary, state::backup, true, false},
        {bs::role::backup, state::backup, event::peer_backup, state::backup, false, true},
        {bs::role::backup, state::backup, event::peer_active, state::passive, true, false},
        {bs::role::backup, state::backup, event::peer_passive, state::backup, true, false},
        {bs::role::backup, state::backup, event::client_request, state::backup, false, false},
        {bs::role::primary, state::active, event::peer_primary, state::active, true, false},
        {bs::role::primary, state::active, event::peer_backup, state::active, true, false},
        {bs::role::primary, state::active, event::peer_active, state::active, false, true},
        {bs::role::primary, state::active, event::peer_passive, state::active, true, false},
        {bs::role::primary, state::active, event::client_request, state::active, true, false},
        {bs::role::backup, state::active, event::client_request, state::active, true, false},
        {bs::role::backup, state::active, event::peer_active, state::active, false, true},
        {bs::role::primary, state::passive, event::peer_primary, state::active, true, false},
        {bs::role::backup, state::passive, event::peer_primary, state::active, true, false},
        {bs::role::primary, state::passive, event::peer_backup, state::active, true, false},
        {bs::role::backup, state::passive, event::peer_active, state::passive, true, false},
        {bs::role::backup, state::passive, event::peer_passive, state::passive, false, true},
        {bs::role::backup, state::passive, event::client_request, state::passive, false, false},
    };
    for (const auto& r : rows) {
        CAPTURE(std::string(bs::to_string(r.role)));
        CAPTURE(std::string(bs::to_string(r.from)));
        CAPTURE(std::string(bs::to_string(r.ev)));
        auto m = in_state(r.role, r.from);
        const auto o = m.on_event(r.ev, t0 + 1ms);
        CHECK(o.from == r.from);
        CHECK(o.to == r.to);
        CHECK(m.current() == r.to);
        CHECK(o.accepted == r.accepted);
        CHECK(o.fatal == r.fatal);
        CHECK(o.changed() == (r.from != r.to));
        CHECK(m.serving() == (r.to == state::active));
        if (o.changed() || !o.accepted) CHECK_FALSE(o.reason.empty());
    }
}

TEST_CASE("binary_star: the passive never takes over while the active is heard (split brain)") {
    auto m = in_state(bs::role::backup, state::passive);
    // The active keeps announcing itself every heartbeat; clients keep asking the passive.
    auto now = t0;
    for (int i = 0; i < 100; ++i) {
        now += hb;
        CHECK(m.on_event(event::peer_active, now).to == state::passive);
        const auto o = m.on_event(event::client_request, now + hb - 1ms);
        CHECK_FALSE(o.accepted);
        CHECK(o.to == state::passive);
    }
    // The active falls silent, but no client asks: still passive however long it lasts.
    CHECK_FALSE(m.peer_alive(now + 10s));
    CHECK(m.current() == state::passive);
    // A client asks one millisecond before the failover timeout: refused.
    CHECK_FALSE(m.on_event(event::client_request, now + m.failover_timeout() - 1ms).accepted);
    CHECK(m.current() == state::passive);
    // At the timeout, a client asking makes it active, and that client is served.
    const auto o = m.on_event(event::client_request, now + m.failover_timeout());
    CHECK(o.accepted);
    CHECK(o.changed());
    CHECK(o.to == state::active);
    CHECK(m.serving());
}

TEST_CASE("binary_star: the failover timeout is two heartbeats, counted from the last peer event") {
    bs::machine m(bs::role::backup, 250ms, t0);
    CHECK(m.failover_timeout() == 500ms);
    CHECK(m.heartbeat() == 250ms);
    (void)m.on_event(event::peer_active, t0 + 1s);
    CHECK(m.peer_alive(t0 + 1s + 499ms));
    CHECK_FALSE(m.peer_alive(t0 + 1s + 500ms));
    // Any peer event refreshes it, a client request does not.
    (void)m.on_event(event::client_request, t0 + 1s + 400ms);
    CHECK_FALSE(m.peer_alive(t0 + 1s + 500ms));
    CHECK_THROWS_AS(bs::machine(bs::role::primary, 0ms, t0), zmesh::error);
}

TEST_CASE("binary_star: a lone primary serves once it has waited the failover timeout") {
    bs::machine m(bs::role::primary, hb, t0);
    // Started at t0: it may be a primary restarted while its backup serves, so it waits.
    CHECK_FALSE(m.on_event(event::client_request, t0 + m.failover_timeout() - 1ms).accepted);
    CHECK(m.current() == state::primary);
    const auto o = m.on_event(event::client_request, t0 + m.failover_timeout());
    CHECK(o.accepted);
    CHECK(o.to == state::active);
}

TEST_CASE("binary_star: a lone backup never serves") {
    bs::machine m(bs::role::backup, hb, t0);
    CHECK_FALSE(m.on_event(event::client_request, t0 + 1h).accepted);
    CHECK(m.current() == state::backup);
}

TEST_CASE("binary_star: the full cycle primary fails, backup takes over, primary returns passive") {
    const auto fo = 2 * hb;
    bs::machine p(bs::role::primary, hb, t0);
    bs::machine b(bs::role::backup, hb, t0);
    // Both start and hear each other.
    CHECK(p.on_event(bs::peer_event(b.current()), t0).to == state::active);
    CHECK(b.on_event(bs::peer_event(p.current()), t0).to == state::passive);
    // The primary dies at t0; a client fails over to the backup after the timeout.
    CHECK_FALSE(b.on_event(event::client_request, t0 + fo - 1ms).accepted);
    CHECK(b.on_event(event::client_request, t0 + fo).to == state::active);
    // The primary restarts and hears the backup active: it becomes passive.
    bs::machine p2(bs::role::primary, hb, t0 + 1s);
    CHECK(p2.on_event(bs::peer_event(b.current()), t0 + 1s).to == state::passive);
    CHECK(b.on_event(bs::peer_event(p2.current()), t0 + 1s).to == state::active);
    // The backup dies; the primary takes over at the next client request after the timeout.
    CHECK(p2.on_event(event::client_request, t0 + 1s + fo).to == state::active);
}

TEST_CASE("binary_star: names and parsing") {
    CHECK(bs::to_string(state::passive) == "passive");
    CHECK(bs::to_string(event::client_request) == "client_request");
    CHECK(bs::parse_role("primary") == bs::role::primary);
    CHECK(bs::parse_role("backup") == bs::role::backup);
    CHECK_FALSE(bs::parse_role("active").has_value());
    CHECK(bs::peer_event(state::active) == event::peer_active);
    CHECK(bs::peer_event(state::primary) == event::peer_primary);
}

TEST_CASE("binary_star: the state byte of an HA link round-trips, and other bytes are refused") {
    for (const auto s : {state::primary, state::backup, state::active, state::passive})
        CHECK(bs::byte_state(bs::state_byte(s)) == s);
    CHECK(bs::state_byte(state::primary) == 1);
    CHECK(bs::state_byte(state::passive) == 4);
    CHECK_FALSE(bs::byte_state(0).has_value());
    CHECK_FALSE(bs::byte_state(5).has_value());
    CHECK_FALSE(bs::byte_state(255).has_value());
}
