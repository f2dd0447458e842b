// SPDX-License-Identifier: MPL-2.0
// test_mdp_client_worker.cpp — the MDP/0.1 client and worker against a hand-driven fake broker.
//
// Conformance with 7/MDP (https://rfc.zeromq.org/spec/7/) is checked frame by frame: the fake
// broker is a bare ROUTER socket that the test reads and writes itself, so nothing here depends on
// zmesh's broker.
#include <zmesh/error.hpp>
#include <zmesh/mdp/client.hpp>
#include <zmesh/mdp/worker.hpp>

#include "support/support.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <future>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;
using strings = std::vector<std::string>;
using support::texts;
using support::frames;
using clock_type = std::chrono::steady_clock;
/// The fake broker below speaks MDP/0.1 only; the client's default is ZMCT02.
constexpr auto plain = zmesh::mdp::client_protocol::mdp;

const std::string ready_cmd(1, '\x01');
const std::string request_cmd(1, '\x02');
const std::string reply_cmd(1, '\x03');
const std::string heartbeat_cmd(1, '\x04');
const std::string disconnect_cmd(1, '\x05');

/// A broker the test drives by hand: one ROUTER on a loopback port.
struct fake_broker {
    zmq::socket_t router;
    std::string endpoint;

    explicit fake_broker(zmq::context_t& ctx) : router(ctx, zmq::socket_type::router) {
        router.set(zmq::sockopt::linger, 0);
        endpoint = support::bind_loopback(router);
    }

    /// The next message as text frames, the peer's routing id first; empty if none in time.
    strings recv(std::chrono::milliseconds timeout = 2000ms) {
        auto m = support::recv_for(router, timeout);
        return m ? texts(*m) : strings{};
    }

    /// The next message that is not a worker HEARTBEAT.
    strings recv_skipping_heartbeats(std::chrono::milliseconds timeout = 2000ms) {
        const auto deadline = clock_type::now() + timeout;
        for (;;) {
            const auto left =
                std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_type::now());
            auto m = recv(std::max(left, 0ms));
            if (m.size() != 4 || m[3] != heartbeat_cmd) return m;
        }
    }

    bool try_send(const strings& parts) {
        auto m = frames(parts);
        return m.send(router) == zmesh::send_status::sent;
    }

    void send(const strings& parts) { REQUIRE(try_send(parts)); }
};

/// The fake broker here speaks plain MDP/0.1, so the worker is told so up front (without it, it
/// would try ZMWC02 first and fall back after a heartbeat).
zmesh::mdp::worker_options quick_worker() {
    zmesh::mdp::worker_options o;
    o.disconnect_linger = 0ms;
    o.protocol = zmesh::mdp::worker_protocol::mdp;
    return o;
}

} // namespace

