// SPDX-License-Identifier: MPL-2.0
// test_mdp_worker_v2.cpp — what a ZMWC02 worker adds to MDP (docs/protocol.md, "ZMWC02: the
// zmesh worker"): the request's header and deadline for the handler, PARTIAL and FINAL frames
// with a reply header, refusals, and what partial() and refuse() become after the fallback to
// MDP/0.1.
//
// The fake broker is a bare ROUTER the test drives by hand, so every frame is checked as the
// spec lays it out: "ZMWC02" command tag client "" header body..., no empty delimiter first.
#include <zmesh/error.hpp>
#include <zmesh/header.hpp>
#include <zmesh/mdp/protocol.hpp>
#include <zmesh/mdp/worker.hpp>

#include "support/support.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

namespace {

using namespace std::chrono_literals;
using strings = std::vector<std::string>;
using support::frames;
using support::texts;
using clock_type = std::chrono::steady_clock;

const std::string zmwc = "ZMWC02";
const std::string ready_cmd(1, '\x01');
const std::string request_cmd(1, '\x02');
const std::string partial_cmd(1, '\x03');
const std::string final_cmd(1, '\x04');
const std::string heartbeat_cmd(1, '\x05');
const std::string v1_reply_cmd(1, '\x03');
const std::string v1_heartbeat_cmd(1, '\x04');

std::string tag(int i) {
    std::string t(zmesh::mdp::request_tag_size, '\0');
    t[0] = static_cast<char>('t');
    t[7] = static_cast<char>(0x80 + i);
    return t;
}

/// A broker the test drives by hand: one ROUTER bound to a fresh inproc endpoint.
struct fake_broker {
    zmq::socket_t router;
    std::string endpoint;

    explicit fake_broker(zmq::context_t& ctx)
        : router(ctx, zmq::socket_type::router), endpoint(support::inproc_endpoint("v2")) {
        router.set(zmq::sockopt::linger, 0);
        router.bind(endpoint);
    }

    /// The next message that is not a HEARTBEAT, as text frames; empty if none in time.
    strings recv(std::chrono::milliseconds timeout = 2000ms) {
        const auto deadline = clock_type::now() + timeout;
        for (;;) {
            const auto left =
                std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_type::now());
            auto m = support::recv_for(router, std::max(left, 0ms));
            if (!m) return {};
            auto t = texts(*m);
            const bool v2_heartbeat = t.size() == 3 && t[1] == zmwc && t[2] == heartbeat_cmd;
            const bool v1_heartbeat = t.size() == 4 && t[2] == "MDPW01" && t[3] == v1_heartbeat_cmd;
            if (!v2_heartbeat && !v1_heartbeat) return t;
        }
    }

    void send(const strings& parts) {
        auto m = frames(parts);
        REQUIRE(m.send(router) == zmesh::send_status::sent);
    }

    /// Reads READY and answers it as zmesh's broker does (a HEARTBEAT); returns the worker's id.
    std::string accept(zmesh::mdp::worker& w) {
        auto ready = recv();
        REQUIRE(ready.size() == 5);
        REQUIRE(ready[1] == zmwc);
        REQUIRE(ready[2] == ready_cmd);
        send({ready[0], zmwc, heartbeat_cmd});
        w.keepalive(); // reads the answer: no fallback from here on
        return ready[0];
    }

    /// A ZMWC02 REQUEST with @p h encoded as its header frame.
    void request(const std::string& id, const std::string& t, const zmesh::header& h,
                 const strings& body) {
        strings m{id, zmwc, request_cmd, t, "client-1", "", zmesh::to_string(zmesh::encode(h))};
        m.insert(m.end(), body.begin(), body.end());
        send(m);
    }
};

zmesh::mdp::worker_options v2_worker(std::uint32_t credit = 4) {
    zmesh::mdp::worker_options o;
    o.disconnect_linger = 0ms;
    o.credit = credit;
    o.heartbeat = 500ms; // an answer within it keeps ZMWC02 even on a loaded machine
    return o;
}

zmesh::header request_header(std::string type, std::uint8_t priority, std::uint32_t tl) {
    auto h = zmesh::make_header(std::move(type));
    h.priority = priority;
    h.ttl_ms = tl;
    h.attempt = 2;
    return h;
}

/// Decodes the header frame @p text (a PARTIAL's or FINAL's, index 6).
zmesh::header decoded(const std::string& text) {
    return zmesh::decode_header(text.data(), text.size());
}

} // namespace

