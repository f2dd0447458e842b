// SPDX-License-Identifier: MPL-2.0
// test_pubsub_limits_cli.cpp — `zmesh broker --max-subscriptions` and `--max-directory-entries`
// as a user drives them: bad values are one-line usage errors, and each limit really binds the
// broker it starts (a subscriber with one topic too many, a publisher registering one name too
// many).
#include "support/process.hpp"
#include "support/support.hpp"

#include <doctest/doctest.h>

#include <fstream>
#include <map>
#include <sstream>
#include <thread>

using namespace std::chrono_literals;
using support::child_process;

namespace {

std::vector<std::string> cli(std::vector<std::string> args) {
    args.insert(args.begin(), support::zmesh_cli());
    return args;
}

/// A broker with the forwarder on ephemeral loopback ports, its stderr in a file.
struct pubsub_broker {
    support::temp_dir dir;
    std::string err_path = (dir.path() / "broker.err").string();
    child_process process;
    std::string mdp, xsub, xpub;
    explicit pubsub_broker(std::vector<std::string> extra)
        : process(
              [&] {
                  auto a = cli({"broker", "--mdp", "tcp://127.0.0.1:*", "--xsub",
                                "tcp://127.0.0.1:*", "--xpub", "tcp://127.0.0.1:*", "--log-level",
                                "warn"});
                  a.insert(a.end(), extra.begin(), extra.end());
                  return a;
              }(),
              err_path) {
        for (auto* ep : {&mdp, &xsub, &xpub}) {
            auto line = process.read_line(5000ms);
            REQUIRE(line);
            *ep = *line;
        }
    }

    /// `zmesh stats` as a map, or empty if the broker did not answer.
    std::map<std::string, std::uint64_t> stats() const {
        auto r = support::run_cli({"stats", "--broker", mdp});
        std::map<std::string, std::uint64_t> out;
        if (r.code != 0) return out;
        std::istringstream in(r.out);
        std::string name;
        std::uint64_t value = 0;
        while (in >> name >> value) out[name] = value;
        return out;
    }

    std::string log() const {
        std::ifstream in(err_path);
        std::stringstream ss;
        ss << in.rdbuf();
        return ss.str();
    }
};

} // namespace

TEST_SUITE("cli.pubsub_limits") {

TEST_CASE("a zero --max-subscriptions or --max-directory-entries is a one-line error with exit 2") {
    for (std::vector<std::string> bad :
         {std::vector<std::string>{"--pubsub", "--max-subscriptions", "0"},
          {"--xsub", "tcp://127.0.0.1:*", "--xpub", "tcp://127.0.0.1:*", "--max-subscriptions",
           "0"},
          {"--pubsub", "--max-directory-entries", "0"}}) {
        std::vector<std::string> args{"broker", "--mdp", "tcp://127.0.0.1:*"};
        args.insert(args.end(), bad.begin(), bad.end());
        CAPTURE(bad[bad.size() - 2] + " " + bad.back());
        auto r = support::run_cli(args);
        CHECK(r.code == 2);
        CHECK(support::count_lines(r.err) == 1);
        CHECK(r.err.rfind("zmesh: broker: ", 0) == 0);
    }
}

TEST_CASE("--max-subscriptions caps the prefixes the forwarder takes, and logs what it refuses") {
    pubsub_broker broker({"--max-subscriptions", "2"});
    child_process sub(cli({"sub", "--connect", broker.xpub, "--topic", "a.", "--topic", "b.",
                           "--topic", "c.", "--count", "1"}));
    std::map<std::string, std::uint64_t> s;
    for (int i = 0; i < 200 && s["subscriptions_refused"] == 0; ++i) {
        s = broker.stats();
        if (s["subscriptions_refused"] == 0) std::this_thread::sleep_for(20ms);
    }
    CHECK(s["subscriptions"] == 2);
    CHECK(s["subscriptions_refused"] == 1);
    bool logged = false;
    for (int i = 0; i < 200 && !logged; ++i) {
        logged = broker.log().find("refused") != std::string::npos;
        if (!logged) std::this_thread::sleep_for(10ms);
    }
    CHECK(logged);
}

TEST_CASE("--max-directory-entries caps the directory: one registration too many fails") {
    pubsub_broker broker({"--max-directory-entries", "1"});
    child_process first(cli({"pub", "--bind", "tcp://127.0.0.1:*", "--register", "first",
                             "--broker", broker.mdp, "--topic", "t", "--count", "1000", "--rate",
                             "10", "x"}));
    REQUIRE(first.read_line(5000ms)); // bound; registered next
    std::map<std::string, std::uint64_t> s;
    for (int i = 0; i < 200 && s["directory_entries"] == 0; ++i) {
        s = broker.stats();
        if (s["directory_entries"] == 0) std::this_thread::sleep_for(20ms);
    }
    REQUIRE(s["directory_entries"] == 1);
    auto second = support::run_cli({"pub", "--bind", "tcp://127.0.0.1:*", "--register", "second",
                                    "--broker", broker.mdp, "--topic", "t", "x"});
    CHECK(second.code == 1);
    CAPTURE(second.err);
    CHECK(second.err.find("503") != std::string::npos);
    CHECK(broker.stats()["directory_entries"] == 1);
}

}
