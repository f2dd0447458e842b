// SPDX-License-Identifier: MPL-2.0
// test_broker_controls.cpp — message controls through the broker (issue 10, docs/protocol.md):
// the header on the wire (ZMCT02, ZMWC02), executed once, deadlines, priority, fail fast,
// MDP/0.2 streaming and translation, refusals and the dead-letter queue. Driven by hand-written
// peers over TCP on loopback, frame by frame as the spec writes them.
#include <zmesh/nodes/broker.hpp>

#include <zmesh/header.hpp>
#include <zmesh/mdp/protocol.hpp>
#include <zmesh/message.hpp>

#include "support/support.hpp"
#include "tcp_broker.hpp"

#include <doctest/doctest.h>
#include <msgpack.hpp>

#include <string>

using namespace std::chrono_literals;
namespace mdp = zmesh::mdp;
using support::dealer;
using support::eventually;
using zmesh::message;

namespace {

using support::tcp_broker;

std::string byte(std::uint8_t b) { return std::string(1, static_cast<char>(b)); }

void send_frames(zmq::socket_t& s, message m) { REQUIRE(m.send(s) == zmesh::send_status::sent); }

zmesh::header make(std::uint32_t ttl_ms = 0, std::uint8_t priority = zmesh::default_priority,
                   std::string type = {}) {
    auto h = zmesh::make_header(std::move(type));
    h.ttl_ms = ttl_ms;
    h.priority = priority;
    return h;
}

/// ZMCT02 REQUEST: "ZMCT02" 0x01 service header body.
void zmct02(zmq::socket_t& c, const std::string& service, const zmesh::header& h,
            const std::string& body) {
    message m{mdp::client_header_v2};
    m.push_back(byte(0x01));
    m.push_back(service);
    m.push_back(zmesh::encode(h));
    m.push_back(body);
    send_frames(c, std::move(m));
}

struct client_reply {
    std::uint8_t command = 0; // 0x02 PARTIAL, 0x03 FINAL
    zmesh::header header;
    std::vector<std::string> body;
};

/// The next ZMCT02 message to a client.
std::optional<client_reply> zmct02_reply(zmq::socket_t& c, std::chrono::milliseconds t = 3s) {
    auto m = support::recv_for(c, t);
    if (!m) return std::nullopt;
    REQUIRE(m->size() >= 4);
    CHECK(zmesh::view((*m)[0]) == mdp::client_header_v2);
    client_reply r;
    r.command = *static_cast<const std::uint8_t*>((*m)[1].data());
    r.header = zmesh::decode_header((*m)[3]);
    auto t2 = support::texts(*m);
    r.body.assign(t2.begin() + 4, t2.end());
    return r;
}

/// A ZMWC02 worker: READY with credit, acknowledged by a HEARTBEAT.
void ready_v2(zmq::socket_t& w, const std::string& service, const std::string& credit = "1") {
    send_frames(w, message{mdp::worker_header_v2, byte(0x01), service, credit});
    auto ack = support::recv_for(w, 2s);
    REQUIRE(ack);
    REQUIRE(ack->size() == 2);
    CHECK(zmesh::view((*ack)[1]) == byte(0x05));
}

struct worker_request {
    std::string tag, client;
    zmesh::header header;
    std::vector<std::string> body;
};

/// The next ZMWC02 REQUEST (heartbeats skipped), or nullopt within @p timeout.
std::optional<worker_request> zmwc02_request(zmq::socket_t& w, std::chrono::milliseconds t = 3s) {
    const auto deadline = std::chrono::steady_clock::now() + t;
    while (std::chrono::steady_clock::now() < deadline) {
        auto m = support::recv_for(w, 20ms);
        if (!m || m->size() < 2 || zmesh::view((*m)[1]) == byte(0x05)) continue;
        REQUIRE(m->size() >= 7);
        CHECK(zmesh::view((*m)[0]) == mdp::worker_header_v2);
        CHECK(zmesh::view((*m)[1]) == byte(0x02));
        worker_request r;
        r.tag = zmesh::to_string((*m)[2]);
        r.client = zmesh::to_string((*m)[3]);
        r.header = zmesh::decode_header((*m)[5]);
        auto t2 = support::texts(*m);
        r.body.assign(t2.begin() + 6, t2.end());
        return r;
    }
    return std::nullopt;
}

/// A ZMWC02 PARTIAL (0x03) or FINAL (0x04) for @p r.
void answer_v2(zmq::socket_t& w, const worker_request& r, std::uint8_t command,
               const std::string& body, const std::string& type = {}) {
    zmesh::header h = zmesh::make_header(type);
    h.correlation_id = r.header.id;
    send_frames(w, message{mdp::worker_header_v2, byte(command), r.tag, r.client, "",
                           zmesh::to_string(zmesh::encode(h)), body});
}

/// Calls zmesh.dlq with @p args over MDP/0.1; the reply body.
std::vector<std::string> dlq(zmq::context_t& ctx, const std::string& endpoint,
                             std::vector<std::string> args) {
    auto c = dealer(ctx, endpoint);
    message m{"", mdp::client_v1, mdp::zmesh_dlq};
    for (auto& a : args) m.push_back(a);
    send_frames(c, std::move(m));
    auto reply = support::recv_for(c, 3s);
    REQUIRE(reply);
    auto t = support::texts(*reply);
    return {t.begin() + 3, t.end()};
}

/// The "id" of every entry of a zmesh.dlq list reply.
std::vector<std::string> dlq_ids(const std::string& packed) {
    auto handle = msgpack::unpack(packed.data(), packed.size());
    std::vector<std::string> ids;
    for (const auto& entry : handle.get().via.array) {
        auto map = entry.as<std::map<std::string, msgpack::object>>();
        ids.push_back(map.at("id").as<std::string>());
    }
    return ids;
}

} // namespace

