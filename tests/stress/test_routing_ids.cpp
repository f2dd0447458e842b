// SPDX-License-Identifier: MPL-2.0
// test_routing_ids.cpp — the broker binary against a worker that tries to steal clients' ROUTER
// routing ids (docs/broker.md, "Client handles").
//
// libzmq gives a peer that claims no routing id a generated one: a zero byte, then a 4-byte
// counter. If a generated id is already claimed by another connection, libzmq 4.3 aborts the
// whole process (duplicate pipe). A broker that shows workers its clients' routing ids, or whose
// counter starts at a known value, can therefore be killed by any peer. The attacker here tries
// every id it could derive: from the client addresses it is sent (the address itself, and the
// counter values that would follow or precede it), and blind, from the counter's start value in
// an unseeded process (glibc's first rand(), 0x6B8B4567). Honest clients must keep being served.
#include "stress.hpp"

#include <zmesh/mdp/protocol.hpp>
#include <zmesh/message.hpp>

#include <doctest/doctest.h>

#include <csignal>
#include <set>
#include <string>
#include <vector>

using namespace std::chrono_literals;
namespace mdp = zmesh::mdp;

namespace {

const std::string service = "steal";

/// A generated routing id: a zero byte, then @p counter big-endian (libzmq's router.cpp).
std::string generated_id(std::uint32_t counter) {
    std::string id(5, '\0');
    for (int i = 0; i < 4; ++i) id[static_cast<std::size_t>(4 - i)] = static_cast<char>(counter >> (8 * i));
    return id;
}

/// Every routing id an attacker could derive from a client address it was sent.
std::vector<std::string> derived_ids(const std::string& address) {
    std::vector<std::string> ids{address};
    if (address.size() == 5 && address[0] == '\0') {
        std::uint32_t counter = 0;
        for (std::size_t i = 1; i < 5; ++i)
            counter = (counter << 8) | static_cast<unsigned char>(address[i]);
        for (std::uint32_t k = 1; k <= 16; ++k) {
            ids.push_back(generated_id(counter + k));
            ids.push_back(generated_id(counter - k));
        }
    }
    // Whatever the format, neighbours of the last byte and a 5-byte prefix with a zero byte.
    for (int d : {-1, 1}) {
        std::string n = address;
        n.back() = static_cast<char>(static_cast<unsigned char>(n.back()) + d);
        ids.push_back(n);
    }
    if (address.size() >= 4) ids.push_back(std::string(1, '\0') + address.substr(0, 4));
    return ids;
}

/// An honest client (no routing id of its own) asks once; returns whether it was answered.
bool honest_request(zmq::context_t& ctx, const std::string& endpoint, const std::string& body,
                    zmq::socket_t& attacker_worker) {
    auto client = support::dealer(ctx, endpoint);
    zmesh::message req{"", mdp::client_v1, service, body};
    if (req.send(client) != zmesh::send_status::sent) return false;
    // The attacker's worker serves it, like any worker would.
    const auto deadline = std::chrono::steady_clock::now() + 3s;
    while (std::chrono::steady_clock::now() < deadline) {
        if (auto m = support::recv_for(client, 20ms)) {
            return m->size() == 4 && zmesh::view((*m)[3]) == body;
        }
        if (auto w = support::recv_for(attacker_worker, 20ms)) {
            if (w->size() >= 6 && mdp::parse_worker_command((*w)[2]) == mdp::worker_command::request) {
                zmesh::message rep{"", mdp::worker_v1};
                rep.push_back(mdp::command_frame(mdp::worker_command::reply));
                rep.push_back(std::move((*w)[3]));
                rep.push_back(std::string_view());
                rep.push_back(std::move((*w)[5]));
                REQUIRE(rep.send(attacker_worker) == zmesh::send_status::sent);
            }
        }
    }
    return false;
}

} // namespace

TEST_SUITE("stress.routing_ids") {

TEST_CASE("a worker that claims every routing id it can derive cannot crash the broker or take "
          "an honest client's replies") {
    support::temp_dir dir;
    stress::broker_process broker(dir.path() / "broker.err", {});
    zmq::context_t ctx;

    auto worker = support::dealer(ctx, broker.endpoint);
    zmesh::message ready{"", mdp::worker_v1};
    ready.push_back(mdp::command_frame(mdp::worker_command::ready));
    ready.push_back(service);
    REQUIRE(ready.send(worker) == zmesh::send_status::sent);

    // Phase 1: honest clients; the worker collects the addresses it is sent.
    std::set<std::string> addresses;
    for (int i = 0; i < 8; ++i) {
        auto client = support::dealer(ctx, broker.endpoint);
        zmesh::message req{"", mdp::client_v1, service, "probe-" + std::to_string(i)};
        REQUIRE(req.send(client) == zmesh::send_status::sent);
        auto w = support::recv_for(worker, 3s);
        while (w && mdp::parse_worker_command((*w)[2]) == mdp::worker_command::heartbeat)
            w = support::recv_for(worker, 3s);
        REQUIRE(w);
        REQUIRE(w->size() == 6);
        addresses.insert(zmesh::to_string((*w)[3]));
        zmesh::message rep{"", mdp::worker_v1};
        rep.push_back(mdp::command_frame(mdp::worker_command::reply));
        rep.push_back(std::move((*w)[3]));
        rep.push_back(std::string_view());
        rep.push_back(std::move((*w)[5]));
        REQUIRE(rep.send(worker) == zmesh::send_status::sent);
        REQUIRE(support::recv_for(client, 3s));
    }
    // Opaque handles: every client got a different address, and none looks like a generated
    // routing id (a zero byte and a counter).
    CHECK(addresses.size() == 8);
    for (const auto& a : addresses) CHECK_FALSE((a.size() == 5 && a[0] == '\0'));

    // Phase 2: claim every derived id, and blind ones from the unseeded counter start.
    std::set<std::string> claims;
    for (const auto& a : addresses)
        for (auto& id : derived_ids(a)) claims.insert(std::move(id));
    for (std::uint32_t k = 0; k < 64; ++k) claims.insert(generated_id(0x6B8B4567u + k));
    std::vector<zmq::socket_t> thieves;
    for (const auto& id : claims) {
        if (id.empty() || id.size() > 255) continue;
        thieves.push_back(support::dealer(ctx, broker.endpoint, id));
        // A request per thief makes sure its connection (and so its claim) is established.
        zmesh::message mmi{"", mdp::client_v1, std::string(mdp::mmi_service), service};
        REQUIRE(mmi.send(thieves.back()) == zmesh::send_status::sent);
    }
    for (auto& t : thieves) CHECK(support::recv_for(t, 3s));

    // Phase 3: new honest clients get generated ids; each must be served, and by the broker
    // that is still alive.
    int served = 0;
    for (int i = 0; i < 40; ++i) {
        if (!honest_request(ctx, broker.endpoint, "honest-" + std::to_string(i), worker)) break;
        ++served;
    }
    const auto exited = broker.process.wait_for(0ms);
    CHECK_MESSAGE(!exited.has_value(), "the broker died: " << stress::read_file(broker.stderr_path));
    CHECK(served == 40);
    // No thief received a reply meant for someone else: each has exactly the one MMI answer.
    for (auto& t : thieves) CHECK_FALSE(support::recv_for(t, 0ms));
}

} // TEST_SUITE
