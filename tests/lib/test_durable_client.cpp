// SPDX-License-Identifier: MPL-2.0
// test_durable_client.cpp — zmesh::mdp::durable_client (rfc 9/TSP client) against a fake Titanic:
// a ROUTER socket that plays MDP broker and TSP server at once, answering by a script the test
// writes, so every status and every malformed answer can be produced on demand.
#include "support/support.hpp"

#include <zmesh/error.hpp>
#include <zmesh/mdp/durable_client.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <functional>
#include <mutex>
#include <thread>

using namespace std::chrono_literals;
using zmesh::errc;
using zmesh::message;
using zmesh::mdp::durable_client;

namespace {

constexpr std::string_view good_id = "0123456789abcdef0123456789abcdef";

/// A request the fake received: the service, then the body frames.
struct seen_request {
    std::string service;
    std::vector<std::string> body;
};

/// Fake broker + Titanic server. The handler gets each request and returns the answer frames
/// (after the MDP header and service), or std::nullopt to stay silent.
class fake_titanic {
  public:
    using handler = std::function<std::optional<std::vector<std::string>>(const seen_request&)>;

    fake_titanic(zmq::context_t& ctx, handler h)
        : router_(ctx, zmq::socket_type::router), handler_(std::move(h)) {
        router_.set(zmq::sockopt::linger, 0);
        endpoint = support::bind_loopback(router_);
        thread_ = std::thread([this] { run(); });
    }
    ~fake_titanic() {
        stop_ = true;
        thread_.join();
    }
    fake_titanic(const fake_titanic&) = delete;
    fake_titanic& operator=(const fake_titanic&) = delete;

    std::vector<seen_request> seen() {
        std::lock_guard lock(mutex_);
        return seen_;
    }

    std::string endpoint;

  private:
    void run() {
        while (!stop_) {
            auto in = support::recv_for(router_, 20ms);
            if (!in) continue;
            // [identity]["" ]["MDPC01"][service][body...]
            if (in->size() < 4 || zmesh::view((*in)[2]) != "MDPC01") continue;
            seen_request r{zmesh::to_string((*in)[3]), {}};
            for (std::size_t i = 4; i < in->size(); ++i)
                r.body.push_back(zmesh::to_string((*in)[i]));
            {
                std::lock_guard lock(mutex_);
                seen_.push_back(r);
            }
            auto answer = handler_(r);
            if (!answer) continue;
            message out;
            out.push_back(zmesh::to_string((*in)[0]));
            out.push_back("");
            out.push_back("MDPC01");
            out.push_back(r.service);
            for (const auto& f : *answer) out.push_back(f);
            (void)out.send(router_);
        }
    }

    zmq::socket_t router_;
    handler handler_;
    std::atomic<bool> stop_{false};
    std::thread thread_;
    std::mutex mutex_;
    std::vector<seen_request> seen_;
};

zmesh::mdp::durable_client_options fast() {
    // The fake server speaks MDP/0.1 (MDPC01) only.
    return {.mdp = {.timeout = 200ms, .retries = 2, .protocol = zmesh::mdp::client_protocol::mdp},
            .poll_initial = 5ms,
            .poll_max = 20ms};
}

errc code_of(const std::function<void()>& f, std::string* what = nullptr) {
    try {
        f();
    } catch (const zmesh::error& e) {
        if (what) *what = e.what();
        return static_cast<errc>(e.code().value());
    }
    FAIL("no zmesh::error thrown");
    return errc{};
}

std::vector<std::string> frames_of(const message& m) {
    std::vector<std::string> out;
    for (const auto& f : m) out.push_back(zmesh::to_string(f));
    return out;
}

} // namespace

