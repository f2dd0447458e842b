// SPDX-License-Identifier: MPL-2.0
// test_mdp_zmesh_client.cpp — the ZMCT03 client (docs/protocol.md) against a hand-driven fake
// broker: a bare ROUTER socket that the test reads and writes frame by frame, so nothing here
// depends on zmesh's broker. Covers the header of every attempt (same id, `at` up, `tl` down),
// retries on one socket, exact errors, streamed PARTIALs, and matching replies by `co`.
#include <zmesh/error.hpp>
#include <zmesh/header.hpp>
#include <zmesh/mdp/client.hpp>
#include <zmesh/mdp/protocol.hpp>

#include "support/support.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <future>
#include <string>
#include <vector>

namespace {

using namespace std::chrono_literals;
using strings = std::vector<std::string>;
using support::texts;
using zmesh::header;
using zmesh::message;
using zmesh::message_id;
namespace mdp = zmesh::mdp;

const std::string request_cmd(1, '\x01');
const std::string partial_cmd(1, '\x02');
const std::string final_cmd(1, '\x03');

/// One ZMCT03 request as the fake broker received it.
struct seen {
    std::string peer; // the client's routing id at the broker
    std::string command;
    std::string service;
    header head;
    strings body;
    std::size_t header_bytes = 0; // the size of the header frame
};

/// A zmesh broker the test drives by hand: one ROUTER on a loopback port.
struct fake_broker {
    zmq::socket_t router;
    std::string endpoint;

    explicit fake_broker(zmq::context_t& ctx) : router(ctx, zmq::socket_type::router) {
        router.set(zmq::sockopt::linger, 0);
        endpoint = support::bind_loopback(router);
    }

    /// The next request; fails the test if none comes in time or it is not ZMCT03:
    /// "ZMCT03"+command service header body...
    seen recv(std::chrono::milliseconds timeout = 2000ms) {
        auto m = support::recv_for(router, timeout);
        REQUIRE(m);
        REQUIRE(m->size() >= 4);
        const auto protocol = zmesh::view((*m)[1]);
        REQUIRE(protocol.size() == 7);
        REQUIRE(protocol.substr(0, 6) == "ZMCT03");
        seen s{zmesh::to_string((*m)[0]),
               std::string(protocol.substr(6)),
               zmesh::to_string((*m)[2]),
               zmesh::decode_header((*m)[3]),
               {},
               (*m)[3].size()};
        for (std::size_t i = 4; i < m->size(); ++i) s.body.push_back(zmesh::to_string((*m)[i]));
        return s;
    }

    /// Sends "ZMCT03"+command service header body... to @p peer; @p head as given.
    void send_raw(const std::string& peer, const std::string& command, const std::string& service,
                  zmq::message_t head, const strings& body) {
        message m;
        m.push_back(peer);
        m.push_back("ZMCT03" + command);
        m.push_back(service);
        m.push_back(std::move(head));
        for (const auto& f : body) m.push_back(f);
        REQUIRE(m.send(router) == zmesh::send_status::sent);
    }

    /// A reply to @p to: header with co = its id and type @p type.
    void reply(const seen& to, const std::string& command, const strings& body,
               const std::string& type = {}) {
        header h = zmesh::make_header(type);
        h.correlation_id = to.head.id;
        send_raw(to.peer, command, to.service, zmesh::encode(h), body);
    }
};

/// Runs @p f on another thread (the client blocks while the test plays the broker).
template <class F> auto async(F f) {
    return std::async(std::launch::async, std::move(f));
}

template <class T> T get(std::future<T>& f) {
    REQUIRE(f.wait_for(5s) == std::future_status::ready);
    return f.get();
}

} // namespace