TEST_SUITE_BEGIN("nodes.broker.controls");

TEST_CASE("a ZMCT02 request reaches a ZMWC02 worker with its header and the time left") {
    tcp_broker f;
    f.start();
    auto w = dealer(f.ctx, f.endpoint);
    ready_v2(w, "echo");
    auto c = dealer(f.ctx, f.endpoint);
    const auto h = make(5000, 7, "order.new");
    zmct02(c, "echo", h, "hello");
    auto r = zmwc02_request(w);
    REQUIRE(r);
    CHECK(r->header.id == h.id);
    CHECK(r->header.type == "order.new");
    CHECK(r->header.priority == 7);
    CHECK(r->header.attempt == 0);
    CHECK(r->header.ttl_ms <= 5000);
    CHECK(r->header.ttl_ms > 4000);
    CHECK(r->body == std::vector<std::string>{"hello"});
    answer_v2(w, *r, 0x04, "world", "order.ack");
    auto reply = zmct02_reply(c);
    REQUIRE(reply);
    CHECK(reply->command == 0x03);
    REQUIRE(reply->header.correlation_id);
    CHECK(*reply->header.correlation_id == h.id);
    CHECK(reply->header.type == "order.ack");
    CHECK(reply->body == std::vector<std::string>{"world"});
}

TEST_CASE("a worker header that names the request reaches the client as it is, any other gets the broker's co") {
    tcp_broker f;
    f.start();
    auto w = dealer(f.ctx, f.endpoint);
    ready_v2(w, "echo");
    auto c = dealer(f.ctx, f.endpoint);
    // With `co` set (as zmesh's worker library does): the frame goes through, extension included.
    const auto h1 = make();
    zmct02(c, "echo", h1, "one");
    auto r1 = zmwc02_request(w);
    REQUIRE(r1);
    zmesh::header own = zmesh::make_header("order.ack");
    own.correlation_id = r1->header.id;
    own.extensions.emplace_back("trace", std::string("\xa3" "abc")); // msgpack str "abc"
    send_frames(w, message{mdp::worker_header_v2, byte(0x04), r1->tag, r1->client, "",
                           zmesh::to_string(zmesh::encode(own)), "ok"});
    auto reply1 = zmct02_reply(c);
    REQUIRE(reply1);
    CHECK(reply1->header.id == own.id);
    REQUIRE(reply1->header.correlation_id);
    CHECK(*reply1->header.correlation_id == h1.id);
    CHECK(reply1->header.type == "order.ack");
    REQUIRE(reply1->header.extensions.size() == 1);
    CHECK(reply1->header.extensions[0].first == "trace");
    // Without `co`: the broker writes the header (the worker's id and type, `co` its own).
    const auto h2 = make();
    zmct02(c, "echo", h2, "two");
    auto r2 = zmwc02_request(w);
    REQUIRE(r2);
    zmesh::header bare = zmesh::make_header("order.ack");
    bare.extensions.emplace_back("trace", std::string("\xa3" "abc"));
    send_frames(w, message{mdp::worker_header_v2, byte(0x04), r2->tag, r2->client, "",
                           zmesh::to_string(zmesh::encode(bare)), "ok"});
    auto reply2 = zmct02_reply(c);
    REQUIRE(reply2);
    CHECK(reply2->header.id == bare.id);
    REQUIRE(reply2->header.correlation_id);
    CHECK(*reply2->header.correlation_id == h2.id);
    CHECK(reply2->header.type == "order.ack");
    CHECK(reply2->header.extensions.empty());
    // A retry of the first gets the kept reply: the worker's frame, as the first answer had it.
    zmct02(c, "echo", h1, "one");
    auto again = zmct02_reply(c);
    REQUIRE(again);
    CHECK(again->header.id == own.id);
    CHECK(again->header.extensions.size() == 1);
    CHECK(again->body == std::vector<std::string>{"ok"});
}

