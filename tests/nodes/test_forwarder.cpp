// SPDX-License-Identifier: MPL-2.0
// test_forwarder.cpp — the broker's pub/sub forwarder, in-process, with raw ZeroMQ peers: prefix
// filtering, subscriptions upstream, readiness probes, the lossy and lossless slow-subscriber
// policies, the last-value cache (snapshot/stream seam, eviction) and the counters.
//
// Publishers are XPUB sockets connected to the broker's XSUB side, so a test can see exactly which
// subscriptions reached them; subscribers are plain SUB sockets. Messages are built by hand as
// docs/pubsub.md specifies: [topic][zmesh header][payload].
#include "forwarder_fixture.hpp"

#include <zmesh/error.hpp>

#include <atomic>
#include <thread>

using namespace forwarder_test;

TEST_SUITE("nodes.forwarder") {

TEST_CASE("each subscriber gets exactly the messages of its prefixes, from every publisher") {
    fixture f;
    f.start();
    auto pub1 = f.publisher();
    auto pub2 = f.publisher();
    auto s1 = f.subscriber({"a.", "end"});
    auto s2 = f.subscriber({"b.", "a.x", "end"});
    auto s3 = f.subscriber({""}); // a plain catch-all: sees control traffic and must skip it
    for (auto* s : {&s1, &s2, &s3}) ready(*s);
    for (auto* p : {&pub1, &pub2}) await_subscriptions(*p, {"a.", "b.", "a.x", "end", ""});

    const std::vector<std::string> topics{"a.1", "a.x", "b.1", "c.1"};
    for (auto* p : {&pub1, &pub2}) {
        const std::string who = p == &pub1 ? "p1" : "p2";
        for (const auto& t : topics) {
            message m{t, zmesh::to_string(zmesh::encode(zmesh::make_header("t"))), who};
            publish(*p, std::move(m));
        }
        publish(*p, message{"end", zmesh::to_string(zmesh::encode(zmesh::make_header("t"))), who});
    }
    // Order is kept per publisher, so once both "end"s are in, everything before them is too.
    auto collect = [](zmq::socket_t& s) {
        std::multiset<std::string> got;
        int ends = 0;
        while (ends < 2) {
            auto m = recv_data(s);
            REQUIRE(m);
            REQUIRE(m->size() == 3);
            auto key = zmesh::to_string((*m)[0]) + "/" + zmesh::to_string((*m)[2]);
            if (zmesh::view((*m)[0]) == "end") ++ends;
            else got.insert(key);
        }
        return got;
    };
    CHECK(collect(s1) == std::multiset<std::string>{"a.1/p1", "a.x/p1", "a.1/p2", "a.x/p2"});
    CHECK(collect(s2) == std::multiset<std::string>{"a.x/p1", "b.1/p1", "a.x/p2", "b.1/p2"});
    CHECK(collect(s3) == std::multiset<std::string>{"a.1/p1", "a.x/p1", "b.1/p1", "c.1/p1",
                                                    "a.1/p2", "a.x/p2", "b.1/p2", "c.1/p2"});
    // The count follows the send, so it may trail the last delivery by a moment.
    CHECK(eventually([&] { return f.broker->stats().forwarded == 10; }));
}

TEST_CASE("subscriptions reach publishers, probes are answered by the forwarder and stay there") {
    fixture f;
    f.start();
    auto pub = f.publisher();
    auto sub = f.subscriber({"t1"});
    CHECK(await_subscription(pub, "t1").empty());
    ready(sub);
    sub.set(zmq::sockopt::subscribe, "t2");
    // Subscriptions travel in order: had the probe (or its unsubscribe) been passed upstream,
    // the publisher would have seen it before t2.
    CHECK(await_subscription(pub, "t2").empty());
    sub.set(zmq::sockopt::unsubscribe, "t2");
    CHECK(await_subscription(pub, "t2", false).empty());

    // A publisher that connects later is told of the subscriptions already there.
    auto late = f.publisher();
    CHECK(await_subscription(late, "t1").empty());
    publish(late, data_message("t1", 1));
    auto m = recv_data(sub);
    REQUIRE(m);
    CHECK(seq_of(*m) == 1);

    auto s = f.broker->stats();
    CHECK(s.probes == 1);
    CHECK(s.subscriptions == 2);
    CHECK(s.dropped == 0);
}

TEST_CASE("lossy: a subscriber that does not read loses messages, counted, and never slows "
          "the others") {
    fixture f(true);
    f.config.pubsub_hwm = 10;
    f.start();
    auto pub = f.publisher();
    auto fast = f.subscriber({"d."}, 100000);
    auto slow = f.subscriber({"d."}, 10); // inproc: its pipe holds 10 + the forwarder's 10
    ready(fast);
    ready(slow);
    (void)await_subscription(pub, "d.");

    constexpr std::uint64_t n = 2000;
    for (std::uint64_t i = 1; i <= n; ++i) publish(pub, data_message("d.x", i));
    for (std::uint64_t i = 1; i <= n; ++i) {
        auto m = recv_data(fast);
        REQUIRE(m);
        REQUIRE(seq_of(*m) == i); // everything, in order
    }
    std::uint64_t kept = 0;
    while (auto m = recv_data(slow, support::settle_time)) ++kept;
    CHECK(kept >= 1);
    CHECK(kept <= 20);
    CHECK(eventually([&] { return f.broker->stats().forwarded == n; }));
    auto s = f.broker->stats();
    CHECK(s.dropped >= 1);
    CHECK(s.dropped <= n - kept);

    // Having drained its queue, the slow subscriber is written to again; when it falls behind
    // once more, that is counted again.
    for (std::uint64_t i = n + 1; i <= 2 * n; ++i) publish(pub, data_message("d.x", i));
    for (std::uint64_t i = n + 1; i <= 2 * n; ++i) {
        auto m = recv_data(fast);
        REQUIRE(m);
        REQUIRE(seq_of(*m) == i);
    }
    std::uint64_t kept2 = 0;
    std::uint64_t first = 0;
    while (auto m = recv_data(slow, support::settle_time)) {
        if (kept2++ == 0) first = seq_of(*m);
    }
    CHECK(first == n + 1); // its queue had room again when the second burst began
    CHECK(kept2 <= 20);
    CHECK(f.broker->stats().dropped > s.dropped);
}

TEST_CASE("lossless: a slow subscriber receives every message and publishers are held back") {
    fixture f(true);
    f.config.lossless = true;
    f.config.pubsub_hwm = 10;
    f.start();
    auto pub = f.publisher(10);
    auto sub = f.subscriber({"d."}, 10);
    ready(sub);
    (void)await_subscription(pub, "d.");

    constexpr std::uint64_t n = 3000; // far more than every queue on the way holds
    std::atomic<std::uint64_t> sent{0};
    std::thread producer([&] {
        for (std::uint64_t i = 1; i <= n; ++i) {
            auto m = data_message("d.x", i);
            if (m.send(pub) != zmesh::send_status::sent) return;
            sent = i;
        }
    });
    // Not reading yet: the queues fill, the forwarder stops reading, the publisher blocks. The
    // broker still answers MDP meanwhile.
    std::this_thread::sleep_for(support::settle_time);
    CHECK(sent.load() < n);
    CHECK(f.stats_map()["stalls"] >= 1);
    for (std::uint64_t i = 1; i <= n; ++i) {
        auto m = recv_data(sub);
        REQUIRE(m);
        REQUIRE(seq_of(*m) == i);
    }
    producer.join();
    CHECK(sent.load() == n);
    CHECK(eventually([&] { return f.broker->stats().forwarded == n; }));
    auto s = f.broker->stats();
    CHECK(s.dropped == 0);
    CHECK(s.stalls >= 1);
}

TEST_CASE("a late joiner gets the newest value of every topic under its prefix from zmesh.lvc") {
    fixture f;
    f.config.lvc = true;
    f.start();
    auto pub = f.publisher();
    // The cache subscribes to everything, so publishers send even with no subscriber around.
    (void)await_subscription(pub, "");
    for (std::uint64_t i = 1; i <= 50; ++i)
        for (auto t : {"px.a", "px.b", "px.c", "qx.d"}) publish(pub, data_message(t, i));
    // One frame-less publish on a topic of its own: forwarded but not cacheable (no header).
    publish(pub, message{"px.bare"});
    auto last = data_message("qx.last", 1);
    publish(pub, std::move(last));
    REQUIRE(eventually([&] { return f.broker->stats().forwarded == 202; }));

    auto snap = parse_snapshot(f.lvc("px."));
    REQUIRE(snap.size() == 3);
    std::set<std::string> topics;
    for (const auto& [topic, c] : snap) {
        topics.insert(topic);
        CHECK(c.seq == 50);
        CHECK(c.payload == std::vector<std::string>{"payload-" + topic + "-50"});
    }
    CHECK(topics == std::set<std::string>{"px.a", "px.b", "px.c"});
    CHECK(parse_snapshot(f.lvc("")).size() == 5);
    CHECK(parse_snapshot(f.lvc("zz")).empty());
    CHECK(f.broker->stats().lvc_topics == 5);
}

TEST_CASE("the snapshot and the live stream meet without duplicate or gap") {
    fixture f;
    f.config.lvc = true;
    f.config.lossless = true; // so that a subscriber busy with its snapshot loses nothing
    f.config.pubsub_hwm = 100;
    f.start();
    auto pub = f.publisher(100);
    (void)await_subscription(pub, "");
    const std::vector<std::string> topics{"px.a", "px.b", "px.c", "qx.d"};
    std::uint64_t seq = 0;
    for (; seq < 100; ++seq)
        for (const auto& t : topics) publish(pub, data_message(t, seq + 1));

    std::atomic<bool> stop{false};
    std::atomic<std::uint64_t> produced{seq};
    std::thread producer([&] {
        // Runs until told to, then ends each stream with a "last" message.
        for (std::uint64_t s = seq + 1;; ++s) {
            const bool end = stop.load();
            for (const auto& t : topics)
                if (data_message(t, s, end ? "last" : "tick").send(pub) != zmesh::send_status::sent)
                    return;
            produced = s;
            if (end) return;
        }
    });

    auto sub = f.subscriber({"px."}, 100);
    ready(sub); // from here on, everything forwarded reaches sub
    // Take the snapshot while the stream is running.
    const std::uint64_t joined = produced.load();
    REQUIRE(eventually([&] { return produced.load() >= joined + 20; }));
    auto snap = parse_snapshot(f.lvc("px."));
    stop = true;
    REQUIRE(snap.size() == 3);
    std::map<std::string, std::uint64_t> next; // per topic: the sequence expected next
    for (const auto& [topic, c] : snap) next[topic] = c.seq + 1;

    std::map<std::string, std::uint64_t> duplicates;
    std::set<std::string> ended;
    while (ended.size() < 3) {
        auto m = recv_data(sub);
        REQUIRE(m);
        const auto topic = zmesh::to_string((*m)[0]);
        const auto h = zmesh::decode_header((*m)[1]);
        REQUIRE(next.count(topic) == 1);
        if (h.sequence < next[topic]) {
            ++duplicates[topic]; // forwarded between ready and the snapshot: dropped by the merge
            continue;
        }
        REQUIRE(h.sequence == next[topic]); // no gap at the seam or after it
        ++next[topic];
        if (h.type == "last") ended.insert(topic);
    }
    producer.join();
    CHECK(f.broker->stats().dropped == 0);
}

TEST_CASE("the cache is bounded and evicts the topic updated least recently") {
    fixture f;
    f.config.lvc = true;
    f.config.lvc_max_topics = 3;
    f.start();
    auto pub = f.publisher();
    (void)await_subscription(pub, "");
    publish(pub, data_message("t1", 1));
    publish(pub, data_message("t2", 1));
    publish(pub, data_message("t3", 1));
    publish(pub, data_message("t1", 2)); // t1 is now the newest; t2 the oldest
    publish(pub, data_message("t4", 1)); // evicts t2
    publish(pub, data_message("t5", 1)); // evicts t3
    REQUIRE(eventually([&] { return f.broker->stats().forwarded == 6; }));
    auto snap = parse_snapshot(f.lvc(""));
    REQUIRE(snap.size() == 3);
    CHECK(snap[0].first == "t1"); // oldest update first
    CHECK(snap[0].second.seq == 2);
    CHECK(snap[1].first == "t4");
    CHECK(snap[2].first == "t5");
    auto s = f.broker->stats();
    CHECK(s.lvc_topics == 3);
    CHECK(s.lvc_evictions == 2);
}

TEST_CASE("zmesh.lvc answers 404 without a cache, and zmesh.stats carries the pub/sub counters") {
    fixture f;
    f.start();
    auto pub = f.publisher();
    auto sub = f.subscriber({"k"});
    ready(sub);
    (void)await_subscription(pub, "k");
    publish(pub, data_message("k", 1));
    REQUIRE(recv_data(sub));

    auto body = f.lvc("");
    REQUIRE(body.size() == 1);
    CHECK(zmesh::view(body[0]) == "404");

    auto m = f.stats_map();
    for (auto key : {"forwarded", "dropped", "subscriptions", "probes", "stalls", "lvc_topics",
                     "lvc_evictions", "directory_entries"})
        CHECK_MESSAGE(m.count(key) == 1, key);
    CHECK(m["forwarded"] == 1);
    CHECK(m["probes"] == 1);
    CHECK(m["subscriptions"] == 1);
    CHECK(m["dropped"] == 0);
}

TEST_CASE("a broker without forwarder binds only MDP, and inconsistent pub/sub settings throw") {
    zmq::context_t ctx;
    zmesh::nodes::broker_config c;
    c.mdp_endpoint = support::inproc_endpoint("mdp");
    {
        zmesh::nodes::broker b(ctx, c);
        CHECK(b.endpoints().size() == 1);
        zmesh::mdp::client client(ctx, b.endpoints().front());
        b.start();
        auto body = client.request("zmesh.lvc", message{""});
        REQUIRE(body.size() == 1);
        CHECK(zmesh::view(body[0]) == "404");
    }
    auto bad = [&](auto change) {
        zmesh::nodes::broker_config x = c;
        x.mdp_endpoint = support::inproc_endpoint("mdp");
        change(x);
        CHECK_THROWS_AS(zmesh::nodes::broker(ctx, x), zmesh::error);
    };
    bad([](auto& x) { x.xsub_endpoint = support::inproc_endpoint("xsub"); });
    bad([](auto& x) { x.lvc = true; });
    bad([](auto& x) { x.lossless = true; });
    bad([](auto& x) {
        x.xsub_endpoint = support::inproc_endpoint("xsub");
        x.xpub_endpoint = support::inproc_endpoint("xpub");
        x.lvc_max_topics = 0;
    });
    bad([](auto& x) {
        x.xsub_endpoint = "tcp://127.0.0.1";
        x.xpub_endpoint = support::inproc_endpoint("xpub");
    });
}

}
