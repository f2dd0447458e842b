// SPDX-License-Identifier: MPL-2.0
// test_forwarder_security.cpp — the pub/sub forwarder with CURVE (docs/security.md, "Pub/sub"):
// the access list refuses topics by key on both sides, the publish rate is held per key, keys
// removed or rights withdrawn cut their connections off, and subscribers that come and go under
// load never leave the forwarder pointing at a closed connection. Raw ZeroMQ peers over loopback
// TCP, so the test sees exactly what crosses the forwarder.
#include "forwarder_fixture.hpp"

#include <zmesh/security/acl.hpp>
#include <zmesh/security/keys.hpp>
#include <zmesh/security/zap.hpp>

#include <atomic>
#include <thread>

using namespace forwarder_test;
namespace security = zmesh::security;

namespace {

struct secure_forwarder : fixture {
    security::certificate server = security::generate("broker");
    std::map<std::string, security::certificate> keys;

    explicit secure_forwarder(std::string acl,
                              std::initializer_list<const char*> names = {"feed", "feed2", "alice",
                                                                          "bob", "mallory"}) {
        config.curve = server;
        for (const char* n : names) {
            keys.emplace(n, security::generate(n));
            config.access.keys.insert_or_assign(keys.at(n).public_key, n);
        }
        if (!acl.empty())
            config.acl = std::make_shared<const security::access_list>(
                security::access_list::parse(acl, "test acl"));
    }

    zmq::socket_t sub(const std::string& who, std::initializer_list<std::string_view> topics,
                      int rcvhwm = 1000) {
        zmq::socket_t s(ctx, zmq::socket_type::sub);
        s.set(zmq::sockopt::linger, 0);
        s.set(zmq::sockopt::rcvhwm, rcvhwm); // before connecting, as libzmq requires
        security::make_curve_client(s, server.public_key, keys.at(who));
        s.connect(xpub);
        for (auto t : topics) s.set(zmq::sockopt::subscribe, t);
        return s;
    }

    zmq::socket_t pub(const std::string& who) {
        zmq::socket_t s(ctx, zmq::socket_type::xpub);
        s.set(zmq::sockopt::linger, 0);
        s.set(zmq::sockopt::sndhwm, 100000);
        s.set(zmq::sockopt::xpub_nodrop, 1);
        s.set(zmq::sockopt::sndtimeo, 10000);
        security::make_curve_client(s, server.public_key, keys.at(who));
        s.connect(xsub);
        return s;
    }

    /// A client for the broker's own services (needs an admin rule).
    zmesh::mdp::client mdp_client(const std::string& who) {
        zmesh::mdp::client_options o;
        o.timeout = 3000ms;
        o.retries = 1;
        o.curve = security::curve_client_keys{server.public_key, keys.at(who)};
        return zmesh::mdp::client(ctx, mdp, o);
    }
};

/// Every data message @p s receives until @p quiet passes with nothing: topic of each.
std::vector<std::string> drain_topics(zmq::socket_t& s, std::chrono::milliseconds quiet = 300ms) {
    std::vector<std::string> topics;
    while (auto m = recv_data(s, quiet)) topics.push_back(zmesh::to_string((*m)[0]));
    return topics;
}

std::size_t count_prefix(const std::vector<std::string>& topics, std::string_view prefix) {
    return static_cast<std::size_t>(std::count_if(
        topics.begin(), topics.end(), [&](const std::string& t) { return t.starts_with(prefix); }));
}

} // namespace

TEST_SUITE_BEGIN("nodes.forwarder.security");

TEST_CASE("the access list refuses a topic prefix to one subscriber and allows it to another") {
    secure_forwarder f("feed publish *\nalice subscribe prices.*\nbob subscribe news.*\n");
    f.start();
    auto feed = f.pub("feed");
    auto alice = f.sub("alice", {"prices."});
    ready(alice);
    // Bob subscribes to both; prices. is refused, news. allowed, on one connection.
    auto bob = f.sub("bob", {"prices.", "news."});
    ready(bob);
    await_subscriptions(feed, {"prices.", "news."});
    for (std::uint64_t i = 1; i <= 50; ++i) {
        publish(feed, data_message("prices.eur", i));
        publish(feed, data_message("news.fx", i));
    }
    const auto got_alice = drain_topics(alice);
    const auto got_bob = drain_topics(bob);
    CHECK(count_prefix(got_alice, "prices.") == 50);
    CHECK(count_prefix(got_bob, "news.") == 50);  // kept its connection and its allowed topic
    CHECK(count_prefix(got_bob, "prices.") == 0); // and nothing of the refused one
    const auto s = f.broker->stats();
    CHECK(s.subscriptions_forbidden == 1);
    CHECK(s.cut_off == 0);
}