TEST_CASE("a retry joins its pending request, and a retry after the reply gets the kept reply") {
    tcp_broker f;
    f.start();
    auto w = dealer(f.ctx, f.endpoint);
    ready_v2(w, "slow");
    auto c = dealer(f.ctx, f.endpoint);
    const auto h = make(10000);
    zmct02(c, "slow", h, "job");
    auto r = zmwc02_request(w);
    REQUIRE(r);
    zmct02(c, "slow", h, "job"); // a Lazy Pirate retry while the worker is busy
    auto other = dealer(f.ctx, f.endpoint);
    zmct02(other, "slow", h, "job"); // the same request retried from a new connection
    REQUIRE(eventually([&] { return f.stats().duplicates == 2; }));
    CHECK_FALSE(zmwc02_request(w, 200ms)); // executed once
    answer_v2(w, *r, 0x04, "done");
    // The reply goes to the connection of the latest retry.
    auto reply = zmct02_reply(other);
    REQUIRE(reply);
    CHECK(reply->body == std::vector<std::string>{"done"});
    CHECK_FALSE(support::recv_for(c, 100ms));
    // After the reply: a retry gets the kept reply and nothing runs again.
    auto late = dealer(f.ctx, f.endpoint);
    zmct02(late, "slow", h, "job");
    auto kept = zmct02_reply(late);
    REQUIRE(kept);
    CHECK(kept->command == 0x03);
    CHECK(kept->body == std::vector<std::string>{"done"});
    CHECK(*kept->header.correlation_id == h.id);
    CHECK_FALSE(zmwc02_request(w, 200ms));
    CHECK(f.stats().dispatched == 1);
    CHECK(f.stats().kept_replies == 1);
    // The same id for another service is refused.
    zmct02(late, "other", h, "job");
    auto refused = zmct02_reply(late);
    REQUIRE(refused);
    CHECK(refused->header.type == mdp::error_type);
    CHECK(refused->body.at(0) == "400");
}

TEST_CASE("a kept reply is forgotten after the window, and the request then runs again") {
    tcp_broker f;
    f.config.dedupe_window = 200ms;
    f.config.heartbeat_interval = 100ms; // kept replies are forgotten at the tick after the window
    f.config.liveness = 100;             // while the hand-written worker sends no heartbeats
    f.start();
    auto w = dealer(f.ctx, f.endpoint);
    ready_v2(w, "svc");
    auto c = dealer(f.ctx, f.endpoint);
    const auto h = make(10000);
    zmct02(c, "svc", h, "x");
    auto r = zmwc02_request(w);
    REQUIRE(r);
    answer_v2(w, *r, 0x04, "1");
    REQUIRE(zmct02_reply(c));
    REQUIRE(eventually([&] { return f.stats().kept_replies == 0; }, 2s));
    zmct02(c, "svc", h, "x");
    CHECK(zmwc02_request(w));
}

