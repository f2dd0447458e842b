// SPDX-License-Identifier: MPL-2.0
// test_json_cli.cpp — `--json` output for scripts: zmesh services and zmesh stats print one JSON
// document that a JSON parser reads, with the same numbers as their tables.
#include "support/process.hpp"
#include "support/support.hpp"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <csignal>
#include <cstdint>
#include <sstream>
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

TEST_CASE("zmesh stats --watch refreshes with rates, as a view or as JSON lines, and stops") {
    support::temp_dir dir;
    child_process broker({support::zmesh_cli(), "broker", "--mdp", "tcp://127.0.0.1:*"},
                         (dir.path() / "broker.err").string());
    const auto endpoint = broker.read_line(10000ms);
    REQUIRE(endpoint);
    // JSON lines: one object per refresh; each refresh is one more zmesh.stats request.
    auto lines = run_cli({"stats", "--broker", *endpoint, "--watch", "--json", "--interval-ms",
                          "100", "--count", "3"},
                         15000ms);
    REQUIRE(lines.code == 0);
    REQUIRE(support::count_lines(lines.out) == 3);
    std::istringstream in(lines.out);
    std::uint64_t previous = 0;
    for (std::string line; std::getline(in, line);) {
        const auto j = nlohmann::json::parse(line);
        const auto requests = j["requests"].get<std::uint64_t>();
        CHECK(requests > previous);
        previous = requests;
    }
    // The view (not a terminal here: frames one after another): the second frame has rates.
    auto view = run_cli({"stats", "--broker", *endpoint, "--watch", "--interval-ms", "100",
                         "--count", "2"},
                        15000ms);
    REQUIRE(view.code == 0);
    CAPTURE(view.out);
    const auto first = view.out.find("PER SECOND");
    REQUIRE(first != std::string::npos);
    CHECK(view.out.find("PER SECOND", first + 1) != std::string::npos);
    // requests grows by one per refresh (its own zmesh.stats): a rate is printed for it.
    const auto second = view.out.find("\nrequests ", view.out.find("PER SECOND", first + 1));
    REQUIRE(second != std::string::npos);
    const auto line_end = view.out.find('\n', second + 1);
    std::istringstream row(view.out.substr(second + 1, line_end - second - 1));
    std::string name;
    double value = 0, rate = -1;
    row >> name >> value >> rate;
    CHECK(rate > 0);
    // --count without --watch is a usage error.
    auto bad = run_cli({"stats", "--broker", *endpoint, "--count", "2"});
    CHECK(bad.code == 2);
    CHECK(bad.err.find("--watch") != std::string::npos);
    broker.signal(SIGTERM);
    CHECK(broker.wait_for(5000ms) == 0);
}

TEST_CASE("zmesh stats --watch says what failed and goes on while nothing answers") {
    support::temp_dir dir;
    const auto nowhere = "ipc://" + (dir.path() / "nothing").string();
    auto r = run_cli({"stats", "--broker", nowhere, "--watch", "--interval-ms", "50", "--count",
                      "2", "--timeout-ms", "200"},
                     15000ms);
    CHECK(r.code == 0);
    CHECK(support::count_lines(r.err) == 2);
    CHECK(r.err.find(nowhere) != std::string::npos);
    CHECK(r.err.find("retrying every 50 ms") != std::string::npos);
}

} // TEST_SUITE
