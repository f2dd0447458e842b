// SPDX-License-Identifier: MPL-2.0
// test_freelance.cpp — Freelance (ZMFL01): a client and a pool of servers, in-process. The
// failure it exists to survive (servers killed during a stream of requests), no server at all,
// a late reply to a retried request, and malformed frames to either side.
#include "support/support.hpp"

#include <zmesh/error.hpp>
#include <zmesh/patterns/freelance.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <memory>
#include <thread>

using namespace std::chrono_literals;
namespace fl = zmesh::patterns::freelance;

namespace {

/// A server on a thread of its own, answering [body, name]. kill() stops it and closes its
/// socket, as a crash would; the destructor does the same if the test fails first.
class running_server {
  public:
    running_server(zmq::context_t& ctx, std::string name,
                   std::chrono::milliseconds delay_first = 0ms)
        : name_(std::move(name)) {
        server_ = std::make_unique<fl::server>(
            ctx, std::vector<std::string>{"tcp://127.0.0.1:*"},
            [this, delay_first](zmesh::message&& body) {
                if (served_.fetch_add(1) == 0 && delay_first > 0ms)
                    std::this_thread::sleep_for(delay_first);
                body.push_back(name_);
                return fl::answer::reply(std::move(body));
            });
        endpoint_ = server_->endpoints().front();
        thread_ = std::thread([this] { server_->run(); });
    }
    ~running_server() { kill(); }
    running_server(const running_server&) = delete;
    running_server& operator=(const running_server&) = delete;

    void kill() {
        if (!server_) return;
        server_->stop();
        thread_.join();
        server_.reset();
    }
    const std::string& endpoint() const { return endpoint_; }
    int served() const { return served_.load(); }
    fl::server_stats stats() const { return server_->stats(); }

  private:
    std::string name_;
    std::string endpoint_;
    std::atomic<int> served_{0};
    std::unique_ptr<fl::server> server_;
    std::thread thread_;
};

const fl::client_options fast{.timeout = 300ms,
                              .retries = 3,
                              .ping_interval = 100ms,
                              .server_ttl = 300ms};

} // namespace

