// SPDX-License-Identifier: MPL-2.0
// test_broker.cpp — the broker's Majordomo state machine, driven in-process over inproc:// by
// hand-written MDP peers, frame by frame.
#include <zmesh/nodes/broker.hpp>

#include <zmesh/error.hpp>
#include <zmesh/mdp/protocol.hpp>
#include <zmesh/message.hpp>

#include "support/support.hpp"

#include <doctest/doctest.h>
#include <msgpack.hpp>

#include <string>
#include <thread>

using namespace std::chrono_literals;
namespace mdp = zmesh::mdp;

namespace {

struct broker_fixture {
    zmq::context_t ctx;
    zmesh::nodes::broker_config config;
    std::unique_ptr<zmesh::nodes::broker> broker;
    std::string endpoint;

    explicit broker_fixture(std::chrono::milliseconds heartbeat = 2500ms) {
        config.mdp_endpoint = support::inproc_endpoint("broker");
        config.heartbeat_interval = heartbeat;
    }
    void start() {
        broker = std::make_unique<zmesh::nodes::broker>(ctx, config);
        endpoint = broker->endpoints().front();
        broker->start();
    }
    ~broker_fixture() {
        if (broker) broker->stop();
    }
};

using support::dealer;

void send_frames(zmq::socket_t& s, zmesh::message m) {
    REQUIRE(m.send(s) == zmesh::send_status::sent);
}

void ready(zmq::socket_t& w, const std::string& service) {
    zmesh::message m{"", mdp::worker_v1};
    m.push_back(mdp::command_frame(mdp::worker_command::ready));
    m.push_back(service);
    send_frames(w, std::move(m));
}

void client_request(zmq::socket_t& c, const std::string& service, const std::string& body) {
    send_frames(c, zmesh::message{"", mdp::client_v1, service, body});
}

/// Receives worker commands until one that is not HEARTBEAT (or any, if @p skip_heartbeats is false).
std::optional<zmesh::message> recv_command(zmq::socket_t& w, bool skip_heartbeats = true,
                                           std::chrono::milliseconds timeout = 3000ms) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        auto m = support::recv_for(w, std::max(left, 1ms));
        if (!m) return std::nullopt;
        REQUIRE(m->size() >= 3);
        CHECK((*m)[0].size() == 0);
        CHECK(zmesh::view((*m)[1]) == mdp::worker_v1);
        if (skip_heartbeats && mdp::parse_worker_command((*m)[2]) == mdp::worker_command::heartbeat)
            continue;
        return m;
    }
    return std::nullopt;
}

mdp::worker_command command_of(const zmesh::message& m) {
    auto c = mdp::parse_worker_command(m[2]);
    REQUIRE(c);
    return *c;
}

/// Reads a REQUEST and returns [client address, body...].
std::pair<std::string, std::string> expect_request(zmq::socket_t& w) {
    auto m = recv_command(w);
    REQUIRE(m);
    REQUIRE(command_of(*m) == mdp::worker_command::request);
    REQUIRE(m->size() == 6);
    CHECK((*m)[4].size() == 0);
    return {zmesh::to_string((*m)[3]), zmesh::to_string((*m)[5])};
}

void reply(zmq::socket_t& w, const std::string& client, const std::string& body) {
    zmesh::message m{"", mdp::worker_v1};
    m.push_back(mdp::command_frame(mdp::worker_command::reply));
    m.push_back(client);
    m.push_back(std::string_view());
    m.push_back(body);
    send_frames(w, std::move(m));
}

/// Reads a client reply; returns its body frames as strings.
std::vector<std::string> expect_reply(zmq::socket_t& c, const std::string& service,
                                      std::chrono::milliseconds timeout = 3000ms) {
    auto m = support::recv_for(c, timeout);
    REQUIRE(m);
    REQUIRE(m->size() >= 3);
    CHECK((*m)[0].size() == 0);
    CHECK(zmesh::view((*m)[1]) == mdp::client_v1);
    CHECK(zmesh::view((*m)[2]) == service);
    std::vector<std::string> body;
    for (std::size_t i = 3; i < m->size(); ++i) body.push_back(zmesh::to_string((*m)[i]));
    return body;
}

