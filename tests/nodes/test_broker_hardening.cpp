// SPDX-License-Identifier: MPL-2.0
// test_broker_hardening.cpp — what the broker does against peers that are hostile, dead or
// merely careless (issue 9, docs/broker.md "Faults"): opaque client handles, refused READYs,
// per-client limits, closed connections noticed at once, re-queue in sending order, expiry on
// time. Driven by hand-written MDP peers over TCP on loopback, where libzmq reports closed
// connections (inproc has none to report).
#include <zmesh/nodes/broker.hpp>

#include <zmesh/mdp/protocol.hpp>
#include <zmesh/message.hpp>

#include "support/support.hpp"
#include "tcp_broker.hpp"

#include <doctest/doctest.h>

#include <set>
#include <string>

using namespace std::chrono_literals;
namespace mdp = zmesh::mdp;
using support::dealer;
using support::eventually;

namespace {

using support::tcp_broker;

void send_frames(zmq::socket_t& s, zmesh::message m) {
    REQUIRE(m.send(s) == zmesh::send_status::sent);
}

zmesh::message command(std::string_view header, mdp::worker_command c) {
    zmesh::message m{"", header};
    m.push_back(mdp::command_frame(c));
    return m;
}

void ready(zmq::socket_t& w, const std::string& service) {
    auto m = command(mdp::worker_v1, mdp::worker_command::ready);
    m.push_back(service);
    send_frames(w, std::move(m));
}

void ready_credit(zmq::socket_t& w, const std::string& service, const std::string& credit) {
    auto m = command(mdp::worker_credit_v1, mdp::worker_command::ready);
    m.push_back(service);
    m.push_back(credit);
    send_frames(w, std::move(m));
}

std::optional<mdp::worker_command> command_of(const zmesh::message& m) {
    if (m.size() < 3) return std::nullopt;
    return mdp::parse_worker_command(m[2]);
}

/// The next worker command other than HEARTBEAT within @p timeout.
std::optional<zmesh::message> next_command(zmq::socket_t& w, std::chrono::milliseconds timeout = 3s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
        auto m = support::recv_for(w, 20ms);
        if (m && command_of(*m) != mdp::worker_command::heartbeat) return m;
    }
    return std::nullopt;
}

/// A plain REQUEST: [client address, body].
std::pair<std::string, std::string> expect_request(zmq::socket_t& w) {
    auto m = next_command(w);
    REQUIRE(m);
    REQUIRE(command_of(*m) == mdp::worker_command::request);
    REQUIRE(m->size() == 6);
    return {zmesh::to_string((*m)[3]), zmesh::to_string((*m)[5])};
}

void reply(zmq::socket_t& w, const std::string& client, const std::string& body) {
    auto m = command(mdp::worker_v1, mdp::worker_command::reply);
    m.push_back(client);
    m.push_back(std::string_view());
    m.push_back(body);
    send_frames(w, std::move(m));
}

void request(zmq::socket_t& c, const std::string& service, const std::string& body) {
    send_frames(c, zmesh::message{"", mdp::client_v1, service, body});
}

/// A client reply's body frames (after "" MDPC01 service).
std::vector<std::string> expect_reply(zmq::socket_t& c, std::chrono::milliseconds timeout = 3s) {
    auto m = support::recv_for(c, timeout);
    REQUIRE(m);
    REQUIRE(m->size() >= 4);
    auto t = support::texts(*m);
    return {t.begin() + 3, t.end()};
}

} // namespace