TEST_CASE("a subscriber refused first does not take the prefix away from one allowed later") {
    // libzmq's manual XPUB reports every subscriber's cancel; the forwarder counts holders per
    // connection, refused ones included, so the prefix stays upstream while anyone holds it.
    secure_forwarder f("feed publish *\nalice subscribe t.*\n");
    f.start();
    auto feed = f.pub("feed");
    {
        auto bob = f.sub("bob", {"t."});
        ready(bob);
        auto alice = f.sub("alice", {"t."});
        ready(alice);
        await_subscription(feed, "t.");
        publish(feed, data_message("t.1", 1));
        CHECK(recv_data(alice));
        CHECK_FALSE(recv_data(bob, 300ms));
        bob.close(); // the refused holder leaves first
        CHECK(eventually([&] { return f.broker->stats().subscriptions_forbidden == 1; }));
        std::this_thread::sleep_for(200ms); // its cancel reaches the forwarder
        publish(feed, data_message("t.1", 2));
        auto m = recv_data(alice);
        REQUIRE(m);
        CHECK(seq_of(*m) == 2);
    }
    // Both gone: only now is the prefix cancelled upstream.
    await_subscription(feed, "t.", false);
}

TEST_CASE("subscriptions are counted per connection: the last one to leave cancels upstream") {
    secure_forwarder f("feed publish *\n* subscribe *\n");
    f.start();
    auto feed = f.pub("feed");
    auto a = f.sub("alice", {"x."});
    ready(a);
    CHECK(await_subscription(feed, "x.").empty());
    auto b = f.sub("bob", {"x."});
    ready(b);
    b.set(zmq::sockopt::unsubscribe, "x.");
    ready(b); // its cancel is in
    publish(feed, data_message("x.1", 1));
    CHECK(recv_data(a)); // still upstream for alice
    CHECK_FALSE(recv_data(b, 300ms));
    a.close();
    await_subscription(feed, "x.", false);
}

TEST_CASE("the access list drops a publication on a topic its key may not publish") {
    secure_forwarder f("feed publish prices.*\n* subscribe *\n");
    f.start();
    auto feed = f.pub("feed");
    auto mallory = f.pub("mallory");
    auto alice = f.sub("alice", {"prices."});
    ready(alice);
    await_subscription(feed, "prices.");
    await_subscription(mallory, "prices.");
    for (std::uint64_t i = 1; i <= 20; ++i) {
        publish(mallory, data_message("prices.fake", i));
        publish(feed, data_message("prices.real", i));
    }
    const auto got = drain_topics(alice);
    CHECK(count_prefix(got, "prices.real") == 20);
    CHECK(count_prefix(got, "prices.fake") == 0);
    CHECK(f.broker->stats().publications_forbidden == 20);
}

TEST_CASE("one key over its publish rate is throttled, and another key's messages all arrive") {
    secure_forwarder f("");
    f.config.max_key_publish_rate = 100;
    f.start();
    auto loud = f.pub("feed");
    auto quiet = f.pub("feed2");
    auto alice = f.sub("alice", {"t."}, 0);
    ready(alice);
    await_subscription(loud, "t.");
    await_subscription(quiet, "t.");
    for (std::uint64_t i = 1; i <= 2000; ++i) publish(loud, data_message("t.loud", i));
    for (std::uint64_t i = 1; i <= 50; ++i) publish(quiet, data_message("t.quiet", i));
    const auto got = drain_topics(alice, 500ms);
    const auto loud_got = count_prefix(got, "t.loud");
    CHECK(count_prefix(got, "t.quiet") == 50);
    CHECK(loud_got >= 100);  // the burst: one second's worth
    CHECK(loud_got < 2000);  // not all of it
    const auto s = f.broker->stats();
    CHECK(s.publications_throttled == 2000 - loud_got);
}