TEST_CASE("a request leaves the queue the millisecond its deadline passes, into the DLQ") {
    tcp_broker f;
    f.start();
    auto c = dealer(f.ctx, f.endpoint);
    const auto h = make(150, zmesh::default_priority, "report");
    const auto sent = std::chrono::steady_clock::now();
    zmct02(c, "nobody", h, "late");
    auto reply = zmct02_reply(c, 2s);
    const auto waited = std::chrono::steady_clock::now() - sent;
    REQUIRE(reply);
    CHECK(reply->header.type == mdp::error_type);
    CHECK(reply->body.at(0) == "504");
    CHECK(waited >= 150ms);
    CHECK(waited < 400ms); // no timer tick: the broker sleeps until the deadline itself
    CHECK(f.stats().expired == 1);
    auto list = dlq(f.ctx, f.endpoint, {"list"});
    REQUIRE(list.size() == 2);
    CHECK(list[0] == "200");
    CHECK(dlq_ids(list[1]) == std::vector<std::string>{h.id.to_hex()});
    auto show = dlq(f.ctx, f.endpoint, {"show", h.id.to_hex()});
    REQUIRE(show.size() == 2);
    CHECK(show[0] == "200");
    CHECK(show[1].find("late") != std::string::npos);
    CHECK(show[1].find("report") != std::string::npos);
    // Replayed once: it leaves the DLQ, runs when a worker comes, and its reply is kept for a
    // client that asks with the same id.
    CHECK(dlq(f.ctx, f.endpoint, {"replay", h.id.to_hex()}) == std::vector<std::string>{"200"});
    CHECK(dlq(f.ctx, f.endpoint, {"replay", h.id.to_hex()}) == std::vector<std::string>{"404"});
    auto w = dealer(f.ctx, f.endpoint);
    ready_v2(w, "nobody");
    auto r = zmwc02_request(w);
    REQUIRE(r);
    CHECK(r->header.id == h.id);
    CHECK(r->body == std::vector<std::string>{"late"});
    answer_v2(w, *r, 0x04, "answered");
    REQUIRE(eventually([&] { return f.stats().kept_replies == 1; }));
    zmct02(c, "nobody", make(1000), "unrelated"); // another id: runs
    auto r2 = zmwc02_request(w);
    REQUIRE(r2);
    answer_v2(w, *r2, 0x04, "fresh");
    REQUIRE(zmct02_reply(c));
    zmct02(c, "nobody", h, "late");
    auto kept = zmct02_reply(c);
    REQUIRE(kept);
    CHECK(kept->body == std::vector<std::string>{"answered"});
    CHECK(f.stats().dispatched == 2);
}

TEST_CASE("higher priorities go first, and lower ones still get one dispatch in sixteen") {
    tcp_broker f;
    f.start();
    auto c = dealer(f.ctx, f.endpoint);
    for (int i = 0; i < 40; ++i) zmct02(c, "work", make(10000, 0), "low" + std::to_string(i));
    for (int i = 0; i < 40; ++i) zmct02(c, "work", make(10000, 9), "high" + std::to_string(i));
    REQUIRE(eventually([&] { return f.stats().queued == 80; }));
    auto w = dealer(f.ctx, f.endpoint);
    ready_v2(w, "work");
    std::vector<std::string> order;
    for (int i = 0; i < 80; ++i) {
        auto r = zmwc02_request(w);
        REQUIRE(r);
        order.push_back(r->body.at(0));
        answer_v2(w, *r, 0x04, "ok");
    }
    // 15 high, 1 low, 15 high, 1 low, the last 10 high, then the lows in order.
    int lows_before_last_high = 0;
    std::size_t last_high = 0;
    for (std::size_t i = 0; i < order.size(); ++i)
        if (order[i].starts_with("high")) last_high = i;
    for (std::size_t i = 0; i < last_high; ++i)
        if (order[i].starts_with("low")) ++lows_before_last_high;
    CHECK(lows_before_last_high == 2);
    CHECK(order[15] == "low0");
    CHECK(order[31] == "low1");
    CHECK(order[42] == "low2");
    CHECK(order[79] == "low39");
}

TEST_CASE("fail fast: 404 at once when no worker ever served the service, naming similar ones") {
    tcp_broker f;
    f.start();
    {
        auto w = dealer(f.ctx, f.endpoint);
        ready_v2(w, "inventory");
    }
    auto c = dealer(f.ctx, f.endpoint);
    auto h = make(5000);
    mdp::set_fail_fast(h);
    zmct02(c, "inventroy", h, "x");
    auto reply = zmct02_reply(c, 1s);
    REQUIRE(reply);
    CHECK(reply->header.type == mdp::error_type);
    CHECK(reply->body.at(0) == "404");
    CHECK(reply->body.at(1).find("inventroy") != std::string::npos);
    CHECK(reply->body.at(1).find("similar: inventory") != std::string::npos);
    // Without fail fast it waits, as 7/MDP says.
    zmct02(c, "inventroy", make(5000), "x");
    CHECK_FALSE(support::recv_for(c, 200ms));
    CHECK(f.stats().queued == 1);
}

