// SPDX-License-Identifier: MPL-2.0
// test_mdp_credit_worker.cpp — the worker with credit (zmesh ZMWC02, docs/protocol.md) against a
// hand-driven fake broker.
//
// As in test_mdp_client_worker.cpp, the fake broker is a bare ROUTER socket the test reads and
// writes itself, so the wire format is checked frame by frame and nothing depends on zmesh's
// broker: READY with the credit, several tagged REQUESTs held at once, FINALs in any order with
// their tags, malformed input dropped, and tokens outliving their connection. The header frames
// of requests and replies are covered by test_mdp_worker_v2.cpp; here requests carry an empty
// header frame and the replies' header frame is checked only for its `co`.
#include <zmesh/error.hpp>
#include <zmesh/header.hpp>
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

// ZMWC02 numbers its commands as 18/MDP does.
const std::string ready_cmd(1, '\x01');
const std::string request_cmd(1, '\x02');
const std::string final_cmd(1, '\x04');
const std::string heartbeat_cmd(1, '\x05');
const std::string disconnect_cmd(1, '\x06');
// MDP/0.1's, for the plain worker.
const std::string v1_reply_cmd(1, '\x03');
const std::string v1_heartbeat_cmd(1, '\x04');
const std::string v1_disconnect_cmd(1, '\x05');
const std::string zmwc = "ZMWC02";

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

    /// The next message that is not a worker HEARTBEAT (ZMWC02 or MDPW01).
    strings recv_skipping_heartbeats(std::chrono::milliseconds timeout = 2000ms) {
        const auto deadline = clock_type::now() + timeout;
        for (;;) {
            const auto left =
                std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_type::now());
            auto m = recv(std::max(left, 0ms));
            const bool v2_heartbeat = m.size() == 3 && m[1] == zmwc && m[2] == heartbeat_cmd;
            const bool v1_heartbeat = m.size() == 4 && m[2] == "MDPW01" && m[3] == v1_heartbeat_cmd;
            if (!v2_heartbeat && !v1_heartbeat) return m;
        }
    }

    /// The next reply, its header frame (index 6 of a ZMWC02 FINAL) checked to decode with no
    /// `co` (the requests here have no header) and taken out, so the rest compares as text.
    strings recv_final() {
        auto m = recv_skipping_heartbeats();
        if (m.size() < 7 || m[1] != zmwc) return m;
        const auto h = zmesh::decode_header(m[6].data(), m[6].size());
        CHECK_FALSE(h.correlation_id);
        m.erase(m.begin() + 6);
        return m;
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
    // The fake broker never answers READY: keep the worker from falling back to MDPW01 during
    // a test (a ZMWC02 answer only counts once the broker heard from it).
    o.heartbeat = 10s;
    return o;
}

/// A ZMWC02 REQUEST from the fake broker to @p id, with an empty header frame.
strings request(const std::string& id, const std::string& t, const std::string& client,
                const strings& body) {
    strings m{id, zmwc, request_cmd, t, client, "", ""};
    m.insert(m.end(), body.begin(), body.end());
    return m;
}

/// The FINAL the fake broker expects, as recv_final() shows it (without the header frame).
strings final_of(const std::string& id, const std::string& t, const std::string& client,
                 const strings& body) {
    strings m{id, zmwc, final_cmd, t, client, ""};
    m.insert(m.end(), body.begin(), body.end());
    return m;
}

} // namespace

