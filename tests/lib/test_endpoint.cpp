// SPDX-License-Identifier: MPL-2.0
// test_endpoint.cpp — endpoint validation, ephemeral binds and socket options.
#include <zmesh/endpoint.hpp>
#include <zmesh/error.hpp>
#include <zmesh/log.hpp>
#include <zmesh/socket_options.hpp>

#include <doctest/doctest.h>

#include <string>
#include <string_view>
#include <thread>

TEST_SUITE("lib.endpoint") {

TEST_CASE("valid tcp, ipc and inproc endpoints are accepted and split") {
    auto p = zmesh::parse_endpoint("tcp://127.0.0.1:5555");
    CHECK(p.kind == zmesh::transport::tcp);
    CHECK(p.host == "127.0.0.1");
    CHECK(p.port == "5555");
    CHECK(zmesh::parse_endpoint("tcp://*:*").port == "*");
    CHECK(zmesh::parse_endpoint("tcp://[::1]:80").host == "::1");
    CHECK(zmesh::parse_endpoint("tcp://localhost:65535").host == "localhost");
    CHECK(zmesh::parse_endpoint("tcp://eth0;192.168.1.1:9").host == "192.168.1.1");
    CHECK(zmesh::parse_endpoint("ipc:///tmp/zmesh.sock").kind == zmesh::transport::ipc);
    CHECK(zmesh::parse_endpoint("inproc://broker").address == "broker");
}

TEST_CASE("invalid endpoints are rejected with a reason") {
    const char* bad[] = {"",
                         "127.0.0.1:5555",
                         "tcp://",
                         "tcp://127.0.0.1",
                         "tcp://127.0.0.1:",
                         "tcp://:5555",
                         "tcp://127.0.0.1:70000",
                         "tcp://127.0.0.1:55a5",
                         "tcp://127.0.0.1:1234567",
                         "tcp://[::1:80",
                         "tcp://bad host:80",
                         "udp://127.0.0.1:5555",
                         "pgm://eth0;239.1.1.1:5555",
                         "ipc://",
                         "inproc://"};
    for (const char* ep : bad) {
        CAPTURE(ep);
        std::error_code ec;
        std::string why;
        CHECK_FALSE(zmesh::parse_endpoint(ep, ec, &why));
        CHECK(ec == zmesh::errc::invalid_endpoint);
        CHECK_FALSE(why.empty());
        CHECK_THROWS_AS(zmesh::parse_endpoint(ep), zmesh::error);
    }
    const std::string long_ipc = "ipc:///" + std::string(200, 'p');
    std::error_code ec;
    CHECK_FALSE(zmesh::parse_endpoint(long_ipc, ec));
}

TEST_CASE("an endpoint with a NUL byte is refused: libzmq would see only what precedes it") {
    // Found by tests/fuzz (fuzz_endpoint): "inproc://a\0b" was accepted and then bound as
    // "inproc://a"; through the broker's directory, a peer could register an endpoint that
    // resolvers would connect to under another name.
    using namespace std::string_view_literals;
    for (auto ep : {"inproc://a\0b"sv, "ipc:///tmp/x\0y"sv, "tcp://127.0.0.1:5555\0"sv}) {
        CAPTURE(ep);
        std::error_code ec;
        std::string why;
        CHECK_FALSE(zmesh::parse_endpoint(ep, ec, &why));
        CHECK(ec == zmesh::errc::invalid_endpoint);
        CHECK(why.find("NUL") != std::string::npos);
    }
    zmq::context_t ctx;
    zmq::socket_t s(ctx, zmq::socket_type::pair);
    s.set(zmq::sockopt::linger, 0);
    CHECK_THROWS_AS(zmesh::bind(s, "inproc://a\0b"sv), zmesh::error);
}

TEST_CASE("a refusal quotes the endpoint's bytes only in printable form, and briefly") {
    // Found by tests/fuzz (fuzz_endpoint): reasons held the offending bytes raw (control
    // characters, escape sequences, a whole oversized port), and the broker's directory sends
    // them back to peers and into logs.
    using namespace std::string_view_literals;
    auto printable = [](const std::string& s) {
        for (char c : s) {
            const auto u = static_cast<unsigned char>(c);
            if (u < 0x20 || u >= 0x7f) return false;
        }
        return true;
    };
    const std::string long_port = "tcp://h:" + std::string(500, '\x1b');
    for (auto ep : {"tcp://ho\x1bst:80"sv, "tcp://host:8\n0"sv, "in\x9fproc://x"sv,
                    std::string_view(long_port)}) {
        CAPTURE(ep);
        std::error_code ec;
        std::string why;
        CHECK_FALSE(zmesh::parse_endpoint(ep, ec, &why));
        CHECK(printable(why));
        CHECK(why.size() < 400);
        try {
            (void)zmesh::parse_endpoint(ep);
            FAIL("expected an exception");
        } catch (const zmesh::error& e) {
            CHECK(printable(e.what()));
        }
    }
    std::error_code ec;
    std::string why;
    CHECK_FALSE(zmesh::parse_endpoint("tcp://ho\x1bst:80", ec, &why));
    CHECK(why == "invalid character '\\x1b' in host");
}

TEST_CASE("the thrown error names the endpoint and the problem") {
    try {
        (void)zmesh::parse_endpoint("tcp://127.0.0.1:99999");
        FAIL("expected an exception");
    } catch (const zmesh::error& e) {
        const std::string what = e.what();
        CHECK(what.find("tcp://127.0.0.1:99999") != std::string::npos);
        CHECK(what.find("out of range") != std::string::npos);
        CHECK(e.code() == zmesh::errc::invalid_endpoint);
        CHECK(std::string(e.code().category().name()) == "zmesh");
    }
}

TEST_CASE("binding to an ephemeral port returns the real endpoint, which a peer can reach") {
    zmq::context_t ctx;
    zmq::socket_t server(ctx, zmq::socket_type::pair), client(ctx, zmq::socket_type::pair);
    server.set(zmq::sockopt::linger, 0);
    client.set(zmq::sockopt::linger, 0);
    auto ep = zmesh::bind(server, "tcp://127.0.0.1:*");
    CHECK(ep.rfind("tcp://127.0.0.1:", 0) == 0);
    CHECK(zmesh::parse_endpoint(ep).port != "*");
    zmesh::connect(client, ep);
    client.send(zmq::str_buffer("ping"));
    zmq::message_t m;
    server.set(zmq::sockopt::rcvtimeo, 2000);
    REQUIRE(server.recv(m));
    CHECK(m.to_string_view() == "ping");
}

TEST_CASE("connecting to a wildcard or malformed endpoint throws before libzmq sees it") {
    zmq::context_t ctx;
    zmq::socket_t s(ctx, zmq::socket_type::dealer);
    s.set(zmq::sockopt::linger, 0);
    CHECK_THROWS_AS(zmesh::connect(s, "tcp://127.0.0.1:*"), zmesh::error);
    CHECK_THROWS_AS(zmesh::connect(s, "tcp//127.0.0.1:5"), zmesh::error);
    CHECK_THROWS_AS(zmesh::bind(s, "udp://127.0.0.1:5"), zmesh::error);
}

TEST_CASE("libzmq refusing a bind is a zmesh::error naming the endpoint, with its errno") {
    zmq::context_t ctx;
    zmq::socket_t first(ctx, zmq::socket_type::router), second(ctx, zmq::socket_type::router);
    first.set(zmq::sockopt::linger, 0);
    second.set(zmq::sockopt::linger, 0);
    const auto ep = zmesh::bind(first, "tcp://127.0.0.1:*");
    try {
        (void)zmesh::bind(second, ep);
        FAIL("a second bind to " << ep << " succeeded");
    } catch (const zmesh::error& e) {
        CHECK(e.code() == std::error_code(EADDRINUSE, std::generic_category()));
        const std::string what = e.what();
        CAPTURE(what);
        CHECK(what.find("cannot bind to '" + ep + "'") != std::string::npos);
        CHECK(what == "cannot bind to '" + ep + "': " + zmq_strerror(EADDRINUSE));
        CHECK(e.code() == std::errc::address_in_use);
    }
}

TEST_CASE("socket options are applied in one place") {
    zmq::context_t ctx;
    zmq::socket_t s(ctx, zmq::socket_type::dealer);
    zmesh::socket_options o;
    o.send_hwm = 123;
    o.recv_hwm = 456;
    o.linger = std::chrono::milliseconds(7);
    o.heartbeat_interval = std::chrono::milliseconds(1000);
    o.heartbeat_timeout = std::chrono::milliseconds(3000);
    o.heartbeat_ttl = std::chrono::milliseconds(4000);
    o.max_message_size = 1 << 20;
    o.immediate = true;
    zmesh::apply(s, o);
    CHECK(s.get(zmq::sockopt::sndhwm) == 123);
    CHECK(s.get(zmq::sockopt::rcvhwm) == 456);
    CHECK(s.get(zmq::sockopt::linger) == 7);
    CHECK(s.get(zmq::sockopt::heartbeat_ivl) == 1000);
    CHECK(s.get(zmq::sockopt::heartbeat_timeout) == 3000);
    CHECK(s.get(zmq::sockopt::heartbeat_ttl) == 4000);
    CHECK(s.get(zmq::sockopt::maxmsgsize) == (1 << 20));
    CHECK(s.get(zmq::sockopt::immediate) == 1);
}

TEST_CASE("log levels parse and the limiter lets a burst through then counts") {
    CHECK(zmesh::parse_log_level("debug") == zmesh::log_level::debug);
    CHECK(zmesh::parse_log_level("warn") == zmesh::log_level::warn);
    CHECK_FALSE(zmesh::parse_log_level("loud"));
    zmesh::log_limiter limiter(3, std::chrono::hours(1));
    int allowed = 0;
    for (int i = 0; i < 100; ++i) allowed += limiter.allow() ? 1 : 0;
    CHECK(allowed == 3);
    CHECK(limiter.take_suppressed() == 0); // the window has not ended yet

    // Each suppressed event is reported once, by the first allowed event of a later window.
    zmesh::log_limiter quick(2, std::chrono::milliseconds(200));
    for (int i = 0; i < 12; ++i) (void)quick.allow();
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
    REQUIRE(quick.allow());
    CHECK(quick.take_suppressed() == 10);
    REQUIRE(quick.allow());
    CHECK(quick.take_suppressed() == 0);
}

}