TEST_SUITE("nodes.broker.hardening") {

TEST_CASE("workers see a 16-byte random handle for each client, never its routing id") {
    tcp_broker f;
    f.start();
    auto w = dealer(f.ctx, f.endpoint);
    ready(w, "svc");
    std::set<std::string> handles;
    for (int i = 0; i < 4; ++i) {
        // A client that claims its own routing id: the worker must not see it either.
        auto c = dealer(f.ctx, f.endpoint, "client-" + std::to_string(i));
        request(c, "svc", "x");
        auto [address, body] = expect_request(w);
        CHECK(address.size() == 16);
        CHECK(address.find("client-") == std::string::npos);
        handles.insert(address);
        reply(w, address, body);
        CHECK(expect_reply(c) == std::vector<std::string>{"x"});
    }
    CHECK(handles.size() == 4);
}

TEST_CASE("a client keeps its handle across requests, so a worker can tell its clients apart") {
    tcp_broker f;
    f.start();
    auto w = dealer(f.ctx, f.endpoint);
    ready(w, "svc");
    auto c = dealer(f.ctx, f.endpoint);
    request(c, "svc", "1");
    auto first = expect_request(w);
    reply(w, first.first, first.second);
    (void)expect_reply(c);
    request(c, "svc", "2");
    auto second = expect_request(w);
    CHECK(second.first == first.first);
}

TEST_CASE("a REPLY naming a routing id instead of the handle is refused and the worker dropped") {
    tcp_broker f;
    f.start();
    auto w = dealer(f.ctx, f.endpoint);
    ready(w, "svc");
    auto c = dealer(f.ctx, f.endpoint, "victim");
    request(c, "svc", "x");
    (void)expect_request(w);
    reply(w, "victim", "forged");
    auto m = next_command(w);
    REQUIRE(m);
    CHECK(command_of(*m) == mdp::worker_command::disconnect);
    CHECK_FALSE(support::recv_for(c, 200ms)); // nothing reached the client
    CHECK(f.stats().requeued == 1);
}

TEST_CASE("a READY is acknowledged at once with a HEARTBEAT, under the worker's own header") {
    tcp_broker f;
    f.start();
    for (auto header : {mdp::worker_v1, mdp::worker_credit_v1}) {
        auto w = dealer(f.ctx, f.endpoint);
        if (header == mdp::worker_v1) ready(w, "svc");
        else ready_credit(w, "svc", "4");
        // Well before the first heartbeat tick (2.5 s).
        auto m = support::recv_for(w, 1s);
        REQUIRE(m);
        CHECK(zmesh::view((*m)[1]) == header);
        CHECK(command_of(*m) == mdp::worker_command::heartbeat);
    }
}

TEST_CASE("a READY for a name the broker refuses gets exactly one DISCONNECT and no service") {
    tcp_broker f;
    f.config.max_services = 2;
    f.start();
    auto ok = dealer(f.ctx, f.endpoint);
    ready(ok, "first");
    auto ok2 = dealer(f.ctx, f.endpoint);
    ready(ok2, "second");
    REQUIRE(eventually([&] { return f.stats().workers == 2; }));
    const std::vector<std::string> refused{
        "mmi.service", "zmesh.lvc", std::string(256, 'n'), "tab\tname", "caf\xc3\xa9",
        "with space", "third" /* past max_services */};
    for (const auto& name : refused) {
        CAPTURE(name);
        auto w = dealer(f.ctx, f.endpoint);
        ready(w, name);
        auto m = support::recv_for(w, 1s);
        REQUIRE(m);
        CHECK(command_of(*m) == mdp::worker_command::disconnect);
        CHECK_FALSE(support::recv_for(w, 100ms)); // only one: no heartbeat, no request
    }
    CHECK(f.stats().workers == 2);
    CHECK(f.stats().services == 2);
}

TEST_CASE("a request for an invalid service name is answered 400 and creates nothing") {
    tcp_broker f;
    f.start();
    auto c = dealer(f.ctx, f.endpoint);
    request(c, "bad\x01name", "x");
    auto body = expect_reply(c);
    REQUIRE(body.size() == 3);
    CHECK(body[0] == "zmesh.error");
    CHECK(body[1] == "400");
    CHECK(f.stats().services == 0);
}

TEST_CASE("a client past max_client_requests is refused 503 while other clients are served") {
    tcp_broker f;
    f.config.max_client_requests = 3;
    f.start();
    auto greedy = dealer(f.ctx, f.endpoint);
    for (int i = 0; i < 5; ++i) request(greedy, "nobody-yet", std::to_string(i));
    for (int i = 0; i < 2; ++i) {
        auto body = expect_reply(greedy);
        REQUIRE(body.size() == 3);
        CHECK(body[1] == "503");
        CHECK(body[2].find("too many requests outstanding") != std::string::npos);
    }
    auto other = dealer(f.ctx, f.endpoint);
    request(other, "nobody-yet", "mine");
    REQUIRE(eventually([&] { return f.stats().queued == 4; }));
    auto w = dealer(f.ctx, f.endpoint);
    ready(w, "nobody-yet");
    std::vector<std::string> served;
    for (int i = 0; i < 4; ++i) {
        auto [client, body] = expect_request(w);
        served.push_back(body);
        reply(w, client, body);
    }
    // Fair queueing: the other client's request is served in the first round, not after the
    // greedy client's backlog.
    CHECK(served == std::vector<std::string>{"0", "mine", "1", "2"});
    CHECK(expect_reply(other) == std::vector<std::string>{"mine"});
}

TEST_CASE("a client over its memory share is refused 503 while another client still fits") {
    tcp_broker f;
    f.config.max_memory = 64 * 1024;
    f.config.max_client_memory = 17 * 1024; // three requests of 5000 bytes with their records
    f.start();
    auto greedy = dealer(f.ctx, f.endpoint);
    for (int i = 0; i < 4; ++i) request(greedy, "later", std::string(5000, 'g'));
    auto body = expect_reply(greedy);
    REQUIRE(body.size() == 3);
    CHECK(body[1] == "503");
    CHECK(body[2].find("memory share") != std::string::npos);
    auto other = dealer(f.ctx, f.endpoint);
    request(other, "later", std::string(5000, 'o'));
    REQUIRE(eventually([&] { return f.stats().queued == 4; }));
    CHECK_FALSE(support::recv_for(other, 100ms));
}

TEST_CASE("replies to a client that does not read are dropped past its share, and counted") {
    tcp_broker f;
    f.config.max_client_memory = 64 * 1024;
    f.start();
    auto w = dealer(f.ctx, f.endpoint);
    ready(w, "big");
    auto c = dealer(f.ctx, f.endpoint);
    c.set(zmq::sockopt::rcvhwm, 1); // reads nothing: replies pile up at the broker
    c.set(zmq::sockopt::rcvbuf, 4096);
    // More than the kernel's socket buffers on loopback can take (they grow to a few MiB).
    for (int i = 0; i < 1000; ++i) {
        request(c, "big", "x");
        auto [client, body] = expect_request(w);
        reply(w, client, std::string(16000, 'r'));
    }
    REQUIRE(eventually([&] { return f.stats().replies_dropped > 0; }));
    // What is still counted for it stays within its share.
    CHECK(f.stats().memory <= 64 * 1024);
}

TEST_CASE("clients past max_clients are refused 503 and the table does not grow") {
    tcp_broker f;
    f.config.max_clients = 2;
    f.start();
    std::vector<zmq::socket_t> clients;
    for (int i = 0; i < 3; ++i) {
        clients.push_back(dealer(f.ctx, f.endpoint));
        request(clients.back(), "queued", "x");
        // One at a time: connections race, and the third must arrive last.
        REQUIRE(eventually([&] { return f.stats().requests == static_cast<std::uint64_t>(i + 1); }));
    }
    auto body = expect_reply(clients[2]);
    REQUIRE(body.size() == 3);
    CHECK(body[1] == "503");
    CHECK(body[2].find("too many clients") != std::string::npos);
    CHECK(f.stats().clients == 2);
}

TEST_CASE("a worker whose connection closes while busy has its request sent on at once") {
    tcp_broker f; // default heartbeat: expiry alone would take 7.5 s
    f.start();
    auto c = dealer(f.ctx, f.endpoint);
    {
        auto doomed = dealer(f.ctx, f.endpoint);
        ready(doomed, "svc");
        request(c, "svc", "job");
        (void)expect_request(doomed);
    } // closed with linger 0: the TCP connection goes, no DISCONNECT is sent
    auto w = dealer(f.ctx, f.endpoint);
    ready(w, "svc");
    auto [client, body] = expect_request(w);
    CHECK(body == "job");
    reply(w, client, body);
    CHECK(expect_reply(c, 1s) == std::vector<std::string>{"job"});
    CHECK(f.stats().workers_expired == 0);
    CHECK(f.stats().disconnects >= 1);
}

TEST_CASE("queued requests of a client whose connection closed are dropped, not executed") {
    tcp_broker f;
    f.start();
    {
        auto gone = dealer(f.ctx, f.endpoint);
        for (int i = 0; i < 3; ++i) request(gone, "later", "stale");
        REQUIRE(eventually([&] { return f.stats().queued == 3; }));
    }
    REQUIRE(eventually([&] { return f.stats().disconnects == 1; }));
    auto c = dealer(f.ctx, f.endpoint);
    request(c, "later", "fresh");
    auto w = dealer(f.ctx, f.endpoint);
    ready(w, "later");
    auto [client, body] = expect_request(w);
    CHECK(body == "fresh");
    CHECK(f.stats().abandoned == 3);
    CHECK(eventually([&] { return f.stats().clients == 1; }));
}

TEST_CASE("a dead worker's requests are re-queued in the order they were sent, across reused "
          "slots") {
    tcp_broker f;
    f.start();
    auto c = dealer(f.ctx, f.endpoint);
    auto w = dealer(f.ctx, f.endpoint);
    ready_credit(w, "svc", "3");
    auto take = [&] {
        auto m = next_command(w);
        REQUIRE(m);
        REQUIRE(command_of(*m) == mdp::worker_command::request);
        return std::tuple{zmesh::to_string((*m)[3]), zmesh::to_string((*m)[4]),
                          zmesh::to_string((*m)[6])};
    };
    for (auto b : {"a", "b", "c"}) request(c, "svc", b);
    auto [tag_a, client_a, body_a] = take();
    (void)take();
    (void)take();
    // Answer "a": its slot is reused by "d", so slot order would put "d" first.
    auto rep = command(mdp::worker_credit_v1, mdp::worker_command::reply);
    rep.push_back(tag_a);
    rep.push_back(client_a);
    rep.push_back(std::string_view());
    rep.push_back(body_a);
    send_frames(w, std::move(rep));
    CHECK(expect_reply(c) == std::vector<std::string>{"a"});
    request(c, "svc", "d");
    (void)take();
    send_frames(w, command(mdp::worker_credit_v1, mdp::worker_command::disconnect));
    auto next = dealer(f.ctx, f.endpoint);
    ready(next, "svc");
    std::vector<std::string> order;
    for (int i = 0; i < 3; ++i) {
        auto [client, body] = expect_request(next);
        order.push_back(body);
        reply(next, client, body);
    }
    CHECK(order == std::vector<std::string>{"b", "c", "d"});
}

TEST_CASE("a request expires close to its ttl, whatever the heartbeat interval") {
    tcp_broker f;
    f.config.heartbeat_interval = 10s;
    f.config.request_ttl = 200ms;
    f.start();
    auto c = dealer(f.ctx, f.endpoint);
    request(c, "nobody", "x");
    // The broker wakes at the request's deadline itself; a tick-bound expiry took up to 10 s.
    auto body = expect_reply(c, 2s);
    REQUIRE(body.size() == 3);
    CHECK(body[1] == "504");
}

} // TEST_SUITE