TEST_SUITE("lib.mdp.credit") {

TEST_CASE("credit worker sends READY with the ZMWC02 header, its service and its credit") {
    zmq::context_t ctx;
    fake_broker broker(ctx);
    zmesh::mdp::worker w(ctx, broker.endpoint, "echo", credit_worker(8));
    CHECK(w.credit() == 8);
    CHECK(w.protocol() == zmesh::mdp::worker_protocol::zmesh);

    // 18/MDP layout: no empty delimiter before the protocol frame.
    auto ready = broker.recv();
    REQUIRE(ready.size() == 5);
    CHECK_FALSE(ready[0].empty()); // routing id added by the ROUTER
    CHECK(strings(ready.begin() + 1, ready.end()) == strings{zmwc, ready_cmd, "echo", "8"});
}

TEST_CASE("the default worker speaks ZMWC02 with credit 1") {
    zmq::context_t ctx;
    fake_broker broker(ctx);
    auto o = credit_worker(1);
    zmesh::mdp::worker w(ctx, broker.endpoint, "echo", o);
    CHECK(w.protocol() == zmesh::mdp::worker_protocol::zmesh);
    auto ready = broker.recv();
    REQUIRE(ready.size() == 5);
    CHECK(strings(ready.begin() + 1, ready.end()) == strings{zmwc, ready_cmd, "echo", "1"});
}

TEST_CASE("credit worker holds five requests at once and answers them in reverse order") {
    zmq::context_t ctx;
    fake_broker broker(ctx);
    zmesh::mdp::worker w(ctx, broker.endpoint, "echo", credit_worker(8));
    auto ready = broker.recv();
    REQUIRE(ready.size() == 5);
    const auto id = ready[0];

    // Every request is out before any reply: the broker trusts the credit.
    const strings clients{"client-a", "client-b", "client-a", "client-b", "client-a"};
    for (int i = 0; i < 5; ++i)
        broker.send(request(id, tag(i), clients[static_cast<std::size_t>(i)],
                            {"body-" + std::to_string(i), "part"}));

    std::vector<zmesh::mdp::held_request> held;
    for (int i = 0; i < 5; ++i) {
        auto r = w.take(2s);
        REQUIRE(r);
        CHECK(texts(r->body) == strings{"body-" + std::to_string(i), "part"});
        CHECK(static_cast<bool>(r->token));
        CHECK_FALSE(r->header); // an empty header frame is no header
        CHECK_FALSE(r->deadline);
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
        CHECK(broker.recv_final() == final_of(id, tag(i), clients[static_cast<std::size_t>(i)],
                                              {"BODY-" + std::to_string(i), "PART"}));
    }
    CHECK(broker.recv_skipping_heartbeats(support::settle_time).empty());
}

TEST_CASE("credit worker socket stays readable while requests wait in it") {
    zmq::context_t ctx;
    fake_broker broker(ctx);
    zmesh::mdp::worker w(ctx, broker.endpoint, "echo", credit_worker(4));
    auto ready = broker.recv();
    REQUIRE(ready.size() == 5);
    for (int i = 0; i < 3; ++i) broker.send(request(ready[0], tag(i), "c", {std::to_string(i)}));

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
    REQUIRE(ready.size() == 5);
    const auto id = ready[0];

    broker.send(request(id, tag(3), "client-7", {"hello", "world"}));
    broker.send(request(id, tag(4), "client-8", {"taken"}));
    auto body = w.recv(2s);
    REQUIRE(body);
    CHECK(texts(*body) == strings{"hello", "world"});

    // take() in between does not replace what recv() returned, and reply() does not answer it.
    auto taken = w.take(2s);
    REQUIRE(taken);
    CHECK(texts(taken->body) == strings{"taken"});
    w.reply(zmesh::message{"answer", ""});
    CHECK(broker.recv_final() == final_of(id, tag(3), "client-7", {"answer", ""}));
    w.reply(std::move(taken->token), zmesh::message{"second"});
    CHECK(broker.recv_final() == final_of(id, tag(4), "client-8", {"second"}));
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
    REQUIRE(ready.size() == 5);
    const auto id = ready[0];
    const std::string client8 = "client-8"; // as long as a tag: a missing tag must still show

    broker.send({id, zmwc, request_cmd, client8, "", "", "no tag"});
    broker.send({id, zmwc, request_cmd, tag(0).substr(0, 7), "c", "", "", "7-byte tag"});
    broker.send({id, zmwc, request_cmd, tag(0) + "x", "c", "", "", "9-byte tag"});
    broker.send({id, "", "MDPW01", request_cmd, "c", "", "plain MDP request"});
    broker.send({id, "", zmwc, request_cmd, tag(0), "c", "", "", "7/MDP layout"});
    broker.send({id, zmwc, request_cmd, tag(0), "", "", "", "empty client"});
    broker.send({id, zmwc, request_cmd, tag(0), "c", "nodelim", "", "x"});
    broker.send({id, zmwc, request_cmd, tag(0), "c", ""}); // no header frame
    broker.send({id, zmwc, std::string(1, '\x03'), tag(0), "c", "", "", "a PARTIAL"});
    broker.send({id, zmwc, final_cmd, tag(0), "c", "", "", "a FINAL"});
    broker.send({id, zmwc, std::string(1, '\x07')});           // unknown command
    broker.send({id, "", "MDPW01", v1_heartbeat_cmd});           // not the worker's protocol
    broker.send({id, "", "MDPW01", v1_disconnect_cmd});          // likewise: must not reconnect
    broker.send({id, zmwc, disconnect_cmd, "extra"});           // wrong frame count
    broker.send(request(id, tag(5), "c", {"valid"}));

    auto r = w.take(2s);
    REQUIRE(r);
    CHECK(texts(r->body) == strings{"valid"});
    CHECK(w.stats().malformed == 14);
    CHECK(w.stats().disconnects == 0);
    CHECK(w.stats().reconnects == 0);

    w.reply(std::move(r->token), zmesh::message{"ok"});
    CHECK(broker.recv_final() == final_of(id, tag(5), "c", {"ok"}));
}

TEST_CASE("credit out of range is rejected and the plain protocol is MDP/0.1 with credit 1") {
    zmq::context_t ctx;
    fake_broker broker(ctx);
    auto code_of = [&](zmesh::mdp::worker_options o) {
        try {
            zmesh::mdp::worker w(ctx, broker.endpoint, "echo", o);
        } catch (const zmesh::error& e) {
            return e.code();
        }
        return std::error_code{};
    };
    CHECK(code_of(credit_worker(0)) == zmesh::errc::invalid_argument);
    CHECK(code_of(credit_worker(zmesh::mdp::max_worker_credit + 1)) ==
          zmesh::errc::invalid_argument);
    auto plain_with_credit = credit_worker(2);
    plain_with_credit.protocol = zmesh::mdp::worker_protocol::mdp;
    CHECK(code_of(plain_with_credit) == zmesh::errc::invalid_argument);
    CHECK(broker.recv(support::settle_time).empty()); // a rejected worker never connects

    {
        auto most = credit_worker(zmesh::mdp::max_worker_credit);
        most.disconnect_linger = 500ms; // so that its DISCONNECT is surely delivered
        zmesh::mdp::worker scoped(ctx, broker.endpoint, "echo", most);
        auto ready = broker.recv();
        REQUIRE(ready.size() == 5);
        CHECK(ready[4] == "1024");
        scoped.close();
        CHECK(broker.recv_skipping_heartbeats() == strings{ready[0], zmwc, disconnect_cmd});
    }

    auto plain = credit_worker(1);
    plain.protocol = zmesh::mdp::worker_protocol::mdp;
    zmesh::mdp::worker w(ctx, broker.endpoint, "echo", plain);
    CHECK(w.credit() == 1);
    CHECK(w.protocol() == zmesh::mdp::worker_protocol::mdp);
    auto ready = broker.recv();
    REQUIRE(ready.size() == 5);
    const auto id = ready[0];
    CHECK(strings(ready.begin() + 1, ready.end()) == strings{"", "MDPW01", ready_cmd, "echo"});

    // A plain worker takes only MDPW01 and answers a taken request without a tag.
    broker.send(request(id, tag(0), "c", {"extension"}));
    broker.send({id, "", "MDPW01", request_cmd, "client-1", "", "plain"});
    auto r = w.take(2s);
    REQUIRE(r);
    CHECK(texts(r->body) == strings{"plain"});
    CHECK_FALSE(r->header);
    CHECK_FALSE(r->deadline);
    CHECK(w.stats().malformed == 1);
    w.reply(std::move(r->token), zmesh::message{"done"}, "ignored.type");
    CHECK(broker.recv_skipping_heartbeats() ==
          strings{id, "", "MDPW01", v1_reply_cmd, "client-1", "", "done"});
}

TEST_CASE("credit worker drops a reply whose token is from before a DISCONNECT") {
    zmq::context_t ctx;
    fake_broker broker(ctx);
    auto o = credit_worker(4);
    o.reconnect_initial = 10s; // would show if the worker backed off instead of re-registering
    o.reconnect_max = 10s;
    zmesh::mdp::worker w(ctx, broker.endpoint, "echo", o);
    auto ready = broker.recv();
    REQUIRE(ready.size() == 5);

    broker.send(request(ready[0], tag(1), "client-1", {"work"}));
    auto r = w.take(2s);
    REQUIRE(r);

    // The broker gives up on this worker while the request is held; keepalive() notices and
    // registers again on a new socket.
    broker.send({ready[0], zmwc, disconnect_cmd});
    strings again;
    for (auto until = clock_type::now() + 2s; again.empty() && clock_type::now() < until;
         again = broker.recv(20ms))
        w.keepalive();
    REQUIRE(again.size() == 5);
    CHECK(again[0] != ready[0]);
    CHECK(strings(again.begin() + 1, again.end()) == strings{zmwc, ready_cmd, "echo", "4"});
    CHECK(w.stats().disconnects == 1);
    CHECK(w.stats().reconnects == 1);

    w.partial(r->token, zmesh::message{"late part"});
    w.reply(std::move(r->token), zmesh::message{"late"});
    CHECK(w.stats().replies == 0);
    CHECK(w.stats().partials == 0);
    CHECK(w.stats().replies_dropped == 2);
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