TEST_SUITE("lib.durable_client") {

    TEST_CASE("submit sends titanic.request with the service and body and returns the id") {
        zmq::context_t ctx;
        fake_titanic server(ctx, [](const seen_request&) {
            return std::vector<std::string>{"200", std::string(good_id)};
        });
        durable_client c(ctx, server.endpoint, fast());
        CHECK(c.submit("echo", message{"a", "b"}) == good_id);
        auto seen = server.seen();
        REQUIRE(seen.size() == 1);
        CHECK(seen[0].service == "titanic.request");
        CHECK(seen[0].body == std::vector<std::string>{"echo", "a", "b"});
    }

    TEST_CASE("poll returns nothing while pending, then the reply frames") {
        zmq::context_t ctx;
        std::atomic<int> polls{0};
        fake_titanic server(ctx,
                            [&](const seen_request& r) -> std::optional<std::vector<std::string>> {
                                if (r.service != "titanic.reply" ||
                                    r.body != std::vector<std::string>{std::string(good_id)})
                                    return std::vector<std::string>{"999"};
                                if (polls++ == 0) return std::vector<std::string>{"300"};
                                return std::vector<std::string>{"200", "x", "", "y"};
                            });
        durable_client c(ctx, server.endpoint, fast());
        CHECK_FALSE(c.poll(good_id).has_value());
        auto reply = c.poll(good_id);
        REQUIRE(reply.has_value());
        CHECK(frames_of(*reply) == std::vector<std::string>{"x", "", "y"});
    }

    TEST_CASE("poll of an unknown id throws invalid_argument") {
        zmq::context_t ctx;
        fake_titanic server(ctx,
                            [](const seen_request&) { return std::vector<std::string>{"400"}; });
        durable_client c(ctx, server.endpoint, fast());
        std::string what;
        CHECK(code_of([&] { (void)c.poll(good_id); }, &what) == errc::invalid_argument);
        CHECK(what.find("unknown request id") != std::string::npos);
    }

    TEST_CASE("wait polls until the reply comes") {
        zmq::context_t ctx;
        std::atomic<int> polls{0};
        fake_titanic server(ctx, [&](const seen_request&) {
            return ++polls < 4 ? std::vector<std::string>{"300"}
                               : std::vector<std::string>{"200", "done"};
        });
        durable_client c(ctx, server.endpoint, fast());
        auto reply = c.wait(good_id, 5s);
        CHECK(frames_of(reply) == std::vector<std::string>{"done"});
        CHECK(polls.load() == 4);
    }

    TEST_CASE("wait retries through a 500 from the server") {
        zmq::context_t ctx;
        std::atomic<int> polls{0};
        fake_titanic server(ctx, [&](const seen_request&) {
            return ++polls < 3 ? std::vector<std::string>{"500", "busy"}
                               : std::vector<std::string>{"200", "ok"};
        });
        durable_client c(ctx, server.endpoint, fast());
        CHECK(frames_of(c.wait(good_id, 5s)) == std::vector<std::string>{"ok"});
    }

    TEST_CASE("wait times out cleanly while the request stays pending") {
        zmq::context_t ctx;
        fake_titanic server(ctx,
                            [](const seen_request&) { return std::vector<std::string>{"300"}; });
        durable_client c(ctx, server.endpoint, fast());
        const auto start = std::chrono::steady_clock::now();
        std::string what;
        CHECK(code_of([&] { (void)c.wait(good_id, 150ms); }, &what) == errc::timeout);
        const auto elapsed = std::chrono::steady_clock::now() - start;
        CHECK(elapsed >= 150ms);
        CHECK(elapsed < 2s);
        CHECK(what.find(std::string(good_id)) != std::string::npos);
        CHECK(server.seen().size() >= 3); // several polls, with growing intervals
    }

    TEST_CASE("wait stops at once on an unknown id") {
        zmq::context_t ctx;
        fake_titanic server(ctx,
                            [](const seen_request&) { return std::vector<std::string>{"400"}; });
        durable_client c(ctx, server.endpoint, fast());
        CHECK(code_of([&] { (void)c.wait(good_id, 5s); }) == errc::invalid_argument);
        CHECK(server.seen().size() == 1);
    }

    TEST_CASE("close sends titanic.close with the id") {
        zmq::context_t ctx;
        fake_titanic server(ctx,
                            [](const seen_request&) { return std::vector<std::string>{"200"}; });
        durable_client c(ctx, server.endpoint, fast());
        c.close(good_id);
        auto seen = server.seen();
        REQUIRE(seen.size() == 1);
        CHECK(seen[0].service == "titanic.close");
        CHECK(seen[0].body == std::vector<std::string>{std::string(good_id)});
    }

    TEST_CASE("invalid ids are refused before anything is sent") {
        zmq::context_t ctx;
        fake_titanic server(ctx,
                            [](const seen_request&) { return std::vector<std::string>{"200"}; });
        durable_client c(ctx, server.endpoint, fast());
        CHECK(code_of([&] { (void)c.poll("abc"); }) == errc::invalid_argument);
        CHECK(code_of([&] { (void)c.wait("0123456789abcdef0123456789abcdeg", 1s); }) ==
              errc::invalid_argument);
        CHECK(code_of([&] { c.close(""); }) == errc::invalid_argument);
        CHECK(code_of([&] { (void)c.submit("", message{"x"}); }) == errc::invalid_argument);
        CHECK(server.seen().empty());
    }

    TEST_CASE("server errors and malformed answers give clear errors") {
        zmq::context_t ctx;
        std::vector<std::vector<std::string>> script{
            {"500", "disk full"},       // submit: not stored
            {"200", "not-an-id"},       // submit: malformed id
            {"200"},                    // submit: id missing
            {},                         // submit: empty answer
            {"400", "no such service"}, // submit: unexpected status
            {"999"},                    // poll: unknown status
            {"500", "database locked"}, // poll: server error
            {"404"},                    // close: unexpected status
        };
        std::atomic<std::size_t> next{0};
        fake_titanic server(ctx, [&](const seen_request&) { return script.at(next++); });
        durable_client c(ctx, server.endpoint, fast());
        std::string what;
        CHECK(code_of([&] { (void)c.submit("echo", message{"x"}); }, &what) == errc::storage);
        CHECK(what.find("disk full") != std::string::npos);
        CHECK(code_of([&] { (void)c.submit("echo", message{"x"}); }, &what) ==
              errc::protocol_violation);
        CHECK(what.find("not-an-id") != std::string::npos);
        CHECK(code_of([&] { (void)c.submit("echo", message{"x"}); }) == errc::protocol_violation);
        CHECK(code_of([&] { (void)c.submit("echo", message{"x"}); }, &what) ==
              errc::protocol_violation);
        CHECK(what.find("empty answer") != std::string::npos);
        CHECK(code_of([&] { (void)c.submit("echo", message{"x"}); }, &what) ==
              errc::protocol_violation);
        CHECK(what.find("no such service") != std::string::npos);
        CHECK(code_of([&] { (void)c.poll(good_id); }, &what) == errc::protocol_violation);
        CHECK(what.find("999") != std::string::npos);
        CHECK(code_of([&] { (void)c.poll(good_id); }, &what) == errc::storage);
        CHECK(what.find("database locked") != std::string::npos);
        CHECK(code_of([&] { c.close(good_id); }) == errc::protocol_violation);
    }

    TEST_CASE("a silent server makes submit time out after the MDP retries") {
        zmq::context_t ctx;
        fake_titanic server(ctx, [](const seen_request&) { return std::nullopt; });
        durable_client c(ctx, server.endpoint, fast());
        CHECK(code_of([&] { (void)c.submit("echo", message{"x"}); }) == errc::timeout);
        CHECK(server.seen().size() == 2); // both attempts reached the server
    }

    TEST_CASE("bad options are refused") {
        zmq::context_t ctx;
        auto o = fast();
        o.poll_initial = 0ms;
        CHECK(code_of([&] { durable_client c(ctx, "tcp://127.0.0.1:1", o); }) ==
              errc::invalid_argument);
        o = fast();
        o.poll_max = 1ms;
        CHECK(code_of([&] { durable_client c(ctx, "tcp://127.0.0.1:1", o); }) ==
              errc::invalid_argument);
    }

} // TEST_SUITE