TEST_SUITE("lib.mdp.v2") {

TEST_CASE("take gives the handler the request's header and a deadline of receipt plus tl") {
    zmq::context_t ctx;
    fake_broker broker(ctx);
    zmesh::mdp::worker w(ctx, broker.endpoint, "report", v2_worker());
    const auto id = broker.accept(w);

    const auto h = request_header("report.daily", 7, 1500);
    const auto sent_at = clock_type::now();
    broker.request(id, tag(1), h, {"body"});
    auto r = w.take(2s);
    const auto taken_at = clock_type::now();
    REQUIRE(r);
    CHECK(texts(r->body) == strings{"body"});
    REQUIRE(r->header);
    CHECK(r->header->type == "report.daily");
    CHECK(r->header->priority == 7);
    CHECK(r->header->id == h.id);
    CHECK(r->header->attempt == 2);
    CHECK(r->header->ttl_ms == 1500);
    // The deadline counts from when the worker read the REQUEST: between the send and take()'s
    // return, plus tl.
    REQUIRE(r->deadline);
    CHECK(*r->deadline >= sent_at + 1500ms);
    CHECK(*r->deadline <= taken_at + 1500ms);
    const auto left = r->time_left();
    REQUIRE(left);
    CHECK(*left <= 1500ms);
    CHECK(*left > 1000ms);
    CHECK(r->time_left(*r->deadline + 1s) == 0ms); // never negative

    // A header without tl: no deadline of its own.
    broker.request(id, tag(2), request_header("t", 4, 0), {"x"});
    auto untimed = w.take(2s);
    REQUIRE(untimed);
    REQUIRE(untimed->header);
    CHECK_FALSE(untimed->deadline);
    CHECK_FALSE(untimed->time_left());
}

TEST_CASE("recv exposes the current request's header and deadline until it is answered") {
    zmq::context_t ctx;
    fake_broker broker(ctx);
    zmesh::mdp::worker w(ctx, broker.endpoint, "report", v2_worker());
    const auto id = broker.accept(w);
    CHECK(w.current_header() == nullptr);
    CHECK_FALSE(w.deadline());

    broker.request(id, tag(1), request_header("job.run", 9, 800), {"a"});
    auto body = w.recv(2s);
    REQUIRE(body);
    REQUIRE(w.current_header() != nullptr);
    CHECK(w.current_header()->type == "job.run");
    CHECK(w.current_header()->priority == 9);
    REQUIRE(w.deadline());
    REQUIRE(w.time_left());
    CHECK(*w.time_left() <= 800ms);
    CHECK(*w.time_left() > 300ms);

    w.reply(zmesh::message{"done"});
    CHECK(w.current_header() == nullptr); // answered: nothing is current
    CHECK_FALSE(w.deadline());
    CHECK_FALSE(w.time_left());
}

TEST_CASE("PARTIAL and FINAL carry the tag, the client and a header whose co is the request id") {
    zmq::context_t ctx;
    fake_broker broker(ctx);
    zmesh::mdp::worker w(ctx, broker.endpoint, "stream", v2_worker());
    const auto id = broker.accept(w);

    const auto h = request_header("logs.tail", 4, 0);
    broker.request(id, tag(3), h, {"go"});
    auto r = w.take(2s);
    REQUIRE(r);
    w.partial(r->token, zmesh::message{"line 1\n"});
    w.partial(r->token, zmesh::message{"line 2\n", "two frames"});
    CHECK(static_cast<bool>(r->token)); // a part does not end the request
    w.reply(std::move(r->token), zmesh::message{"end"}, "logs.done");

    std::vector<zmesh::message_id> reply_ids;
    auto check_reply = [&](const strings& m, const std::string& command,
                           const std::string& type, const strings& body) {
        REQUIRE(m.size() == 7 + body.size());
        CHECK(strings(m.begin(), m.begin() + 6) ==
              strings{id, zmwc, command, tag(3), "client-1", ""});
        const auto reply_header = decoded(m[6]);
        REQUIRE(reply_header.correlation_id);
        CHECK(*reply_header.correlation_id == h.id);
        CHECK(reply_header.id != h.id);
        CHECK(reply_header.type == type);
        CHECK(reply_header.timestamp_ns == 0); // the id holds the creation time
        CHECK(m[6].size() <= 43 + type.size() + 4); // id, co (and ty): nothing else kept
        reply_ids.push_back(reply_header.id);
        CHECK(strings(m.begin() + 7, m.end()) == body);
    };
    check_reply(broker.recv(), partial_cmd, "", {"line 1\n"});
    check_reply(broker.recv(), partial_cmd, "", {"line 2\n", "two frames"});
    check_reply(broker.recv(), final_cmd, "logs.done", {"end"});
    REQUIRE(reply_ids.size() == 3);
    CHECK(reply_ids[0] != reply_ids[1]); // each message its own id
    CHECK(reply_ids[1] != reply_ids[2]);
    CHECK(w.stats().partials == 2);
    CHECK(w.stats().replies == 1);

    // recv() style: partial(message&&) streams to the current request.
    broker.request(id, tag(4), h, {"again"});
    REQUIRE(w.recv(2s));
    w.partial(zmesh::message{"p"});
    w.reply(zmesh::message{});
    auto part = broker.recv();
    REQUIRE(part.size() == 8);
    CHECK(part[2] == partial_cmd);
    CHECK(part[3] == tag(4));
    auto fin = broker.recv();
    REQUIRE(fin.size() == 7); // an empty FINAL: the header and no body
    CHECK(fin[2] == final_cmd);
}

TEST_CASE("refuse sends a FINAL of type zmesh.refused with the reason as its one body frame") {
    zmq::context_t ctx;
    fake_broker broker(ctx);
    zmesh::mdp::worker w(ctx, broker.endpoint, "typed", v2_worker());
    const auto id = broker.accept(w);

    const auto h = request_header("unknown.kind", 4, 0);
    broker.request(id, tag(5), h, {"payload"});
    auto r = w.take(2s);
    REQUIRE(r);

    // The reserved types are refused as reply types, and the token survives the misuse.
    for (auto reserved : {zmesh::mdp::refused_type, zmesh::mdp::error_type}) {
        try {
            w.reply(std::move(r->token), zmesh::message{"x"}, reserved);
            FAIL("a reserved reply type was accepted");
        } catch (const zmesh::error& e) {
            CHECK(e.code() == zmesh::errc::invalid_argument);
        }
        CHECK(static_cast<bool>(r->token));
    }

    w.refuse(std::move(r->token), "type 'unknown.kind' is not served here");
    CHECK_FALSE(static_cast<bool>(r->token));
    auto m = broker.recv();
    REQUIRE(m.size() == 8);
    CHECK(strings(m.begin(), m.begin() + 6) == strings{id, zmwc, final_cmd, tag(5), "client-1", ""});
    const auto reply_header = decoded(m[6]);
    CHECK(reply_header.type == "zmesh.refused");
    REQUIRE(reply_header.correlation_id);
    CHECK(*reply_header.correlation_id == h.id);
    CHECK(m[7] == "type 'unknown.kind' is not served here");
    CHECK(w.stats().refusals == 1);
    CHECK(w.stats().replies == 1);

    // recv() style.
    broker.request(id, tag(6), h, {"again"});
    REQUIRE(w.recv(2s));
    w.refuse("busy");
    auto second = broker.recv();
    REQUIRE(second.size() == 8);
    CHECK(decoded(second[6]).type == "zmesh.refused");
    CHECK(second[7] == "busy");
    CHECK(w.current_header() == nullptr);
}

TEST_CASE("fail sends a FINAL of type zmesh.error with the status and the reason") {
    zmq::context_t ctx;
    fake_broker broker(ctx);
    zmesh::mdp::worker w(ctx, broker.endpoint, "job", v2_worker());
    const auto id = broker.accept(w);

    const auto h = request_header("job.run", 4, 0);
    broker.request(id, tag(9), h, {"x"});
    auto r = w.take(2s);
    REQUIRE(r);
    for (auto bad : {"50", "5000", "5x0", ""}) {
        try {
            w.fail(std::move(r->token), bad, "nope");
            FAIL("a status that is not 3 digits was accepted");
        } catch (const zmesh::error& e) {
            CHECK(e.code() == zmesh::errc::invalid_argument);
        }
        CHECK(static_cast<bool>(r->token)); // the misuse does not spend the token
    }
    w.fail(std::move(r->token), "500", "command exited with status 3");
    auto m = broker.recv();
    REQUIRE(m.size() == 9);
    CHECK(strings(m.begin(), m.begin() + 6) == strings{id, zmwc, final_cmd, tag(9), "client-1", ""});
    const auto reply_header = decoded(m[6]);
    CHECK(reply_header.type == "zmesh.error");
    CHECK(reply_header.correlation_id == h.id);
    CHECK(strings(m.begin() + 7, m.end()) == strings{"500", "command exited with status 3"});
    CHECK(w.stats().failures == 1);
    CHECK(w.stats().refusals == 0);
}

TEST_CASE("a REQUEST whose header does not decode is refused at once, so its credit comes back") {
    zmq::context_t ctx;
    fake_broker broker(ctx);
    zmesh::mdp::worker w(ctx, broker.endpoint, "svc", v2_worker(1));
    const auto id = broker.accept(w);

    broker.send({id, zmwc, request_cmd, tag(7), "client-1", "", "\x81\xa2id", "body"});
    CHECK_FALSE(w.take(support::settle_time)); // never handed to the handler
    CHECK(w.stats().malformed == 1);
    auto m = broker.recv();
    REQUIRE(m.size() == 8);
    CHECK(strings(m.begin(), m.begin() + 6) == strings{id, zmwc, final_cmd, tag(7), "client-1", ""});
    const auto h = decoded(m[6]);
    CHECK(h.type == "zmesh.refused");
    CHECK_FALSE(h.correlation_id); // there is no id to name
    CHECK(m[7].find("header does not decode") != std::string::npos);

    // The next request, with a good header, is served.
    broker.request(id, tag(8), request_header("ok", 4, 0), {"fine"});
    auto r = w.take(2s);
    REQUIRE(r);
    CHECK(texts(r->body) == strings{"fine"});
}

TEST_CASE("after the fallback to MDP/0.1 partial keeps its parts for the one REPLY, and refuse "
          "and fail answer zmesh.error with a status") {
    zmq::context_t ctx;
    fake_broker broker(ctx);
    auto o = v2_worker(1);
    o.heartbeat = 100ms; // the fallback comes after one unanswered heartbeat
    zmesh::mdp::worker w(ctx, broker.endpoint, "stream", o);

    // The broker says nothing to the ZMWC02 READY (nor to its DISCONNECT): a plain broker.
    strings ready;
    for (auto until = clock_type::now() + 3s; clock_type::now() < until;) {
        (void)w.take(20ms);
        auto m = broker.recv(0ms);
        if (m.size() == 5 && m[2] == "MDPW01" && m[3] == ready_cmd) {
            ready = m;
            break;
        }
    }
    REQUIRE_FALSE(ready.empty());
    CHECK(w.protocol() == zmesh::mdp::worker_protocol::mdp);
    const auto id = ready[0];

    broker.send({id, "", "MDPW01", request_cmd, "client-1", "", "go"});
    auto r = w.take(2s);
    REQUIRE(r);
    CHECK_FALSE(r->header); // MDP/0.1 carries none
    CHECK_FALSE(r->deadline);
    w.partial(r->token, zmesh::message{"a\n"});
    w.partial(r->token, zmesh::message{"b\n"});
    CHECK(broker.recv(support::settle_time).empty()); // nothing goes out before the end
    w.reply(std::move(r->token), zmesh::message{"rest"}, "ignored.type");
    CHECK(broker.recv() ==
          strings{id, "", "MDPW01", v1_reply_cmd, "client-1", "", "a\n", "b\n", "rest"});
    CHECK(w.stats().partials == 2);

    broker.send({id, "", "MDPW01", request_cmd, "client-2", "", "go"});
    auto refused = w.take(2s);
    REQUIRE(refused);
    w.partial(refused->token, zmesh::message{"dropped with the refusal"});
    w.refuse(std::move(refused->token), "not today");
    CHECK(broker.recv() == strings{id, "", "MDPW01", v1_reply_cmd, "client-2", "", "zmesh.error",
                                   "422", "not today"});
    CHECK(w.stats().refusals == 1);

    // fail(): the same convention, with the worker's status.
    broker.send({id, "", "MDPW01", request_cmd, "client-3", "", "go"});
    auto failed = w.take(2s);
    REQUIRE(failed);
    w.fail(std::move(failed->token), "504", "too late");
    CHECK(broker.recv() == strings{id, "", "MDPW01", v1_reply_cmd, "client-3", "", "zmesh.error",
                                   "504", "too late"});
}

} // TEST_SUITE