TEST_SUITE("lib.mdp.zmesh") {

    TEST_CASE("a request is ZMCT03+REQUEST service header body with the caller's settings") {
        zmq::context_t ctx;
        fake_broker broker(ctx);
        const auto id = message_id::generate();
        mdp::client c(ctx, broker.endpoint, {.timeout = 3s, .retries = 2});
        CHECK(c.protocol() == mdp::client_protocol::zmesh);
        auto result = async([&] {
            return c.request("echo", message{"hello", "", "world"},
                             {.id = id, .type = "greeting", .priority = 7, .fail_fast = true});
        });

        auto req = broker.recv();
        CHECK(req.command == request_cmd);
        CHECK(req.service == "echo");
        CHECK(req.body == strings{"hello", "", "world"});
        CHECK(req.head.id == id);
        CHECK(req.head.type == "greeting");
        CHECK(req.head.priority == 7);
        CHECK(mdp::wants_fail_fast(req.head));
        CHECK(req.head.attempt == 0);
        // Default deadline: the whole wait, timeout × retries, counted from the send.
        CHECK(req.head.ttl_ms <= 6000);
        CHECK(req.head.ttl_ms > 5000);
        // No `ts`: the id (UUIDv7) holds the creation time.
        CHECK(req.head.timestamp_ns == 0);
        CHECK(req.head.id.timestamp_ms() > 0);

        broker.reply(req, final_cmd, {"hi"}, "greeting.reply");
        auto r = get(result);
        CHECK(texts(r.body) == strings{"hi"});
        CHECK(r.head.type == "greeting.reply");
        REQUIRE(r.head.correlation_id);
        CHECK(*r.head.correlation_id == id);
    }

    TEST_CASE("defaults: a fresh id per request, priority 4, no fail-fast") {
        zmq::context_t ctx;
        fake_broker broker(ctx);
        mdp::client c(ctx, broker.endpoint, {.timeout = 3s, .retries = 1});
        auto result = async([&] {
            auto a = c.request("echo", message{"a"}, {});
            auto b = c.request("echo", message{"b"}, {});
            return std::make_pair(texts(a.body), texts(b.body));
        });
        auto first = broker.recv();
        broker.reply(first, final_cmd, {"A"});
        auto second = broker.recv();
        broker.reply(second, final_cmd, {"B"});
        CHECK(get(result) == std::make_pair(strings{"A"}, strings{"B"}));
        CHECK_FALSE(first.head.id.is_nil());
        CHECK(first.head.id != second.head.id);
        CHECK(first.head.priority == zmesh::default_priority);
        CHECK(first.head.type.empty());
        CHECK_FALSE(mdp::wants_fail_fast(first.head));
        CHECK(first.peer == second.peer);
        // id, tl and at: short enough for libzmq to keep the frame inline (up to 33 bytes), so
        // that the header costs the client and the broker no allocation.
        CHECK(first.header_bytes <= 28);
    }

    TEST_CASE("retries keep the id and the socket, and at counts up and tl counts down") {
        zmq::context_t ctx;
        fake_broker broker(ctx);
        mdp::client c(ctx, broker.endpoint, {.timeout = 300ms, .retries = 3});
        auto result = async([&] {
            auto r = c.request("echo", message{"ping"}, {});
            return std::make_pair(texts(r.body), c.stats());
        });

        std::vector<seen> attempts;
        for (int i = 0; i < 3; ++i) attempts.push_back(broker.recv());
        for (int i = 0; i < 3; ++i) {
            CAPTURE(i);
            CHECK(attempts[static_cast<std::size_t>(i)].peer == attempts[0].peer); // same socket
            CHECK(attempts[static_cast<std::size_t>(i)].head.id == attempts[0].head.id);
            CHECK(attempts[static_cast<std::size_t>(i)].head.attempt ==
                  static_cast<std::uint32_t>(i));
            CHECK(attempts[static_cast<std::size_t>(i)].body == strings{"ping"});
        }
        CHECK(attempts[0].head.ttl_ms <= 900);
        // Each retry goes out one timeout (300 ms) later, with that much less time left.
        CHECK(attempts[1].head.ttl_ms <= attempts[0].head.ttl_ms - 250);
        CHECK(attempts[2].head.ttl_ms <= attempts[1].head.ttl_ms - 250);
        CHECK(attempts[2].head.ttl_ms >= 1);

        broker.reply(attempts[2], final_cmd, {"pong"});
        auto [body, stats] = get(result);
        CHECK(body == strings{"pong"});
        CHECK(stats.requests == 1);
        CHECK(stats.resends == 2);
    }

    TEST_CASE("a late reply to an earlier attempt answers the request: the id is the same") {
        zmq::context_t ctx;
        fake_broker broker(ctx);
        mdp::client c(ctx, broker.endpoint, {.timeout = 300ms, .retries = 3});
        auto result = async([&] { return texts(c.request("echo", message{"x"}, {}).body); });
        auto first = broker.recv();
        auto second = broker.recv();
        CHECK(second.head.attempt == 1);
        broker.reply(first, final_cmd, {"late but ours"}); // same socket, same id: taken
        CHECK(get(result) == strings{"late but ours"});
    }

    TEST_CASE("no retry is sent once the request's deadline has passed") {
        zmq::context_t ctx;
        fake_broker broker(ctx);
        mdp::client c(ctx, broker.endpoint, {.timeout = 300ms, .retries = 5});
        auto result = async([&] {
            std::error_code ec;
            auto r = c.request("echo", message{"x"}, {.ttl = 500ms}, ec);
            return std::make_pair(r.has_value(), ec);
        });
        auto first = broker.recv();
        CHECK(first.head.ttl_ms <= 500);
        CHECK(first.head.ttl_ms > 400);
        auto second = broker.recv(); // at about 300 ms: 200 ms left
        CHECK(second.head.ttl_ms <= 200);
        CHECK(second.head.id == first.head.id);
        auto [answered, ec] = get(result); // the third would be at 600 ms, past the deadline
        CHECK_FALSE(answered);
        CHECK(ec == zmesh::errc::timeout);
        CHECK_FALSE(support::recv_for(broker.router, support::settle_time));
        CHECK(c.stats().resends == 1);
        CHECK(c.stats().failures == 1);
    }

    TEST_CASE("the last attempt waits briefly past the deadline for the broker's exact 504") {
    zmq::context_t ctx;
    fake_broker broker(ctx);
    mdp::client c(ctx, broker.endpoint, {.timeout = 300ms, .retries = 1});
    auto result = async([&]() -> std::string {
        try {
            (void)c.request("late", message{"x"}, {});
        } catch (const mdp::service_error& e) {
            return e.status();
        } catch (const zmesh::error& e) {
            return e.what();
        }
        return "no error";
    });
    auto req = broker.recv();
    CHECK(req.head.ttl_ms <= 300);
    // The broker's 504 comes at its deadline, a little after the client's own wait has ended.
    CHECK_FALSE(support::recv_for(broker.router, 350ms));
    broker.reply(req, final_cmd, {"504", "deadline passed"}, "zmesh.error");
    CHECK(get(result) == "504");
}

TEST_CASE("PARTIALs reach the callback in order, as they arrive, before the FINAL") {
        zmq::context_t ctx;
        fake_broker broker(ctx);
        mdp::client c(ctx, broker.endpoint, {.timeout = 3s, .retries = 1});
        std::atomic<int> parts_seen{0};
        strings log;
        auto result = async([&] {
            auto r = c.request("stream", message{"go"}, {}, [&](const header& h, message& part) {
                CHECK(h.correlation_id.has_value());
                for (const auto& f : part) log.push_back(zmesh::to_string(f));
                ++parts_seen;
            });
            log.push_back("final:" + zmesh::to_string(r.body.front()));
            return c.stats();
        });
        auto req = broker.recv();
        for (int i = 1; i <= 3; ++i) {
            broker.reply(req, partial_cmd, {"part " + std::to_string(i)});
            // The next part is sent only once this one was delivered: parts are not held back
            // until the FINAL.
            CHECK(support::eventually([&] { return parts_seen.load() == i; }));
        }
        broker.reply(req, final_cmd, {"done"});
        auto stats = get(result);
        CHECK(log == strings{"part 1", "part 2", "part 3", "final:done"});
        CHECK(stats.parts == 3);
        CHECK(stats.replies == 1);
    }

    TEST_CASE("a PARTIAL restarts the attempt's wait: a slow stream is not resent") {
        zmq::context_t ctx;
        fake_broker broker(ctx);
        mdp::client c(ctx, broker.endpoint, {.timeout = 400ms, .retries = 2});
        auto result = async([&] {
            int parts = 0;
            auto r =
                c.request("stream", message{"go"}, {}, [&](const header&, message&) { ++parts; });
            return std::make_pair(parts, texts(r.body));
        });
        auto req = broker.recv();
        // Parts every 250 ms for 750 ms in all: longer than one attempt's 400 ms.
        for (int i = 0; i < 3; ++i) {
            CHECK_FALSE(support::recv_for(broker.router, 250ms)); // no resend meanwhile
            broker.reply(req, partial_cmd, {"p"});
        }
        broker.reply(req, final_cmd, {"end"});
        CHECK(get(result) == std::make_pair(3, strings{"end"}));
        CHECK(c.stats().resends == 0);
    }

    TEST_CASE("a zmesh.error FINAL raises service_error with the exact status and reason") {
        zmq::context_t ctx;
        fake_broker broker(ctx);
        mdp::client c(ctx, broker.endpoint, {.timeout = 3s, .retries = 3});
        auto result = async([&]() -> std::pair<std::string, std::string> {
            try {
                (void)c.request("nosuch", message{"x"}, {.fail_fast = true});
            } catch (const mdp::service_error& e) {
                CHECK(e.code() == zmesh::errc::not_found);
                CHECK(e.service() == "nosuch");
                // std::system_error appends ": " and the code's message.
                CHECK(std::string(e.what()).rfind(
                          "service 'nosuch' failed: 404 no worker for nosuch", 0) == 0);
                return {e.status(), e.reason()};
            }
            return {};
        });
        auto req = broker.recv();
        broker.reply(req, final_cmd, {"404", "no worker for nosuch"}, "zmesh.error");
        CHECK(get(result) ==
              std::make_pair(std::string("404"), std::string("no worker for nosuch")));
    }

    TEST_CASE("the error_code overload returns the error FINAL with its status mapped") {
        zmq::context_t ctx;
        fake_broker broker(ctx);
        mdp::client c(ctx, broker.endpoint, {.timeout = 3s, .retries = 1});
        auto result = async([&] {
            std::error_code ec;
            auto r = c.request("svc", message{"x"}, {}, ec);
            REQUIRE(r);
            return std::make_pair(ec, texts(r->body));
        });
        broker.reply(broker.recv(), final_cmd, {"503", "queue full"}, "zmesh.error");
        auto [ec, body] = get(result);
        CHECK(ec == zmesh::errc::unavailable);
        CHECK(body == strings{"503", "queue full"});
    }

    TEST_CASE("status codes map to errc") {
        CHECK(mdp::status_to_errc("400") == zmesh::errc::bad_request);
        CHECK(mdp::status_to_errc("404") == zmesh::errc::not_found);
        CHECK(mdp::status_to_errc("422") == zmesh::errc::refused);
        CHECK(mdp::status_to_errc("500") == zmesh::errc::exhausted);
        CHECK(mdp::status_to_errc("503") == zmesh::errc::unavailable);
        CHECK(mdp::status_to_errc("504") == zmesh::errc::timeout);
        CHECK(mdp::status_to_errc("418") == zmesh::errc::remote_error);
    }

    TEST_CASE("a body that merely starts with zmesh.error is a result, not an error") {
        zmq::context_t ctx;
        fake_broker broker(ctx);
        mdp::client c(ctx, broker.endpoint, {.timeout = 3s, .retries = 1});
        auto result = async([&] { return texts(c.request("svc", message{"x"}, {}).body); });
        broker.reply(broker.recv(), final_cmd, {"zmesh.error", "500", "just data"});
        CHECK(get(result) == strings{"zmesh.error", "500", "just data"});
    }

    TEST_CASE("replies naming another id, another service, or undecodable are dropped") {
        zmq::context_t ctx;
        fake_broker broker(ctx);
        mdp::client c(ctx, broker.endpoint, {.timeout = 3s, .retries = 1});
        auto result = async([&] {
            auto r = c.request("echo", message{"x"}, {});
            return std::make_pair(texts(r.body), c.stats());
        });
        auto req = broker.recv();
        seen stranger = req;
        stranger.head.id = message_id::generate();
        broker.reply(stranger, final_cmd, {"not yours"});
        broker.reply(stranger, partial_cmd, {"not yours either"});
        seen other_service = req;
        other_service.service = "other";
        broker.reply(other_service, final_cmd, {"wrong service"});
        broker.send_raw(req.peer, final_cmd, "echo", zmq::message_t(std::string("\x81\xa2id")),
                        {"bad header"});
        broker.send_raw(req.peer, request_cmd, "echo", zmesh::encode(req.head), {"a REQUEST"});
        broker.reply(req, final_cmd, {"yours"});
        auto [body, stats] = get(result);
        CHECK(body == strings{"yours"});
        CHECK(stats.unexpected == 3);
        CHECK(stats.malformed == 2);
        CHECK(stats.parts == 0);
    }

    TEST_CASE(
        "request(service, body) on ZMCT03 reads as MDP/0.1: parts, then final; errors as a body") {
        zmq::context_t ctx;
        fake_broker broker(ctx);
        mdp::client c(ctx, broker.endpoint, {.timeout = 3s, .retries = 1});
        auto result = async([&] {
            auto a = texts(c.request("echo", message{"a"}));
            auto b = texts(c.request("echo", message{"b"}));
            return std::make_pair(a, b);
        });
        auto first = broker.recv();
        broker.reply(first, partial_cmd, {"1", "2"});
        broker.reply(first, final_cmd, {"3"});
        broker.reply(broker.recv(), final_cmd, {"504", "deadline passed"}, "zmesh.error");
        auto [a, b] = get(result);
        CHECK(a == strings{"1", "2", "3"});
        CHECK(b == strings{"zmesh.error", "504", "deadline passed"});
    }

    TEST_CASE("asynchronous mode: replies are matched by co, in any order, parts joined") {
        zmq::context_t ctx;
        fake_broker broker(ctx);
        mdp::client c(ctx, broker.endpoint, {.timeout = 3s, .retries = 1, .window = 8});
        const auto given = message_id::generate();
        c.send("echo", message{"a"});
        const auto second = c.send("echo", message{"b"}, {.id = given, .priority = 9});
        CHECK(second == given);
        std::error_code ec;
        CHECK_FALSE(c.send("echo", message{"dup"}, {.id = given}, ec));
        CHECK(ec == zmesh::errc::invalid_argument);
        CHECK(c.outstanding() == 2);

        auto ra = broker.recv();
        auto rb = broker.recv();
        CHECK(rb.head.id == given);
        CHECK(rb.head.priority == 9);
        CHECK(ra.head.ttl_ms == 3000); // the default deadline: timeout × retries

        broker.reply(rb, partial_cmd, {"b1"});
        broker.reply(rb, final_cmd, {"b2"}, "t.b");
        broker.reply(ra, final_cmd, {"422", "no"}, "zmesh.error");
        auto first = c.recv(2s);
        REQUIRE(first);
        CHECK(first->id == given);
        CHECK(texts(first->body) == strings{"b1", "b2"});
        CHECK(first->head.type == "t.b");
        auto next = c.recv(2s);
        REQUIRE(next);
        CHECK(next->id == ra.head.id);
        CHECK(next->head.type == "zmesh.error");
        CHECK(texts(next->body) == strings{"zmesh.error", "422", "no"});
        CHECK(c.outstanding() == 0);
        CHECK_FALSE(c.recv(0ms));
    }

    TEST_CASE("asynchronous mode: 1,200 ids outstanding at once, answered in reverse, twice over") {
        // More ids than the outstanding-id index's first table holds (it grows), and a second
        // round on the recycled entries: every reply still finds its own request.
        zmq::context_t ctx;
        fake_broker broker(ctx);
        // The fake broker answers faster than the client reads, and a ROUTER silently drops
        // what its high-water mark refuses: with ROUTER_MANDATORY its sends wait instead.
        broker.router.set(zmq::sockopt::router_mandatory, 1);
        constexpr int n = 1200;
        // The client on its own thread: it sends all, then reads while the broker answers.
        // It returns what went wrong, or "".
        auto rounds = [&]() -> std::string {
            mdp::client c(ctx, broker.endpoint, {.timeout = 10s, .retries = 1, .window = n});
            for (int round = 0; round < 2; ++round) {
                std::vector<message_id> ids;
                for (int i = 0; i < n; ++i)
                    ids.push_back(c.send("echo", message{std::to_string(i)}, mdp::request_options{}));
                if (c.outstanding() != static_cast<std::size_t>(n)) return "not all outstanding";
                for (int i = n - 1; i >= 0; --i) {
                    const auto r = c.recv(5s);
                    const std::string which = "round " + std::to_string(round) + ", reply " +
                                              std::to_string(i);
                    if (!r) return "no " + which;
                    if (r->id != ids[static_cast<std::size_t>(i)] ||
                        texts(r->body) != strings{"re:" + std::to_string(i)})
                        return which + " is another request's";
                }
                if (c.outstanding() != 0) return "ids left outstanding";
            }
            return c.stats().unexpected == 0 ? "" : "unexpected replies";
        };
        auto client = async([&]() -> std::string {
            try {
                return rounds();
            } catch (const std::exception& e) {
                return std::string("threw: ") + e.what();
            }
        });
        for (int round = 0; round < 2; ++round) {
            std::vector<seen> got;
            for (int i = 0; i < n; ++i) {
                if (client.wait_for(0s) == std::future_status::ready) FAIL(client.get());
                INFO("broker round " << round << " request " << i);
                got.push_back(broker.recv(5000ms));
            }
            for (auto it = got.rbegin(); it != got.rend(); ++it)
                broker.reply(*it, final_cmd, {"re:" + it->body.at(0)});
        }
        CHECK(get(client) == "");
    }

    TEST_CASE("asynchronous mode: an abandoned id's reply is dropped") {
        zmq::context_t ctx;
        fake_broker broker(ctx);
        mdp::client c(ctx, broker.endpoint, {.timeout = 3s, .retries = 1, .window = 8});
        // request_options{}, not {}: a bare {} would pick the overload with a tag.
        const auto a = c.send("echo", message{"a"}, mdp::request_options{});
        const auto b = c.send("echo", message{"b"}, mdp::request_options{});
        CHECK(c.abandon(a));
        CHECK_FALSE(c.abandon(a));
        CHECK(c.outstanding() == 1);
        auto ra = broker.recv();
        auto rb = broker.recv();
        broker.reply(ra, final_cmd, {"late"});
        broker.reply(rb, final_cmd, {"kept"});
        auto r = c.recv(2s);
        REQUIRE(r);
        CHECK(r->id == b);
        CHECK(texts(r->body) == strings{"kept"});
        CHECK(c.stats().unexpected == 1);
    }

    TEST_CASE("bad request options and protocol mismatches are invalid arguments") {
        zmq::context_t ctx;
        fake_broker broker(ctx);
        mdp::client c(ctx, broker.endpoint, {.timeout = 200ms, .retries = 1});
        std::error_code ec;
        CHECK_FALSE(c.request("echo", message{"x"}, {.priority = 10}, ec));
        CHECK(ec == zmesh::errc::invalid_argument);
        CHECK_FALSE(c.request("echo", message{"x"}, {.ttl = -1ms}, ec));
        CHECK(ec == zmesh::errc::invalid_argument);
        CHECK_FALSE(c.request("", message{"x"}, {}, ec));
        CHECK(ec == zmesh::errc::invalid_argument);

        mdp::client plain(ctx, broker.endpoint,
                          {.timeout = 200ms, .retries = 1, .protocol = mdp::client_protocol::mdp});
        CHECK_FALSE(plain.request("echo", message{"x"}, {}, ec));
        CHECK(ec == zmesh::errc::invalid_argument);
        CHECK_FALSE(plain.send("echo", message{"x"}, mdp::request_options{}, ec));
        CHECK(ec == zmesh::errc::invalid_argument);
        mdp::client legacy(ctx, broker.endpoint, {.timeout = 200ms, .retries = 1, .tagged = true});
        CHECK(legacy.protocol() == mdp::client_protocol::tagged);
        CHECK_FALSE(support::recv_for(broker.router, support::settle_time)); // nothing was sent
    }

    TEST_CASE("a timed-out request reports the attempts and keeps the socket") {
        zmq::context_t ctx;
        fake_broker broker(ctx);
        mdp::client c(ctx, broker.endpoint, {.timeout = 150ms, .retries = 2});
        const auto socket_before = c.socket().handle();
        auto result = async([&]() -> std::string {
            try {
                (void)c.request("silent", message{"x"}, {});
            } catch (const zmesh::error& e) {
                CHECK(e.code() == zmesh::errc::timeout);
                return e.what();
            }
            return "no error";
        });
        (void)broker.recv();
        (void)broker.recv();
        CHECK(get(result).rfind("no reply from service 'silent' after 2 attempts", 0) == 0);
        CHECK(c.socket().handle() == socket_before);
    }

} // TEST_SUITE
