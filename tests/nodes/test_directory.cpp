// SPDX-License-Identifier: MPL-2.0
// test_directory.cpp — the broker's zmesh.directory service through zmesh::pubsub's
// directory_client and directory_registration, and raw MDP requests for the malformed cases.
#include <zmesh/nodes/broker.hpp>

#include <zmesh/error.hpp>
#include <zmesh/mdp/client.hpp>
#include <zmesh/message.hpp>
#include <zmesh/pubsub/directory.hpp>

#include "stderr_capture.hpp"
#include "support/support.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <thread>
#include <utility>
#include <vector>

using namespace std::chrono_literals;
using zmesh::message;
using zmesh::pubsub::directory_client;
using zmesh::pubsub::directory_registration;

namespace {

using support::eventually;

/// Whether @p p holds at every check during @p duration.
template <class Pred> bool always_for(Pred p, std::chrono::milliseconds duration) {
    auto deadline = std::chrono::steady_clock::now() + duration;
    while (std::chrono::steady_clock::now() < deadline) {
        if (!p()) return false;
        std::this_thread::sleep_for(10ms);
    }
    return p();
}

struct fixture {
    zmq::context_t ctx;
    zmesh::nodes::broker_config config;
    std::unique_ptr<zmesh::nodes::broker> broker;
    std::string endpoint;

    explicit fixture(
        std::size_t max_entries = zmesh::nodes::broker_config{}.max_directory_entries) {
        config.mdp_endpoint = support::inproc_endpoint("dir");
        config.heartbeat_interval = 100ms; // the tick that sweeps expired registrations
        config.max_directory_entries = max_entries;
        broker = std::make_unique<zmesh::nodes::broker>(ctx, config);
        endpoint = broker->endpoints().front();
        broker->start();
    }
    ~fixture() { broker->stop(); }

    /// A raw request, as a peer in another language would send it.
    std::vector<std::string> raw(message body) {
        zmesh::mdp::client c(ctx, endpoint);
        auto reply = c.request("zmesh.directory", std::move(body));
        std::vector<std::string> out;
        for (const auto& f : reply) out.push_back(zmesh::to_string(f));
        return out;
    }
};

using strings = std::vector<std::string>;
using pairs = std::vector<std::pair<std::string, std::string>>;

} // namespace

