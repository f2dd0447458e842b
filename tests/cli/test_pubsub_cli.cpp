// SPDX-License-Identifier: MPL-2.0
// test_pubsub_cli.cpp — `zmesh pub` and `zmesh sub` as a user drives them: through the broker's
// forwarder, late joiners served from the last-value cache, and peers found by name through the
// broker's directory. Every process is killed if the test fails.
#include "support/process.hpp"
#include "support/support.hpp"

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

using namespace std::chrono_literals;
using support::child_process;

namespace {

std::vector<std::string> cli(std::vector<std::string> args) {
    args.insert(args.begin(), support::zmesh_cli());
    return args;
}

/// Every stdout line until the process closes it (bounded), then its exit code.
std::pair<std::vector<std::string>, int> finish(child_process& p,
                                                std::chrono::milliseconds timeout = 10000ms) {
    std::vector<std::string> lines;
    while (auto line = p.read_line(timeout)) lines.push_back(*line);
    auto code = p.wait_for(timeout);
    REQUIRE(code);
    return {lines, *code};
}

/// A broker with the forwarder on ephemeral loopback ports: MDP, XSUB, XPUB.
struct pubsub_broker {
    child_process process;
    std::string mdp, xsub, xpub;
    explicit pubsub_broker(std::vector<std::string> extra = {})
        : process([&] {
              auto a = cli({"broker", "--mdp", "tcp://127.0.0.1:*", "--xsub", "tcp://127.0.0.1:*",
                            "--xpub", "tcp://127.0.0.1:*", "--log-level", "warn"});
              a.insert(a.end(), extra.begin(), extra.end());
              return a;
          }()) {
        for (auto* ep : {&mdp, &xsub, &xpub}) {
            auto line = process.read_line(5000ms);
            REQUIRE(line);
            *ep = *line;
        }
    }
};

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

} // namespace

