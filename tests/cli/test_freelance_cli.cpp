// SPDX-License-Identifier: MPL-2.0
// test_freelance_cli.cpp — `zmesh serve` and `zmesh request --freelance` (patterns/freelance),
// as child processes: three servers, two of them killed with SIGKILL during a stream of
// requests, every request answered; no server reachable; a failing --exec command; usage errors.
#include "support/process.hpp"
#include "support/support.hpp"

#include <doctest/doctest.h>

#include <csignal>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using support::child_process;
using support::run_cli;

namespace {

/// `zmesh serve` on an ephemeral loopback port, killed with the fixture.
struct serve_process {
    child_process process;
    std::string endpoint;
    explicit serve_process(std::vector<std::string> mode)
        : process([&] {
              std::vector<std::string> a{support::zmesh_cli(), "serve", "--bind",
                                         "tcp://127.0.0.1:*", "--log-level", "warn"};
              a.insert(a.end(), mode.begin(), mode.end());
              return a;
          }()) {
        auto line = process.read_line(5000ms);
        REQUIRE(line);
        endpoint = *line;
        REQUIRE(endpoint.rfind("tcp://127.0.0.1:", 0) == 0);
    }
};

} // namespace

TEST_SUITE("cli.freelance") {

TEST_CASE("request --freelance with three servers and two killed during a stream: every request answered") {
    serve_process a({"--echo"}), b({"--echo"}), c({"--exec", "cat"});
    const std::string pool = a.endpoint + "," + b.endpoint + "," + c.endpoint;
    constexpr int total = 24;
    int answered = 0;
    for (int i = 0; i < total; ++i) {
        const std::string body = "request-" + std::to_string(i);
        child_process request({support::zmesh_cli(), "request", "--freelance", pool,
                               "--timeout-ms", "500", "--retries", "3", body});
        // SIGKILL while this request may be in flight to the server killed.
        if (i == 8) a.process.signal(SIGKILL);
        if (i == 16) b.process.signal(SIGKILL);
        auto line = request.read_line(5000ms);
        auto code = request.wait_for(5000ms);
        CAPTURE(i);
        CHECK(code == 0);
        CHECK(line == body);
        answered += code == 0 && line == body;
    }
    CHECK(answered == total);
}

TEST_CASE("request --freelance with no server reachable fails in bounded time naming the endpoints") {
    const auto e1 = support::ipc_endpoint("fl-cli-none-a");
    const auto e2 = support::ipc_endpoint("fl-cli-none-b");
    const auto start = std::chrono::steady_clock::now();
    auto r = run_cli({"request", "--freelance", e1 + "," + e2, "--timeout-ms", "200", "--retries",
                      "2", "anyone?"},
                     5000ms);
    const auto took = std::chrono::steady_clock::now() - start;
    CHECK(r.code == 1);
    CHECK(r.out.empty());
    CHECK(support::count_lines(r.err) == 1);
    CHECK(r.err.find(e1) != std::string::npos);
    CHECK(r.err.find(e2) != std::string::npos);
    CHECK(took < 3000ms);
}

TEST_CASE("serve --exec: the reply is the command's stdout, a failing command is an error") {
    serve_process upper({"--exec", "tr a-z A-Z"});
    auto r = run_cli({"request", "--freelance", upper.endpoint, "hello"});
    CHECK(r.code == 0);
    CHECK(r.out == "HELLO\n");
    serve_process failing({"--exec", "echo oops >&2; exit 3"});
    r = run_cli({"request", "--freelance", failing.endpoint, "x"});
    CHECK(r.code == 1);
    CHECK(r.err.find("500") != std::string::npos);
    CHECK(r.err.find("oops") != std::string::npos);
    CHECK(r.err.find(failing.endpoint) != std::string::npos);
}

TEST_CASE("serve and request --freelance usage errors exit 2") {
    CHECK(run_cli({"serve", "--bind", "tcp://127.0.0.1:*"}).code == 2);
    CHECK(run_cli({"serve", "--bind", "tcp://127.0.0.1:*", "--echo", "--exec", "cat"}).code == 2);
    CHECK(run_cli({"serve", "--echo"}).code == 2);
    auto bad = run_cli({"serve", "--bind", "tcp://nowhere", "--echo"});
    CHECK(bad.code == 2);
    CHECK(bad.err.find("tcp://nowhere") != std::string::npos);
    CHECK(run_cli({"request", "--freelance", "tcp://127.0.0.1:1", "--service", "x", "b"}).code == 2);
    CHECK(run_cli({"request", "--freelance", "tcp://127.0.0.1:1,tcp://127.0.0.1:1", "b"}).code == 2);
    CHECK(run_cli({"request", "--freelance", "bogus", "b"}).code == 2);
    CHECK(run_cli({"request", "b"}).code == 2); // --service is still required without --freelance
}

TEST_CASE("serve names the endpoint it cannot bind and exits 1") {
    serve_process first({"--echo"});
    auto r = run_cli({"serve", "--bind", first.endpoint, "--echo"});
    CHECK(r.code == 1);
    CHECK(r.err.find(first.endpoint) != std::string::npos);
}

} // TEST_SUITE
