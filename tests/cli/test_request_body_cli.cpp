// SPDX-License-Identifier: MPL-2.0
// test_request_body_cli.cpp — the ways `zmesh request` takes a body: several frames (--frame,
// repeated, kept in order through a real broker and echo worker), a file (--body-file), and the
// errors: two ways at once, a file that cannot be read (named).
#include "support/process.hpp"
#include "support/support.hpp"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <csignal>
#include <fstream>
#include <string>

using namespace std::chrono_literals;
using support::child_process;
using support::run_cli;

TEST_SUITE("cli.request_body") {

TEST_CASE("zmesh request sends several --frame frames in order, or the contents of --body-file") {
    support::temp_dir dir;
    child_process broker({support::zmesh_cli(), "broker", "--mdp", "tcp://127.0.0.1:*"},
                         (dir.path() / "broker.err").string());
    const auto ep = broker.read_line(10000ms);
    REQUIRE(ep);
    child_process worker({support::zmesh_cli(), "worker", "--broker", *ep, "--service", "echo",
                          "--echo"},
                         (dir.path() / "worker.err").string());
    // The echo worker sends the body back frame for frame; zmesh request prints one per line.
    auto r = run_cli({"request", "--broker", *ep, "--service", "echo", "--timeout-ms", "5000",
                      "--frame", "first", "--frame", "", "--frame", "third"},
                     15000ms);
    CHECK(r.code == 0);
    CHECK(r.out == "first\n\nthird\n");
    const auto file = dir.path() / "body.txt";
    std::ofstream(file) << "from a file";
    r = run_cli({"request", "--broker", *ep, "--service", "echo", "--timeout-ms", "5000",
                 "--body-file", file.string()},
                15000ms);
    CHECK(r.code == 0);
    CHECK(r.out == "from a file\n");
    // --json: the reply as one JSON object, frames in order.
    r = run_cli({"request", "--broker", *ep, "--service", "echo", "--timeout-ms", "5000",
                 "--json", "--frame", "a", "--frame", "b\"c"},
                15000ms);
    CHECK(r.code == 0);
    CHECK(support::count_lines(r.out) == 1);
    const auto j = nlohmann::json::parse(r.out);
    CHECK(j == nlohmann::json{{"reply", {"a", "b\"c"}}});
    worker.signal(SIGTERM);
    broker.signal(SIGTERM);
}

TEST_CASE("zmesh request refuses two bodies, and names a --body-file it cannot read") {
    auto both = run_cli({"request", "--service", "echo", "--frame", "a", "body"});
    CHECK(both.code == 2);
    CHECK(both.err.find("give the body one way") != std::string::npos);
    auto file_and_frame = run_cli({"request", "--service", "echo", "--frame", "a",
                                   "--body-file", "/etc/hostname"});
    CHECK(file_and_frame.code == 2);
    auto missing = run_cli({"request", "--service", "echo", "--body-file", "/nonexistent/body"});
    CHECK(missing.code == 1);
    CHECK(support::count_lines(missing.err) == 1);
    CHECK(missing.err.find("'/nonexistent/body'") != std::string::npos);
}

} // TEST_SUITE