TEST_SUITE("lib.mdp") {

// ---------------------------------------------------------------------------------------------
// client

TEST_CASE("client request frames are exactly those of 7/MDP") {
    zmq::context_t ctx;
    fake_broker broker(ctx);
    auto result = std::async(std::launch::async, [&] {
        zmesh::mdp::client c(ctx, broker.endpoint,
                             {.timeout = 3s, .retries = 1, .protocol = plain});
        return texts(c.request("echo", zmesh::message{"hello", "", "world"}));
    });

    auto req = broker.recv();
    REQUIRE(req.size() == 7);
    CHECK_FALSE(req[0].empty()); // routing id added by the ROUTER
    CHECK(strings(req.begin() + 1, req.end()) ==
          strings{"", "MDPC01", "echo", "hello", "", "world"});

    broker.send({req[0], "", "MDPC01", "echo", "ok"});
    REQUIRE(result.wait_for(3s) == std::future_status::ready);
    CHECK(result.get() == strings{"ok"});
}

TEST_CASE("client returns the reply body without the MDP header and service frames") {
    zmq::context_t ctx;
    fake_broker broker(ctx);
    auto result = std::async(std::launch::async, [&] {
        zmesh::mdp::client c(ctx, broker.endpoint,
                             {.timeout = 3s, .retries = 1, .protocol = plain});
        auto first = texts(c.request("echo", zmesh::message{"a"}));
        auto second = texts(c.request("echo", zmesh::message{"b"}));
        return std::make_pair(first, second);
    });

    auto req = broker.recv();
    REQUIRE(req.size() == 5);
    broker.send({req[0], "", "MDPC01", "echo", "one", "", "three"});
    req = broker.recv();
    REQUIRE(req.size() == 5);
    broker.send({req[0], "", "MDPC01", "echo"}); // a reply with an empty body is valid

    REQUIRE(result.wait_for(3s) == std::future_status::ready);
    auto [first, second] = result.get();
    CHECK(first == strings{"one", "", "three"});
    CHECK(second.empty());
}

TEST_CASE("client resends on a fresh socket and succeeds when only the second attempt is answered") {
    zmq::context_t ctx;
    fake_broker broker(ctx);
    auto result = std::async(std::launch::async, [&] {
        zmesh::mdp::client c(ctx, broker.endpoint,
                             {.timeout = 300ms, .retries = 3, .protocol = plain});
        auto body = texts(c.request("echo", zmesh::message{"ping"}));
        return std::make_pair(body, c.stats());
    });

    auto first = broker.recv();
    REQUIRE(first.size() == 5);
    auto second = broker.recv();
    REQUIRE(second.size() == 5);
    CHECK(second[0] != first[0]); // a new socket, so a new routing id
    CHECK(strings(second.begin() + 1, second.end()) == strings{"", "MDPC01", "echo", "ping"});

    // A late answer to the first attempt must not be taken for the answer to the second.
    broker.send({first[0], "", "MDPC01", "echo", "stale"});
    broker.send({second[0], "", "MDPC01", "echo", "pong"});

    REQUIRE(result.wait_for(3s) == std::future_status::ready);
    auto [body, stats] = result.get();
    CHECK(body == strings{"pong"});
    CHECK(stats.requests == 1);
    CHECK(stats.resends == 1);
    CHECK(stats.replies == 1);
    CHECK(stats.failures == 0);
}

TEST_CASE("client gives up with errc::timeout after the configured number of attempts") {
    zmq::context_t ctx;
    fake_broker broker(ctx);
    auto result = std::async(std::launch::async, [&]() -> std::pair<std::error_code, std::string> {
        zmesh::mdp::client c(ctx, broker.endpoint,
                             {.timeout = 150ms, .retries = 3, .protocol = plain});
        try {
            (void)c.request("nobody", zmesh::message{"hello"});
        } catch (const zmesh::error& e) {
            return {e.code(), e.what()};
        }
        return {};
    });

    std::set<std::string> senders;
    for (int i = 0; i < 3; ++i) {
        auto req = broker.recv();
        REQUIRE(req.size() == 5);
        CHECK(req[3] == "nobody");
        senders.insert(req[0]);
    }
    CHECK(senders.size() == 3); // each attempt on its own socket

    REQUIRE(result.wait_for(3s) == std::future_status::ready);
    auto [code, what] = result.get();
    CHECK(code == zmesh::errc::timeout);
    CHECK(what.find("no reply from service 'nobody' after 3 attempts") != std::string::npos);
    CHECK(broker.recv(300ms).empty()); // no fourth attempt

    { // the error_code overload reports the timeout as a value
        zmesh::mdp::client c(ctx, broker.endpoint,
                             {.timeout = 100ms, .retries = 2, .protocol = plain});
        std::error_code ec;
        auto reply = c.request("nobody", zmesh::message{"hello"}, ec);
        CHECK_FALSE(reply);
        CHECK(ec == zmesh::errc::timeout);
        CHECK(c.stats().resends == 1);
        CHECK(c.stats().failures == 1);
    }
}

TEST_CASE("client ignores a malformed reply and a reply for another service") {
    zmq::context_t ctx;
    fake_broker broker(ctx);
    auto result = std::async(std::launch::async, [&] {
        zmesh::mdp::client c(ctx, broker.endpoint,
                             {.timeout = 3s, .retries = 1, .protocol = plain});
        auto body = texts(c.request("echo", zmesh::message{"x"}));
        return std::make_pair(body, c.stats());
    });

    auto req = broker.recv();
    REQUIRE(req.size() == 5);
    const auto& id = req[0];
    broker.send({id, "junk"});                             // no delimiter, no header
    broker.send({id, "", "MDPC02", "echo", "bad"});        // another protocol version
    broker.send({id, "", "MDPC01"});                       // no service frame
    broker.send({id, "", "MDPW01", "echo", "bad"});        // a worker header
    broker.send({id, "", "MDPC01", "other", "foreign"});   // a reply from another service
    broker.send({id, "", "MDPC01", "echo", "good"});

    REQUIRE(result.wait_for(3s) == std::future_status::ready);
    auto [body, stats] = result.get();
    CHECK(body == strings{"good"});
    CHECK(stats.malformed == 4);
    CHECK(stats.unexpected == 1);
}

TEST_CASE("client rejects bad options and a synchronous request while asynchronous ones are out") {
    zmq::context_t ctx;
    fake_broker broker(ctx);
    auto code_of = [&](zmesh::mdp::client_options o) {
        try {
            zmesh::mdp::client c(ctx, broker.endpoint, o);
        } catch (const zmesh::error& e) {
            return e.code();
        }
        return std::error_code{};
    };
    CHECK(code_of({.timeout = 0ms}) == zmesh::errc::invalid_argument);
    CHECK(code_of({.retries = 0}) == zmesh::errc::invalid_argument);
    CHECK(code_of({.window = 0}) == zmesh::errc::invalid_argument);

    zmesh::mdp::client c(ctx, broker.endpoint, {.timeout = 1s, .protocol = plain});
    c.send("echo", zmesh::message{"async"});
    CHECK(c.outstanding() == 1);
    try {
        (void)c.request("echo", zmesh::message{"sync"});
        FAIL("request() was accepted while an asynchronous request was outstanding");
    } catch (const zmesh::error& e) {
        CHECK(e.code() == zmesh::errc::invalid_argument);
    }
    std::error_code ec;
    CHECK_FALSE(c.request("", zmesh::message{"x"}, ec));
    CHECK(ec == zmesh::errc::invalid_argument);
}

TEST_CASE("async client keeps a window of requests in flight and receives every reply") {
    constexpr std::size_t window = 4;
    constexpr std::size_t total = 12;
    zmq::context_t ctx;
    fake_broker broker(ctx);

    // The broker answers in batches: it collects requests until none came for settle_time, so a
    // batch is exactly what the client dared to send before it had to wait for replies.
    std::size_t largest_batch = 0;
    std::size_t served = 0;
    std::thread broker_thread([&] {
        while (served < total) {
            std::vector<strings> batch;
            auto first = broker.recv(3s);
            if (first.empty()) return;
            batch.push_back(first);
            for (auto more = broker.recv(support::settle_time); !more.empty();
                 more = broker.recv(support::settle_time))
                batch.push_back(more);
            largest_batch = std::max(largest_batch, batch.size());
            for (const auto& req : batch) {
                strings answer{req[0], "", "MDPC01", req[3]};
                answer.insert(answer.end(), req.begin() + 4, req.end());
                if (!broker.try_send(answer)) return;
            }
            served += batch.size();
        }
    });

    zmesh::mdp::client c(ctx, broker.endpoint,

                         {.timeout = 3s, .window = window, .protocol = plain});
    CHECK_FALSE(c.recv(0ms)); // nothing outstanding: no wait
    std::set<std::string> bodies;
    for (std::size_t i = 0; i < total; ++i) {
        c.send("echo", zmesh::message{std::to_string(i)});
        CHECK(c.outstanding() == i + 1); // replies are counted until recv() returns them
    }
    CHECK(c.outstanding() > 0);
    while (c.outstanding() > 0) {
        auto r = c.recv(3s);
        REQUIRE(r);
        CHECK(r->service == "echo");
        REQUIRE(r->body.size() == 1);
        bodies.insert(zmesh::to_string(r->body[0]));
    }
    broker_thread.join();

    CHECK(served == total);
    CHECK(largest_batch == window);
    CHECK(bodies.size() == total);
    CHECK(c.stats().requests == total);
    CHECK(c.stats().replies == total);
}

// ---------------------------------------------------------------------------------------------
// worker

TEST_CASE("worker sends READY with its service on connect") {
    zmq::context_t ctx;
    fake_broker broker(ctx);
    zmesh::mdp::worker w(ctx, broker.endpoint, "echo", quick_worker());

    auto ready = broker.recv();
    REQUIRE(ready.size() == 5);
    CHECK(strings(ready.begin() + 1, ready.end()) == strings{"", "MDPW01", ready_cmd, "echo"});
}

TEST_CASE("worker returns a request body and its reply carries the client address and delimiter") {
    zmq::context_t ctx;
    fake_broker broker(ctx);
    zmesh::mdp::worker w(ctx, broker.endpoint, "echo", quick_worker());
    auto ready = broker.recv();
    REQUIRE(ready.size() == 5);
    const auto id = ready[0];

    broker.send({id, "", "MDPW01", request_cmd, "client-7", "", "hello", "world"});
    auto body = w.recv(2s);
    REQUIRE(body);
    CHECK(texts(*body) == strings{"hello", "world"});

    w.reply(zmesh::message{"answer", ""});
    auto rep = broker.recv_skipping_heartbeats();
    CHECK(rep == strings{id, "", "MDPW01", reply_cmd, "client-7", "", "answer", ""});
    CHECK(w.stats().requests == 1);
    CHECK(w.stats().replies == 1);

    // One reply per request.
    try {
        w.reply(zmesh::message{"again"});
        FAIL("a second reply was accepted");
    } catch (const zmesh::error& e) {
        CHECK(e.code() == zmesh::errc::invalid_argument);
    }
}

TEST_CASE("worker sends HEARTBEAT when idle") {
    zmq::context_t ctx;
    fake_broker broker(ctx);
    auto o = quick_worker();
    o.heartbeat = 100ms;
    o.liveness = 50; // the fake broker stays silent; keep the worker from giving up on it
    zmesh::mdp::worker w(ctx, broker.endpoint, "echo", o);
    REQUIRE(broker.recv().size() == 5);

    CHECK_FALSE(w.recv(450ms));
    int heartbeats = 0;
    for (auto m = broker.recv(300ms); !m.empty(); m = broker.recv(300ms)) {
        CHECK(strings(m.begin() + 1, m.end()) == strings{"", "MDPW01", heartbeat_cmd});
        ++heartbeats;
    }
    CHECK(heartbeats >= 2);
    CHECK(heartbeats <= 5);
    CHECK(w.stats().heartbeats == static_cast<std::uint64_t>(heartbeats));
    CHECK(w.stats().reconnects == 0);
}

TEST_CASE("worker sends no HEARTBEAT while replies keep flowing") {
    zmq::context_t ctx;
    fake_broker broker(ctx);
    auto o = quick_worker();
    o.heartbeat = 300ms;
    o.liveness = 10;
    zmesh::mdp::worker w(ctx, broker.endpoint, "echo", o);
    auto ready = broker.recv();
    REQUIRE(ready.size() == 5);

    // Two heartbeat intervals of traffic, a reply at least every 30 ms or so.
    const auto until = clock_type::now() + 2 * o.heartbeat;
    int exchanges = 0;
    while (clock_type::now() < until) {
        broker.send({ready[0], "", "MDPW01", request_cmd, "c", "", std::to_string(exchanges)});
        auto body = w.recv(2s);
        REQUIRE(body);
        w.reply(std::move(*body));
        auto rep = broker.recv();
        REQUIRE(rep.size() == 7);
        CHECK(rep[3] == reply_cmd); // not a HEARTBEAT
        ++exchanges;
        CHECK_FALSE(w.recv(30ms)); // idle, yet something was sent within the interval
    }
    CHECK(exchanges >= 2);
    CHECK(broker.recv(0ms).empty());
    CHECK(w.stats().heartbeats == 0);
}

TEST_CASE("worker counts and drops malformed broker messages") {
    zmq::context_t ctx;
    fake_broker broker(ctx);
    zmesh::mdp::worker w(ctx, broker.endpoint, "echo", quick_worker());
    auto ready = broker.recv();
    REQUIRE(ready.size() == 5);
    const auto id = ready[0];

    broker.send({id, "junk"});
    broker.send({id, "", "MDPW02", request_cmd, "c", "", "x"});
    broker.send({id, "", "MDPW01", std::string(1, '\x09')});
    broker.send({id, "", "MDPW01", request_cmd, "c"});                // no delimiter
    broker.send({id, "", "MDPW01", request_cmd, "c", "nodelim", "x"}); // delimiter not empty
    broker.send({id, "", "MDPW01", ready_cmd, "svc"});                // worker-to-broker only
    broker.send({id, "", "MDPW01", heartbeat_cmd, "extra"});
    broker.send({id, "", "MDPW01", request_cmd, "c", "", "valid"});

    auto body = w.recv(2s);
    REQUIRE(body);
    CHECK(texts(*body) == strings{"valid"});
    CHECK(w.stats().malformed == 7);
    CHECK(w.stats().reconnects == 0);
}

TEST_CASE("worker reconnects and re-sends READY after broker silence") {
    zmq::context_t ctx;
    fake_broker broker(ctx);
    auto o = quick_worker();
    o.heartbeat = 50ms;
    o.liveness = 3;
    o.reconnect_initial = 50ms;
    zmesh::mdp::worker w(ctx, broker.endpoint, "echo", o);
    auto ready = broker.recv();
    REQUIRE(ready.size() == 5);

    // Drive the worker in short slices and watch the broker side in between, so no message is
    // read after the socket that sent it was closed.
    strings again;
    const auto deadline = clock_type::now() + 3s;
    while (again.empty() && clock_type::now() < deadline) {
        CHECK_FALSE(w.recv(20ms));
        for (auto m = broker.recv(0ms); !m.empty(); m = broker.recv(0ms))
            if (m.size() == 5 && m[3] == ready_cmd && m[0] != ready[0]) again = m;
    }
    REQUIRE_FALSE(again.empty());
    CHECK(strings(again.begin() + 1, again.end()) == strings{"", "MDPW01", ready_cmd, "echo"});
    CHECK(w.stats().reconnects >= 1);
    CHECK(w.stats().heartbeats >= 1);
}

TEST_CASE("worker reconnects and re-registers at once after DISCONNECT") {
    zmq::context_t ctx;
    fake_broker broker(ctx);
    auto o = quick_worker();
    o.reconnect_initial = 10s; // would show if the worker backed off instead of re-registering
    o.reconnect_max = 10s;
    zmesh::mdp::worker w(ctx, broker.endpoint, "echo", o);
    auto ready = broker.recv();
    REQUIRE(ready.size() == 5);

    // The broker speaks first (it accepted the READY): a DISCONNECT that answers READY before
    // anything else is a refusal, after which the worker stops instead (test_mdp_worker_hardening).
    broker.send({ready[0], "", "MDPW01", heartbeat_cmd});
    const auto start = clock_type::now();
    broker.send({ready[0], "", "MDPW01", disconnect_cmd});
    strings again;
    while (again.empty() && clock_type::now() < start + 3s) {
        CHECK_FALSE(w.recv(20ms));
        for (auto m = broker.recv(0ms); !m.empty(); m = broker.recv(0ms))
            if (m.size() == 5 && m[3] == ready_cmd) again = m;
    }
    REQUIRE_FALSE(again.empty());
    CHECK(again[0] != ready[0]);
    CHECK(clock_type::now() - start < 2s);
    CHECK(w.stats().disconnects == 1);
    CHECK(w.stats().reconnects == 1);
}

TEST_CASE("worker drops the reply to a request received before a reconnect") {
    zmq::context_t ctx;
    fake_broker broker(ctx);
    zmesh::mdp::worker w(ctx, broker.endpoint, "echo", quick_worker());
    auto ready = broker.recv();
    REQUIRE(ready.size() == 5);

    broker.send({ready[0], "", "MDPW01", request_cmd, "client-1", "", "work"});
    REQUIRE(w.recv(2s));
    // The broker gives up on this worker while the handler runs; keepalive() notices.
    broker.send({ready[0], "", "MDPW01", disconnect_cmd});
    auto again = broker.recv(0ms);
    for (auto until = clock_type::now() + 2s; again.empty() && clock_type::now() < until;
         again = broker.recv(20ms))
        w.keepalive();
    REQUIRE(again.size() == 5);
    CHECK(again[3] == ready_cmd);

    w.reply(zmesh::message{"late"});
    CHECK(w.stats().replies == 0);
    CHECK(w.stats().replies_dropped == 1);
    CHECK(broker.recv_skipping_heartbeats(300ms).empty());
}

TEST_CASE("worker sends DISCONNECT on close and from its destructor") {
    zmq::context_t ctx;
    fake_broker broker(ctx);
    auto o = quick_worker();
    o.disconnect_linger = 500ms;

    zmesh::mdp::worker w(ctx, broker.endpoint, "echo", o);
    auto ready = broker.recv();
    REQUIRE(ready.size() == 5);
    w.close();
    CHECK_FALSE(w.is_open());
    CHECK(broker.recv_skipping_heartbeats() == strings{ready[0], "", "MDPW01", disconnect_cmd});
    w.close(); // idempotent
    try {
        (void)w.recv(10ms);
        FAIL("recv() was accepted after close()");
    } catch (const zmesh::error& e) {
        CHECK(e.code() == zmesh::errc::not_running);
    }

    {
        zmesh::mdp::worker scoped(ctx, broker.endpoint, "echo", o);
        ready = broker.recv();
        REQUIRE(ready.size() == 5);
    }
    CHECK(broker.recv_skipping_heartbeats() == strings{ready[0], "", "MDPW01", disconnect_cmd});
}

TEST_CASE("worker rejects a missing or reserved service and a reply with no pending request") {
    zmq::context_t ctx;
    fake_broker broker(ctx);
    auto code_of = [&](const std::string& service, zmesh::mdp::worker_options o) {
        try {
            zmesh::mdp::worker w(ctx, broker.endpoint, service, o);
        } catch (const zmesh::error& e) {
            return e.code();
        }
        return std::error_code{};
    };
    CHECK(code_of("", quick_worker()) == zmesh::errc::invalid_argument);
    CHECK(code_of("mmi.service", quick_worker()) == zmesh::errc::invalid_argument);
    auto bad = quick_worker();
    bad.liveness = 0;
    CHECK(code_of("echo", bad) == zmesh::errc::invalid_argument);

    zmesh::mdp::worker w(ctx, broker.endpoint, "echo", quick_worker());
    try {
        w.reply(zmesh::message{"unsolicited"});
        FAIL("reply() was accepted with no pending request");
    } catch (const zmesh::error& e) {
        CHECK(e.code() == zmesh::errc::invalid_argument);
    }
}

} // TEST_SUITE
