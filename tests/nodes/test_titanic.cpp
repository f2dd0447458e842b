// SPDX-License-Identifier: MPL-2.0
// test_titanic.cpp — the Titanic node (rfc 9/TSP over MDP/0.1) end to end: an in-process broker,
// the node, plain mdp::client submitters and mdp::worker services on threads. Covers the TSP
// answers (200/300/400/500), dispatch to a service that appears late, group commit of
// concurrent submissions, the dead-letter queue, redispatch after a restart and refusal of a
// store file that is not ours.
#include <zmesh/nodes/titanic.hpp>

#include "titanic/sqlite_store.hpp"

#include <zmesh/error.hpp>
#include <zmesh/mdp/client.hpp>
#include <zmesh/mdp/durable_client.hpp>
#include <zmesh/mdp/worker.hpp>
#include <zmesh/nodes/broker.hpp>

#include "support/process.hpp"
#include "support/support.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <fstream>
#include <functional>
#include <iterator>
#include <optional>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
namespace zn = zmesh::nodes;
namespace mdp = zmesh::mdp;

namespace {

using strings = std::vector<std::string>;

strings to_strings(const zmesh::message& m) {
    strings out;
    for (const auto& f : m) out.push_back(zmesh::to_string(f));
    return out;
}

zmesh::message to_message(const strings& s) {
    zmesh::message m;
    for (const auto& f : s) m.push_back(std::string_view(f));
    return m;
}

/// An MDP service on its own thread, answering each request with handler(request).
class service_thread {
  public:
    service_thread(zmq::context_t& ctx, std::string endpoint, std::string name,
                   std::function<strings(const strings&)> handler)
        : thread_([this, &ctx, endpoint = std::move(endpoint), name = std::move(name),
                   handler = std::move(handler)] {
              mdp::worker w(ctx, endpoint, name);
              while (!stop_.load()) {
                  auto r = w.recv(20ms);
                  if (!r) continue;
                  ++served_;
                  w.reply(to_message(handler(to_strings(*r))));
              }
              w.close();
          }) {}
    ~service_thread() {
        stop_.store(true);
        thread_.join();
    }
    service_thread(const service_thread&) = delete;
    service_thread& operator=(const service_thread&) = delete;
    int served() const noexcept { return served_.load(); }

  private:
    std::atomic<bool> stop_{false};
    std::atomic<int> served_{0};
    std::thread thread_;
};

strings echo(const strings& r) { return r; }

mdp::client_options client_opts(std::chrono::milliseconds timeout) {
    mdp::client_options o;
    o.timeout = timeout;
    o.retries = 1;
    return o;
}

/// A broker and a store directory; the node is created by the test.
struct fixture {
    zmq::context_t ctx;
    support::temp_dir dir;
    std::optional<zn::broker> broker;
    std::string endpoint;

    fixture() {
        zn::broker_config cfg;
        cfg.mdp_endpoint = "tcp://127.0.0.1:*";
        broker.emplace(ctx, cfg);
        broker->start();
        endpoint = broker->endpoints().front();
    }

    zn::titanic_config config() const {
        zn::titanic_config c;
        c.broker_endpoint = endpoint;
        c.store_path = dir.path() / "titanic.db";
        c.max_attempts = 3;
        c.retry_initial = 20ms;
        c.retry_max = 100ms;
        c.request_timeout = 2000ms;
        c.dispatch_concurrency = 4;
        c.service_poll = 100ms;
        return c;
    }

    /// One TSP call through the broker with a plain MDP client.
    strings call(std::string_view service, const strings& body) {
        mdp::client c(ctx, endpoint, client_opts(3000ms));
        return to_strings(c.request(service, to_message(body)));
    }

    std::string submit(const std::string& service, strings body) {
        body.insert(body.begin(), service);
        auto r = call("titanic.request", body);
        REQUIRE(r.size() == 2);
        REQUIRE(r[0] == "200");
        REQUIRE(zn::titanic::is_valid_id(r[1]));
        return r[1];
    }

    /// Polls titanic.reply until its status is not 300 (bounded).
    strings wait_reply(const std::string& id, std::chrono::milliseconds timeout = 8000ms) {
        strings r;
        support::eventually(
            [&] {
                r = call("titanic.reply", {id});
                return r.empty() || r[0] != "300";
            },
            timeout);
        return r;
    }
};

} // namespace