TEST_SUITE("cli.pubsub") {

TEST_CASE("messages published into the forwarder reach a subscriber in order") {
    pubsub_broker broker;
    child_process sub(cli({"sub", "--connect", broker.xpub, "--topic", "prices.", "--count", "3",
                           "--format", "json"}));
    // The subscription travels through the forwarder to the publisher before it publishes.
    child_process pub(cli({"pub", "--connect", broker.xsub, "--topic", "prices.eur", "--count", "3",
                           "--wait-subscribers", "1", "hello"}));
    auto [lines, code] = finish(sub);
    CHECK(code == 0);
    REQUIRE(lines.size() == 3);
    for (int i = 0; i < 3; ++i) {
        CAPTURE(lines[static_cast<std::size_t>(i)]);
        CHECK(contains(lines[static_cast<std::size_t>(i)], "\"topic\":\"prices.eur\""));
        CHECK(contains(lines[static_cast<std::size_t>(i)], "\"seq\":" + std::to_string(i + 1)));
        CHECK(contains(lines[static_cast<std::size_t>(i)], "\"payload\":\"hello\""));
    }
    CHECK(finish(pub).second == 0);
}

TEST_CASE("pub and sub end with one summary line: count, time, rate, and the subscriber's gaps") {
    pubsub_broker broker;
    support::temp_dir dir;
    const auto sub_err = dir.path() / "sub.err", pub_err = dir.path() / "pub.err";
    child_process sub(cli({"sub", "--connect", broker.xpub, "--topic", "t.", "--count", "40"}),
                      sub_err.string());
    child_process pub(cli({"pub", "--connect", broker.xsub, "--topic", "t.x", "--count", "40",
                           "--wait-subscribers", "1", "m"}),
                      pub_err.string());
    auto [lines, code] = finish(sub);
    CHECK(code == 0);
    CHECK(lines.size() == 40);
    CHECK(finish(pub).second == 0);
    const auto read = [](const std::filesystem::path& p) {
        std::ifstream in(p);
        std::ostringstream s;
        s << in.rdbuf();
        return s.str();
    };
    const auto sub_text = read(sub_err), pub_text = read(pub_err);
    CAPTURE(sub_text);
    CAPTURE(pub_text);
    CHECK(support::count_lines(sub_text) == 1);
    CHECK(contains(sub_text, "zmesh: sub: received 40 messages in "));
    CHECK(contains(sub_text, "msg/s); 0 gaps (0 missed), 0 duplicates, 0 malformed\n"));
    CHECK(support::count_lines(pub_text) == 1);
    CHECK(contains(pub_text, "zmesh: pub: published 40 messages in "));
}

TEST_CASE("with --lvc, pub --wait-subscribers still waits for a real subscriber") {
    pubsub_broker broker({"--lvc"});
    // The cache's own subscription to everything reaches the publisher at once: not a subscriber.
    auto alone = support::run_cli({"pub", "--connect", broker.xsub, "--topic", "q.x",
                                   "--wait-subscribers", "1", "--wait-ms", "500", "m"},
                                  10000ms);
    CHECK(alone.code == 1);
    CHECK(contains(alone.err, "fewer than 1 subscriptions within 500 ms"));
    child_process sub(cli({"sub", "--connect", broker.xpub, "--topic", "q.", "--count", "1"}));
    child_process pub(cli({"pub", "--connect", broker.xsub, "--topic", "q.x", "--count", "1",
                           "--wait-subscribers", "1", "--wait-ms", "5000", "m"}));
    auto [lines, code] = finish(sub);
    CHECK(code == 0);
    REQUIRE(lines.size() == 1);
    CHECK(contains(lines[0], "q.x 1 "));
    CHECK(finish(pub).second == 0);
}

TEST_CASE("a late subscriber gets the last value of its topics from the cache") {
    pubsub_broker broker({"--lvc"});
    // With --lvc the forwarder subscribes to everything as a publisher connects, so the
    // publisher need not wait for a subscriber: only for its connection, which --settle-ms gives.
    // (--wait-subscribers would wait for a real subscriber: see the case before.)
    child_process pub(cli({"pub", "--connect", broker.xsub, "--topic", "fx.usd", "--count", "3",
                           "--settle-ms", "1000", "tick"}));
    CHECK(finish(pub).second == 0);
    // Wait until the forwarder has really passed all three (they are cached as they pass).
    bool forwarded = false;
    for (int i = 0; i < 100 && !forwarded; ++i) {
        child_process stats(cli({"stats", "--broker", broker.mdp}));
        for (const auto& line : finish(stats).first)
            if (line.rfind("forwarded ", 0) == 0 && line.back() == '3') forwarded = true;
        if (!forwarded) std::this_thread::sleep_for(20ms);
    }
    REQUIRE(forwarded);
    child_process late(cli({"sub", "--connect", broker.xpub, "--topic", "fx.", "--snapshot-from",
                            broker.mdp, "--count", "1", "--format", "json"}));
    auto [lines, code] = finish(late);
    CHECK(code == 0);
    REQUIRE(lines.size() == 1);
    CHECK(contains(lines[0], "\"topic\":\"fx.usd\""));
    CHECK(contains(lines[0], "\"seq\":3"));
}

TEST_CASE("a subscriber finds a publisher by name in the directory and connects to it directly") {
    pubsub_broker broker;
    child_process pub(cli({"pub", "--bind", "tcp://127.0.0.1:*", "--register", "quotes", "--broker",
                           broker.mdp, "--topic", "q", "--count", "20", "--rate", "20",
                           "--wait-subscribers", "1", "--wait-ms", "15000", "direct"}));
    auto bound = pub.read_line(5000ms);
    REQUIRE(bound);
    // The registration follows the bind; a subscriber that asks too early is told so (exit 1).
    int code = -1;
    std::vector<std::string> lines;
    for (int attempt = 0; attempt < 50 && code != 0; ++attempt) {
        child_process sub(cli({"sub", "--resolve", "quotes", "--broker", broker.mdp, "--topic", "q",
                               "--count", "1"}));
        std::tie(lines, code) = finish(sub);
        if (code != 0) std::this_thread::sleep_for(50ms);
    }
    CHECK(code == 0);
    REQUIRE(lines.size() == 1);
    CHECK(lines[0].rfind("q ", 0) == 0);
    CHECK(contains(lines[0], "direct"));
}

TEST_CASE("pub and sub refuse bad flags with exit 2") {
    for (std::vector<std::string> bad :
         {std::vector<std::string>{"pub", "--topic", "t"},                   // nowhere to publish
          {"pub", "--connect", "tcp://127.0.0.1:*", "--topic", "t"},         // wildcard connect
          {"pub", "--connect", "tcp://127.0.0.1:1", "--topic", "t", "--register", "x"},
          {"sub", "--topic", "t"},
          {"sub", "--connect", "tcp://127.0.0.1:1", "--topic", "t", "--format", "xml"}}) {
        CAPTURE(bad[0] + " " + bad[1]);
        child_process p(cli(bad));
        CHECK(finish(p).second == 2);
    }
}

}
