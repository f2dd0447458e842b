// SPDX-License-Identifier: MPL-2.0
// test_pubsub.cpp — the zmesh publisher and subscriber (docs/pubsub.md): prefix filtering,
// readiness probe, sequences and gaps, malformed and control traffic, lag limit, reconnection,
// last-value-cache snapshot merge, lossless and lossy publishing.
//
// Where a test needs exact control over what arrives (a skipped sequence, an old timestamp, a
// broken header, a snapshot reply), the peer is a bare XPUB or ROUTER socket driven by hand, so
// nothing depends on the zmesh publisher or broker being right.
#include <zmesh/error.hpp>
#include <zmesh/header.hpp>
#include <zmesh/message.hpp>
#include <zmesh/pubsub/publisher.hpp>
#include <zmesh/pubsub/subscriber.hpp>
#include <zmesh/reactor.hpp>

#include "support/support.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <cerrno>
#include <functional>
#include <future>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

namespace {

using namespace std::chrono_literals;
using namespace std::string_view_literals;
using zmesh::pubsub::publisher;
using zmesh::pubsub::subscriber;
using strings = std::vector<std::string>;
using support::texts;

constexpr std::string_view probe_prefix = "\0zmesh.probe."sv;

std::int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

/// Runs sub.wait_ready() while another thread answers probes on @p pub, as a publisher that is
/// idle on its own reactor would. Only one thread touches each object at a time.
bool make_ready(publisher& pub, subscriber& sub) {
    std::atomic<bool> done{false};
    std::thread pump([&] {
        while (!done)
            pub.poll_subscriptions(10ms);
    });
    const bool ready = sub.wait_ready(2s);
    done = true;
    pump.join();
    return ready;
}

/// The next @p n deliveries (each awaited up to 2 s), then a check that nothing more comes.
std::vector<zmesh::pubsub::delivery> recv_exactly(subscriber& sub, std::size_t n) {
    std::vector<zmesh::pubsub::delivery> out;
    while (out.size() < n) {
        auto d = sub.recv(2s);
        if (!d)
            break;
        out.push_back(std::move(*d));
    }
    CHECK_MESSAGE(out.size() == n, "received " << out.size() << " of " << n);
    CHECK_FALSE(sub.recv(support::settle_time));
    return out;
}

/// The topics of the next @p n deliveries, then a check that nothing more comes.
strings recv_topics(subscriber& sub, std::size_t n) {
    strings topics;
    for (const auto& d : recv_exactly(sub, n))
        topics.push_back(d.topic);
    return topics;
}

/// The payload of a delivery as text frames.
zmesh::header data_header(const zmesh::message_id& source, std::uint64_t seq,
                          std::int64_t ts = now_ns()) {
    zmesh::header h;
    h.id = zmesh::message_id::generate();
    h.source = source;
    h.sequence = seq;
    h.timestamp_ns = ts;
    return h;
}

/// A publisher the test drives by hand: a bare XPUB that shows every subscription message.
struct raw_publisher {
    zmq::socket_t xpub;
    std::string endpoint;

    explicit raw_publisher(zmq::context_t& ctx) : xpub(ctx, zmq::socket_type::xpub) {
        xpub.set(zmq::sockopt::linger, 0);
        xpub.set(zmq::sockopt::xpub_verbose, 1);
        endpoint = support::bind_loopback(xpub);
    }

    /// The next subscription message as (subscribe?, topic); std::nullopt if none in time.
    std::optional<std::pair<bool, std::string>> next_subscription() {
        auto m = support::recv_for(xpub);
        if (!m || m->size() != 1 || (*m)[0].size() == 0)
            return std::nullopt;
        const std::string frame = zmesh::to_string((*m)[0]);
        return std::make_pair(frame[0] == 1, frame.substr(1));
    }

    /// Waits for the subscription to @p topic, skipping others. @returns the ones skipped.
    strings await_subscription(std::string_view topic) {
        strings skipped;
        while (auto s = next_subscription()) {
            if (s->first && s->second == topic)
                return skipped;
            skipped.push_back(s->second);
        }
        FAIL("no subscription to '" << std::string(topic) << "'");
        return skipped;
    }

