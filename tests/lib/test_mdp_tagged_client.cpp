// SPDX-License-Identifier: MPL-2.0
// test_mdp_tagged_client.cpp — the tagged client (zmesh ZMCT01, mdp/protocol.hpp) against a
// hand-driven fake broker.
//
// As in test_mdp_client_worker.cpp, the fake broker is a bare ROUTER socket the test reads and
// writes itself, so the wire format is checked frame by frame and nothing depends on zmesh's
// broker: the request frames with their 8-byte tag, replies matched by tag in any order, caller
// and automatic tags, malformed and foreign replies dropped, abandon(), misuse, and request()
// taking only the reply to its current attempt.
#include <zmesh/error.hpp>
#include <zmesh/mdp/client.hpp>

#include "support/support.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <future>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace {

using namespace std::chrono_literals;
using strings = std::vector<std::string>;
using support::texts;
using support::frames;

/// A tag frame as the client writes it: the 8 bytes of the tag in host byte order.
std::string tag_bytes(std::uint64_t tag) {
    std::string t(sizeof tag, '\0');
    std::memcpy(t.data(), &tag, sizeof tag);
    return t;
}

/// The tag in a tag frame; fake_broker::recv_request() has checked its size.
std::uint64_t tag_value(const std::string& frame) {
    std::uint64_t tag = 0;
    if (frame.size() != sizeof tag) return 0;
    std::memcpy(&tag, frame.data(), sizeof tag);
    return tag;
}

/// A broker the test drives by hand: one ROUTER bound to a fresh inproc endpoint.
struct fake_broker {
    zmq::socket_t router;
    std::string endpoint;

    explicit fake_broker(zmq::context_t& ctx)
        : router(ctx, zmq::socket_type::router), endpoint(support::inproc_endpoint("tagged")) {
        router.set(zmq::sockopt::linger, 0);
        router.bind(endpoint);
    }

    /// The next message as text frames, the peer's routing id first; empty if none in time.
    strings recv(std::chrono::milliseconds timeout = 2000ms) {
        auto m = support::recv_for(router, timeout);
        return m ? texts(*m) : strings{};
    }

    /// The next request, checked to be a tagged one: id "" "ZMCT01" service tag body...
    strings recv_request() {
        auto req = recv();
        REQUIRE(req.size() >= 6);
        REQUIRE(req[2] == "ZMCT01");
        REQUIRE(req[4].size() == sizeof(std::uint64_t));
        return req;
    }

    void send(const strings& parts) {
        auto m = frames(parts);
        REQUIRE(m.send(router) == zmesh::send_status::sent);
    }

    /// Answers @p req (as received by recv_request()) with its own tag, service and @p body.
    void answer(const strings& req, const std::string& body) {
        send({req[0], "", "ZMCT01", req[3], req[4], body});
    }
};

zmesh::mdp::client_options tagged(std::chrono::milliseconds timeout = 2s, std::size_t window = 64) {
    return {.timeout = timeout, .retries = 1, .window = window, .tagged = true};
}

template <class F> std::error_code code_of(F f) {
    try {
        f();
    } catch (const zmesh::error& e) {
        return e.code();
    }
    return {};
}

} // namespace