TEST_CASE("an MDP/0.2 worker streams PARTIALs: through to a ZMCT02 client, joined for MDP/0.1") {
    tcp_broker f;
    f.start();
    auto w = dealer(f.ctx, f.endpoint);
    send_frames(w, message{mdp::worker_v2, byte(0x01), "stream"});
    REQUIRE(support::recv_for(w, 2s)); // the HEARTBEAT that acknowledges READY
    const auto serve = [&] {
        auto m = support::recv_for(w, 3s);
        REQUIRE(m);
        while (m->size() == 2) m = support::recv_for(w, 3s); // heartbeats
        REQUIRE(m);
        REQUIRE(m->size() == 5); // "MDPW02" 0x02 client "" body: no header for an 18/MDP worker
        const auto client = zmesh::to_string((*m)[2]);
        for (const char* part : {"one", "two"})
            send_frames(w, message{mdp::worker_v2, byte(0x03), client, "", part});
        send_frames(w, message{mdp::worker_v2, byte(0x04), client, "", "three"});
    };
    auto c = dealer(f.ctx, f.endpoint);
    const auto h = make(5000);
    zmct02(c, "stream", h, "go");
    serve();
    std::vector<std::pair<int, std::string>> got;
    for (int i = 0; i < 3; ++i) {
        auto r = zmct02_reply(c);
        REQUIRE(r);
        CHECK(*r->header.correlation_id == h.id);
        got.emplace_back(r->command, r->body.at(0));
    }
    CHECK(got == std::vector<std::pair<int, std::string>>{{2, "one"}, {2, "two"}, {3, "three"}});
    // A plain MDP/0.1 client gets one REPLY: the parts' frames, then the final's.
    auto plain = dealer(f.ctx, f.endpoint);
    send_frames(plain, message{"", mdp::client_v1, "stream", "go"});
    serve();
    auto m = support::recv_for(plain, 3s);
    REQUIRE(m);
    CHECK(support::texts(*m) == std::vector<std::string>{"", "MDPC01", "stream", "one", "two", "three"});
    // An MDP/0.2 client gets them as PARTIAL, PARTIAL, FINAL.
    auto v2 = dealer(f.ctx, f.endpoint);
    send_frames(v2, message{mdp::client_v2, byte(0x01), "stream", "go"});
    serve();
    for (auto [cmd, body] : std::vector<std::pair<std::string, std::string>>{
             {byte(0x02), "one"}, {byte(0x02), "two"}, {byte(0x03), "three"}}) {
        auto p = support::recv_for(v2, 3s);
        REQUIRE(p);
        CHECK(support::texts(*p) == std::vector<std::string>{"MDPC02", cmd, "stream", body});
    }
}

TEST_CASE("an MDP/0.2 client and an MDP/0.1 worker work together") {
    tcp_broker f;
    f.start();
    auto w = dealer(f.ctx, f.endpoint);
    message ready{"", mdp::worker_v1};
    ready.push_back(mdp::command_frame(mdp::worker_command::ready));
    ready.push_back(std::string_view("old"));
    send_frames(w, std::move(ready));
    auto c = dealer(f.ctx, f.endpoint);
    send_frames(c, message{mdp::client_v2, byte(0x01), "old", "ping"});
    std::optional<message> req;
    for (int i = 0; i < 100 && !(req && req->size() == 6); ++i) req = support::recv_for(w, 50ms);
    REQUIRE(req);
    REQUIRE(req->size() == 6); // "" MDPW01 0x02 client "" body: exactly 7/MDP
    message reply{"", mdp::worker_v1};
    reply.push_back(mdp::command_frame(mdp::worker_command::reply));
    reply.push_back(zmesh::to_string((*req)[3]));
    reply.push_back(std::string_view());
    reply.push_back(std::string_view("pong"));
    send_frames(w, std::move(reply));
    auto m = support::recv_for(c, 3s);
    REQUIRE(m);
    CHECK(support::texts(*m) == std::vector<std::string>{"MDPC02", byte(0x03), "old", "pong"});
}

