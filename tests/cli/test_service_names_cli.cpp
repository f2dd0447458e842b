// SPDX-License-Identifier: MPL-2.0
// test_service_names_cli.cpp — `zmesh worker` and `zmesh request` with service names a broker
// cannot take, and `zmesh worker` refused by its broker: one line on stderr and the right exit
// code, instead of a worker that reconnects forever or a request that waits for nothing.
#include "support/process.hpp"
#include "support/support.hpp"

#include <doctest/doctest.h>

#include <zmq.hpp>

#include <fstream>
#include <iterator>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using support::child_process;
using support::count_lines;
using support::run_cli;

namespace {

/// A port nobody listens on: a CLI that connected there would only time out, never exit 2.
const std::string nowhere = "tcp://127.0.0.1:1";

/// How long a command that rejects its arguments may take: it must not connect at all.
constexpr auto usage_timeout = 5000ms;

/// The last line of @p text, without its newline.
std::string last_line(const std::string& text) {
    auto end = text.size();
    if (end > 0 && text[end - 1] == '\n') --end;
    const auto start = text.rfind('\n', end == 0 ? 0 : end - 1);
    return text.substr(start == std::string::npos || start >= end ? 0 : start + 1,
                       end - (start == std::string::npos || start >= end ? 0 : start + 1));
}

} // namespace

TEST_SUITE("cli.service_names") {

TEST_CASE("zmesh worker rejects a name it may not register with a one-line usage error") {
    for (const std::string& name : {std::string("mmi.service"), std::string("zmesh.stats"),
                                   std::string("two words"), std::string(256, 'a'),
                                   std::string("tab\there"), std::string("")}) {
        CAPTURE(name);
        auto r = run_cli({"worker", "--broker", nowhere, "--service", name, "--echo"},
                         usage_timeout);
        CHECK(r.code == 2);
        CHECK(count_lines(r.err) == 1);
        CHECK(r.err.rfind("zmesh: worker: invalid --service '", 0) == 0);
    }
}

TEST_CASE("zmesh request rejects an unroutable name before connecting, but calls reserved ones") {
    for (const std::string& name :
         {std::string("two words"), std::string(256, 'a'), std::string("line\nbreak"),
          std::string("")}) {
        CAPTURE(name);
        auto r = run_cli({"request", "--broker", nowhere, "--service", name, "--timeout-ms",
                          "200", "--retries", "1", "x"},
                         usage_timeout);
        CHECK(r.code == 2);
        CHECK(count_lines(r.err) == 1);
        CHECK(r.err.rfind("zmesh: request: invalid --service '", 0) == 0);
    }

    // Reserved names are real services when a client calls them.
    child_process broker({support::zmesh_cli(), "broker", "--mdp", "tcp://127.0.0.1:*",
                          "--log-level", "warn"});
    auto endpoint = broker.read_line(5000ms);
    REQUIRE(endpoint);
    auto r = run_cli({"request", "--broker", *endpoint, "--service", "mmi.service", "nobody"});
    CHECK(r.code == 1); // a 404 answer: printed, and a failure (test_errors_cli.cpp)
    CHECK(r.out == "404\n");
}

TEST_CASE("zmesh worker refused by its broker exits 1 with one line naming the broker and the "
          "service") {
    // The broker is a ROUTER in this test that refuses as zmesh's broker does: DISCONNECT in
    // answer to READY, and nothing else.
    zmq::context_t ctx;
    zmq::socket_t router(ctx, zmq::socket_type::router);
    router.set(zmq::sockopt::linger, 0);
    const auto endpoint = support::bind_loopback(router);
    support::temp_dir dir;
    const auto err_path = dir.path() / "worker.err";
    // The worker's default protocol (ZMWC02: DISCONNECT is 0x06) and plain MDP/0.1.
    std::vector<std::string> args{support::zmesh_cli(), "worker", "--broker", endpoint,
                                  "--service", "beta", "--echo", "--log-level", "warn"};
    bool plain = false;
    SUBCASE("ZMWC02") {}
    SUBCASE("--plain") {
        plain = true;
        args.push_back("--plain");
    }
    child_process worker(args, err_path.string());
    auto ready = support::recv_for(router, 5000ms);
    REQUIRE(ready);
    const auto frames = support::texts(*ready);
    REQUIRE(frames.size() == 5);
    CHECK(frames[plain ? 4 : 3] == "beta");
    auto refusal = plain ? support::frames({frames[0], "", "MDPW01", std::string(1, '\x05')})
                         : support::frames({frames[0], "ZMWC02", std::string(1, '\x06')});
    REQUIRE(refusal.send(router) == zmesh::send_status::sent);

    auto code = worker.wait_for(5000ms);
    REQUIRE(code);
    CHECK(*code == 1);
    // No retry: the worker stopped after the one READY.
    CHECK_FALSE(support::recv_for(router, support::settle_time));
    std::ifstream in(err_path);
    const std::string err((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    CHECK(count_lines(err) == 1);
    CHECK(err.rfind("zmesh: worker: ", 0) == 0);
    CHECK(err.find("refused") != std::string::npos);
    CHECK(err.find(endpoint) != std::string::npos);
    CHECK(err.find("'beta'") != std::string::npos);
}

TEST_CASE("zmesh worker refused by a zmesh broker at its service limit says why on one line") {
    child_process broker({support::zmesh_cli(), "broker", "--mdp", "tcp://127.0.0.1:*",
                          "--log-level", "error", "--max-services", "1"});
    auto endpoint = broker.read_line(5000ms);
    REQUIRE(endpoint);
    child_process alpha({support::zmesh_cli(), "worker", "--broker", *endpoint, "--service",
                         "alpha", "--echo", "--log-level", "warn"});
    // alpha holds the one service the broker allows once it answers.
    REQUIRE(support::eventually(
        [&] {
            return run_cli({"request", "--broker", *endpoint, "--service", "alpha",
                            "--timeout-ms", "500", "--retries", "1", "ping"})
                       .code == 0;
        },
        10000ms));

    auto r = run_cli({"worker", "--broker", *endpoint, "--service", "beta", "--echo",
                      "--log-level", "warn"},
                     10000ms);
    CHECK(r.code == 1);
    CHECK(count_lines(r.err) == 1);
    const auto line = last_line(r.err);
    CHECK(line.rfind("zmesh: worker: ", 0) == 0);
    CHECK(line.find("refused") != std::string::npos);
    CHECK(line.find(*endpoint) != std::string::npos);
    CHECK(line.find("'beta'") != std::string::npos);
    CHECK(line.find("service limit") != std::string::npos);
}

} // TEST_SUITE
