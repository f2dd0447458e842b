// SPDX-License-Identifier: MPL-2.0
// test_broker_list_cli.cpp — `--broker` with several endpoints (docs/patterns/binary_star.md):
// zmesh request and zmesh worker move past an endpoint where nothing answers to the next one,
// the flag takes a comma-separated list and may be repeated, and a bad list is a usage error.
#include "support/process.hpp"
#include "support/support.hpp"

#include <doctest/doctest.h>

#include <string>

using namespace std::chrono_literals;
using support::child_process;
using support::run_cli;

TEST_CASE("cli.broker_list: request and worker fail over past a silent endpoint") {
    support::temp_dir dir;
    const auto ep = [&](const std::string& n) { return "ipc://" + (dir.path() / n).string(); };
    const std::string silent = ep("nobody"), live = ep("broker");
    child_process broker({support::zmesh_cli(), "broker", "--mdp", live, "--heartbeat-ms", "100"},
                         (dir.path() / "broker.log").string());
    REQUIRE(broker.read_line(5000ms).has_value());
    // The worker is given the silent endpoint first: it moves on after heartbeat x liveness.
    child_process worker({support::zmesh_cli(), "worker", "--broker", silent + "," + live,
                          "--service", "echo", "--echo", "--heartbeat-ms", "100"},
                         (dir.path() / "worker.log").string());
    // The client too: its first attempt times out, the second goes to the live broker (and
    // waits there for the worker if need be). Repeated flags and a list are the same thing.
    const auto r = run_cli({"request", "--broker", silent, "--broker", live, "--service", "echo",
                            "--timeout-ms", "1000", "--retries", "4", "hello"},
                           15000ms);
    CHECK(r.code == 0);
    CHECK(r.out == "hello\n");
}

TEST_CASE("cli.broker_list: a bad list is a usage error naming the item") {
    for (const std::string cmd : {"request", "worker"}) {
        CAPTURE(cmd);
        const auto run = [&](const std::string& list) {
            return cmd == "request"
                       ? run_cli({cmd, "--broker", list, "--service", "echo", "hello"})
                       : run_cli({cmd, "--broker", list, "--service", "echo", "--echo"});
        };
        auto r = run("ipc:///tmp/a,,ipc:///tmp/b");
        CHECK(r.code == 2);
        CHECK(r.err.find("empty endpoint") != std::string::npos);
        r = run("ipc:///tmp/a,nonsense");
        CHECK(r.code == 2);
        CHECK(r.err.find("'nonsense'") != std::string::npos);
        CHECK(support::count_lines(r.err) == 1);
    }
}
