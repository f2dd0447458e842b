// SPDX-License-Identifier: MPL-2.0
// test_errors_cli.cpp — errors that name what failed (issue 14), each through the CLI with a time
// bound and an assertion on the message: a non-200 answer of a broker service exits 1 naming the
// service and the status, and a body over the broker's frame limit is refused before it is
// sent.
//
// "Nobody there" is an ipc:// path in a private temp directory that nothing binds.
#include "support/process.hpp"
#include "support/support.hpp"

#include <doctest/doctest.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

using namespace std::chrono_literals;

namespace {

using support::child_process;
using support::count_lines;
using support::run_cli;

bool contains(const std::string& s, const std::string& part) {
    return s.find(part) != std::string::npos;
}

std::string read_file(const std::filesystem::path& p) {
    std::ifstream in(p);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

struct broker_process {
    child_process process;
    std::string endpoint;
    broker_process()
        : process({support::zmesh_cli(), "broker", "--mdp", "tcp://127.0.0.1:*", "--log-level",
                   "warn"}) {
        auto line = process.read_line(5000ms);
        REQUIRE(line);
        endpoint = *line;
    }
};

} // namespace

TEST_SUITE("cli.errors") {

TEST_CASE("a non-200 answer of a broker service exits 1 naming the service and the status") {
    broker_process broker;
    for (const bool plain : {false, true}) {
        CAPTURE(plain);
        std::vector<std::string> args{"request", "--broker", broker.endpoint, "--service",
                                      "mmi.service", "nosuch"};
        if (plain) args.push_back("--plain");
        auto r = run_cli(args);
        CHECK(r.code == 1);
        CHECK(r.out == "404\n"); // the answer itself stays on stdout
        CHECK(count_lines(r.err) == 1);
        CHECK(contains(r.err, "zmesh: request: service 'mmi.service' failed: 404"));
        CHECK(contains(r.err, "'nosuch'"));
    }

    auto unknown = run_cli({"request", "--broker", broker.endpoint, "--service", "mmi.nothing"});
    CHECK(unknown.code == 1);
    CHECK(count_lines(unknown.err) == 1);
    CHECK(contains(unknown.err, "service 'mmi.nothing' failed: 501"));

    // A 200 and a reply without a status (a msgpack map) are answers, exit 0.
    child_process worker({support::zmesh_cli(), "worker", "--broker", broker.endpoint,
                          "--service", "echo", "--echo", "--log-level", "warn"});
    REQUIRE(support::eventually(
        [&] {
            return run_cli({"request", "--broker", broker.endpoint, "--service", "mmi.service",
                            "echo"})
                       .code == 0;
        },
        5000ms));
    auto services = run_cli({"request", "--broker", broker.endpoint, "--service",
                             "zmesh.services"});
    CHECK(services.code == 0);
    CHECK(services.err.empty());
}

TEST_CASE("a body over the broker's frame limit is refused before it is sent, naming both "
          "sizes") {
    const auto nowhere = support::ipc_endpoint("no-broker");
    support::temp_dir dir;
    const auto log = dir.path() / "request.err";
    // 64 MiB + 1 byte on stdin; nothing listens, so a request that was sent would wait the
    // whole 30 s of --timeout-ms.
    child_process request({"/bin/sh", "-c",
                           "head -c 67108865 /dev/zero | '" + support::zmesh_cli() +
                               "' request --broker '" + nowhere +
                               "' --service echo --timeout-ms 30000 --retries 1 -"},
                          log.string());
    auto code = request.wait_for(10000ms);
    REQUIRE(code);
    CHECK(*code == 1);
    const auto err = read_file(log);
    CAPTURE(err);
    CHECK(count_lines(err) == 1);
    CHECK(contains(err, "zmesh: request: body of 67108865 bytes"));
    CHECK(contains(err, "frame limit of 67108864 bytes"));
}

} // TEST_SUITE
