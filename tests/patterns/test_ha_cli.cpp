// SPDX-License-Identifier: MPL-2.0
// Every zmesh command that talks to a broker takes a Binary Star pair's two endpoints (ctest
// label ha): the query reaches the active broker whichever order the list gives, a list in which
// no broker answers fails naming every endpoint, and a Titanic node given both brokers keeps
// serving durable requests after the active one is SIGKILLed.
#include "ha_pair.hpp"
#include "support/process.hpp"
#include "support/support.hpp"

#include <nlohmann/json.hpp>

#include <doctest/doctest.h>

#include <csignal>
#include <string>
#include <vector>

using namespace std::chrono_literals;

namespace {

struct pair_fixture {
    support::temp_dir dir;
    std::string ep(const std::string& n) const { return "ipc://" + (dir.path() / n).string(); }
    ha_test::pair_broker a{"primary", ep("a"), ep("ha-a"), ep("ha-b"), (dir.path() / "a.log").string()};
    ha_test::pair_broker b{"backup", ep("b"), ep("ha-b"), ep("ha-a"), (dir.path() / "b.log").string()};
    pair_fixture() {
        REQUIRE(support::eventually(
            [&] { return ha_test::ha_state(a.mdp) == 3 && ha_test::ha_state(b.mdp) == 4; }, 5000ms));
    }
};

} // namespace

TEST_CASE("ha: stats, services, dlq and directory given both brokers of a pair ask the active one") {
    pair_fixture p;
    // The passive first: it drops client requests (and answers zmesh.stats with its own state),
    // so each command must go on to the active one.
    const std::string passive_first = p.b.mdp + "," + p.a.mdp;
    const std::string active_first = p.a.mdp + "," + p.b.mdp;
    for (const auto& list : {passive_first, active_first}) {
        CAPTURE(list);
        auto stats = support::run_cli({"stats", "--broker", list, "--json", "--timeout-ms", "500"}, 5000ms);
        REQUIRE(stats.code == 0);
        const auto j = nlohmann::json::parse(stats.out);
        CHECK(j.at("ha_state").get<int>() == 3); // the active's counters, not the passive's (4)

        auto services = support::run_cli({"services", "--broker", list, "--json", "--timeout-ms", "500"}, 5000ms);
        CHECK(services.code == 0);
        CHECK(nlohmann::json::parse(services.out).is_object());

        auto dlq = support::run_cli({"dlq", "list", "--broker", list, "--json", "--timeout-ms", "500"}, 5000ms);
        CHECK(dlq.code == 0);
        CHECK(nlohmann::json::parse(dlq.out).is_array());
    }
    auto reg = support::run_cli({"directory", "register", "prices", "tcp://10.0.0.7:6000", "--broker",
                                 passive_first, "--timeout-ms", "500"}, 5000ms);
    CHECK(reg.code == 0);
    auto lookup = support::run_cli({"directory", "lookup", "prices", "--broker", passive_first,
                                    "--timeout-ms", "500"}, 5000ms);
    CHECK(lookup.code == 0);
    CHECK(lookup.out == "tcp://10.0.0.7:6000\n");
    // It went to the active: a single-broker lookup there finds it too.
    auto at_active = support::run_cli({"directory", "lookup", "prices", "--broker", p.a.mdp}, 5000ms);
    CHECK(at_active.out == "tcp://10.0.0.7:6000\n");
    // The passive never took over: asking it was not a failover while the active lives.
    CHECK(ha_test::ha_state(p.b.mdp) == 4);
    CHECK(ha_test::stat(p.b.mdp, "ha_clients_dropped") >= 4);
    CHECK(ha_test::stat(p.a.mdp, "ha_changes") == 1);
}