TEST_CASE("a worker's refusal reaches the client as 422 and the request the DLQ") {
    tcp_broker f;
    f.start();
    auto w = dealer(f.ctx, f.endpoint);
    ready_v2(w, "picky");
    auto c = dealer(f.ctx, f.endpoint);
    const auto h = make(5000);
    zmct02(c, "picky", h, "bad input");
    auto r = zmwc02_request(w);
    REQUIRE(r);
    answer_v2(w, *r, 0x04, "field 'qty' is negative", std::string(mdp::refused_type));
    auto reply = zmct02_reply(c);
    REQUIRE(reply);
    CHECK(reply->header.type == mdp::error_type);
    CHECK(reply->body.at(0) == "422");
    CHECK(reply->body.at(1).find("qty") != std::string::npos);
    auto list = dlq(f.ctx, f.endpoint, {"list"});
    REQUIRE(list.size() == 2);
    CHECK(dlq_ids(list[1]) == std::vector<std::string>{h.id.to_hex()});
    CHECK(list[1].find("qty") != std::string::npos);
    CHECK(dlq(f.ctx, f.endpoint, {"purge", "all"}) == std::vector<std::string>{"200", "1"});
    CHECK(dlq(f.ctx, f.endpoint, {"bogus"}).at(0) == "400");
}

TEST_CASE("a worker's typed error is exact for ZMCT02 and a zmesh.error body for MDP/0.1") {
    tcp_broker f;
    f.start();
    auto w = dealer(f.ctx, f.endpoint);
    ready_v2(w, "fails");
    const auto fail = [&](const std::string& reason) {
        auto r = zmwc02_request(w);
        REQUIRE(r);
        zmesh::header h = zmesh::make_header(std::string(mdp::error_type));
        h.correlation_id = r->header.id;
        send_frames(w, message{mdp::worker_header_v2, byte(0x04), r->tag, r->client, "",
                               zmesh::to_string(zmesh::encode(h)), "500", reason});
    };
    auto c = dealer(f.ctx, f.endpoint);
    zmct02(c, "fails", make(5000), "x");
    fail("disk full");
    auto reply = zmct02_reply(c);
    REQUIRE(reply);
    CHECK(reply->header.type == mdp::error_type);
    CHECK(reply->body == std::vector<std::string>{"500", "disk full"});
    auto plain = dealer(f.ctx, f.endpoint);
    send_frames(plain, message{"", mdp::client_v1, "fails", "x"});
    fail("disk still full");
    auto m = support::recv_for(plain, 3s);
    REQUIRE(m);
    CHECK(support::texts(*m) == std::vector<std::string>{"", "MDPC01", "fails", "zmesh.error",
                                                         "500", "disk still full"});
}

TEST_CASE("a replay that cannot be queued now (max_services) leaves its entry in the DLQ") {
    tcp_broker f;
    f.config.max_services = 2;
    f.config.service_ttl = 50ms;        // the expired request's service is soon forgotten
    f.config.heartbeat_interval = 20ms; // (at a tick)
    f.config.liveness = 1000;
    f.start();
    auto c = dealer(f.ctx, f.endpoint);
    const auto h = make(50);
    zmct02(c, "gone", h, "x");
    auto expired = zmct02_reply(c);
    REQUIRE(expired);
    CHECK(expired->body.at(0) == "504");
    REQUIRE(eventually([&] { return f.stats().services == 0; }));
    zmct02(c, "one", make(60000), "x"); // two services wait: the table is full
    zmct02(c, "two", make(60000), "x");
    REQUIRE(eventually([&] { return f.stats().services == 2; }));
    CHECK(dlq(f.ctx, f.endpoint, {"replay", h.id.to_hex()}) == std::vector<std::string>{"503"});
    auto list = dlq(f.ctx, f.endpoint, {"list"});
    REQUIRE(list.size() == 2);
    CHECK(dlq_ids(list[1]) == std::vector<std::string>{h.id.to_hex()});
    CHECK(dlq(f.ctx, f.endpoint, {"replay", "all"}) == std::vector<std::string>{"503", "0"});
    CHECK(f.stats().dlq == 1);
}

TEST_CASE("a ZMCT02 request whose header does not decode is answered 400") {
    tcp_broker f;
    f.start();
    auto c = dealer(f.ctx, f.endpoint);
    send_frames(c, message{mdp::client_header_v2, byte(0x01), "svc", "not msgpack", "x"});
    auto reply = zmct02_reply(c);
    REQUIRE(reply);
    CHECK(reply->header.type == mdp::error_type);
    CHECK(reply->body.at(0) == "400");
    CHECK(f.stats().malformed == 1);
}

TEST_SUITE_END();