TEST_SUITE("lib.mdp.tagged") {

TEST_CASE("tagged request frames are exactly \"\" ZMCT01 service tag body...") {
    zmq::context_t ctx;
    fake_broker broker(ctx);
    zmesh::mdp::client c(ctx, broker.endpoint, tagged());

    const std::uint64_t tag = 0x0102'0304'0506'0708;
    c.send("echo", zmesh::message{"hello", "", "world"}, tag);
    auto req = broker.recv();
    REQUIRE(req.size() == 8);
    CHECK_FALSE(req[0].empty()); // routing id added by the ROUTER
    CHECK(strings(req.begin() + 1, req.end()) ==
          strings{"", "ZMCT01", "echo", tag_bytes(tag), "hello", "", "world"});

    // request() speaks the same protocol, with a tag of its own.
    auto result = std::async(std::launch::async, [&] {
        zmesh::mdp::client s(ctx, broker.endpoint, tagged());
        return texts(s.request("echo", zmesh::message{"sync"}));
    });
    auto sync = broker.recv();
    REQUIRE(sync.size() == 6);
    CHECK(sync[1] == "");
    CHECK(sync[2] == "ZMCT01");
    CHECK(sync[3] == "echo");
    CHECK(sync[4].size() == 8);
    CHECK(sync[5] == "sync");
    broker.answer(sync, "ok");
    REQUIRE(result.wait_for(3s) == std::future_status::ready);
    CHECK(result.get() == strings{"ok"});
}

TEST_CASE("replies in reverse order are matched to their caller-chosen tags") {
    zmq::context_t ctx;
    fake_broker broker(ctx);
    zmesh::mdp::client c(ctx, broker.endpoint, tagged());

    c.send("echo", zmesh::message{"seven"}, 7);
    c.send("echo", zmesh::message{"eight"}, 8);
    c.send("echo", zmesh::message{"nine"}, 9);
    CHECK(c.outstanding() == 3);

    std::vector<strings> reqs;
    for (int i = 0; i < 3; ++i) reqs.push_back(broker.recv_request());
    CHECK(tag_value(reqs[0][4]) == 7);
    CHECK(tag_value(reqs[1][4]) == 8);
    CHECK(tag_value(reqs[2][4]) == 9);
    for (auto it = reqs.rbegin(); it != reqs.rend(); ++it) broker.answer(*it, "re:" + (*it)[5]);

    const std::vector<std::pair<std::uint64_t, std::string>> expected{
        {9, "re:nine"}, {8, "re:eight"}, {7, "re:seven"}};
    std::size_t left = 3;
    for (const auto& [tag, body] : expected) {
        auto r = c.recv(2s);
        REQUIRE(r);
        CHECK(r->tag == tag);
        CHECK(r->service == "echo");
        CHECK(texts(r->body) == strings{body});
        CHECK(c.outstanding() == --left);
    }
    CHECK_FALSE(c.recv(0ms));
    CHECK(c.stats().requests == 3);
    CHECK(c.stats().replies == 3);
    CHECK(c.stats().malformed == 0);
    CHECK(c.stats().unexpected == 0);
}

TEST_CASE("send without a tag picks distinct tags that skip the caller's outstanding ones") {
    zmq::context_t ctx;
    fake_broker broker(ctx);
    zmesh::mdp::client c(ctx, broker.endpoint, tagged());

    // Caller tags 1 and 2 are outstanding; automatic tags must keep clear of them whatever the
    // counter behind them starts at.
    c.send("echo", zmesh::message{"caller-1"}, 1);
    c.send("echo", zmesh::message{"caller-2"}, 2);
    for (int i = 0; i < 3; ++i) c.send("echo", zmesh::message{"auto"});
    CHECK(c.outstanding() == 5);

    std::set<std::uint64_t> seen;
    std::vector<strings> reqs;
    for (int i = 0; i < 5; ++i) {
        reqs.push_back(broker.recv_request());
        seen.insert(tag_value(reqs.back()[4]));
    }
    CHECK(seen.size() == 5);
    CHECK(seen.count(1) == 1);
    CHECK(seen.count(2) == 1);

    // Every reply comes back with the tag the broker saw on its request.
    for (const auto& req : reqs) broker.answer(req, "re");
    std::set<std::uint64_t> got;
    while (c.outstanding() > 0) {
        auto r = c.recv(2s);
        REQUIRE(r);
        got.insert(r->tag);
    }
    CHECK(got == seen);
}

TEST_CASE("replies with an unknown tag, a 7-byte tag or the MDPC01 header are dropped") {
    zmq::context_t ctx;
    fake_broker broker(ctx);
    zmesh::mdp::client c(ctx, broker.endpoint, tagged());

    c.send("echo", zmesh::message{"x"}, 5);
    auto req = broker.recv_request();
    const auto id = req[0]; // a copy: req is reused below
    broker.send({id, "", "ZMCT01", "echo", tag_bytes(6), "foreign"});          // unknown tag
    broker.send({id, "", "ZMCT01", "echo", tag_bytes(5).substr(0, 7), "short"}); // 7-byte tag
    broker.send({id, "", "MDPC01", "echo", "plain"});                          // untagged header
    broker.send({id, "", "ZMCT01", "echo"});                                   // no tag frame
    broker.send({id, "junk"});
    broker.send({id, "", "ZMCT01", "echo", tag_bytes(5), "good"});

    auto r = c.recv(2s);
    REQUIRE(r);
    CHECK(r->tag == 5);
    CHECK(texts(r->body) == strings{"good"});
    CHECK(c.stats().malformed == 4);
    CHECK(c.stats().unexpected == 1);
    CHECK(c.outstanding() == 0);

    // A second reply to a tag already answered is as foreign as one never asked for.
    c.send("echo", zmesh::message{"y"}, 10);
    req = broker.recv_request();
    broker.send({id, "", "ZMCT01", "echo", tag_bytes(5), "again"});
    broker.answer(req, "ten");
    r = c.recv(2s);
    REQUIRE(r);
    CHECK(r->tag == 10);
    CHECK(texts(r->body) == strings{"ten"});
    CHECK(c.stats().unexpected == 2);
    CHECK(c.stats().replies == 2);
}

TEST_CASE("abandon frees the window slot and the abandoned reply is dropped as unexpected") {
    zmq::context_t ctx;
    fake_broker broker(ctx);
    zmesh::mdp::client c(ctx, broker.endpoint, tagged(500ms, 1));

    SUBCASE("in flight: the late reply is dropped when it arrives") {
        c.send("echo", zmesh::message{"one"}, 1);
        CHECK(c.abandon(1));
        CHECK_FALSE(c.abandon(1)); // no longer outstanding
        CHECK(c.outstanding() == 0);

        // With window 1 and the slot still taken, this send would wait for a reply that the
        // broker, driven by this thread, cannot send: errc::timeout after 500 ms.
        std::error_code ec;
        CHECK(c.send("echo", zmesh::message{"two"}, 2, ec));
        CHECK_FALSE(ec);

        auto first = broker.recv_request();
        auto second = broker.recv_request();
        broker.answer(first, "late");
        broker.answer(second, "two");
        auto r = c.recv(2s);
        REQUIRE(r);
        CHECK(r->tag == 2);
        CHECK(texts(r->body) == strings{"two"});
        CHECK(c.stats().unexpected == 1);
    }

    SUBCASE("queued: the reply received while send() waited is dropped at once") {
        c.send("echo", zmesh::message{"three"}, 3);
        broker.answer(broker.recv_request(), "three");
        c.send("echo", zmesh::message{"four"}, 4); // window full: queues the reply to 3 first
        CHECK(c.outstanding() == 2);
        CHECK(c.abandon(3));
        CHECK(c.outstanding() == 1);
        CHECK(c.stats().unexpected == 1);

        broker.answer(broker.recv_request(), "four");
        auto r = c.recv(2s);
        REQUIRE(r);
        CHECK(r->tag == 4);
        CHECK(texts(r->body) == strings{"four"});
        CHECK(c.outstanding() == 0);
        CHECK(c.stats().replies == 1);
    }

    // A tag is free for reuse once abandoned.
    c.send("echo", zmesh::message{"reuse"}, 1);
    CHECK(c.outstanding() == 1);
}

TEST_CASE("a duplicate outstanding tag, and tags on an untagged client, are invalid arguments") {
    zmq::context_t ctx;
    fake_broker broker(ctx);

    zmesh::mdp::client c(ctx, broker.endpoint, tagged());
    c.send("echo", zmesh::message{"first"}, 7);
    CHECK(code_of([&] { c.send("echo", zmesh::message{"again"}, 7); }) ==
          zmesh::errc::invalid_argument);
    zmesh::message body{"kept"};
    std::error_code ec;
    CHECK_FALSE(c.send("echo", std::move(body), 7, ec));
    CHECK(ec == zmesh::errc::invalid_argument);
    CHECK(texts(body) == strings{"kept"}); // a refused request leaves the body to the caller
    CHECK(c.outstanding() == 1);
    CHECK(code_of([&] { c.send("", zmesh::message{"x"}, 8); }) == zmesh::errc::invalid_argument);
    broker.recv_request();
    CHECK(broker.recv(support::settle_time).empty()); // nothing else went out

    zmesh::mdp::client plain(ctx, broker.endpoint,
                             {.timeout = 1s, .protocol = zmesh::mdp::client_protocol::mdp});
    CHECK(code_of([&] { plain.send("echo", zmesh::message{"x"}, 7); }) ==
          zmesh::errc::invalid_argument);
    CHECK_FALSE(plain.send("echo", zmesh::message{"x"}, 7, ec));
    CHECK(ec == zmesh::errc::invalid_argument);
    CHECK(plain.outstanding() == 0);
    plain.send("echo", zmesh::message{"x"});
    CHECK_FALSE(plain.abandon(0));
    CHECK_FALSE(plain.abandon(1));
    CHECK(plain.outstanding() == 1);

    // Untagged replies still carry no tag.
    auto req = broker.recv();
    REQUIRE(req.size() == 5);
    CHECK(req[2] == "MDPC01");
    broker.send({req[0], "", "MDPC01", "echo", "plain"});
    auto r = plain.recv(2s);
    REQUIRE(r);
    CHECK(r->tag == 0);
    CHECK(texts(r->body) == strings{"plain"});
}

TEST_CASE("tagged request() accepts only the reply that carries its attempt's tag") {
    zmq::context_t ctx;
    fake_broker broker(ctx);
    auto result = std::async(std::launch::async, [&] {
        zmesh::mdp::client c(ctx, broker.endpoint, tagged(3s));
        auto body = texts(c.request("echo", zmesh::message{"ping"}));
        return std::make_pair(body, c.stats());
    });

    auto req = broker.recv_request();
    const auto tag = tag_value(req[4]);
    // A plain MDP/0.1 client would take the first of these for its answer.
    broker.send({req[0], "", "ZMCT01", "echo", tag_bytes(tag + 1), "stale"});
    broker.send({req[0], "", "ZMCT01", "other", req[4], "wrong service"});
    broker.send({req[0], "", "MDPC01", "echo", "untagged"});
    broker.answer(req, "pong");

    REQUIRE(result.wait_for(3s) == std::future_status::ready);
    auto [body, stats] = result.get();
    CHECK(body == strings{"pong"});
    CHECK(stats.unexpected == 2);
    CHECK(stats.malformed == 1);
    CHECK(stats.replies == 1);
}

TEST_CASE("tagged request() resends with a fresh tag and ignores the earlier attempt's tag") {
    zmq::context_t ctx;
    fake_broker broker(ctx);
    auto result = std::async(std::launch::async, [&] {
        zmesh::mdp::client c(ctx, broker.endpoint,
                             {.timeout = 300ms, .retries = 3, .tagged = true});
        auto body = texts(c.request("echo", zmesh::message{"ping"}));
        return std::make_pair(body, c.stats());
    });

    auto first = broker.recv_request();
    auto second = broker.recv_request();
    CHECK(second[0] != first[0]); // a new socket, as in plain Lazy Pirate
    CHECK(second[4] != first[4]); // and a new tag
    CHECK(second[5] == "ping");

    // Attempt 1's answer delivered on attempt 2's connection must not be taken for attempt 2's.
    broker.send({second[0], "", "ZMCT01", "echo", first[4], "stale"});
    broker.answer(second, "pong");

    REQUIRE(result.wait_for(3s) == std::future_status::ready);
    auto [body, stats] = result.get();
    CHECK(body == strings{"pong"});
    CHECK(stats.requests == 1);
    CHECK(stats.resends == 1);
    CHECK(stats.unexpected == 1);
    CHECK(stats.replies == 1);
}

TEST_CASE("many tagged requests answered out of order each reach their own tag") {
    // Single-threaded and deterministic: each round the client sends a full window, which makes
    // send() queue the previous round's replies; the broker answers every round shuffled. The
    // outstanding tags (up to 80, random 64-bit values) outgrow the client's initial table.
    constexpr std::size_t window = 8;
    constexpr std::size_t rounds = 10;
    zmq::context_t ctx;
    fake_broker broker(ctx);
    zmesh::mdp::client c(ctx, broker.endpoint, tagged(2s, window));

    std::mt19937_64 rng(20240611);
    std::set<std::uint64_t> sent;
    std::vector<std::uint64_t> order; // tags in the order sent
    for (std::size_t round = 0; round < rounds; ++round) {
        std::vector<strings> reqs;
        for (std::size_t i = 0; i < window; ++i) {
            std::uint64_t tag = rng();
            while (sent.count(tag) != 0) tag = rng();
            sent.insert(tag);
            order.push_back(tag);
            c.send("echo", zmesh::message{std::to_string(tag)}, tag);
        }
        for (std::size_t i = 0; i < window; ++i) reqs.push_back(broker.recv_request());
        std::shuffle(reqs.begin(), reqs.end(), rng);
        for (const auto& req : reqs) {
            CHECK(req[5] == std::to_string(tag_value(req[4])));
            broker.answer(req, req[5]);
        }
    }
    CHECK(c.outstanding() == rounds * window);

    // Every third tag of the rounds whose replies are queued by now is abandoned.
    std::set<std::uint64_t> abandoned;
    for (std::size_t i = 0; i < (rounds - 1) * window; i += 3) {
        CHECK(c.abandon(order[i]));
        abandoned.insert(order[i]);
    }
    CHECK(c.outstanding() == rounds * window - abandoned.size());

    std::set<std::uint64_t> got;
    while (c.outstanding() > 0) {
        auto r = c.recv(2s);
        REQUIRE(r);
        CHECK(texts(r->body) == strings{std::to_string(r->tag)});
        CHECK(got.insert(r->tag).second);
    }
    CHECK(got.size() + abandoned.size() == sent.size());
    for (auto tag : abandoned) CHECK(got.count(tag) == 0);
    CHECK(c.stats().unexpected == abandoned.size());
    CHECK(c.stats().malformed == 0);
    CHECK(c.stats().replies == got.size());
}

} // TEST_SUITE
