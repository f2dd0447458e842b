// SPDX-License-Identifier: MPL-2.0
// test_broker_credit.cpp — the broker's side of the zmesh worker-with-credit extension (ZMWC01,
// docs/broker.md), driven over inproc:// by hand-written workers, frame by frame.
#include <zmesh/nodes/broker.hpp>

#include <zmesh/mdp/protocol.hpp>
#include <zmesh/message.hpp>

#include "support/support.hpp"

#include <doctest/doctest.h>

#include <map>
#include <set>
#include <string>
#include <vector>

using namespace std::chrono_literals;
namespace mdp = zmesh::mdp;
using support::eventually;

namespace {

struct broker_fixture {
    zmq::context_t ctx;
    zmesh::nodes::broker_config config;
    std::unique_ptr<zmesh::nodes::broker> broker;
    std::string endpoint;

    broker_fixture() {
        config.mdp_endpoint = support::inproc_endpoint("broker-credit");
        broker = std::make_unique<zmesh::nodes::broker>(ctx, config);
        endpoint = broker->endpoints().front();
        broker->start();
    }
    ~broker_fixture() { broker->stop(); }
    [[nodiscard]] zmesh::nodes::broker_stats stats() const { return broker->stats(); }
};

using support::dealer;

void send_frames(zmq::socket_t& s, zmesh::message m) {
    REQUIRE(m.send(s) == zmesh::send_status::sent);
}

zmesh::message credit_command(mdp::worker_command c) {
    zmesh::message m{"", mdp::worker_credit_v1};
    m.push_back(mdp::command_frame(c));
    return m;
}

void ready(zmq::socket_t& w, const std::string& service, const std::string& credit) {
    auto m = credit_command(mdp::worker_command::ready);
    m.push_back(service);
    m.push_back(credit);
    send_frames(w, std::move(m));
}

/// A REQUEST as a credit worker sees it.
struct held {
    std::string tag;
    std::string client;
    std::string body;
};

/// The next ZMWC01 command other than HEARTBEAT, or nullopt after @p timeout.
std::optional<zmesh::message> recv_command(zmq::socket_t& w, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
        auto m = support::recv_for(w, 20ms);
        if (!m) continue;
        REQUIRE(m->size() >= 3);
        CHECK((*m)[0].size() == 0);
        CHECK(zmesh::view((*m)[1]) == mdp::worker_credit_v1);
        if (mdp::parse_worker_command((*m)[2]) == mdp::worker_command::heartbeat) continue;
        return m;
    }
    return std::nullopt;
}

held expect_request(zmq::socket_t& w) {
    auto m = recv_command(w, 3000ms);
    REQUIRE(m);
    REQUIRE(mdp::parse_worker_command((*m)[2]) == mdp::worker_command::request);
    REQUIRE(m->size() == 7);
    CHECK((*m)[3].size() == mdp::request_tag_size);
    CHECK((*m)[5].size() == 0);
    return {zmesh::to_string((*m)[3]), zmesh::to_string((*m)[4]), zmesh::to_string((*m)[6])};
}

void expect_disconnect(zmq::socket_t& w) {
    auto m = recv_command(w, 3000ms);
    REQUIRE(m);
    CHECK(mdp::parse_worker_command((*m)[2]) == mdp::worker_command::disconnect);
}

void reply(zmq::socket_t& w, const std::string& tag, const std::string& client,
           const std::string& body) {
    auto m = credit_command(mdp::worker_command::reply);
    m.push_back(tag);
    m.push_back(client);
    m.push_back(std::string_view());
    m.push_back(body);
    send_frames(w, std::move(m));
}

void client_request(zmq::socket_t& c, const std::string& service, const std::string& body) {
    send_frames(c, zmesh::message{"", mdp::client_v1, service, body});
}

std::string expect_reply(zmq::socket_t& c, const std::string& service) {
    auto m = support::recv_for(c, 3000ms);
    REQUIRE(m);
    REQUIRE(m->size() == 4);
    CHECK(zmesh::view((*m)[1]) == mdp::client_v1);
    CHECK(zmesh::view((*m)[2]) == service);
    return zmesh::to_string((*m)[3]);
}

/// Registers a credit worker and waits until the broker has it.
zmq::socket_t credit_worker(broker_fixture& f, const std::string& service, int credit) {
    auto w = dealer(f.ctx, f.endpoint);
    const auto before = f.stats().workers;
    ready(w, service, std::to_string(credit));
    REQUIRE(eventually([&] { return f.stats().workers == before + 1; }));
    return w;
}

} // namespace

