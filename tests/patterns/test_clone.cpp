// SPDX-License-Identifier: MPL-2.0
// test_clone.cpp — Clone (ZMCL01): a server and clients in-process. A client that joins during a
// stream of changes converges to exactly the server's state; a client that misses updates (a
// test hook that drops some, a subscriber queue that overflows, a lost last update) re-syncs from
// a snapshot; malformed messages to either side are counted and dropped.
#include "support/support.hpp"

#include <zmesh/error.hpp>
#include <zmesh/patterns/clone.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <map>
#include <memory>
#include <thread>

using namespace std::chrono_literals;
namespace cl = zmesh::patterns::clone;
using state_map = std::map<std::string, std::string, std::less<>>;

namespace {

/// A server on a thread of its own, stopped with the fixture.
class running_server {
  public:
    explicit running_server(zmq::context_t& ctx, cl::server_options options = {}) {
        if (options.bind.empty()) options.bind = "tcp://127.0.0.1:*";
        if (options.hugz_interval == 1000ms) options.hugz_interval = 100ms;
        server_ = std::make_unique<cl::server>(ctx, std::move(options));
        thread_ = std::thread([this] { server_->run(); });
    }
    ~running_server() {
        server_->stop();
        thread_.join();
    }
    running_server(const running_server&) = delete;
    running_server& operator=(const running_server&) = delete;
    cl::server& operator*() { return *server_; }
    cl::server* operator->() { return server_.get(); }
    cl::client_options client(cl::client_options o = {}) const {
        o.server = server_->endpoint();
        o.updates = server_->updates_endpoint();
        return o;
    }

  private:
    std::unique_ptr<cl::server> server_;
    std::thread thread_;
};

struct joiner {
    std::thread& t;
    ~joiner() {
        if (t.joinable()) t.join();
    }
};

/// Sets key-(i % keys) to value-i for i in [first, last), removing every 13th; mirrors it in
/// @p model. @returns the last sequence.
std::uint64_t write(cl::client& c, int first, int last, state_map& model, int keys = 40) {
    std::uint64_t seq = 0;
    for (int i = first; i < last; ++i) {
        const std::string key = "key-" + std::to_string(i % keys);
        if (i % 13 == 0) {
            seq = c.erase(key);
            model.erase(key);
        } else {
            seq = c.set(key, "value-" + std::to_string(i));
            model[key] = "value-" + std::to_string(i);
        }
    }
    return seq;
}

} // namespace