TEST_CASE("set_access cuts off the publishers and subscribers of a removed key") {
    secure_forwarder f("");
    f.start();
    auto feed = f.pub("feed");
    auto alice = f.sub("alice", {"t."});
    ready(alice);
    auto bob = f.sub("bob", {"t."});
    ready(bob);
    await_subscription(feed, "t.");
    publish(feed, data_message("t.1", 1));
    REQUIRE(recv_data(alice));
    REQUIRE(recv_data(bob));

    // Remove feed and bob; alice stays. Feed2 is new.
    auto access = f.config.access;
    access.keys.erase(f.keys.at("feed").public_key);
    access.keys.erase(f.keys.at("bob").public_key);
    f.broker->set_access(access);
    CHECK(eventually([&] { return f.broker->stats().cut_off == 2; }));
    publish(feed, data_message("t.1", 2)); // goes nowhere: feed's connection is gone
    CHECK_FALSE(recv_data(alice, 300ms));
    auto feed2 = f.pub("feed2");
    await_subscription(feed2, "t.");
    publish(feed2, data_message("t.2", 1));
    CHECK(recv_data(alice));
    CHECK_FALSE(recv_data(bob, 300ms)); // bob's reconnections are refused in the handshake
}

TEST_CASE("a reloaded access list that withdraws a topic cuts its subscriber off for good") {
    secure_forwarder f("feed publish *\nalice subscribe t.*\nbob subscribe t.*\n");
    f.start();
    auto feed = f.pub("feed");
    auto alice = f.sub("alice", {"t."});
    ready(alice);
    auto bob = f.sub("bob", {"t."});
    ready(bob);
    await_subscription(feed, "t.");
    f.broker->set_acl(std::make_shared<const security::access_list>(
        security::access_list::parse("feed publish *\nalice subscribe t.*\n", "reloaded")));
    // Bob is cut off; libzmq reconnects it and subscribes again (while the application calls
    // into the socket: hence the receives), and that is refused.
    CHECK(eventually([&] {
        CHECK_FALSE(recv_data(bob, 20ms));
        return f.broker->stats().subscriptions_forbidden >= 2;
    }));
    for (std::uint64_t i = 1; i <= 10; ++i) publish(feed, data_message("t.x", i));
    CHECK(count_prefix(drain_topics(alice), "t.") == 10);
    CHECK(drain_topics(bob).empty());
}

TEST_CASE("a subscriber that sends a message upstream is cut off, and the others' subscriptions hold") {
    secure_forwarder f("feed publish *\n* subscribe *\n");
    f.start();
    auto feed = f.pub("feed");
    zmq::socket_t rogue(f.ctx, zmq::socket_type::xsub);
    rogue.set(zmq::sockopt::linger, 0);
    security::make_curve_client(rogue, f.server.public_key, f.keys.at("mallory"));
    rogue.connect(f.xpub);
    // Not subscriptions: an empty frame and one that starts with 2 (libzmq would queue both
    // for the forwarder without saying where they came from).
    REQUIRE(rogue.send(zmq::buffer(std::string_view("\x02hello")), zmq::send_flags::none));
    REQUIRE(rogue.send(zmq::message_t(), zmq::send_flags::none));
    auto alice = f.sub("alice", {"a."});
    ready(alice);
    auto bob = f.sub("bob", {"b."});
    ready(bob);
    await_subscriptions(feed, {"a.", "b."});
    for (std::uint64_t i = 1; i <= 10; ++i) {
        publish(feed, data_message("a.x", i));
        publish(feed, data_message("b.x", i));
    }
    const auto got_alice = drain_topics(alice);
    const auto got_bob = drain_topics(bob);
    CHECK(got_alice.size() == 10);
    CHECK(count_prefix(got_alice, "a.") == 10);
    CHECK(got_bob.size() == 10);
    CHECK(count_prefix(got_bob, "b.") == 10);
}