    /// Waits until every topic of @p topics has been subscribed, in any order.
    void await_subscriptions(strings topics) {
        while (!topics.empty()) {
            const auto s = next_subscription();
            REQUIRE_MESSAGE(s, "missing subscriptions, the first is '" << topics.front() << "'");
            if (s->first)
                std::erase(topics, s->second);
        }
    }

    /// Waits for a probe subscription, answers it as docs/pubsub.md says, and returns its topic.
    std::string answer_probe() {
        while (auto s = next_subscription()) {
            if (!s->first || s->second.compare(0, probe_prefix.size(), probe_prefix) != 0)
                continue;
            zmesh::header h;
            h.id = zmesh::message_id::generate();
            h.type = "zmesh.probe";
            zmesh::message answer;
            answer.push_back(std::string_view(s->second));
            answer.push_back(zmesh::encode(h));
            REQUIRE(answer.send(xpub) == zmesh::send_status::sent);
            return s->second;
        }
        FAIL("no probe arrived");
        return {};
    }

    void send(zmesh::message&& m) { REQUIRE(m.send(xpub) == zmesh::send_status::sent); }

    void send(std::string_view topic, const zmesh::header& h, std::string_view payload = "x") {
        zmesh::message m;
        m.push_back(topic);
        m.push_back(zmesh::encode(h));
        m.push_back(payload);
        send(std::move(m));
    }
};

zmesh::pubsub::subscriber_options sub_options(std::string endpoint, strings topics) {
    zmesh::pubsub::subscriber_options o;
    o.connect = {std::move(endpoint)};
    o.topics = std::move(topics);
    return o;
}

} // namespace