TEST_SUITE("patterns.freelance") {

TEST_CASE("freelance request is answered by a server of the pool") {
    zmq::context_t ctx;
    running_server a(ctx, "a");
    fl::client c(ctx, {a.endpoint()}, fast);
    auto reply = c.request(zmesh::message{"hello"});
    CHECK(support::texts(reply) == std::vector<std::string>{"hello", "a"});
    CHECK(c.servers().at(0).state == fl::server_state::alive);
    CHECK(c.stats().replies == 1);
    CHECK(a.stats().requests == 1);
}

TEST_CASE("freelance three servers with two killed during a stream of requests: every request answered") {
    zmq::context_t ctx;
    running_server a(ctx, "a"), b(ctx, "b"), d(ctx, "c");
    fl::client c(ctx, {a.endpoint(), b.endpoint(), d.endpoint()}, fast);
    constexpr int total = 300;
    // Another thread kills a, then b, while the client is sending: one request may be in flight
    // at the moment of each kill.
    std::atomic<int> answered{0};
    std::thread killer([&] {
        support::eventually([&] { return answered.load() >= 80; }, 20s);
        a.kill();
        support::eventually([&] { return answered.load() >= 180; }, 20s);
        b.kill();
    });
    struct joiner {
        std::thread& t;
        ~joiner() { t.join(); }
    } join_killer{killer};
    int wrong = 0;
    for (int i = 0; i < total; ++i) {
        const std::string body = "request " + std::to_string(i);
        auto reply = support::texts(c.request(zmesh::message{body}));
        if (reply.size() != 2 || reply[0] != body) ++wrong;
        answered.fetch_add(1);
    }
    CHECK(wrong == 0);
    CHECK(c.stats().replies == total);
    // The survivor took over; the dead ones are expired.
    CHECK(d.served() > 0);
    const auto servers = c.servers();
    CHECK(servers[0].state == fl::server_state::expired);
    CHECK(servers[1].state == fl::server_state::expired);
    CHECK(servers[2].state == fl::server_state::alive);
    MESSAGE("retries: " << c.stats().retries << ", late replies: " << c.stats().late_replies);
}

TEST_CASE("freelance with no server reachable fails in bounded time naming every endpoint") {
    zmq::context_t ctx;
    const std::vector<std::string> endpoints = {support::ipc_endpoint("fl-none-a"),
                                                support::ipc_endpoint("fl-none-b")};
    fl::client c(ctx, endpoints, {.timeout = 200ms, .retries = 2, .ping_interval = 50ms});
    const auto start = std::chrono::steady_clock::now();
    try {
        (void)c.request(zmesh::message{"anyone?"});
        FAIL("the request was answered");
    } catch (const zmesh::error& e) {
        CHECK(e.code() == zmesh::errc::timeout);
        const std::string what = e.what();
        for (const auto& ep : endpoints) CHECK(what.find(ep) != std::string::npos);
    }
    const auto took = std::chrono::steady_clock::now() - start;
    CHECK(took >= 380ms);
    CHECK(took < 1500ms);
    CHECK(c.stats().pings >= 2);
}

TEST_CASE("freelance late reply to a retried request is recognised and dropped") {
    zmq::context_t ctx;
    // a answers its first request only after the client's timeout: the client retries on b.
    running_server a(ctx, "a", 500ms), b(ctx, "b");
    fl::client c(ctx, {a.endpoint(), b.endpoint()}, {.timeout = 200ms, .retries = 3,
                                                     .ping_interval = 50ms, .server_ttl = 2000ms});
    c.poll(100ms); // both alive, so that the request goes to a first
    REQUIRE(c.servers()[0].state == fl::server_state::alive);
    auto first = support::texts(c.request(zmesh::message{"one"}));
    CHECK(first == std::vector<std::string>{"one", "b"});
    CHECK(c.stats().retries == 1);
    // a's answer to "one" arrives later, and is not taken for the answer to "two".
    CHECK(support::eventually([&] {
        c.poll(20ms);
        return c.stats().late_replies == 1;
    }));
    auto second = support::texts(c.request(zmesh::message{"two"}));
    CHECK(second.at(0) == "two");
    CHECK(c.stats().late_replies == 1);
}

TEST_CASE("freelance malformed messages to the server are counted and dropped") {
    zmq::context_t ctx;
    running_server a(ctx, "a");
    auto raw = support::dealer(ctx, a.endpoint());
    const std::vector<std::vector<std::string>> junk = {
        {"junk"},
        {"ZMFL01"},
        {"ZMFL01", "\x09"},
        {"ZMFL01", std::string(1, '\x03'), "short"}, // request id must be 8 bytes
        {"ZMFL01", std::string(1, '\x02')},          // PONG is no client's command
        {"ZMFL01", std::string(1, '\x01'), "extra"}, // PING has no more frames
    };
    for (const auto& j : junk) REQUIRE(support::frames(j).send(raw) == zmesh::send_status::sent);
    REQUIRE(support::frames({"ZMFL01", std::string(1, '\x01')}).send(raw) ==
            zmesh::send_status::sent);
    auto pong = support::recv_for(raw);
    REQUIRE(pong);
    CHECK(support::texts(*pong) == std::vector<std::string>{"ZMFL01", std::string(1, '\x02')});
    CHECK(a.stats().malformed == junk.size());
    // Still serving.
    fl::client c(ctx, {a.endpoint()}, fast);
    CHECK(support::texts(c.request(zmesh::message{"x"})).at(0) == "x");
}

TEST_CASE("freelance malformed messages to the client are counted and dropped") {
    zmq::context_t ctx;
    zmq::socket_t fake(ctx, zmq::socket_type::router);
    fake.set(zmq::sockopt::linger, 0);
    const auto endpoint = support::bind_loopback(fake);
    fl::client c(ctx, {endpoint}, {.timeout = 2000ms, .retries = 1, .ping_interval = 1000ms});
    const std::string pong(1, '\x02'), reply(1, '\x04'), request(1, '\x03');
    std::thread server([&] {
        // Answer the first PING with junk, then a PONG.
        auto ping = support::recv_for(fake, 3000ms);
        if (!ping) return;
        const auto rid = support::texts(*ping).at(0);
        for (const auto& j : std::vector<std::vector<std::string>>{
                 {rid, "nope"},
                 {rid, "ZMFL01"},
                 {rid, "ZMFL01", "\x07"},
                 {rid, "ZMFL01", reply, "1234567"}, // 7-byte request id
                 {rid, "ZMFL01", pong, "extra"},
             })
            (void)support::frames(j).send(fake);
        (void)support::frames({rid, "ZMFL01", pong}).send(fake);
        // The request: an answer to another id first (late), then the real one.
        for (int i = 0; i < 10; ++i) {
            auto m = support::recv_for(fake, 3000ms);
            if (!m) return;
            auto t = support::texts(*m);
            if (t.size() < 4 || t[2] != request) continue; // another PING
            (void)support::frames({rid, "ZMFL01", reply, std::string(8, '\x7f'), "stale"})
                .send(fake);
            (void)support::frames({rid, "ZMFL01", reply, t[3], "real"}).send(fake);
            return;
        }
    });
    struct joiner {
        std::thread& t;
        ~joiner() { t.join(); }
    } join_server{server};
    auto answer = support::texts(c.request(zmesh::message{"q"}));
    CHECK(answer == std::vector<std::string>{"real"});
    CHECK(c.stats().malformed == 5);
    CHECK(c.stats().late_replies == 1);
}

TEST_CASE("freelance server error is reported, not retried") {
    zmq::context_t ctx;
    fl::server s(ctx, {"tcp://127.0.0.1:*"}, [](zmesh::message&&) -> fl::answer {
        throw std::runtime_error("boom");
    });
    std::thread t([&] { s.run(); });
    struct stopper {
        fl::server& s;
        std::thread& t;
        ~stopper() {
            s.stop();
            t.join();
        }
    } stop_it{s, t};
    fl::client c(ctx, {s.endpoints().front()}, fast);
    try {
        (void)c.request(zmesh::message{"x"});
        FAIL("no error");
    } catch (const fl::request_failed& e) {
        CHECK(e.status() == "500");
        CHECK(e.reason() == "boom");
        CHECK(e.endpoint() == s.endpoints().front());
    }
    CHECK(c.stats().retries == 0);
}

} // TEST_SUITE