TEST_CASE("subscribers coming and going under load leave the forwarder sound") {
    // libzmq 4.3.4 keeps a pointer to a closed connection's pipe next to its queued
    // subscriptions, and applying one of those would store a freed pointer. Subscribers that
    // close the moment their subscription leaves make such subscriptions arrive (the forwarder
    // logs "out of step" for each, a few per run here): the forwarder must skip them, and go on
    // serving everyone who stays and everyone who comes. Run under ASan by scripts/test
    // --sanitize. Whether libzmq had already freed a given pipe is a matter of timing, so this
    // exercises the guard rather than proving the crash it prevents.
    secure_forwarder f("feed publish *\n* subscribe *\n");
    f.config.lossless = true; // the steady subscriber reads only at the end
    f.start();
    auto feed = f.pub("feed");
    auto steady = f.sub("alice", {"load."}, 0); // takes everything: the forwarder never waits
    ready(steady);
    await_subscription(feed, "load.");
    std::atomic<bool> stop{false};
    std::thread churn([&] {
        // Bounded: at most 300 short-lived subscribers, each closed the moment its handshake
        // is done, which is when its subscription leaves: some close while their subscriptions
        // wait in the forwarder's queue. Their own context, so that their I/O thread is not
        // the broker's.
        zmq::context_t cctx;
        for (int i = 0; i < 300 && !stop; ++i) {
            zmq::socket_t s(cctx, zmq::socket_type::sub);
            s.set(zmq::sockopt::linger, 0);
            security::make_curve_client(s, f.server.public_key, f.keys.at(i % 2 ? "bob" : "mallory"));
            const std::string events = "inproc://churn." + std::to_string(i);
            REQUIRE(zmq_socket_monitor(s.handle(), events.c_str(), ZMQ_EVENT_HANDSHAKE_SUCCEEDED) == 0);
            zmq::socket_t monitor(cctx, zmq::socket_type::pair);
            monitor.set(zmq::sockopt::linger, 0);
            monitor.connect(events);
            s.set(zmq::sockopt::subscribe, "load.");
            s.set(zmq::sockopt::subscribe, "other.");
            s.connect(f.xpub);
            (void)support::recv_for(monitor, 1000ms);
        }
    });
    std::uint64_t sent = 0;
    const auto until = std::chrono::steady_clock::now() + 1500ms;
    while (std::chrono::steady_clock::now() < until && sent < 200000) {
        publish(feed, data_message("load.x", ++sent));
        if (sent % 64 == 0) std::this_thread::sleep_for(100us);
    }
    stop = true;
    churn.join();
    std::uint64_t got = 0;
    while (got < sent && recv_data(steady, 3000ms)) ++got;
    CHECK(got == sent);
    // Counted right, the prefix stayed upstream throughout: the publisher never saw it cancelled.
    while (auto m = support::recv_for(feed, 100ms))
        CHECK(zmesh::to_string((*m)[0]) != std::string("\0load.", 6));
    // And the forwarder still takes new subscribers.
    auto late = f.sub("bob", {"late."});
    ready(late);
    await_subscription(feed, "late.");
    publish(feed, data_message("late.x", 1));
    CHECK(recv_data(late));
}

TEST_CASE("a last-value snapshot follows the subscribe rule of the key asking") {
    secure_forwarder f("feed publish *\nalice subscribe prices.*\nalice call zmesh.lvc\n"
                       "bob call zmesh.lvc\n");
    f.config.lvc = true;
    f.start();
    auto feed = f.pub("feed");
    auto alice = f.sub("alice", {"prices."});
    ready(alice);
    await_subscriptions(feed, {"", "prices."});
    publish(feed, data_message("prices.eur", 1));
    REQUIRE(recv_data(alice));
    auto a = f.mdp_client("alice");
    auto body = a.request("zmesh.lvc", message{"prices."});
    REQUIRE(!body.empty());
    CHECK(zmesh::view(body[0]) == "200");
    CHECK(parse_snapshot(body).size() == 1);
    auto b = f.mdp_client("bob");
    auto refused = b.request("zmesh.lvc", message{"prices."});
    REQUIRE(refused.size() == 1);
    CHECK(zmesh::view(refused[0]) == "403");
}

TEST_CASE("a CURVE forwarder refuses inproc endpoints, which would skip the handshake") {
    secure_forwarder f("");
    f.config.xpub_endpoint = support::inproc_endpoint("xpub");
    CHECK_THROWS_WITH_AS(zmesh::nodes::broker(f.ctx, f.config), doctest::Contains("inproc"),
                         zmesh::error);
}

TEST_SUITE_END();
