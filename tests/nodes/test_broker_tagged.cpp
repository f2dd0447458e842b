// SPDX-License-Identifier: MPL-2.0
// test_broker_tagged.cpp — the broker's side of the zmesh tagged-client extension (ZMCT01,
// docs/broker.md): the tag a client gives travels with its request and comes back in the reply,
// whoever answers (a worker, the broker itself, a rejection).
#include <zmesh/nodes/broker.hpp>

#include <zmesh/mdp/protocol.hpp>
#include <zmesh/message.hpp>

#include "support/support.hpp"

#include <doctest/doctest.h>

#include <map>
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

    void start() {
        config.mdp_endpoint = support::inproc_endpoint("broker-tagged");
        broker = std::make_unique<zmesh::nodes::broker>(ctx, config);
        endpoint = broker->endpoints().front();
        broker->start();
    }
    ~broker_fixture() {
        if (broker) broker->stop();
    }
    [[nodiscard]] zmesh::nodes::broker_stats stats() const { return broker->stats(); }
};

using support::dealer;

void send_frames(zmq::socket_t& s, zmesh::message m) {
    REQUIRE(m.send(s) == zmesh::send_status::sent);
}

void tagged_request(zmq::socket_t& c, const std::string& service, const std::string& tag,
                    const std::string& body) {
    send_frames(c, zmesh::message{"", mdp::client_tagged_v1, service, tag, body});
}

/// A plain 7/MDP worker, registered.
zmq::socket_t worker(broker_fixture& f, const std::string& service) {
    auto w = dealer(f.ctx, f.endpoint);
    const auto before = f.stats().workers;
    send_frames(w, zmesh::message{"", mdp::worker_v1, "\x01", service});
    REQUIRE(eventually([&] { return f.stats().workers == before + 1; }));
    return w;
}

/// [client address, body] of the next REQUEST a plain worker gets.
std::pair<std::string, std::string> expect_request(zmq::socket_t& w) {
    for (;;) {
        auto m = support::recv_for(w, 3000ms);
        REQUIRE(m);
        if (mdp::parse_worker_command((*m)[2]) == mdp::worker_command::heartbeat) continue;
        REQUIRE(mdp::parse_worker_command((*m)[2]) == mdp::worker_command::request);
        REQUIRE(m->size() == 6); // the worker sees a plain MDP/0.1 request: no tag
        return {zmesh::to_string((*m)[3]), zmesh::to_string((*m)[5])};
    }
}

void reply(zmq::socket_t& w, const std::string& client, const std::string& body) {
    send_frames(w, zmesh::message{"", mdp::worker_v1, "\x03", client, "", body});
}

/// A tagged reply: its tag and body frames.
struct tagged_reply {
    std::string tag;
    std::vector<std::string> body;
};

tagged_reply expect_reply(zmq::socket_t& c, const std::string& service) {
    auto m = support::recv_for(c, 3000ms);
    REQUIRE(m);
    REQUIRE(m->size() >= 5);
    CHECK((*m)[0].size() == 0);
    CHECK(zmesh::view((*m)[1]) == mdp::client_tagged_v1);
    CHECK(zmesh::view((*m)[2]) == service);
    tagged_reply r{zmesh::to_string((*m)[3]), {}};
    for (std::size_t i = 4; i < m->size(); ++i) r.body.push_back(zmesh::to_string((*m)[i]));
    return r;
}

} // namespace

TEST_SUITE("nodes.broker.tagged") {

TEST_CASE("a tagged request's reply carries its tag, and replies out of order are told apart") {
    broker_fixture f;
    f.start();
    auto w1 = worker(f, "svc");
    auto w2 = worker(f, "svc");
    auto c = dealer(f.ctx, f.endpoint);
    tagged_request(c, "svc", "tag-A", "first");
    tagged_request(c, "svc", std::string("\0\1", 2), "second");
    auto [client1, body1] = expect_request(w1);
    auto [client2, body2] = expect_request(w2);
    CHECK(body1 == "first");
    CHECK(body2 == "second");
    // The second worker answers first: the client still knows which request each reply answers.
    reply(w2, client2, "SECOND");
    reply(w1, client1, "FIRST");
    std::map<std::string, std::string> by_tag;
    for (int i = 0; i < 2; ++i) {
        auto r = expect_reply(c, "svc");
        REQUIRE(r.body.size() == 1);
        by_tag[r.tag] = r.body[0];
    }
    CHECK(by_tag == std::map<std::string, std::string>{{"tag-A", "FIRST"},
                                                        {std::string("\0\1", 2), "SECOND"}});
}

TEST_CASE("a tagged request re-queued after its worker left keeps its tag") {
    broker_fixture f;
    f.start();
    auto doomed = worker(f, "svc");
    auto c = dealer(f.ctx, f.endpoint);
    tagged_request(c, "svc", "keep-me", "work");
    (void)expect_request(doomed);
    send_frames(doomed, zmesh::message{"", mdp::worker_v1, "\x05"}); // DISCONNECT
    REQUIRE(eventually([&] { return f.stats().requeued == 1; }));
    auto rescuer = worker(f, "svc");
    auto [client, body] = expect_request(rescuer);
    CHECK(body == "work");
    reply(rescuer, client, "done");
    auto r = expect_reply(c, "svc");
    CHECK(r.tag == "keep-me");
    CHECK(r.body == std::vector<std::string>{"done"});
}

TEST_CASE("the broker's own answers and its rejections carry the tag") {
    broker_fixture f;
    f.config.max_queue = 1;
    f.start();
    auto c = dealer(f.ctx, f.endpoint);

    tagged_request(c, "mmi.service", "t1", "nobody");
    auto mmi = expect_reply(c, "mmi.service");
    CHECK(mmi.tag == "t1");
    CHECK(mmi.body == std::vector<std::string>{"404"});

    tagged_request(c, "zmesh.nothing", "t2", "x");
    auto unknown = expect_reply(c, "zmesh.nothing");
    CHECK(unknown.tag == "t2");
    CHECK(unknown.body == std::vector<std::string>{"501"});

    // No worker: the first waits in the queue, the second finds it full and is rejected.
    tagged_request(c, "absent", "t3", "waits");
    tagged_request(c, "absent", "t4", "rejected");
    auto rejected = expect_reply(c, "absent");
    CHECK(rejected.tag == "t4");
    REQUIRE(rejected.body.size() == 3);
    CHECK(rejected.body[0] == "zmesh.error");
    CHECK(rejected.body[1] == "503");
}

TEST_CASE("a tagged request with a bad tag or no body is dropped as malformed") {
    broker_fixture f;
    f.start();
    auto c = dealer(f.ctx, f.endpoint);
    SUBCASE("empty tag") { tagged_request(c, "svc", "", "body"); }
    SUBCASE("oversized tag") { tagged_request(c, "svc", std::string(mdp::max_client_tag + 1, 't'), "body"); }
    SUBCASE("no body") { send_frames(c, zmesh::message{"", mdp::client_tagged_v1, "svc", "tag"}); }
    REQUIRE(eventually([&] { return f.stats().malformed == 1; }));
    CHECK(f.stats().queued == 0);
    CHECK_FALSE(support::recv_for(c, 100ms));
    // The largest tag is accepted.
    tagged_request(c, "mmi.service", std::string(mdp::max_client_tag, 't'), "svc");
    CHECK(expect_reply(c, "mmi.service").tag == std::string(mdp::max_client_tag, 't'));
}

} // TEST_SUITE