TEST_SUITE("nodes.broker.credit") {

TEST_CASE("a worker with credit holds up to its credit in requests and each reply returns one") {
    broker_fixture f;
    auto w = credit_worker(f, "svc", 3);
    auto c = dealer(f.ctx, f.endpoint);
    for (int i = 0; i < 5; ++i) client_request(c, "svc", "r" + std::to_string(i));

    std::vector<held> got;
    for (int i = 0; i < 3; ++i) got.push_back(expect_request(w));
    CHECK(got[0].body == "r0");
    CHECK(got[1].body == "r1");
    CHECK(got[2].body == "r2");
    // Three distinct tags, and no fourth request while all three are held.
    CHECK(std::set<std::string>{got[0].tag, got[1].tag, got[2].tag}.size() == 3);
    CHECK_FALSE(recv_command(w, 200ms));
    CHECK(f.stats().queued == 2);

    // Answering the middle one first frees exactly one unit: r3 arrives, r4 still waits.
    reply(w, got[1].tag, got[1].client, "R1");
    CHECK(expect_reply(c, "svc") == "R1");
    got.push_back(expect_request(w));
    CHECK(got[3].body == "r3");
    CHECK_FALSE(recv_command(w, 100ms));
    CHECK(f.stats().queued == 1);

    for (std::size_t i : {0u, 2u, 3u}) reply(w, got[i].tag, got[i].client, "R" + got[i].body.substr(1));
    got.push_back(expect_request(w));
    CHECK(got[4].body == "r4");
    reply(w, got[4].tag, got[4].client, "R4");
    std::multiset<std::string> replies;
    for (int i = 0; i < 4; ++i) replies.insert(expect_reply(c, "svc"));
    CHECK(replies == std::multiset<std::string>{"R0", "R2", "R3", "R4"});
    // The broker counts a send after it returns, which may be after the peer has the message.
    CHECK(eventually([&] { return f.stats().dispatched == 5 && f.stats().replies == 5; }));
    CHECK(f.stats().malformed == 0);
}

TEST_CASE("replies from a worker with credit reach their own clients in any order") {
    broker_fixture f;
    auto w = credit_worker(f, "svc", 8);
    std::vector<zmq::socket_t> clients;
    for (int i = 0; i < 4; ++i) {
        clients.push_back(dealer(f.ctx, f.endpoint));
        client_request(clients.back(), "svc", "from-" + std::to_string(i));
    }
    std::vector<held> got;
    for (int i = 0; i < 4; ++i) got.push_back(expect_request(w));
    for (auto it = got.rbegin(); it != got.rend(); ++it) reply(w, it->tag, it->client, it->body + "!");
    std::set<std::string> bodies;
    for (auto& g : got) bodies.insert(g.body);
    CHECK(bodies.size() == 4);
    for (int i = 0; i < 4; ++i)
        CHECK(expect_reply(clients[static_cast<std::size_t>(i)], "svc") == "from-" + std::to_string(i) + "!");
}

TEST_CASE("requests spread over workers with credit instead of filling the first") {
    broker_fixture f;
    auto w1 = credit_worker(f, "svc", 4);
    auto w2 = credit_worker(f, "svc", 4);
    auto c = dealer(f.ctx, f.endpoint);
    for (int i = 0; i < 4; ++i) client_request(c, "svc", std::to_string(i));
    // Round robin among workers with credit left: two each, in turn.
    CHECK(expect_request(w1).body == "0");
    CHECK(expect_request(w2).body == "1");
    CHECK(expect_request(w1).body == "2");
    CHECK(expect_request(w2).body == "3");
}

TEST_CASE("every request a worker with credit held goes back to the head of the queue when it leaves") {
    broker_fixture f;
    auto w = credit_worker(f, "svc", 4);
    auto c = dealer(f.ctx, f.endpoint);
    for (int i = 0; i < 6; ++i) client_request(c, "svc", "r" + std::to_string(i));
    std::vector<held> got;
    for (int i = 0; i < 4; ++i) got.push_back(expect_request(w));
    REQUIRE(eventually([&] { return f.stats().queued == 2; }));

    SUBCASE("by DISCONNECT") { send_frames(w, credit_command(mdp::worker_command::disconnect)); }
    SUBCASE("by breaking the protocol (a REPLY with a forged tag)") {
        std::string forged = got[0].tag;
        forged[4] = static_cast<char>(forged[4] ^ 0x5a); // same slot, another generation
        reply(w, forged, got[0].client, "forged");
        expect_disconnect(w);
        CHECK(f.stats().malformed == 1);
    }
    REQUIRE(eventually([&] { return f.stats().queued == 6; }));
    CHECK(eventually([&] { return f.stats().requeued == 4; }));

    // A plain 7/MDP worker takes them over in their original order.
    auto plain = dealer(f.ctx, f.endpoint);
    send_frames(plain, zmesh::message{"", mdp::worker_v1, "\x01", "svc"});
    for (int i = 0; i < 6; ++i) {
        auto m = support::recv_for(plain, 3000ms);
        while (m && mdp::parse_worker_command((*m)[2]) == mdp::worker_command::heartbeat)
            m = support::recv_for(plain, 3000ms);
        REQUIRE(m);
        REQUIRE(m->size() == 6); // MDPW01: no tag frame
        CHECK(zmesh::view((*m)[1]) == mdp::worker_v1);
        CHECK(zmesh::view((*m)[5]) == "r" + std::to_string(i));
        send_frames(plain, zmesh::message{"", mdp::worker_v1, "\x03", zmesh::view((*m)[3]), "", "ok"});
    }
    for (int i = 0; i < 6; ++i) CHECK(expect_reply(c, "svc") == "ok");
}

TEST_CASE("a REPLY whose tag names no held request gets the worker DISCONNECT") {
    broker_fixture f;
    auto w = credit_worker(f, "svc", 2);
    auto c = dealer(f.ctx, f.endpoint);
    client_request(c, "svc", "x");
    auto h = expect_request(w);
    std::string bad_tag;
    SUBCASE("slot out of range") {
        bad_tag = h.tag;
        bad_tag[0] = 7;
    }
    SUBCASE("a free slot") {
        bad_tag = h.tag;
        bad_tag[0] = static_cast<char>(bad_tag[0] == 0 ? 1 : 0);
    }
    SUBCASE("tag of 7 bytes") { bad_tag = h.tag.substr(0, 7); }
    SUBCASE("no tag frame at all") {
        auto m = credit_command(mdp::worker_command::reply);
        m.push_back(h.client);
        m.push_back(std::string_view());
        m.push_back("body");
        send_frames(w, std::move(m));
    }
    SUBCASE("another client's address") {
        bad_tag = h.tag;
        h.client = "someone-else";
    }
    if (!bad_tag.empty()) reply(w, bad_tag, h.client, "bad");
    expect_disconnect(w);
    CHECK(eventually([&] { return f.stats().workers == 0; }));
    CHECK(f.stats().malformed == 1);
    CHECK(eventually([&] { return f.stats().requeued == 1; }));
    CHECK_FALSE(support::recv_for(c, 100ms)); // the client got no wrong reply
}

TEST_CASE("READY with a missing or out-of-range credit is refused") {
    broker_fixture f;
    auto w = dealer(f.ctx, f.endpoint);
    SUBCASE("zero") { ready(w, "svc", "0"); }
    SUBCASE("above the maximum") { ready(w, "svc", std::to_string(mdp::max_worker_credit + 1)); }
    SUBCASE("leading zero") { ready(w, "svc", "08"); }
    SUBCASE("not a number") { ready(w, "svc", "lots"); }
    SUBCASE("missing") {
        auto m = credit_command(mdp::worker_command::ready);
        m.push_back("svc");
        send_frames(w, std::move(m));
    }
    expect_disconnect(w);
    CHECK(f.stats().malformed == 1);
    CHECK(f.stats().workers == 0);
}

TEST_CASE("a worker that switches protocol header after READY is disconnected") {
    broker_fixture f;
    auto w = credit_worker(f, "svc", 2);
    send_frames(w, zmesh::message{"", mdp::worker_v1, "\x04"}); // HEARTBEAT, but as 7/MDP
    expect_disconnect(w);
    CHECK(eventually([&] { return f.stats().workers == 0; }));
    CHECK(f.stats().malformed == 1);
}

TEST_CASE("the maximum credit is accepted and filled") {
    broker_fixture f;
    auto w = credit_worker(f, "svc", static_cast<int>(mdp::max_worker_credit));
    auto c = dealer(f.ctx, f.endpoint);
    const int n = static_cast<int>(mdp::max_worker_credit);
    for (int i = 0; i < n + 1; ++i) client_request(c, "svc", std::to_string(i));
    std::set<std::string> tags;
    for (int i = 0; i < n; ++i) tags.insert(expect_request(w).tag);
    CHECK(tags.size() == mdp::max_worker_credit);
    CHECK_FALSE(recv_command(w, 100ms));
    CHECK(f.stats().queued == 1);
}

} // TEST_SUITE