TEST_SUITE("nodes.titanic") {

TEST_CASE("a submitted request is acknowledged with an id, executed, replied and closed") {
    fixture f;
    auto config = f.config();
    SUBCASE("zmesh extensions: workers with credit, one tagged dispatch client (the default)") {
        REQUIRE(config.request_credit > 1);
    }
    SUBCASE("plain MDP/0.1: one worker request and one dispatch client per request") {
        config.request_credit = 1;
    }
    zn::titanic_node node(f.ctx, config);
    node.start();
    service_thread svc(f.ctx, f.endpoint, "echo", echo);

    const strings body = {"hello", "", std::string("bin\0ary", 7)};
    const auto id = f.submit("echo", body);
    auto r = f.wait_reply(id);
    REQUIRE(!r.empty());
    CHECK(r[0] == "200");
    CHECK(strings(r.begin() + 1, r.end()) == body);
    CHECK(f.call("titanic.reply", {id}) == r); // idempotent

    CHECK(f.call("titanic.close", {id}) == strings{"200"});
    CHECK(f.call("titanic.reply", {id}) == strings{"400"});
    CHECK(f.call("titanic.close", {id}) == strings{"200"}); // idempotent
    CHECK(node.stats().stored == 1);
    CHECK(node.stats().replied == 1);
}

TEST_CASE("malformed TSP requests get 400 with a reason") {
    fixture f;
    zn::titanic_node node(f.ctx, f.config());
    node.start();
    auto r = f.call("titanic.request", {""});
    REQUIRE(r.size() == 2);
    CHECK(r[0] == "400");
    r = f.call("titanic.request", {"titanic.request", "x"});
    CHECK(r.at(0) == "400");
    r = f.call("titanic.reply", {"a", "b"});
    CHECK(r.at(0) == "400");
    CHECK(f.call("titanic.reply", {"not-an-id"}) == strings{"400"});
    CHECK(f.call("titanic.close", {"a", "b"}).at(0) == "400");
    CHECK(node.stats().stored == 0);
}

TEST_CASE("a request for a service with no worker stays pending until a worker appears") {
    fixture f;
    zn::titanic_node node(f.ctx, f.config());
    node.start();
    const auto id = f.submit("late", {"ping"});
    std::this_thread::sleep_for(500ms);
    CHECK(f.call("titanic.reply", {id}) == strings{"300"});
    CHECK(node.stats().failures == 0); // waiting for a worker burns no attempt

    service_thread svc(f.ctx, f.endpoint, "late", echo);
    CHECK(f.wait_reply(id) == strings{"200", "ping"});
    CHECK(svc.served() == 1);
}

TEST_CASE("concurrent submissions are acknowledged in shared commits") {
    fixture f;
    auto config = f.config();
    SUBCASE("workers with credit (the default)") {
        REQUIRE(config.request_credit > 1);
    }
    SUBCASE("plain MDP/0.1 connections, for brokers that are not zmesh's") {
        config.request_credit = 1;
        config.request_connections = 8;
    }
    zn::titanic_node node(f.ctx, config);
    node.start();
    constexpr int submitters = 8, each = 15;
    std::atomic<int> acknowledged{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < submitters; ++t)
        threads.emplace_back([&, t] {
            mdp::client c(f.ctx, f.endpoint, client_opts(5000ms));
            for (int i = 0; i < each; ++i) {
                auto r = to_strings(c.request(
                    "titanic.request",
                    zmesh::message{"echo", std::to_string(t) + "/" + std::to_string(i)}));
                if (r.size() == 2 && r[0] == "200" && zn::titanic::is_valid_id(r[1]))
                    ++acknowledged;
            }
        });
    for (auto& t : threads) t.join();
    CHECK(acknowledged.load() == submitters * each);
    const auto s = node.stats();
    CHECK(s.stored == submitters * each);
    CHECK(s.largest_batch > 1);
    CHECK(s.batches < s.stored);
    MESSAGE("commits: " << s.batches << ", largest: " << s.largest_batch);
}

TEST_CASE("a service that always fails sends its request to the dead-letter queue") {
    fixture f;
    zn::titanic_node node(f.ctx, f.config());
    node.start();
    service_thread svc(f.ctx, f.endpoint, "broken", [](const strings&) {
        return strings{"zmesh.error", "500", "boom"};
    });
    const auto id = f.submit("broken", {"x"});
    REQUIRE(support::eventually([&] { return node.stats().dead_lettered == 1; }, 8000ms));
    CHECK(node.stats().failures == 3);
    CHECK(svc.served() == 3);

    auto st = zn::titanic::open_sqlite_store(f.config().store_path);
    auto dlq = st->dlq_list(10);
    REQUIRE(dlq.size() == 1);
    CHECK(dlq[0].request.id == id);
    CHECK(dlq[0].request.attempts == 3);
    CHECK(dlq[0].reason.find("3 attempts") != std::string::npos);
    CHECK(dlq[0].reason.find("boom") != std::string::npos);

    auto r = f.call("titanic.reply", {id});
    REQUIRE(r.size() == 2);
    CHECK(r[0] == "500");
    CHECK(r[1].find("dead-lettered") != std::string::npos);
    CHECK(r[1].find("boom") != std::string::npos);
}

TEST_CASE("dead-lettered requests are re-driven by zmesh dlq replay once the service is fixed") {
    fixture f;
    zn::titanic_node node(f.ctx, f.config());
    node.start();
    std::vector<std::string> ids;
    {
        service_thread broken(f.ctx, f.endpoint, "flaky", [](const strings&) {
            return strings{"zmesh.error", "500", "not today"};
        });
        for (int i = 0; i < 3; ++i) ids.push_back(f.submit("flaky", {"job-" + std::to_string(i)}));
        REQUIRE(support::eventually([&] { return node.stats().dead_lettered == 3; }, 10000ms));
    } // the broken worker leaves
    for (const auto& id : ids) CHECK(f.call("titanic.reply", {id})[0] == "500");

    // The service is fixed; an operator replays the dead letters from the shell while the node
    // runs (a second process on the same store).
    service_thread fixed(f.ctx, f.endpoint, "flaky", echo);
    support::child_process replay({support::zmesh_cli(), "dlq", "replay", "--all", "--store",
                                   f.config().store_path.string()});
    REQUIRE(replay.wait_for(10000ms) == std::optional<int>(0));
    for (int i = 0; i < 3; ++i)
        CHECK(f.wait_reply(ids[static_cast<std::size_t>(i)]) ==
              strings{"200", "job-" + std::to_string(i)});
    CHECK(fixed.served() == 3);
    CHECK(zn::titanic::open_sqlite_store(f.config().store_path)->dlq_list(10).empty());
}

TEST_CASE("a request whose ttl passes before its service answers is dead-lettered") {
    fixture f;
    zn::titanic_node node(f.ctx, f.config());
    node.start();
    mdp::durable_client client(f.ctx, f.endpoint, {.mdp = client_opts(3000ms)});
    const auto id = client.submit("nobody-serves-this", to_message({"late"}), 200ms);
    REQUIRE(support::eventually([&] { return node.stats().dead_lettered == 1; }, 8000ms));
    auto dlq = zn::titanic::open_sqlite_store(f.config().store_path)->dlq_list(10);
    REQUIRE(dlq.size() == 1);
    CHECK(dlq[0].request.id == id);
    CHECK(dlq[0].reason.find("ttl") != std::string::npos);
    auto r = f.call("titanic.reply", {id});
    REQUIRE(r.size() == 2);
    CHECK(r[0] == "500");

    // Without a ttl the same request would wait for its service; a garbled header is refused.
    auto bad = f.call("titanic.request", {"svc", "zmesh.header", "not a header", "body"});
    REQUIRE(bad.size() == 2);
    CHECK(bad[0] == "400");
}

TEST_CASE("a stored request not yet executed is dispatched after a restart") {
    fixture f;
    std::string id;
    {
        zn::titanic_node node(f.ctx, f.config());
        node.start();
        id = f.submit("after-restart", {"still", "here"});
        node.stop();
    }
    service_thread svc(f.ctx, f.endpoint, "after-restart", echo);
    zn::titanic_node node(f.ctx, f.config());
    node.start();
    CHECK(f.wait_reply(id) == strings{"200", "still", "here"});
    CHECK(svc.served() == 1);
}

TEST_CASE("a store file that is not SQLite is refused and left unchanged") {
    fixture f;
    const auto path = f.config().store_path;
    const std::string junk = "this is not a database, and must stay as it is\n";
    {
        std::ofstream out(path, std::ios::binary);
        out << junk;
    }
    try {
        zn::titanic_node node(f.ctx, f.config());
        FAIL("the node started on a foreign file");
    } catch (const zmesh::error& e) {
        CHECK(e.code() == zmesh::errc::storage);
        CHECK(std::string(e.what()).find(path.filename().string()) != std::string::npos);
    }
    std::ifstream in(path, std::ios::binary);
    const std::string now((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    CHECK(now == junk);
}

} // TEST_SUITE
