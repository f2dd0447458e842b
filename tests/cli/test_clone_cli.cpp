// SPDX-License-Identifier: MPL-2.0
// test_clone_cli.cpp — `zmesh clone-server` and `zmesh clone get|set|del|watch`
// (patterns/clone), as child processes: set then get, watch prints the state and then each
// change, a prefix filters them, no server, usage errors.
#include "support/process.hpp"
#include "support/support.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace std::chrono_literals;
using support::child_process;
using support::run_cli;

namespace {

/// `zmesh clone-server` on ephemeral loopback ports, killed with the fixture.
struct clone_server_process {
    child_process process;
    std::string endpoint, updates;
    clone_server_process()
        : process({support::zmesh_cli(), "clone-server", "--bind", "tcp://127.0.0.1:*",
                   "--log-level", "warn"}) {
        auto first = process.read_line(5000ms);
        auto second = process.read_line(5000ms);
        REQUIRE(first);
        REQUIRE(second);
        endpoint = *first;
        updates = *second;
    }
    std::vector<std::string> clone(std::vector<std::string> rest) const {
        std::vector<std::string> a{"clone", "--server", endpoint, "--updates", updates};
        a.insert(a.end(), rest.begin(), rest.end());
        return a;
    }
};

} // namespace

TEST_SUITE("cli.clone") {

TEST_CASE("clone set then get") {
    clone_server_process s;
    auto r = run_cli(s.clone({"set", "/config/level", "3"}));
    CHECK(r.code == 0);
    r = run_cli(s.clone({"get", "/config/level"}));
    CHECK(r.code == 0);
    CHECK(r.out == "3\n");
    CHECK(run_cli(s.clone({"set", "/config/level", "4"})).code == 0);
    CHECK(run_cli(s.clone({"get", "/config/level"})).out == "4\n");
    r = run_cli(s.clone({"get", "/config/missing"}));
    CHECK(r.code == 1);
    CHECK(support::count_lines(r.err) == 1);
    CHECK(r.err.find("/config/missing") != std::string::npos);
    CHECK(run_cli(s.clone({"del", "/config/level"})).code == 0);
    CHECK(run_cli(s.clone({"get", "/config/level"})).code == 1);
}

TEST_CASE("clone watch prints the state and then each change") {
    clone_server_process s;
    REQUIRE(run_cli(s.clone({"set", "a", "1"})).code == 0);
    child_process watch([&] {
        auto a = s.clone({"watch"});
        a.insert(a.begin(), support::zmesh_cli());
        return a;
    }());
    CHECK(watch.read_line(5000ms) == "a=1"); // the snapshot
    // The watcher follows from here: each change, in order.
    REQUIRE(run_cli(s.clone({"set", "b", "2"})).code == 0);
    CHECK(watch.read_line(5000ms) == "b=2");
    REQUIRE(run_cli(s.clone({"set", "a", "one"})).code == 0);
    CHECK(watch.read_line(5000ms) == "a=one");
    REQUIRE(run_cli(s.clone({"del", "b"})).code == 0);
    CHECK(watch.read_line(5000ms) == "b (removed)");
}

TEST_CASE("clone watch PREFIX prints only the keys under it") {
    clone_server_process s;
    REQUIRE(run_cli(s.clone({"set", "/x/1", "a"})).code == 0);
    REQUIRE(run_cli(s.clone({"set", "/y/1", "b"})).code == 0);
    child_process watch([&] {
        auto a = s.clone({"watch", "/y/"});
        a.insert(a.begin(), support::zmesh_cli());
        return a;
    }());
    CHECK(watch.read_line(5000ms) == "/y/1=b");
    REQUIRE(run_cli(s.clone({"set", "/x/2", "c"})).code == 0);
    REQUIRE(run_cli(s.clone({"set", "/y/2", "d"})).code == 0);
    CHECK(watch.read_line(5000ms) == "/y/2=d"); // /x/2 skipped
}

TEST_CASE("clone with no server fails in bounded time naming it") {
    const auto ep = support::ipc_endpoint("clone-cli-none");
    const auto start = std::chrono::steady_clock::now();
    auto r = run_cli({"clone", "--server", ep, "--timeout-ms", "300", "get", "k"}, 5000ms);
    CHECK(r.code == 1);
    CHECK(r.err.find(ep) != std::string::npos);
    CHECK(support::count_lines(r.err) == 1);
    r = run_cli({"clone", "--server", ep, "--timeout-ms", "300", "set", "k", "v"}, 5000ms);
    CHECK(r.code == 1);
    CHECK(r.err.find(ep) != std::string::npos);
    CHECK(std::chrono::steady_clock::now() - start < 4000ms);
}

TEST_CASE("clone and clone-server usage errors exit 2") {
    const std::string ep = "tcp://127.0.0.1:1";
    CHECK(run_cli({"clone", "--server", ep}).code == 2);
    CHECK(run_cli({"clone", "--server", ep, "frob", "k"}).code == 2);
    CHECK(run_cli({"clone", "--server", ep, "set", "k"}).code == 2);
    CHECK(run_cli({"clone", "--server", ep, "get"}).code == 2);
    CHECK(run_cli({"clone", "--server", ep, "watch", "a", "b"}).code == 2);
    CHECK(run_cli({"clone", "get", "k"}).code == 2); // no --server
    CHECK(run_cli({"clone", "--server", "inproc://x", "get", "k"}).code == 2); // no --updates
    CHECK(run_cli({"clone-server"}).code == 2);
    CHECK(run_cli({"clone-server", "--bind", "bogus"}).code == 2);
    CHECK(run_cli({"clone-server", "--bind", "tcp://127.0.0.1:*", "--hugz-ms", "0"}).code == 2);
}

} // TEST_SUITE