TEST_SUITE("lib.pubsub") {

TEST_CASE("subscribers receive exactly the topics their prefixes match") {
    zmq::context_t ctx;
    publisher pub(ctx, {.bind = {"tcp://127.0.0.1:*"}});
    const std::string ep = pub.endpoints().at(0);
    subscriber weather(ctx, sub_options(ep, {"weather."}));
    subscriber mixed(ctx, sub_options(ep, {"weather.eu", "sports"}));
    subscriber everything(ctx, sub_options(ep, {""}));
    for (auto* s : {&weather, &mixed, &everything})
        REQUIRE(make_ready(pub, *s));

    const strings topics{"weather.eu.paris", "weather.us.nyc", "sports.f1", "news",
                         "weather.eu.paris"};
    for (const auto& t : topics)
        pub.publish(t, "payload of " + t, "reading");

    CHECK(recv_topics(weather, 3) ==
          strings{"weather.eu.paris", "weather.us.nyc", "weather.eu.paris"});
    CHECK(recv_topics(mixed, 3) == strings{"weather.eu.paris", "sports.f1", "weather.eu.paris"});

    // The full check of what arrives, on the subscriber that gets everything.
    pub.publish("news", zmesh::message{"two", "frames"});
    const auto all = recv_exactly(everything, topics.size() + 1);
    REQUIRE(all.size() == topics.size() + 1);
    const std::vector<std::uint64_t> sequences{1, 1, 1, 1, 2, 2};
    for (std::size_t i = 0; i < all.size(); ++i) {
        const auto& d = all[i];
        CAPTURE(i);
        CHECK(d.header.source == pub.source());
        CHECK(d.header.sequence == sequences[i]);
        CHECK(d.lag >= 0ns);
        CHECK(d.lag < 10s);
        CHECK_FALSE(d.from_snapshot);
        if (i < topics.size()) {
            CHECK(d.topic == topics[i]);
            CHECK(d.header.type == "reading");
            CHECK(texts(d.payload) == strings{"payload of " + topics[i]});
        } else {
            CHECK(d.header.type.empty());
            CHECK(texts(d.payload) == strings{"two", "frames"});
        }
    }
    CHECK(all[0].header.id != all[4].header.id);
    for (auto* s : {&weather, &mixed, &everything}) {
        CHECK(s->stats().gaps == 0);
        CHECK(s->stats().duplicates == 0);
    }
    CHECK(pub.stats().published == topics.size() + 1);
    CHECK(pub.stats().probes_answered >= 3);
}

TEST_CASE("the first message published after wait_ready returns arrives") {
    // libzmq #2267 and #1594: without a readiness check, the first messages are lost whichever
    // side binds.
    zmq::context_t ctx;
    struct layout {
        const char* name;
        bool publisher_binds;
        std::function<std::string()> endpoint; // a fresh one per round
    };
    const std::vector<layout> layouts{
        {"publisher binds tcp", true, [] { return std::string("tcp://127.0.0.1:*"); }},
        {"subscriber binds tcp", false, [] { return std::string("tcp://127.0.0.1:*"); }},
        {"publisher binds inproc", true, [] { return support::inproc_endpoint("pubsub-first"); }},
        {"subscriber binds ipc", false, [] { return support::ipc_endpoint("pubsub-first"); }},
    };
    for (const auto& l : layouts) {
        CAPTURE(l.name);
        for (int round = 0; round < 5; ++round) {
            std::optional<publisher> pub;
            std::optional<subscriber> sub;
            zmesh::pubsub::subscriber_options so;
            so.topics = {"first"};
            if (l.publisher_binds) {
                pub.emplace(ctx, zmesh::pubsub::publisher_options{.bind = {l.endpoint()}});
                so.connect = {pub->endpoints().at(0)};
                sub.emplace(ctx, so);
            } else {
                so.bind = {l.endpoint()};
                sub.emplace(ctx, so);
                pub.emplace(ctx,
                            zmesh::pubsub::publisher_options{.connect = {sub->endpoints().at(0)}});
            }
            REQUIRE(make_ready(*pub, *sub));
            CHECK(sub->ready());
            pub->publish("first", "the one and only");
            const auto d = sub->recv(2s);
            REQUIRE(d);
            CHECK(d->topic == "first");
            CHECK(d->header.sequence == 1);
            CHECK(texts(d->payload) == strings{"the one and only"});
        }
    }
}

TEST_CASE("wait_ready returns false when no publisher answers the probe") {
    zmq::context_t ctx;
    raw_publisher raw(ctx); // sees the probe but never answers
    subscriber sub(ctx, sub_options(raw.endpoint, {"t"}));
    const auto start = std::chrono::steady_clock::now();
    CHECK_FALSE(sub.wait_ready(300ms));
    CHECK(std::chrono::steady_clock::now() - start >= 300ms);
    CHECK_FALSE(sub.ready());

    // The user topic went out before the probe, and the probe was withdrawn afterwards.
    raw.await_subscription("t");
    bool probed = false, withdrawn = false;
    while (auto s = raw.next_subscription()) {
        const bool is_probe = s->second.compare(0, probe_prefix.size(), probe_prefix) == 0;
        probed = probed || (is_probe && s->first);
        withdrawn = withdrawn || (is_probe && !s->first);
        if (withdrawn)
            break;
    }
    CHECK(probed);
    CHECK(withdrawn);
}

TEST_CASE("sequences count from 1 per topic and carry each publisher's own source") {
    zmq::context_t ctx;
    publisher a(ctx, {.bind = {support::inproc_endpoint("pubsub-seq-a")}});
    publisher b(ctx, {.bind = {support::inproc_endpoint("pubsub-seq-b")}});
    CHECK(a.source() != b.source());
    zmesh::pubsub::subscriber_options so;
    so.connect = {a.endpoints().at(0), b.endpoints().at(0)};
    so.topics = {""};
    subscriber sub(ctx, so);
    CHECK_FALSE(sub.wait_ready(0ms)); // nobody has answered yet
    // Both publishers must see the subscription; wait on each in turn.
    REQUIRE(make_ready(a, sub));
    REQUIRE(make_ready(b, sub));

    for (const char* t : {"x", "y", "x", "x", "y"})
        a.publish(t, "from a");
    b.publish("x", "from b");

    std::vector<std::pair<std::string, std::uint64_t>> from_a;
    std::vector<std::uint64_t> from_b;
    for (const auto& d : recv_exactly(sub, 6)) {
        if (d.header.source == a.source())
            from_a.emplace_back(d.topic, d.header.sequence);
        else if (d.header.source == b.source())
            from_b.push_back(d.header.sequence);
        else
            FAIL("a message from an unknown source");
    }
    CHECK(from_a == std::vector<std::pair<std::string, std::uint64_t>>{
                        {"x", 1}, {"y", 1}, {"x", 2}, {"x", 3}, {"y", 2}});
    CHECK(from_b == std::vector<std::uint64_t>{1});
    CHECK(sub.stats().gaps == 0);
}

TEST_CASE("a skipped sequence is one gap and a repeated one is dropped as a duplicate") {
    zmq::context_t ctx;
    raw_publisher raw(ctx);
    subscriber sub(ctx, sub_options(raw.endpoint, {"t"}));
    raw.await_subscription("t");

    const auto s1 = zmesh::message_id::generate();
    const auto s2 = zmesh::message_id::generate();
    for (const std::uint64_t seq : std::initializer_list<std::uint64_t>{1, 2, 4, 4, 3, 5})
        raw.send("t", data_header(s1, seq), "seq " + std::to_string(seq));
    raw.send("t", data_header(s2, 10)); // another source starts its own stream
    raw.send("t2", data_header(s1, 7)); // another topic too

    std::vector<std::uint64_t> got;
    for (int i = 0; i < 6; ++i) {
        auto d = sub.recv(2s);
        REQUIRE(d);
        got.push_back(d->header.sequence);
    }
    CHECK(got == std::vector<std::uint64_t>{1, 2, 4, 5, 10, 7});
    CHECK_FALSE(sub.recv(support::settle_time));

    auto st = sub.stats();
    CHECK(st.received == 6);
    CHECK(st.gaps == 1);
    CHECK(st.missed == 1);
    CHECK(st.duplicates == 2); // the second 4, and the late 3
    CHECK(st.malformed == 0);
    auto gaps = sub.take_gaps();
    REQUIRE(gaps.size() == 1);
    CHECK(gaps[0].source == s1);
    CHECK(gaps[0].topic == "t");
    CHECK(gaps[0].expected == 3);
    CHECK(gaps[0].got == 4);
    CHECK(gaps[0].missed() == 1);
    CHECK(sub.take_gaps().empty());

    // With a handler, gaps go to it instead of the list.
    std::vector<zmesh::pubsub::gap> seen;
    sub.on_gap([&](const zmesh::pubsub::gap& g) { seen.push_back(g); });
    raw.send("t", data_header(s1, 9));
    auto d = sub.recv(2s);
    REQUIRE(d);
    CHECK(d->header.sequence == 9);
    REQUIRE(seen.size() == 1);
    CHECK(seen[0].expected == 6);
    CHECK(seen[0].missed() == 3);
    CHECK(sub.take_gaps().empty());
    CHECK(sub.stats().gaps == 2);
    CHECK(sub.stats().missed == 4);
}

TEST_CASE("malformed messages are counted and dropped, never thrown") {
    zmq::context_t ctx;
    raw_publisher raw(ctx);
    subscriber sub(ctx, sub_options(raw.endpoint, {"t"}));
    raw.await_subscription("t");

    raw.send(zmesh::message{"t"});                             // no header frame
    raw.send(zmesh::message{"t", "not msgpack at all", "p"});  // undecodable header
    raw.send(zmesh::message{"t", ""});                         // empty header
    raw.send(zmesh::message{"t", std::string_view("\x81\xa2ty\xa1x", 6)}); // a map without "id"
    raw.send("t", data_header(zmesh::message_id::generate(), 1), "good");

    std::optional<zmesh::pubsub::delivery> d;
    CHECK_NOTHROW(d = sub.recv(2s));
    REQUIRE(d);
    CHECK(texts(d->payload) == strings{"good"});
    CHECK(sub.stats().malformed == 4);
    CHECK(sub.stats().received == 1);
}

TEST_CASE("control topics are never delivered and cannot be published") {
    zmq::context_t ctx;
    raw_publisher raw(ctx);
    subscriber sub(ctx, sub_options(raw.endpoint, {""}));
    raw.await_subscription("");

    const auto src = zmesh::message_id::generate();
    raw.send(std::string("\0zmesh.future.thing", 19), data_header(src, 1));
    raw.send(std::string(probe_prefix) + std::string(32, 'a'), data_header(src, 1));
    raw.send(zmesh::message{std::string_view("\0zmesh.", 7)}); // control, even without a header
    raw.send("data", data_header(src, 1));

    auto d = sub.recv(2s);
    REQUIRE(d);
    CHECK(d->topic == "data");
    CHECK(sub.stats().control == 3);
    CHECK(sub.stats().malformed == 0);
    CHECK_FALSE(sub.recv(support::settle_time));

    publisher pub(ctx, {.bind = {support::inproc_endpoint("pubsub-control")}});
    try {
        pub.publish(std::string("\0zmesh.probe.x", 14), "spoof");
        FAIL("a control topic was published");
    } catch (const zmesh::error& e) {
        CHECK(e.code() == zmesh::errc::invalid_argument);
    }
    // A topic that merely starts with a zero byte is the application's.
    CHECK_NOTHROW(pub.publish(std::string("\0app", 4), "fine"));
}

TEST_CASE("lag is measured and exceeding max_lag makes the subscriber give up clearly") {
    zmq::context_t ctx;
    raw_publisher raw(ctx);
    subscriber relaxed(ctx, sub_options(raw.endpoint, {"relaxed"}));
    auto snail_options = sub_options(raw.endpoint, {"snail"});
    snail_options.max_lag = 1000ms;
    subscriber snail(ctx, snail_options);
    raw.await_subscriptions({"relaxed", "snail"});

    const auto src = zmesh::message_id::generate();
    raw.send("relaxed", data_header(src, 1, now_ns() - 300'000'000));
    auto d = relaxed.recv(2s);
    REQUIRE(d);
    CHECK(d->lag >= 300ms);
    CHECK(d->lag < 10s);

    // No timestamp: no lag, and no limit to apply.
    zmesh::header no_ts = data_header(src, 2, 0);
    raw.send("relaxed", no_ts);
    d = relaxed.recv(2s);
    REQUIRE(d);
    CHECK(d->lag == 0ns);

    raw.send("snail", data_header(src, 1, now_ns() - 200'000'000)); // within the limit
    d = snail.recv(2s);
    REQUIRE(d);
    CHECK(snail.stats().lagged_out == 0);

    raw.send("snail", data_header(src, 2, now_ns() - 5'000'000'000));
    try {
        static_cast<void>(snail.recv(2s));
        FAIL("a subscriber 5 s behind did not give up");
    } catch (const zmesh::error& e) {
        const std::string what = e.what();
        CHECK(e.code() == zmesh::errc::timeout);
        CHECK_MESSAGE(what.find("subscriber fell ") == 0, what);
        CHECK_MESSAGE(what.find(" ms behind (limit 1000 ms)") != std::string::npos, what);
    }
    CHECK(snail.stats().lagged_out == 1);
    try {
        static_cast<void>(snail.recv(10ms));
        FAIL("a subscriber that gave up went on receiving");
    } catch (const zmesh::error& e) {
        CHECK(e.code() == zmesh::errc::not_running);
    }
}

TEST_CASE("subscriptions survive the publisher going away and coming back on the same endpoint") {
    zmq::context_t ctx;
    std::optional<publisher> pub;
    pub.emplace(ctx, zmesh::pubsub::publisher_options{.bind = {"tcp://127.0.0.1:*"}});
    const std::string ep = pub->endpoints().at(0);
    subscriber sub(ctx, sub_options(ep, {"t"}));
    REQUIRE(make_ready(*pub, sub));
    pub->publish("t", "before");
    auto d = sub.recv(2s);
    REQUIRE(d);
    const auto first_source = d->header.source;

    pub.reset();
    // The port is free once libzmq's I/O thread has closed the listener: retry briefly.
    for (int attempt = 0; !pub; ++attempt) {
        try {
            pub.emplace(ctx, zmesh::pubsub::publisher_options{.bind = {ep}});
        } catch (const zmesh::error& e) {
            REQUIRE(e.code() == std::errc::address_in_use);
            REQUIRE(attempt < 20);
            std::this_thread::sleep_for(support::settle_time);
        }
    }
    // No subscribe call: the SUB socket reconnects and re-sends "t" by itself. libzmq does that
    // re-sending on the application's thread, inside a socket call, so the subscriber must be
    // in recv() meanwhile (as any subscriber normally is).
    auto next = std::async(std::launch::async, [&] { return sub.recv(5s); });
    REQUIRE(pub->wait_for_subscribers(1, 5s));
    pub->publish("t", "after");
    REQUIRE(next.wait_for(5s) == std::future_status::ready);
    d = next.get();
    REQUIRE(d);
    CHECK(texts(d->payload) == strings{"after"});
    CHECK(d->header.source == pub->source());
    CHECK(d->header.source != first_source);
    CHECK(d->header.sequence == 1);
    CHECK(sub.stats().gaps == 0);       // a new source starts a new stream
    CHECK(sub.stats().duplicates == 0); // and its sequence 1 is no duplicate
}

TEST_CASE("a snapshot is delivered first and merged with the live stream without seams") {
    zmq::context_t ctx;
    raw_publisher forwarder(ctx); // plays the broker's XPUB side, answering the probe itself
    zmq::socket_t lvc(ctx, zmq::socket_type::router); // plays the broker's MDP side
    lvc.set(zmq::sockopt::linger, 0);
    const std::string lvc_ep = support::bind_loopback(lvc);
    const auto src = zmesh::message_id::generate();

    auto so = sub_options(forwarder.endpoint, {"A"});
    so.snapshot_from = lvc_ep;
    subscriber sub(ctx, so);
    auto ready = std::async(std::launch::async, [&] { return sub.wait_ready(5s); });

    // Subscriptions in order: the topic, then the probe.
    CHECK(forwarder.await_subscription("A").empty());
    forwarder.send("A", data_header(src, 5), "live 5"); // before the answer: buffered
    forwarder.answer_probe();
    forwarder.send("A", data_header(src, 6), "live 6"); // while the snapshot is fetched

    auto request = support::recv_for(lvc);
    REQUIRE(request);
    REQUIRE(request->size() == 5);
    CHECK(texts(*request) ==
          strings{zmesh::to_string((*request)[0]), "", "MDPC01", "zmesh.lvc", "A"});
    zmesh::message reply;
    reply.push_back(std::move((*request)[0]));
    for (const char* f : {"", "MDPC01", "zmesh.lvc", "200", "1", "A"})
        reply.push_back(std::string_view(f));
    reply.push_back(zmesh::encode(data_header(src, 5, now_ns() - 60'000'000'000)));
    reply.push_back(std::string_view("cached 5"));
    for (const char* f : {"0", "A2"})
        reply.push_back(std::string_view(f));
    reply.push_back(zmesh::encode(data_header(src, 3)));
    REQUIRE(reply.send(lvc) == zmesh::send_status::sent);

    REQUIRE(ready.wait_for(5s) == std::future_status::ready);
    REQUIRE(ready.get());
    forwarder.send("A", data_header(src, 7), "live 7");

    std::vector<std::tuple<std::string, std::uint64_t, bool, strings>> got;
    for (const auto& d : recv_exactly(sub, 4))
        got.emplace_back(d.topic, d.header.sequence, d.from_snapshot, texts(d.payload));
    using row = std::tuple<std::string, std::uint64_t, bool, strings>;
    CHECK(got == std::vector<row>{{"A", 5, true, {"cached 5"}},
                                  {"A2", 3, true, {}},
                                  {"A", 6, false, {"live 6"}},
                                  {"A", 7, false, {"live 7"}}});
    const auto st = sub.stats();
    CHECK(st.snapshot == 2);
    CHECK(st.snapshot_overlap == 1); // live 5, already in the snapshot
    CHECK(st.duplicates == 0);
    CHECK(st.gaps == 0);
    CHECK(st.lagged_out == 0);
}

TEST_CASE("a 404 from the last-value cache means going live at once") {
    zmq::context_t ctx;
    raw_publisher forwarder(ctx);
    zmq::socket_t lvc(ctx, zmq::socket_type::router);
    lvc.set(zmq::sockopt::linger, 0);
    auto so = sub_options(forwarder.endpoint, {"A"});
    so.snapshot_from = support::bind_loopback(lvc);
    subscriber sub(ctx, so);
    // recv() runs the probe and the snapshot itself when wait_ready() was not called.
    auto first = std::async(std::launch::async, [&] { return sub.recv(5s); });

    forwarder.answer_probe();
    auto request = support::recv_for(lvc);
    REQUIRE(request);
    REQUIRE(request->size() == 5);
    zmesh::message reply;
    reply.push_back(std::move((*request)[0]));
    for (const char* f : {"", "MDPC01", "zmesh.lvc", "404"})
        reply.push_back(std::string_view(f));
    REQUIRE(reply.send(lvc) == zmesh::send_status::sent);
    forwarder.send("A", data_header(zmesh::message_id::generate(), 41), "live");

    REQUIRE(first.wait_for(5s) == std::future_status::ready);
    auto d = first.get();
    REQUIRE(d);
    CHECK(d->header.sequence == 41);
    CHECK_FALSE(d->from_snapshot);
    CHECK(sub.stats().snapshot == 0);
    CHECK(sub.stats().malformed == 0);
}

TEST_CASE("a snapshot source that does not answer is a timeout error") {
    zmq::context_t ctx;
    raw_publisher forwarder(ctx);
    zmq::socket_t lvc(ctx, zmq::socket_type::router); // reads nothing, answers nothing
    lvc.set(zmq::sockopt::linger, 0);
    auto so = sub_options(forwarder.endpoint, {"A"});
    so.snapshot_from = support::bind_loopback(lvc);
    so.snapshot_timeout = 200ms;
    subscriber sub(ctx, so);
    auto result = std::async(std::launch::async, [&]() -> std::error_code {
        try {
            static_cast<void>(sub.wait_ready(5s));
        } catch (const zmesh::error& e) {
            return e.code();
        }
        return {};
    });
    forwarder.answer_probe();
    REQUIRE(result.wait_for(5s) == std::future_status::ready);
    CHECK(result.get() == zmesh::errc::timeout);
}

TEST_CASE("a lossless publisher refuses or waits instead of dropping for a subscriber that lags") {
    zmq::context_t ctx;
    zmesh::pubsub::publisher_options po;
    po.bind = {support::inproc_endpoint("pubsub-lossless")};
    po.lossless = true;
    po.send_timeout = 100ms;
    po.socket.send_hwm = 5;
    publisher pub(ctx, po);
    auto so = sub_options(pub.endpoints().at(0), {"t"});
    so.socket.recv_hwm = 5;
    subscriber sub(ctx, so);
    REQUIRE(make_ready(pub, sub));

    std::size_t sent = 0;
    for (;;) {
        zmesh::message m{"payload"};
        if (!pub.try_publish("t", m)) {
            CHECK(m.size() == 1); // refused: the payload is left to the caller
            break;
        }
        CHECK(m.empty());
        REQUIRE(++sent < 10000);
    }
    CHECK(sent >= 5);
    CHECK(sent < 100);
    try {
        pub.publish("t", "one more");
        FAIL("publish did not time out on a full subscriber");
    } catch (const zmesh::error& e) {
        CHECK(e.code() == zmesh::errc::timeout);
    }
    CHECK(pub.stats().refused == 2);

    // A waiting try_publish goes through as soon as the subscriber makes room.
    auto waiting = std::async(std::launch::async, [&] {
        zmesh::message m{"waited"};
        return pub.try_publish("t", m, 5s);
    });
    std::uint64_t expected = 1;
    for (const auto& d : recv_exactly(sub, sent + 1)) {
        CHECK(d.header.sequence == expected);
        ++expected;
    }
    REQUIRE(waiting.wait_for(5s) == std::future_status::ready);
    CHECK(waiting.get());
    // Nothing was lost: sent + the waited one, numbered without a hole (refusals use none).
    CHECK(expected == sent + 2);
    CHECK(sub.stats().gaps == 0);
}

TEST_CASE("a lossy publisher drops for a subscriber that lags, which then reports the gap") {
    zmq::context_t ctx;
    zmesh::pubsub::publisher_options po;
    po.bind = {support::inproc_endpoint("pubsub-lossy")};
    po.socket.send_hwm = 5;
    publisher pub(ctx, po);
    auto so = sub_options(pub.endpoints().at(0), {"t"});
    so.socket.recv_hwm = 5;
    subscriber sub(ctx, so);
    REQUIRE(make_ready(pub, sub));

    for (int i = 0; i < 200; ++i) {
        zmesh::message m{"p"};
        CHECK(pub.try_publish("t", m)); // never refused: dropped instead
    }
    // Everything that was not dropped is already queued in the inproc pipe.
    std::uint64_t delivered = 0;
    while (sub.recv(support::settle_time))
        ++delivered;
    CHECK(delivered > 0);
    CHECK(delivered < 200);
    pub.publish("t", "after the drops");
    auto d = sub.recv(2s);
    REQUIRE(d);
    CHECK(d->header.sequence == 201);
    CHECK(sub.stats().gaps == 1);
    CHECK(sub.stats().missed == 200 - delivered);
}

TEST_CASE("a publisher on a reactor answers probes while it has nothing to publish") {
    zmq::context_t ctx;
    publisher pub(ctx, {.bind = {support::inproc_endpoint("pubsub-reactor")}});
    subscriber sub(ctx, sub_options(pub.endpoints().at(0), {"t"}));
    zmesh::reactor r;
    pub.attach(r);
    std::thread loop([&] { r.run(); });
    const bool ready = sub.wait_ready(2s);
    r.stop();
    loop.join();
    CHECK(pub.detach(r));
    REQUIRE(ready);
    CHECK(pub.stats().probes_answered >= 1);
    CHECK(pub.stats().subscribes == 1);
    pub.publish("t", "hello");
    CHECK(sub.recv(2s));
}

TEST_CASE("subscribing and unsubscribing at runtime change what is delivered") {
    zmq::context_t ctx;
    publisher pub(ctx, {.bind = {support::inproc_endpoint("pubsub-runtime")}});
    subscriber sub(ctx, sub_options(pub.endpoints().at(0), {"a"}));
    sub.subscribe("b");
    REQUIRE(make_ready(pub, sub));
    pub.publish("a", "1");
    pub.publish("b", "1");
    pub.publish("c", "1");
    CHECK(recv_topics(sub, 2) == strings{"a", "b"});

    CHECK(sub.unsubscribe("a"));
    CHECK_FALSE(sub.unsubscribe("a"));
    CHECK_FALSE(sub.unsubscribe("never"));
    REQUIRE(make_ready(pub, sub)); // the unsubscription is in force too
    pub.publish("a", "2");
    pub.publish("b", "2");
    CHECK(recv_topics(sub, 1) == strings{"b"});
    CHECK(pub.stats().unsubscribes == 1);
}

TEST_CASE("bad options are refused when publishers and subscribers are made") {
    zmq::context_t ctx;
    auto code_of = [](auto&& make) -> std::error_code {
        try {
            make();
        } catch (const zmesh::error& e) {
            return e.code();
        }
        return {};
    };
    CHECK(code_of([&] { publisher p(ctx, {}); }) == zmesh::errc::invalid_argument);
    CHECK(code_of([&] { publisher p(ctx, {.bind = {"tcp://nowhere"}}); }) ==
          zmesh::errc::invalid_endpoint);
    CHECK(code_of([&] { subscriber s(ctx, {}); }) == zmesh::errc::invalid_argument);
    CHECK(code_of([&] { subscriber s(ctx, {.connect = {"udp://x:1"}}); }) ==
          zmesh::errc::invalid_endpoint);
    CHECK(code_of([&] {
              subscriber s(ctx, {.connect = {"tcp://127.0.0.1:1"}, .snapshot_from = "bad"});
          }) == zmesh::errc::invalid_endpoint);
    CHECK(code_of([&] {
              subscriber s(ctx, {.connect = {"tcp://127.0.0.1:1"}, .max_lag = 0ms});
          }) == zmesh::errc::invalid_argument);

    publisher moved_from(ctx, {.bind = {support::inproc_endpoint("pubsub-moved")}});
    publisher owner = std::move(moved_from);
    CHECK(code_of([&] { moved_from.publish("t", "x"); }) == zmesh::errc::not_running);
}

} // TEST_SUITE
