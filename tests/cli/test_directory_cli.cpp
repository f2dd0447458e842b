// SPDX-License-Identifier: MPL-2.0
// test_directory_cli.cpp — `zmesh directory`: register, look up, list (text and JSON) and
// withdraw names in a real broker's directory; --keep holds a registration until SIGINT and
// withdraws it then; bad actions and operands are usage errors.
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

TEST_SUITE("cli.directory") {

TEST_CASE("zmesh directory registers, looks up, lists and withdraws names") {
    support::temp_dir dir;
    child_process broker({support::zmesh_cli(), "broker", "--mdp", "tcp://127.0.0.1:*"},
                         (dir.path() / "broker.err").string());
    const auto ep = broker.read_line(10000ms);
    REQUIRE(ep);
    REQUIRE(run_cli({"directory", "register", "prices", "tcp://127.0.0.1:7000", "--broker", *ep})
                .code == 0);
    REQUIRE(run_cli({"directory", "register", "prices", "tcp://127.0.0.1:7001", "--broker", *ep})
                .code == 0);
    auto lookup = run_cli({"directory", "lookup", "prices", "--broker", *ep});
    CHECK(lookup.code == 0);
    CHECK(lookup.out.find("tcp://127.0.0.1:7000\n") != std::string::npos);
    CHECK(lookup.out.find("tcp://127.0.0.1:7001\n") != std::string::npos);
    auto json = run_cli({"directory", "list", "--json", "--broker", *ep});
    REQUIRE(json.code == 0);
    const auto entries = nlohmann::json::parse(json.out);
    CHECK(entries.size() == 2);
    CHECK(entries[0]["name"] == "prices");
    REQUIRE(run_cli({"directory", "unregister", "prices", "tcp://127.0.0.1:7000", "--broker",
                     *ep})
                .code == 0);
    auto after = run_cli({"directory", "lookup", "prices", "--json", "--broker", *ep});
    CHECK(nlohmann::json::parse(after.out) == nlohmann::json::array({"tcp://127.0.0.1:7001"}));
    // Nothing under a name: exit 1, naming the name and the broker.
    auto none = run_cli({"directory", "lookup", "nothing", "--broker", *ep});
    CHECK(none.code == 1);
    CHECK(none.err.find("'nothing'") != std::string::npos);
    CHECK(none.err.find(*ep) != std::string::npos);
}

TEST_CASE("zmesh directory register --keep holds the name until SIGINT, then withdraws it") {
    support::temp_dir dir;
    child_process broker({support::zmesh_cli(), "broker", "--mdp", "tcp://127.0.0.1:*"},
                         (dir.path() / "broker.err").string());
    const auto ep = broker.read_line(10000ms);
    REQUIRE(ep);
    // A TTL of 300 ms: the name is still there after several TTLs only because it is refreshed.
    child_process keep({support::zmesh_cli(), "directory", "register", "svc", "ipc:///tmp/x",
                        "--keep", "--ttl-ms", "300", "--broker", *ep},
                       (dir.path() / "keep.err").string());
    auto present = [&] {
        auto r = run_cli({"directory", "lookup", "svc", "--json", "--broker", *ep});
        return r.code == 0 && nlohmann::json::parse(r.out).size() == 1;
    };
    REQUIRE(support::eventually(present, 5000ms));
    std::this_thread::sleep_for(1000ms);
    CHECK(present());
    keep.signal(SIGINT);
    CHECK(keep.wait_for(5000ms) == 0);
    CHECK(support::eventually([&] { return !present(); }, 3000ms));
}

TEST_CASE("zmesh directory refuses bad actions and operands with exit 2") {
    for (const auto& args : std::vector<std::vector<std::string>>{
             {"directory"},
             {"directory", "frob"},
             {"directory", "lookup"},
             {"directory", "register", "a"},
             {"directory", "register", "a", "not-an-endpoint"},
             {"directory", "list", "--keep"},
             {"directory", "register", "a", "tcp://127.0.0.1:1", "--json"}}) {
        auto r = run_cli(args);
        CAPTURE(args.size());
        CHECK(r.code == 2);
        CHECK(support::count_lines(r.err) == 1);
    }
}

} // TEST_SUITE
