// SPDX-License-Identifier: MPL-2.0
// test_mdp_credit_worker.cpp — the worker with credit (zmesh ZMWC01, mdp/protocol.hpp) against a
// hand-driven fake broker.
//
// As in test_mdp_client_worker.cpp, the fake broker is a bare ROUTER socket the test reads and
// writes itself, so the wire format is checked frame by frame and nothing depends on zmesh's
// broker: READY with the credit, several tagged REQUESTs held at once, REPLYs in any order with
// their tags, malformed input dropped, and tokens outliving their connection.
#include <zmesh/error.hpp>
#include <zmesh/mdp/protocol.hpp>
#include <zmesh/mdp/worker.hpp>

#include "support/support.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cctype>
#include <string>
#include <vector>

namespace {

using namespace std::chrono_literals;
using strings = std::vector<std::string>;
using support::texts;
using support::frames;
using clock_type = std::chrono::steady_clock;

const std::string ready_cmd(1, '\x01');
const std::string request_cmd(1, '\x02');
const std::string reply_cmd(1, '\x03');
const std::string heartbeat_cmd(1, '\x04');
const std::string disconnect_cmd(1, '\x05');

/// An 8-byte tag with a zero byte and a high byte in it, as a broker's binary tags may have.
std::string tag(int i) {
    std::string t(zmesh::mdp::request_tag_size, '\0');
    t[1] = static_cast<char>('a' + i);
    t[7] = static_cast<char>(0xf0 + i);
    return t;
}

std::string upper(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(),
                   [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
    return s;
}

/// A broker the test drives by hand: one ROUTER bound to a fresh inproc endpoint.
struct fake_broker {
    zmq::socket_t router;
    std::string endpoint;

    explicit fake_broker(zmq::context_t& ctx)
        : router(ctx, zmq::socket_type::router), endpoint(support::inproc_endpoint("credit")) {
        router.set(zmq::sockopt::linger, 0);
        router.bind(endpoint);
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

    void send(const strings& parts) {
        auto m = frames(parts);
        REQUIRE(m.send(router) == zmesh::send_status::sent);
    }
};

zmesh::mdp::worker_options credit_worker(std::uint32_t credit) {
    zmesh::mdp::worker_options o;
    o.disconnect_linger = 0ms;
    o.credit = credit;
    return o;
}

} // namespace

TEST_SUITE("lib.mdp.credit") {

TEST_CASE("credit worker sends READY with the ZMWC01 header, its service and its credit") {
    zmq::context_t ctx;
    fake_broker broker(ctx);
    zmesh::mdp::worker w(ctx, broker.endpoint, "echo", credit_worker(8));
    CHECK(w.credit() == 8);

    auto ready = broker.recv();
    REQUIRE(ready.size() == 6);
    CHECK_FALSE(ready[0].empty()); // routing id added by the ROUTER
    CHECK(strings(ready.begin() + 1, ready.end()) == strings{"", "ZMWC01", ready_cmd, "echo", "8"});
}

TEST_CASE("credit worker holds five requests at once and answers them in reverse order") {
    zmq::context_t ctx;
    fake_broker broker(ctx);
    zmesh::mdp::worker w(ctx, broker.endpoint, "echo", credit_worker(8));
    auto ready = broker.recv();
    REQUIRE(ready.size() == 6);
    const auto id = ready[0];

    // Every request is out before any reply: the broker trusts the credit.
    const strings clients{"client-a", "client-b", "client-a", "client-b", "client-a"};
    for (int i = 0; i < 5; ++i)
        broker.send({id, "", "ZMWC01", request_cmd, tag(i), clients[static_cast<std::size_t>(i)],
                     "", "body-" + std::to_string(i), "part"});

    std::vector<zmesh::mdp::held_request> held;
    for (int i = 0; i < 5; ++i) {
        auto r = w.take(2s);
        REQUIRE(r);
        CHECK(texts(r->body) == strings{"body-" + std::to_string(i), "part"});
        CHECK(static_cast<bool>(r->token));
        held.push_back(std::move(*r));
    }
    CHECK(w.stats().requests == 5);

    for (auto it = held.rbegin(); it != held.rend(); ++it) {
        zmesh::message answer;
        for (const auto& f : it->body) answer.push_back(upper(zmesh::to_string(f)));
        w.reply(std::move(it->token), std::move(answer));
        CHECK_FALSE(static_cast<bool>(it->token)); // consumed
    }
    CHECK(w.stats().replies == 5);
    CHECK(w.stats().replies_dropped == 0);

    for (int i = 4; i >= 0; --i) {
        auto rep = broker.recv_skipping_heartbeats();
        CHECK(rep == strings{id, "", "ZMWC01", reply_cmd, tag(i),
                             clients[static_cast<std::size_t>(i)], "",
                             "BODY-" + std::to_string(i), "PART"});
    }
    CHECK(broker.recv_skipping_heartbeats(support::settle_time).empty());
}

TEST_CASE("credit worker socket stays readable while requests wait in it") {
    zmq::context_t ctx;
    fake_broker broker(ctx);
    zmesh::mdp::worker w(ctx, broker.endpoint, "echo", credit_worker(4));
    auto ready = broker.recv();
    REQUIRE(ready.size() == 6);
    for (int i = 0; i < 3; ++i)
        broker.send({ready[0], "", "ZMWC01", request_cmd, tag(i), "c", "", std::to_string(i)});

    // A caller multiplexing workers in one poll must see the requests not yet taken.
    for (int i = 0; i < 3; ++i) {
        zmq::pollitem_t item{w.socket().handle(), 0, ZMQ_POLLIN, 0};
        REQUIRE(zmq::poll(&item, 1, 2000ms) == 1);
        auto r = w.take(0ms);
        REQUIRE(r);
        CHECK(texts(r->body) == strings{std::to_string(i)});
        w.reply(std::move(r->token), std::move(r->body));
    }
    CHECK_FALSE(w.take(0ms));
}

TEST_CASE("credit worker recv and reply carry the request's tag") {
    zmq::context_t ctx;
    fake_broker broker(ctx);
    zmesh::mdp::worker w(ctx, broker.endpoint, "echo", credit_worker(2));
    auto ready = broker.recv();
    REQUIRE(ready.size() == 6);
    const auto id = ready[0];

    broker.send({id, "", "ZMWC01", request_cmd, tag(3), "client-7", "", "hello", "world"});
    broker.send({id, "", "ZMWC01", request_cmd, tag(4), "client-8", "", "taken"});
    auto body = w.recv(2s);
    REQUIRE(body);
    CHECK(texts(*body) == strings{"hello", "world"});

    // take() in between does not replace what recv() returned, and reply() does not answer it.
    auto taken = w.take(2s);
    REQUIRE(taken);
    CHECK(texts(taken->body) == strings{"taken"});
    w.reply(zmesh::message{"answer", ""});
    CHECK(broker.recv_skipping_heartbeats() ==
          strings{id, "", "ZMWC01", reply_cmd, tag(3), "client-7", "", "answer", ""});
    w.reply(std::move(taken->token), zmesh::message{"second"});
    CHECK(broker.recv_skipping_heartbeats() ==
          strings{id, "", "ZMWC01", reply_cmd, tag(4), "client-8", "", "second"});
    CHECK(w.stats().requests == 2);
    CHECK(w.stats().replies == 2);

    try {
        w.reply(zmesh::message{"again"});
        FAIL("a second reply was accepted");
    } catch (const zmesh::error& e) {
        CHECK(e.code() == zmesh::errc::invalid_argument);
    }
    try {
        w.reply(zmesh::mdp::reply_token{}, zmesh::message{"nobody"});
        FAIL("a reply with an empty token was accepted");
    } catch (const zmesh::error& e) {
        CHECK(e.code() == zmesh::errc::invalid_argument);
    }
    CHECK(broker.recv_skipping_heartbeats(support::settle_time).empty());
}

TEST_CASE("credit worker counts and drops malformed requests and still delivers a valid one") {
    zmq::context_t ctx;
    fake_broker broker(ctx);
    zmesh::mdp::worker w(ctx, broker.endpoint, "echo", credit_worker(8));
    auto ready = broker.recv();
    REQUIRE(ready.size() == 6);
    const auto id = ready[0];
    const std::string client8 = "client-8"; // as long as a tag: a missing tag must still show

    broker.send({id, "", "ZMWC01", request_cmd, client8, "", "no tag"});
    broker.send({id, "", "ZMWC01", request_cmd, tag(0).substr(0, 7), "c", "", "7-byte tag"});
    broker.send({id, "", "ZMWC01", request_cmd, tag(0) + "x", "c", "", "9-byte tag"});
    broker.send({id, "", "MDPW01", request_cmd, "c", "", "plain MDP request"});
    broker.send({id, "", "ZMWC01", request_cmd, tag(0), "", "", "empty client"});
    broker.send({id, "", "ZMWC01", request_cmd, tag(0), "c", "nodelim", "x"});
    broker.send({id, "", "ZMWC01", request_cmd, tag(0), "c"}); // no delimiter
    broker.send({id, "", "MDPW01", heartbeat_cmd});           // not the worker's header
    broker.send({id, "", "MDPW01", disconnect_cmd});          // likewise: must not reconnect
    broker.send({id, "", "ZMWC01", request_cmd, tag(5), "c", "", "valid"});

    auto r = w.take(2s);
    REQUIRE(r);
    CHECK(texts(r->body) == strings{"valid"});
    CHECK(w.stats().malformed == 9);
    CHECK(w.stats().disconnects == 0);
    CHECK(w.stats().reconnects == 0);

    w.reply(std::move(r->token), zmesh::message{"ok"});
    CHECK(broker.recv_skipping_heartbeats() ==
          strings{id, "", "ZMWC01", reply_cmd, tag(5), "c", "", "ok"});
}

TEST_CASE("credit out of range is rejected and credit 1 stays plain MDP/0.1") {
    zmq::context_t ctx;
    fake_broker broker(ctx);
    auto code_of = [&](std::uint32_t credit) {
        try {
            zmesh::mdp::worker w(ctx, broker.endpoint, "echo", credit_worker(credit));
        } catch (const zmesh::error& e) {
            return e.code();
        }
        return std::error_code{};
    };
    CHECK(code_of(0) == zmesh::errc::invalid_argument);
    CHECK(code_of(zmesh::mdp::max_worker_credit + 1) == zmesh::errc::invalid_argument);
    CHECK(broker.recv(support::settle_time).empty()); // a rejected worker never connects

    {
        auto most = credit_worker(zmesh::mdp::max_worker_credit);
        most.disconnect_linger = 500ms; // so that its DISCONNECT is surely delivered
        zmesh::mdp::worker scoped(ctx, broker.endpoint, "echo", most);
        auto ready = broker.recv();
        REQUIRE(ready.size() == 6);
        CHECK(ready[5] == "1024");
        scoped.close();
        CHECK(broker.recv_skipping_heartbeats() == strings{ready[0], "", "ZMWC01", disconnect_cmd});
    }

    zmesh::mdp::worker w(ctx, broker.endpoint, "echo", credit_worker(1));
    CHECK(w.credit() == 1);
    auto ready = broker.recv();
    REQUIRE(ready.size() == 5);
    const auto id = ready[0];
    CHECK(strings(ready.begin() + 1, ready.end()) == strings{"", "MDPW01", ready_cmd, "echo"});

    // A plain worker takes only MDPW01 and answers a taken request without a tag.
    broker.send({id, "", "ZMWC01", request_cmd, tag(0), "c", "", "extension"});
    broker.send({id, "", "MDPW01", request_cmd, "client-1", "", "plain"});
    auto r = w.take(2s);
    REQUIRE(r);
    CHECK(texts(r->body) == strings{"plain"});
    CHECK(w.stats().malformed == 1);
    w.reply(std::move(r->token), zmesh::message{"done"});
    CHECK(broker.recv_skipping_heartbeats() ==
          strings{id, "", "MDPW01", reply_cmd, "client-1", "", "done"});
}

TEST_CASE("credit worker drops a reply whose token is from before a DISCONNECT") {
    zmq::context_t ctx;
    fake_broker broker(ctx);
    auto o = credit_worker(4);
    o.reconnect_initial = 10s; // would show if the worker backed off instead of re-registering
    o.reconnect_max = 10s;
    zmesh::mdp::worker w(ctx, broker.endpoint, "echo", o);
    auto ready = broker.recv();
    REQUIRE(ready.size() == 6);

    broker.send({ready[0], "", "ZMWC01", request_cmd, tag(1), "client-1", "", "work"});
    auto r = w.take(2s);
    REQUIRE(r);

    // The broker gives up on this worker while the request is held; keepalive() notices and
    // registers again on a new socket.
    broker.send({ready[0], "", "ZMWC01", disconnect_cmd});
    strings again;
    for (auto until = clock_type::now() + 2s; again.empty() && clock_type::now() < until;
         again = broker.recv(20ms))
        w.keepalive();
    REQUIRE(again.size() == 6);
    CHECK(again[0] != ready[0]);
    CHECK(strings(again.begin() + 1, again.end()) ==
          strings{"", "ZMWC01", ready_cmd, "echo", "4"});
    CHECK(w.stats().disconnects == 1);
    CHECK(w.stats().reconnects == 1);

    w.reply(std::move(r->token), zmesh::message{"late"});
    CHECK(w.stats().replies == 0);
    CHECK(w.stats().replies_dropped == 1);
    CHECK(broker.recv_skipping_heartbeats(300ms).empty());

    // The token was consumed by the dropped reply.
    try {
        w.reply(std::move(r->token), zmesh::message{"twice"});
        FAIL("a used token was accepted");
    } catch (const zmesh::error& e) {
        CHECK(e.code() == zmesh::errc::invalid_argument);
    }
}

} // TEST_SUITE