TEST_CASE("ha: a broker list where nobody answers fails naming every endpoint") {
    support::temp_dir dir;
    const std::string x = "ipc://" + (dir.path() / "nobody-x").string();
    const std::string y = "ipc://" + (dir.path() / "nobody-y").string();
    const std::string list = x + "," + y;
    const std::vector<std::vector<std::string>> commands{
        {"stats", "--broker", list, "--timeout-ms", "200"},
        {"services", "--broker", list, "--timeout-ms", "200"},
        {"dlq", "list", "--broker", list, "--timeout-ms", "200"},
        {"directory", "list", "--broker", list, "--timeout-ms", "200"},
        {"titanic", "status", "0123456789abcdef0123456789abcdef", "--broker", list, "--timeout-ms", "200"},
    };
    for (const auto& c : commands) {
        CAPTURE(c.front());
        const auto start = std::chrono::steady_clock::now();
        auto r = support::run_cli(c, 8000ms);
        CHECK(r.code == 1);
        CHECK(r.err.find(x) != std::string::npos);
        CHECK(r.err.find(y) != std::string::npos);
        // One bounded wait per endpoint, not a hang.
        CHECK(std::chrono::steady_clock::now() - start < 4000ms);
    }
    // An empty item in the list is a usage error (exit 2) that names the flag.
    auto bad = support::run_cli({"services", "--broker", x + ",", "--timeout-ms", "200"}, 5000ms);
    CHECK(bad.code == 2);
    CHECK(bad.err.find("--broker") != std::string::npos);
}

TEST_CASE("ha: zmesh titanic given both brokers follows the active one across its SIGKILL") {
    pair_fixture p;
    const std::string list = p.a.mdp + "," + p.b.mdp;
    const auto store = (p.dir.path() / "titanic.db").string();
    support::child_process titanic({support::zmesh_cli(), "titanic", "--broker", list, "--store", store,
                                    "--heartbeat-ms", "100", "--timeout-ms", "1000", "--max-attempts",
                                    "50", "--log-level", "info"},
                                   (p.dir.path() / "titanic.log").string());
    support::child_process worker({support::zmesh_cli(), "worker", "--broker", list, "--service", "echo",
                                   "--echo", "--heartbeat-ms", "100"},
                                  (p.dir.path() / "worker.log").string());
    const auto durable = [&](const std::string& body) {
        return support::run_cli({"request", "--durable", "--broker", list, "--service", "echo",
                                 "--timeout-ms", "20000", body},
                                30000ms);
    };
    auto before = durable("before");
    REQUIRE(before.code == 0);
    CHECK(before.out == "before\n");

    p.a.proc.signal(SIGKILL);
    (void)p.a.proc.wait_for(2000ms);
    // A query through the list wakes the passive (the dead broker first: it times out, then the
    // passive is asked and takes over). Then the node's workers must find the new active.
    auto woke = support::run_cli({"services", "--broker", list, "--timeout-ms", "1000"}, 10000ms);
    CHECK(woke.code == 0);
    CHECK(support::eventually(
        [&] {
            auto s = support::run_cli({"services", "--broker", p.b.mdp, "--json"}, 5000ms);
            if (s.code != 0) return false;
            const auto j = nlohmann::json::parse(s.out, nullptr, false);
            return j.is_object() && j.contains("titanic.request") &&
                   j["titanic.request"].value("workers", 0) > 0 && j.contains("echo") &&
                   j["echo"].value("workers", 0) > 0;
        },
        15000ms));
    auto after = durable("after");
    INFO("request stderr: " << after.err);
    REQUIRE(after.code == 0);
    CHECK(after.out == "after\n");
    CHECK(ha_test::ha_state(p.b.mdp) == 3);
    // Its state, asked through the list (the dead broker first), from the node on the new active.
    const auto at = after.err.find("durable request ");
    REQUIRE(at != std::string::npos);
    const auto id = after.err.substr(at + 16, 32);
    auto status = support::run_cli({"titanic", "status", id, "--broker", list, "--timeout-ms", "1000"},
                                   10000ms);
    CHECK(status.code == 1); // closed by the request command: unknown
    CHECK(status.out == "unknown\n");
}