TEST_SUITE("nodes.directory") {

TEST_CASE("names resolve to every endpoint registered under them, until unregistered") {
    fixture f;
    directory_client dir(f.ctx, f.endpoint);
    dir.register_endpoint("prices", "tcp://10.0.0.7:6000", 30s);
    dir.register_endpoint("prices", "tcp://10.0.0.8:6000", 30s);
    dir.register_endpoint("orders", "ipc:///tmp/orders.sock", 30s);
    dir.register_endpoint("prices", "tcp://10.0.0.7:6000", 30s); // a renewal, not a second entry
    CHECK(dir.resolve("prices") == strings{"tcp://10.0.0.7:6000", "tcp://10.0.0.8:6000"});
    CHECK(dir.resolve("orders") == strings{"ipc:///tmp/orders.sock"});
    CHECK(dir.resolve("nobody").empty());
    CHECK(dir.list() == pairs{{"orders", "ipc:///tmp/orders.sock"},
                              {"prices", "tcp://10.0.0.7:6000"},
                              {"prices", "tcp://10.0.0.8:6000"}});
    CHECK(f.broker->stats().directory_entries == 3);

    dir.unregister_endpoint("prices", "tcp://10.0.0.7:6000");
    dir.unregister_endpoint("prices", "tcp://10.0.0.7:6000"); // again: still fine
    dir.unregister_endpoint("never", "tcp://10.0.0.9:1");
    CHECK(dir.resolve("prices") == strings{"tcp://10.0.0.8:6000"});
    CHECK(f.broker->stats().directory_entries == 2);

    // Plain MDP peers see the same text frames (docs/pubsub.md).
    CHECK(f.raw(message{"resolve", "orders"}) == strings{"200", "ipc:///tmp/orders.sock"});
    CHECK(f.raw(message{"resolve", "nobody"}) == strings{"404"});
}

TEST_CASE("a registration that is not renewed expires after its ttl") {
    fixture f;
    directory_client dir(f.ctx, f.endpoint);
    dir.register_endpoint("short", "tcp://127.0.0.1:7001", 200ms);
    dir.register_endpoint("long", "tcp://127.0.0.1:7002", 60s);
    CHECK(dir.resolve("short") == strings{"tcp://127.0.0.1:7001"});
    CHECK(eventually([&] { return dir.resolve("short").empty(); }));
    CHECK(dir.list() == pairs{{"long", "tcp://127.0.0.1:7002"}});
    // The broker's tick gives the memory back too.
    CHECK(eventually([&] { return f.broker->stats().directory_entries == 1; }));
}

TEST_CASE("directory_registration keeps its entry alive, and removes it when destroyed") {
    fixture f;
    directory_client dir(f.ctx, f.endpoint);
    {
        directory_registration reg(f.ctx, f.endpoint, "svc", "tcp://127.0.0.1:7100", 150ms);
        CHECK(reg.name() == "svc");
        CHECK(reg.endpoint() == "tcp://127.0.0.1:7100");
        // Several ttls long: only the renewals keep it there.
        CHECK(always_for([&] { return dir.resolve("svc") == strings{"tcp://127.0.0.1:7100"}; },
                         750ms));
    }
    CHECK(dir.resolve("svc").empty()); // unregistered at once, not left to expire
    CHECK(f.broker->stats().directory_entries == 0);

    // stop() ends it early; a second stop() and the destructor are harmless.
    directory_registration reg(f.ctx, f.endpoint, "svc2", "tcp://127.0.0.1:7101", 10s);
    CHECK(dir.resolve("svc2").size() == 1);
    std::thread other([&] { reg.stop(); });
    reg.stop();
    other.join();
    CHECK(dir.resolve("svc2").empty());
}

TEST_CASE("malformed requests get 400 and a reason") {
    fixture f;
    const std::string long_name(300, 'n');
    const std::vector<message> bad = [&] {
        std::vector<message> v;
        v.push_back(message{"bogus"});
        v.push_back(message{""});
        v.push_back(message{"register", "n"});
        v.push_back(message{"register", "n", "tcp://127.0.0.1:1", "100", "extra"});
        v.push_back(message{"register", "n", "not-an-endpoint", "100"});
        v.push_back(message{"register", "n", "udp://127.0.0.1:1", "100"});
        v.push_back(message{"register", "n", "tcp://127.0.0.1:*", "100"});
        v.push_back(message{"register", "n", "tcp://*:5555", "100"});
        v.push_back(message{"register", "", "tcp://127.0.0.1:1", "100"});
        v.push_back(message{"register", long_name, "tcp://127.0.0.1:1", "100"});
        v.push_back(message{"register", "a\nb", "tcp://127.0.0.1:1", "100"});
        v.push_back(message{"register", "n", "tcp://127.0.0.1:1", "0"});
        v.push_back(message{"register", "n", "tcp://127.0.0.1:1", "-5"});
        v.push_back(message{"register", "n", "tcp://127.0.0.1:1", "12abc"});
        v.push_back(message{"register", "n", "tcp://127.0.0.1:1", "86400001"});
        v.push_back(message{"register", "n", "tcp://127.0.0.1:1", "99999999999999999999999"});
        v.push_back(message{"unregister", "n"});
        v.push_back(message{"resolve"});
        v.push_back(message{"resolve", ""});
        v.push_back(message{"list", "x"});
        return v;
    }();
    for (const auto& body : bad) {
        std::string shown;
        for (const auto& fr : body) shown += "[" + zmesh::to_string(fr) + "]";
        auto reply = f.raw(body.clone());
        REQUIRE_MESSAGE(reply.size() == 2, shown);
        CHECK_MESSAGE(reply[0] == "400", shown);
        CHECK_MESSAGE(!reply[1].empty(), shown);
    }
    CHECK(f.broker->stats().directory_entries == 0);

    // The client reports a 400 as invalid_argument, with the broker's reason.
    directory_client dir(f.ctx, f.endpoint);
    try {
        dir.register_endpoint("n", "tcp://127.0.0.1:*", 1s);
        FAIL("no exception");
    } catch (const zmesh::error& e) {
        CHECK(e.code() == zmesh::errc::invalid_argument);
        CHECK(std::string(e.what()).find("wildcard") != std::string::npos);
    }
    CHECK_THROWS_AS(directory_registration(f.ctx, f.endpoint, "n", "nonsense", 1s),
                    zmesh::error);
}

TEST_CASE("a full directory refuses new registrations but renews existing ones") {
    fixture f;
    // 10000 registrations, pipelined through the asynchronous MDP mode.
    zmesh::mdp::client c(f.ctx, f.endpoint);
    constexpr int max = 10000;
    for (int i = 0; i < max; ++i)
        c.send("zmesh.directory",
               message{"register", "n" + std::to_string(i), "tcp://127.0.0.1:1", "60000"});
    int ok = 0;
    while (c.outstanding() > 0) {
        auto r = c.recv(2000ms);
        REQUIRE(r);
        ok += zmesh::view(r->body[0]) == "200";
    }
    CHECK(ok == max);
    directory_client dir(f.ctx, f.endpoint);
    try {
        dir.register_endpoint("one-more", "tcp://127.0.0.1:1", 1s);
        FAIL("no exception");
    } catch (const zmesh::error& e) {
        CHECK(e.code() == zmesh::errc::protocol_violation);
        CHECK(std::string(e.what()).find("503") != std::string::npos);
    }
    dir.register_endpoint("n7", "tcp://127.0.0.1:1", 60s); // a renewal needs no room
    dir.unregister_endpoint("n7", "tcp://127.0.0.1:1");
    dir.register_endpoint("one-more", "tcp://127.0.0.1:1", 1s); // room again
    CHECK(f.broker->stats().directory_entries == max);
}

TEST_CASE("max_directory_entries bounds the table under a flood of names and of endpoints") {
    fixture f(100);
    zmesh::mdp::client c(f.ctx, f.endpoint);
    // 1000 new names, then 1000 endpoints under one name, pipelined.
    for (int i = 0; i < 1000; ++i)
        c.send("zmesh.directory",
               message{"register", "flood" + std::to_string(i), "tcp://127.0.0.1:1", "60000"});
    for (int i = 0; i < 1000; ++i)
        c.send("zmesh.directory", message{"register", "one",
                                          "tcp://127.0.0.1:" + std::to_string(1000 + i), "60000"});
    int ok = 0, full = 0;
    while (c.outstanding() > 0) {
        auto r = c.recv(2000ms);
        REQUIRE(r);
        const auto status = zmesh::view(r->body[0]);
        ok += status == "200";
        full += status == "503";
    }
    CHECK(ok == 100);
    CHECK(full == 1900);
    CHECK(f.broker->stats().directory_entries == 100);
    directory_client dir(f.ctx, f.endpoint);
    CHECK(dir.list().size() == 100);
    CHECK(dir.resolve("one").empty()); // every one of them came after the table was full
}

TEST_CASE("a full directory logs what it refused, escaped, and rate limited") {
    node_test::stderr_capture err;
    fixture f(1);
    directory_client dir(f.ctx, f.endpoint);
    dir.register_endpoint("first", "tcp://127.0.0.1:1", 60s);
    // Names may not hold control bytes, but ipc paths may: a forged line, a terminal escape.
    for (int i = 0; i < 20; ++i) {
        const auto ep = "ipc:///tmp/x" + std::to_string(i) + "\x1b[2J\nzmesh error: forged";
        CHECK(f.raw(message{"register", "n\xc3\xa9", ep, "1000"})[0] == "503");
    }
    f.broker->stop();
    err.restore();
    const auto lines = err.lines_with("directory: full");
    REQUIRE(!lines.empty());
    CHECK(lines.size() <= 5);
    for (const auto& line : lines) {
        CAPTURE(line);
        CHECK(std::none_of(line.begin(), line.end(), [](char c) {
            const auto u = static_cast<unsigned char>(c);
            return u < 0x20 || u >= 0x7f;
        }));
    }
    CHECK(lines.front().find("'n\\xc3\\xa9' at 'ipc:///tmp/x0\\x1b[2J\\x0azmesh error: forged'") !=
          std::string::npos);
    CHECK(err.lines_with("zmesh error: forged").size() == lines.size());
}

TEST_CASE("the client times out against a broker that does not answer") {
    zmq::context_t ctx;
    zmq::socket_t silent(ctx, zmq::socket_type::router);
    silent.set(zmq::sockopt::linger, 0);
    const auto ep = support::inproc_endpoint("silent");
    silent.bind(ep);
    directory_client dir(ctx, ep, 200ms);
    try {
        (void)dir.resolve("x");
        FAIL("no exception");
    } catch (const zmesh::error& e) {
        CHECK(e.code() == zmesh::errc::timeout);
    }
    CHECK_THROWS_AS(directory_client(ctx, ep, 0ms), zmesh::error);
}

}