TEST_SUITE("patterns.clone") {

TEST_CASE("clone set then get through the server") {
    zmq::context_t ctx;
    running_server s(ctx);
    cl::client c(ctx, s.client());
    c.sync();
    CHECK(c.sequence() == 0);
    const auto seq = c.set("/a", "1");
    CHECK(seq == 1);
    REQUIRE(c.wait_for(seq, 2000ms));
    CHECK(c.get("/a") == "1");
    CHECK(c.erase("/a") == 2);
    REQUIRE(c.wait_for(2, 2000ms));
    CHECK_FALSE(c.get("/a"));
    CHECK(s->stats().sequence == 2);
    CHECK(c.stats().gaps == 0);
    // A second client's snapshot agrees.
    cl::client d(ctx, s.client());
    CHECK(d.set("/b", std::string("\0\xff", 2)) == 3);
    d.sync();
    CHECK(d.state() == state_map{{"/b", std::string("\0\xff", 2)}});
}

TEST_CASE("clone client that joins mid-stream converges to exactly the server's state") {
    zmq::context_t ctx;
    running_server s(ctx);
    state_map model;
    std::atomic<std::uint64_t> last{0};
    std::thread writer([&] {
        cl::client w(ctx, s.client());
        last = write(w, 0, 3000, model);
    });
    joiner join_writer{writer};
    REQUIRE(support::eventually([&] { return s->stats().sequence >= 500; }, 10s));
    cl::client late(ctx, s.client());
    std::vector<cl::change> changes;
    late.on_change([&](const cl::change& c) { changes.push_back(c); });
    late.sync();
    const auto joined_at = late.sequence();
    CHECK(joined_at >= 500);
    while (last.load() == 0) late.poll(10ms); // follow while the writer writes
    writer.join();
    REQUIRE(late.wait_for(last.load(), 3000ms));
    CHECK(late.sequence() == last.load());
    CHECK(late.state() == model);
    CHECK(late.stats().updates > 0); // it followed updates, not only a snapshot
    MESSAGE("joined at " << joined_at << " of " << last.load() << "; updates "
                         << late.stats().updates << ", overlap " << late.stats().overlap
                         << ", resyncs " << late.stats().resyncs);
    // The changes it reported, replayed, give the same state.
    state_map replay;
    for (const auto& c : changes) {
        if (c.value) replay[c.key] = *c.value;
        else replay.erase(c.key);
    }
    CHECK(replay == model);
    // And a fresh snapshot is the same state.
    cl::client fresh(ctx, s.client());
    fresh.sync();
    CHECK(fresh.state() == model);
    CHECK(fresh.sequence() == last.load());
}

TEST_CASE("clone client that misses updates (sequence gap) recovers from a snapshot") {
    zmq::context_t ctx;
    running_server s(ctx);
    cl::client w(ctx, s.client());
    auto o = s.client();
    o.drop_update = [](std::uint64_t seq) { return seq == 20 || seq == 21 || seq == 55; };
    cl::client c(ctx, std::move(o));
    c.sync();
    state_map model;
    const auto last = write(w, 1, 101, model);
    REQUIRE(c.wait_for(last, 3000ms));
    CHECK(c.state() == model);
    CHECK(c.stats().dropped_by_hook >= 2);
    CHECK(c.stats().gaps >= 1);
    CHECK(c.stats().resyncs >= 1);
}

TEST_CASE("clone lost last update is found by the HUGZ and recovered") {
    zmq::context_t ctx;
    running_server s(ctx, {.hugz_interval = 50ms});
    cl::client w(ctx, s.client());
    auto o = s.client();
    o.drop_update = [](std::uint64_t seq) { return seq == 10; };
    cl::client c(ctx, std::move(o));
    c.sync();
    state_map model;
    const auto last = write(w, 1, 11, model); // the 10th, last, is dropped
    CHECK(last == 10);
    REQUIRE(c.wait_for(last, 3000ms));
    CHECK(c.state() == model);
    CHECK(c.stats().gaps == 1);
    CHECK(c.stats().resyncs == 1);
}

TEST_CASE("clone subscriber whose queue overflows re-syncs from a snapshot") {
    zmq::context_t ctx;
    // inproc: the queue between the PUB and a SUB holds exactly the two high-water marks.
    running_server s(ctx, {.bind = support::inproc_endpoint("clone-hwm"),
                           .publish = support::inproc_endpoint("clone-hwm-updates"),
                           .publish_hwm = 10});
    auto o = s.client();
    o.updates_hwm = 10;
    cl::client slow(ctx, std::move(o));
    slow.sync();
    slow.poll(support::settle_time); // its subscription is in place
    cl::client w(ctx, s.client());
    state_map model;
    const auto last = write(w, 1, 301, model); // while slow reads nothing
    REQUIRE(slow.wait_for(last, 3000ms));
    CHECK(slow.state() == model);
    CHECK(slow.stats().gaps >= 1);
    CHECK(slow.stats().resyncs >= 1);
    CHECK(slow.stats().updates < 300); // some were really lost
}

TEST_CASE("clone client re-syncs to a restarted server (another epoch)") {
    zmq::context_t ctx;
    const auto ep = support::ipc_endpoint("clone-restart");
    const cl::server_options so{.bind = ep, .hugz_interval = 50ms};
    auto first = std::make_unique<running_server>(ctx, so);
    cl::client c(ctx, first->client());
    c.sync();
    cl::client w(ctx, first->client());
    state_map model;
    REQUIRE(c.wait_for(write(w, 1, 21, model), 3000ms));
    REQUIRE(c.state() == model);
    first.reset(); // the state goes with it
    running_server second(ctx, so);
    // A fresh writer: a change sent into the old connection as it dies is lost (the client
    // does not resend a change: set() would time out).
    cl::client w2(ctx, second.client());
    REQUIRE(w2.set("after", "restart") == 1);
    // The copy had sequence 20; the new run's sequences start again at 1, and its HUGZ carry
    // another epoch: the client takes the new state, not a mix.
    CHECK(support::eventually([&] {
        c.poll(20ms);
        return c.state() == state_map{{"after", "restart"}};
    }));
    CHECK(c.sequence() == 1);
    CHECK(c.stats().resyncs >= 1);
}

TEST_CASE("clone malformed messages to the server are counted and dropped") {
    zmq::context_t ctx;
    running_server s(ctx);
    auto raw = support::dealer(ctx, s->endpoint());
    const std::vector<std::vector<std::string>> junk = {
        {"junk"},
        {"ZMCL01"},
        {"ZMCL01", "\x7f"},
        {"ZMCL01", std::string(1, '\x02'), "key"},             // SET without a value
        {"ZMCL01", std::string(1, '\x02'), "", "value"},       // SET with an empty key
        {"ZMCL01", std::string(1, '\x03')},                    // ERASE without a key
        {"ZMCL01", std::string(1, '\x20'), "k", "v"},          // an update is no client's
    };
    for (const auto& j : junk) REQUIRE(support::frames(j).send(raw) == zmesh::send_status::sent);
    REQUIRE(support::eventually([&] { return s->stats().malformed == junk.size(); }));
    cl::client c(ctx, s.client());
    CHECK(c.set("k", "v") == 1); // still serving; nothing malformed changed the state
    c.sync();
    CHECK(c.state() == state_map{{"k", "v"}});
}

TEST_CASE("clone malformed messages to the client are counted and dropped") {
    zmq::context_t ctx;
    // A hand-driven server: a ROUTER for the snapshot, an XPUB that tells when the client has
    // subscribed.
    zmq::socket_t router(ctx, zmq::socket_type::router), xpub(ctx, zmq::socket_type::xpub);
    router.set(zmq::sockopt::linger, 0);
    xpub.set(zmq::sockopt::linger, 0);
    const auto ep = support::bind_loopback(router);
    const auto updates = support::bind_loopback(xpub);
    cl::client c(ctx, {.server = ep, .updates = updates, .timeout = 3000ms});
    const std::string epoch(8, '\x01'), seq0(8, '\0'), seq1 = std::string(7, '\0') + "\x01";
    std::thread fake([&] {
        auto sub = support::recv_for(xpub, 3000ms); // the subscription
        auto req = support::recv_for(router, 3000ms);
        if (!sub || !req) return;
        const auto rid = support::texts(*req).at(0);
        (void)support::frames({rid, "nonsense"}).send(router);
        (void)support::frames({rid, "ZMCL01", "\x10", epoch, seq0, "odd"}).send(router);
        (void)support::frames({rid, "ZMCL01", "\x10", epoch, seq0}).send(router);
        for (const auto& j : std::vector<std::vector<std::string>>{
                 {"k", "ZMCL01", "\x20", "short", "v"},
                 {"k", "ZMCL01", "\x20", seq1},
                 {"", "ZMCL01", "\x20", seq1, "v"},
                 {"k", "ZMCLxx", "\x20", seq1, "v"},
             })
            (void)support::frames(j).send(xpub);
        (void)support::frames({"k", "ZMCL01", "\x20", seq1, "v"}).send(xpub);
    });
    joiner join_fake{fake};
    c.sync();
    CHECK(c.stats().malformed == 2);
    CHECK(c.wait_for(1, 3000ms));
    CHECK(c.state() == state_map{{"k", "v"}});
    CHECK(c.stats().malformed == 6);
}

TEST_CASE("clone sync with no server fails in bounded time naming it") {
    zmq::context_t ctx;
    const auto ep = support::ipc_endpoint("clone-none");
    cl::client c(ctx, {.server = ep, .timeout = 300ms});
    const auto start = std::chrono::steady_clock::now();
    try {
        c.sync();
        FAIL("synced with nobody");
    } catch (const zmesh::error& e) {
        CHECK(e.code() == zmesh::errc::timeout);
        CHECK(std::string(e.what()).find(ep) != std::string::npos);
    }
    CHECK(std::chrono::steady_clock::now() - start < 2000ms);
}

} // TEST_SUITE
