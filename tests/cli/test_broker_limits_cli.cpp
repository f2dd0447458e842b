// SPDX-License-Identifier: MPL-2.0
// test_broker_limits_cli.cpp — `zmesh broker`'s memory and client limits on the command line:
// byte sizes with suffixes, one-line errors for bad ones, and the bound printed at startup.
#include "support/process.hpp"
#include "support/support.hpp"

#include <doctest/doctest.h>

#include <csignal>
#include <fstream>
#include <sstream>
#include <thread>

using namespace std::chrono_literals;

TEST_SUITE("cli.broker_limits") {

TEST_CASE("bad memory and client limits are one-line errors with exit 2") {
    for (std::vector<std::string> bad :
         {std::vector<std::string>{"--max-memory", "abc"}, {"--max-memory", "0"},
          {"--max-memory", "10X"}, {"--max-memory", "99999999999999999999G"},
          {"--max-memory", "1M", "--max-client-memory", "2M"},
          {"--max-client-memory", "0"}, {"--max-clients", "0"}, {"--max-client-requests", "0"},
          {"--max-directory-entries", "0"}, {"--max-subscriptions", "5"} /* needs the forwarder */}) {
        std::vector<std::string> args{"broker", "--mdp", "tcp://127.0.0.1:*"};
        args.insert(args.end(), bad.begin(), bad.end());
        CAPTURE(bad[0] + " " + bad[1]);
        auto r = support::run_cli(args);
        CHECK(r.code == 2);
        CHECK(support::count_lines(r.err) == 1);
        CHECK(r.err.rfind("zmesh: broker: ", 0) == 0);
    }
}

TEST_CASE("the broker prints its memory bound at startup, suffixes read as powers of 1024") {
    support::temp_dir dir;
    const auto err = dir.path() / "broker.err";
    support::child_process broker({support::zmesh_cli(), "broker", "--mdp", "tcp://127.0.0.1:*",
                                   "--max-memory", "3G", "--max-client-memory", "64k"},
                                  err.string());
    REQUIRE(broker.read_line(10s));
    std::string log;
    for (int i = 0; i < 200 && log.find("memory bound") == std::string::npos; ++i) {
        std::ifstream in(err);
        std::stringstream ss;
        ss << in.rdbuf();
        log = ss.str();
        std::this_thread::sleep_for(10ms);
    }
    CHECK(log.find("memory bound 3221225472 bytes, 65536 per client") != std::string::npos);
    broker.signal(SIGTERM);
    CHECK(broker.wait_for(5s) == 0);
}

} // TEST_SUITE
