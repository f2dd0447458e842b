// SPDX-License-Identifier: MPL-2.0
// test_json_cli.cpp — `--json` output for scripts: zmesh services and zmesh stats print one JSON
// document that a JSON parser reads, with the same numbers as their tables.
#include "support/process.hpp"
#include "support/support.hpp"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <csignal>
#include <string>

using namespace std::chrono_literals;
using support::child_process;
using support::run_cli;

TEST_SUITE("cli.json") {

TEST_CASE("zmesh services --json and zmesh stats --json print one JSON object each") {
    support::temp_dir dir;
    child_process broker({support::zmesh_cli(), "broker", "--mdp", "tcp://127.0.0.1:*"},
                         (dir.path() / "broker.err").string());
    const auto endpoint = broker.read_line(10000ms);
    REQUIRE(endpoint);
    child_process worker({support::zmesh_cli(), "worker", "--broker", *endpoint, "--service",
                          "echo", "--echo"},
                         (dir.path() / "worker.err").string());
    for (int i = 0; i < 3; ++i) {
        auto r = run_cli({"request", "--broker", *endpoint, "--service", "echo", "--timeout-ms",
                          "5000", "hello"},
                         15000ms);
        REQUIRE(r.code == 0);
    }
    auto services = run_cli({"services", "--broker", *endpoint, "--json"});
    REQUIRE(services.code == 0);
    CHECK(support::count_lines(services.out) == 1);
    const auto s = nlohmann::json::parse(services.out);
    REQUIRE(s.contains("echo"));
    CHECK(s["echo"]["workers"] == 1);
    CHECK(s["echo"]["queued"] == 0);
    CHECK(s["echo"]["in_flight"] == 0);

    auto stats = run_cli({"stats", "--broker", *endpoint, "--json"});
    REQUIRE(stats.code == 0);
    CHECK(support::count_lines(stats.out) == 1);
    const auto t = nlohmann::json::parse(stats.out);
    // The requests to echo, besides the broker's own services (zmesh.services, zmesh.stats).
    CHECK(t["mmi"] == 2);
    CHECK(t["requests"] == 3 + 2);
    CHECK(t["dispatched"] == 3);
    CHECK(t["workers"] == 1);
    // zmesh.stats answers itself after counting: the table and the JSON show the same keys.
    auto table = run_cli({"stats", "--broker", *endpoint});
    REQUIRE(table.code == 0);
    CHECK(support::count_lines(table.out) == static_cast<int>(t.size()));
    worker.signal(SIGTERM);
    broker.signal(SIGTERM);
    CHECK(broker.wait_for(5000ms) == 0);
}

} // TEST_SUITE