using support::eventually;

} // namespace

TEST_SUITE("nodes.broker") {

TEST_CASE("a request reaches a worker of its service and the reply reaches the client") {
    broker_fixture f;
    f.start();
    auto w = dealer(f.ctx, f.endpoint);
    ready(w, "echo");
    auto c = dealer(f.ctx, f.endpoint);
    client_request(c, "echo", "hello");
    auto [client, body] = expect_request(w);
    CHECK(body == "hello");
    reply(w, client, "HELLO");
    CHECK(expect_reply(c, "echo") == std::vector<std::string>{"HELLO"});
    REQUIRE(eventually([&] { return f.broker->stats().replies == 1; }));
    auto s = f.broker->stats();
    CHECK(s.requests == 1);
    CHECK(s.replies == 1);
    CHECK(s.dispatched == 1);
    CHECK(s.workers == 1);
}

TEST_CASE("a request for a service without workers waits and is served when one registers") {
    broker_fixture f;
    f.start();
    auto c = dealer(f.ctx, f.endpoint);
    client_request(c, "late", "queued body");
    REQUIRE(eventually([&] { return f.broker->stats().queued == 1; }));
    auto w = dealer(f.ctx, f.endpoint);
    ready(w, "late");
    auto [client, body] = expect_request(w);
    CHECK(body == "queued body");
    reply(w, client, "done");
    CHECK(expect_reply(c, "late") == std::vector<std::string>{"done"});
}

TEST_CASE("multi-frame bodies pass through in order both ways") {
    broker_fixture f;
    f.start();
    auto w = dealer(f.ctx, f.endpoint);
    ready(w, "multi");
    auto c = dealer(f.ctx, f.endpoint);
    send_frames(c, zmesh::message{"", mdp::client_v1, "multi", "a", "", std::string(1000, 'z')});
    auto m = recv_command(w);
    REQUIRE(m);
    REQUIRE(m->size() == 8);
    CHECK(zmesh::view((*m)[5]) == "a");
    CHECK((*m)[6].size() == 0);
    CHECK((*m)[7].size() == 1000);
    zmesh::message r{"", mdp::worker_v1};
    r.push_back(mdp::command_frame(mdp::worker_command::reply));
    r.push_back(zmesh::to_string((*m)[3]));
    r.push_back(std::string_view());
    r.push_back(std::string_view("x"));
    r.push_back(std::string_view("y"));
    send_frames(w, std::move(r));
    CHECK(expect_reply(c, "multi") == std::vector<std::string>{"x", "y"});
}

TEST_CASE("a reply with no body frames reaches the client with one empty body frame, as 7/MDP "
          "requires, and is not treated as a dead worker") {
    broker_fixture f;
    f.start();
    auto w = dealer(f.ctx, f.endpoint);
    ready(w, "quiet");
    auto c = dealer(f.ctx, f.endpoint);
    client_request(c, "quiet", "anything");
    auto [client, body] = expect_request(w);
    zmesh::message r{"", mdp::worker_v1};
    r.push_back(mdp::command_frame(mdp::worker_command::reply));
    r.push_back(client);
    r.push_back(std::string_view());
    send_frames(w, std::move(r));
    // 7/MDP: a client REPLY has "4 or more frames"; the zguide's C client asserts on fewer.
    CHECK(expect_reply(c, "quiet") == std::vector<std::string>{""});
    CHECK(f.broker->stats().requeued == 0);
    CHECK(f.broker->stats().malformed == 0);
}

TEST_CASE("idle workers are used least recently used first") {
    broker_fixture f;
    f.start();
    auto w1 = dealer(f.ctx, f.endpoint, "w1");
    ready(w1, "lru");
    REQUIRE(eventually([&] { return f.broker->stats().workers == 1; }));
    auto w2 = dealer(f.ctx, f.endpoint, "w2");
    ready(w2, "lru");
    REQUIRE(eventually([&] { return f.broker->stats().workers == 2; }));
    auto c = dealer(f.ctx, f.endpoint);
    client_request(c, "lru", "1");
    auto [c1, b1] = expect_request(w1);
    client_request(c, "lru", "2");
    auto [c2, b2] = expect_request(w2);
    CHECK(b1 == "1");
    CHECK(b2 == "2");
    reply(w2, c2, "r2");
    CHECK(expect_reply(c, "lru") == std::vector<std::string>{"r2"});
    reply(w1, c1, "r1");
    CHECK(expect_reply(c, "lru") == std::vector<std::string>{"r1"});
    // w2 became idle first, so it gets the next request.
    client_request(c, "lru", "3");
    auto [c3, b3] = expect_request(w2);
    CHECK(b3 == "3");
}

TEST_CASE("a request held by a worker that expires is re-queued and answered by another worker") {
    broker_fixture f(50ms);
    f.start();
    auto doomed = dealer(f.ctx, f.endpoint, "doomed");
    ready(doomed, "work");
    auto c = dealer(f.ctx, f.endpoint);
    client_request(c, "work", "precious");
    auto [client, body] = expect_request(doomed);
    CHECK(body == "precious");
    // The worker goes silent while holding the request; once it has expired, a second worker
    // registers (this raw peer does not heartbeat, so it must not wait through an expiry itself).
    REQUIRE(eventually([&] { return f.broker->stats().workers_expired == 1; }));
    // The counter moves just before the request is re-queued: read the queue once it has.
    CHECK(eventually([&] { return f.broker->stats().queued == 1; }));
    auto rescuer = dealer(f.ctx, f.endpoint, "rescuer");
    ready(rescuer, "work");
    auto [client2, body2] = expect_request(rescuer);
    CHECK(body2 == "precious");
    CHECK(client2 == client);
    reply(rescuer, client2, "saved");
    CHECK(expect_reply(c, "work") == std::vector<std::string>{"saved"});
    auto s = f.broker->stats();
    CHECK(s.requeued == 1);
    CHECK(s.workers_expired == 1);
    // The expired worker is told so (7/MDP: DISCONNECT to an expired peer).
    bool disconnected = false;
    while (auto m = recv_command(doomed, true, 500ms))
        if (command_of(*m) == mdp::worker_command::disconnect) disconnected = true;
    CHECK(disconnected);
}

TEST_CASE("a worker that disconnects while holding a request gives it back at the head of the queue") {
    broker_fixture f;
    f.start();
    auto w = dealer(f.ctx, f.endpoint);
    ready(w, "svc");
    auto c = dealer(f.ctx, f.endpoint);
    client_request(c, "svc", "first");
    auto [client, body] = expect_request(w);
    client_request(c, "svc", "second");
    REQUIRE(eventually([&] { return f.broker->stats().queued == 1; }));
    send_frames(w, zmesh::message{"", mdp::worker_v1, "\x05"});
    REQUIRE(eventually([&] { return f.broker->stats().queued == 2; }));
    auto w2 = dealer(f.ctx, f.endpoint);
    ready(w2, "svc");
    auto [c1, b1] = expect_request(w2);
    CHECK(b1 == "first");
    reply(w2, c1, "r1");
    auto [c2, b2] = expect_request(w2);
    CHECK(b2 == "second");
    CHECK(f.broker->stats().requeued == 1);
}

TEST_CASE("busy and idle workers both receive heartbeats") {
    broker_fixture f(50ms);
    f.start();
    auto idle = dealer(f.ctx, f.endpoint);
    ready(idle, "hb");
    auto m = recv_command(idle, false, 1000ms);
    REQUIRE(m);
    CHECK(command_of(*m) == mdp::worker_command::heartbeat);
}

TEST_CASE("a worker that breaks the protocol gets DISCONNECT and is forgotten") {
    broker_fixture f;
    f.start();
    SUBCASE("second READY") {
        auto w = dealer(f.ctx, f.endpoint);
        ready(w, "svc");
        ready(w, "svc");
        auto m = recv_command(w);
        REQUIRE(m);
        CHECK(command_of(*m) == mdp::worker_command::disconnect);
    }
    SUBCASE("REPLY without a request") {
        auto w = dealer(f.ctx, f.endpoint);
        ready(w, "svc");
        reply(w, "nobody", "x");
        auto m = recv_command(w);
        REQUIRE(m);
        CHECK(command_of(*m) == mdp::worker_command::disconnect);
    }
    SUBCASE("READY for a reserved mmi service") {
        auto w = dealer(f.ctx, f.endpoint);
        ready(w, "mmi.service");
        auto m = recv_command(w);
        REQUIRE(m);
        CHECK(command_of(*m) == mdp::worker_command::disconnect);
    }
    SUBCASE("READY for a service the broker answers itself") {
        auto w = dealer(f.ctx, f.endpoint);
        ready(w, "zmesh.stats");
        auto m = recv_command(w);
        REQUIRE(m);
        CHECK(command_of(*m) == mdp::worker_command::disconnect);
    }
    SUBCASE("HEARTBEAT from a worker the broker does not know") {
        auto w = dealer(f.ctx, f.endpoint);
        send_frames(w, zmesh::message{"", mdp::worker_v1, "\x04"});
        auto m = recv_command(w);
        REQUIRE(m);
        CHECK(command_of(*m) == mdp::worker_command::disconnect);
    }
    CHECK(eventually([&] { return f.broker->stats().workers == 0; }));
}

TEST_CASE("mmi.service answers 200 or 404 and other mmi and zmesh services 501") {
    broker_fixture f;
    f.start();
    auto w = dealer(f.ctx, f.endpoint);
    ready(w, "present");
    REQUIRE(eventually([&] { return f.broker->stats().workers == 1; }));
    auto c = dealer(f.ctx, f.endpoint);
    client_request(c, "mmi.service", "present");
    CHECK(expect_reply(c, "mmi.service") == std::vector<std::string>{"200"});
    client_request(c, "mmi.service", "absent");
    CHECK(expect_reply(c, "mmi.service") == std::vector<std::string>{"404"});
    client_request(c, "mmi.unknown", "x");
    CHECK(expect_reply(c, "mmi.unknown") == std::vector<std::string>{"501"});
    client_request(c, "zmesh.unknown", "x");
    CHECK(expect_reply(c, "zmesh.unknown") == std::vector<std::string>{"501"});
}

TEST_CASE("zmesh.services lists every service with workers, queue depth and in-flight count") {
    broker_fixture f;
    f.start();
    auto w = dealer(f.ctx, f.endpoint);
    ready(w, "busy");
    auto c = dealer(f.ctx, f.endpoint);
    client_request(c, "busy", "1");
    (void)expect_request(w);
    client_request(c, "busy", "2");
    client_request(c, "nobody-home", "3");
    REQUIRE(eventually([&] { return f.broker->stats().queued == 2; }));
    client_request(c, "zmesh.services", "");
    auto body = expect_reply(c, "zmesh.services");
    REQUIRE(body.size() == 1);
    auto oh = msgpack::unpack(body[0].data(), body[0].size());
    auto services = oh.get().as<std::map<std::string, std::map<std::string, std::uint64_t>>>();
    REQUIRE(services.count("busy") == 1);
    CHECK(services["busy"]["workers"] == 1);
    CHECK(services["busy"]["idle"] == 0);
    CHECK(services["busy"]["in_flight"] == 1);
    CHECK(services["busy"]["queued"] == 1);
    REQUIRE(services.count("nobody-home") == 1);
    CHECK(services["nobody-home"]["workers"] == 0);
    CHECK(services["nobody-home"]["queued"] == 1);
}

TEST_CASE("a full service queue rejects with a clear error reply instead of dropping") {
    broker_fixture f;
    f.config.max_queue = 2;
    f.start();
    auto c = dealer(f.ctx, f.endpoint);
    for (int i = 0; i < 3; ++i) client_request(c, "slow", std::to_string(i));
    auto body = expect_reply(c, "slow");
    REQUIRE(body.size() == 3);
    CHECK(body[0] == "zmesh.error");
    CHECK(body[1] == "503");
    CHECK(body[2].find("queue full") != std::string::npos);
    CHECK(f.broker->stats().rejected == 1);
    CHECK(f.broker->stats().queued == 2);
}

TEST_CASE("a request no worker takes within the request ttl is rejected with 504") {
    broker_fixture f(20ms);
    f.config.request_ttl = 100ms;
    f.start();
    auto c = dealer(f.ctx, f.endpoint);
    client_request(c, "absent", "stale");
    auto body = expect_reply(c, "absent");
    REQUIRE(body.size() == 3);
    CHECK(body[0] == "zmesh.error");
    CHECK(body[1] == "504");
    CHECK(f.broker->stats().expired == 1);
    CHECK(f.broker->stats().queued == 0);
    CHECK(f.broker->stats().queued_bytes == 0);
    // With its queue empty and no worker, the service is eventually forgotten too.
}

TEST_CASE("the memory all requests hold together is bounded") {
    broker_fixture f;
    // Two requests of 3000 bytes fit with their records (~3.9 kB each) and the client's entry;
    // a third does not, a small one does, and so does the 503 that refuses the third.
    f.config.max_memory = 9000;
    f.config.max_client_memory = 9000;
    f.start();
    auto c = dealer(f.ctx, f.endpoint);
    client_request(c, "a", std::string(3000, 'x'));
    REQUIRE(eventually([&] { return f.broker->stats().queued_bytes == 3000; }));
    const auto held = f.broker->stats().memory;
    CHECK(held > 3000); // the body, its frame slot, the request record, the client's entry
    CHECK(held < 4200);
    client_request(c, "b", std::string(3000, 'y'));
    REQUIRE(eventually([&] { return f.broker->stats().queued_bytes == 6000; }));
    client_request(c, "b", std::string(3000, 'z')); // past 11000 with the others
    auto body = expect_reply(c, "b");
    REQUIRE(body.size() == 3);
    CHECK(body[1] == "503");
    CHECK(body[2].find("memory") != std::string::npos);
    client_request(c, "b", std::string(100, 'z')); // fits
    REQUIRE(eventually([&] { return f.broker->stats().queued_bytes == 6100; }));
}

TEST_CASE("requests inventing new services are rejected once the service table is full") {
    broker_fixture f;
    f.config.max_services = 2;
    f.start();
    auto c = dealer(f.ctx, f.endpoint);
    client_request(c, "one", "x");
    client_request(c, "two", "x");
    client_request(c, "three", "x");
    auto body = expect_reply(c, "three");
    REQUIRE(body.size() == 3);
    CHECK(body[1] == "503");
    CHECK(f.broker->stats().services == 2);
    // Known services still queue.
    client_request(c, "one", "y");
    REQUIRE(eventually([&] { return f.broker->stats().queued == 3; }));
}

TEST_CASE("a request whose workers keep dying is rejected after the attempt limit") {
    broker_fixture f;
    f.config.max_attempts = 2;
    f.start();
    auto c = dealer(f.ctx, f.endpoint);
    client_request(c, "poison", "boom");
    for (int i = 0; i < 2; ++i) {
        auto w = dealer(f.ctx, f.endpoint);
        ready(w, "poison");
        (void)expect_request(w);
        send_frames(w, zmesh::message{"", mdp::worker_v1, "\x05"}); // dies holding it
    }
    auto body = expect_reply(c, "poison");
    REQUIRE(body.size() == 3);
    CHECK(body[0] == "zmesh.error");
    CHECK(body[1] == "500");
}

TEST_CASE("malformed messages are counted and dropped and the broker keeps serving") {
    broker_fixture f;
    f.start();
    auto bad = dealer(f.ctx, f.endpoint);
    send_frames(bad, zmesh::message{"no-delimiter"});
    send_frames(bad, zmesh::message{"", "MDPX99", "svc", "body"});
    send_frames(bad, zmesh::message{"", mdp::client_v1});
    send_frames(bad, zmesh::message{"", mdp::client_v1, "svc"});    // no body
    send_frames(bad, zmesh::message{"", mdp::client_v1, "", "x"});  // empty service
    send_frames(bad, zmesh::message{"", mdp::client_v1, std::string(300, 's'), "x"});
    send_frames(bad, zmesh::message{"", mdp::worker_v1});
    send_frames(bad, zmesh::message{"", mdp::worker_v1, "\x09"});   // unknown command
    send_frames(bad, zmesh::message{"", mdp::worker_v1, "\x01"});   // READY without service
    send_frames(bad, zmesh::message{"", mdp::worker_v1, "\x01\x01", "svc"});
    REQUIRE(eventually([&] { return f.broker->stats().malformed == 10; }));
    // A request for an invalid service name is answered (400), so the client knows at once.
    for (int i = 0; i < 2; ++i) {
        auto body = expect_reply(bad, "");
        REQUIRE(body.size() == 3);
        CHECK(body[0] == "zmesh.error");
        CHECK(body[1] == "400");
    }
    auto w = dealer(f.ctx, f.endpoint);
    ready(w, "ok");
    auto c = dealer(f.ctx, f.endpoint);
    client_request(c, "ok", "still served");
    auto [client, body] = expect_request(w);
    reply(w, client, body);
    CHECK(expect_reply(c, "ok") == std::vector<std::string>{"still served"});
    CHECK(f.broker->stats().requests == 1);
    // The counters are visible to any MDP client through zmesh.stats.
    client_request(c, "zmesh.stats", "");
    auto stats_body = expect_reply(c, "zmesh.stats");
    REQUIRE(stats_body.size() == 1);
    auto oh = msgpack::unpack(stats_body[0].data(), stats_body[0].size());
    auto counters = oh.get().as<std::map<std::string, std::uint64_t>>();
    CHECK(counters["malformed"] == 10);
    CHECK(counters["replies"] == 3); // the two 400s and the echo
    CHECK(counters["workers"] == 1);
}

TEST_CASE("stopping the broker sends DISCONNECT to every worker") {
    broker_fixture f;
    f.start();
    auto w = dealer(f.ctx, f.endpoint);
    ready(w, "svc");
    REQUIRE(eventually([&] { return f.broker->stats().workers == 1; }));
    f.broker->stop();
    CHECK_FALSE(f.broker->running());
    auto m = recv_command(w);
    REQUIRE(m);
    CHECK(command_of(*m) == mdp::worker_command::disconnect);
}

TEST_CASE("a service with no workers and no requests is forgotten after its ttl") {
    broker_fixture f(20ms);
    f.config.service_ttl = 50ms;
    f.start();
    auto w = dealer(f.ctx, f.endpoint);
    ready(w, "ephemeral");
    REQUIRE(eventually([&] { return f.broker->stats().services == 1; }));
    send_frames(w, zmesh::message{"", mdp::worker_v1, "\x05"});
    CHECK(eventually([&] { return f.broker->stats().services == 0; }));
}

TEST_CASE("an invalid configuration is refused with a clear error") {
    zmq::context_t ctx;
    zmesh::nodes::broker_config cfg;
    cfg.mdp_endpoint = "tcp://127.0.0.1";
    CHECK_THROWS_AS(zmesh::nodes::broker(ctx, cfg), zmesh::error);
    cfg.mdp_endpoint = support::inproc_endpoint("cfg");
    cfg.liveness = 0;
    CHECK_THROWS_AS(zmesh::nodes::broker(ctx, cfg), zmesh::error);
}

}
