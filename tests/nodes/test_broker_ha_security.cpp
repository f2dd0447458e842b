// SPDX-License-Identifier: MPL-2.0
// test_broker_ha_security.cpp — the Binary Star link between two brokers with CURVE
// (docs/security.md, docs/patterns/binary_star.md): with each broker trusting the other's key
// the pair hears each other and settles as active and passive; a broker that trusts another key
// for its peer hears nothing; a plain subscriber on the link hears nothing; settings that would
// leave the link open or unusable are refused.
#include "support/support.hpp"
#include "tcp_broker.hpp"

#include <zmesh/error.hpp>
#include <zmesh/security/keys.hpp>

#include <doctest/doctest.h>

#include <thread>

using namespace std::chrono_literals;
using support::tcp_broker;
namespace security = zmesh::security;
namespace bs = zmesh::patterns::binary_star;

namespace {

constexpr std::uint64_t state_active = 3, state_passive = 4; // broker_stats::ha_state

/// Both brokers' certificates, each admitted by the other.
struct pair_keys {
    security::certificate primary = security::generate("primary");
    security::certificate backup = security::generate("backup");
};

/// The two ends of a pair's link (support::ipc_endpoint makes a new path per call).
struct link_endpoints {
    std::string primary, backup;
    explicit link_endpoints(const std::string& tag)
        : primary(support::ipc_endpoint(tag + "-p")), backup(support::ipc_endpoint(tag + "-b")) {}
};

/// Configures @p b as one side of a CURVE pair on the link @p link.
void configure(tcp_broker& b, bs::role role, const security::certificate& own,
               const security::key_bytes& peer_key, const link_endpoints& link) {
    const bool primary = role == bs::role::primary;
    b.config.curve = own;
    b.config.access.keys[peer_key] = primary ? "backup" : "primary";
    b.config.heartbeat_interval = 100ms;
    b.config.ha_role = role;
    b.config.ha_bind = primary ? link.primary : link.backup;
    b.config.ha_peer = primary ? link.backup : link.primary;
    b.config.ha_peer_key = peer_key;
}

} // namespace

TEST_SUITE("nodes.broker.ha.security") {

TEST_CASE("a CURVE pair whose brokers trust each other's keys settles as active and passive") {
    pair_keys k;
    const link_endpoints link("ha-curve-ok");
    tcp_broker primary, backup;
    configure(primary, bs::role::primary, k.primary, k.backup.public_key, link);
    configure(backup, bs::role::backup, k.backup, k.primary.public_key, link);
    primary.start();
    backup.start();
    REQUIRE(support::eventually(
        [&] {
            return primary.stats().ha_peer_updates > 2 && backup.stats().ha_peer_updates > 2;
        },
        5s));
    REQUIRE(support::eventually(
        [&] {
            return primary.stats().ha_state == state_active &&
                   backup.stats().ha_state == state_passive;
        },
        5s));
    CHECK(primary.stats().connections_admitted >= 1);
    CHECK(backup.stats().connections_admitted >= 1);
}

TEST_CASE("a broker that trusts another key for its peer hears nothing on the link") {
    pair_keys k;
    const auto impostor = security::generate("impostor");
    const link_endpoints link("ha-curve-wrong");
    tcp_broker primary, backup;
    configure(primary, bs::role::primary, k.primary, k.backup.public_key, link);
    // The backup admits the primary's key, but trusts the impostor's as the primary's server key.
    configure(backup, bs::role::backup, k.backup, k.primary.public_key, link);
    backup.config.ha_peer_key = impostor.public_key;
    backup.config.access.keys[impostor.public_key] = "impostor";
    primary.start();
    backup.start();
    // The primary still hears the backup (that direction's keys are right): the link works...
    REQUIRE(support::eventually([&] { return primary.stats().ha_peer_updates > 2; }, 5s));
    // ...and the backup, whose handshake with the primary fails, hears nothing in that time.
    CHECK(backup.stats().ha_peer_updates == 0);
}

TEST_CASE("a plain subscriber on a CURVE pair's link hears nothing") {
    pair_keys k;
    const link_endpoints link("ha-curve-snoop");
    tcp_broker primary, backup;
    configure(primary, bs::role::primary, k.primary, k.backup.public_key, link);
    configure(backup, bs::role::backup, k.backup, k.primary.public_key, link);
    primary.start();
    backup.start();
    zmq::context_t ctx;
    zmq::socket_t snoop(ctx, zmq::socket_type::sub);
    snoop.set(zmq::sockopt::linger, 0);
    snoop.set(zmq::sockopt::subscribe, "");
    snoop.connect(primary.config.ha_bind);
    REQUIRE(support::eventually([&] { return backup.stats().ha_peer_updates > 5; }, 5s));
    zmq::message_t m;
    CHECK_FALSE(snoop.recv(m, zmq::recv_flags::dontwait));
    std::this_thread::sleep_for(300ms); // three more heartbeats go out meanwhile
    CHECK_FALSE(snoop.recv(m, zmq::recv_flags::dontwait));
}

TEST_CASE("a CURVE pair refuses a missing peer key, a peer key it does not admit, and a peer key without CURVE") {
    pair_keys k;
    {
        tcp_broker b;
        configure(b, bs::role::primary, k.primary, k.backup.public_key,
                  link_endpoints("ha-curve-bad1"));
        b.config.ha_peer_key.reset();
        CHECK_THROWS_WITH_AS(b.start(), doctest::Contains("needs its peer's public key"),
                             zmesh::error);
    }
    {
        tcp_broker b;
        configure(b, bs::role::primary, k.primary, k.backup.public_key,
                  link_endpoints("ha-curve-bad2"));
        b.config.access.keys.clear();
        b.config.access.keys[security::generate("someone").public_key] = "someone";
        CHECK_THROWS_WITH_AS(b.start(), doctest::Contains("must admit its peer's key"),
                             zmesh::error);
    }
    {
        tcp_broker b;
        configure(b, bs::role::primary, k.primary, k.backup.public_key,
                  link_endpoints("ha-curve-bad3"));
        b.config.curve.reset();
        b.config.access.keys.clear();
        CHECK_THROWS_WITH_AS(b.start(), doctest::Contains("ha_peer_key is for a broker with CURVE"),
                             zmesh::error);
    }
}

} // TEST_SUITE
