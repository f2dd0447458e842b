// SPDX-License-Identifier: MPL-2.0
// test_cli.cpp — the zmesh binary as a user drives it: help, usage errors, and a broker, workers
// and requests on loopback, each a child process that is killed if the test fails.
#include "support/process.hpp"
#include "support/support.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <csignal>
#include <fstream>

using namespace std::chrono_literals;
using support::child_process;

namespace {

using support::run_cli;

using support::count_lines;

/// A broker on an ephemeral loopback port, stopped with the fixture.
struct broker_process {
    child_process process;
    std::string endpoint;
    explicit broker_process(std::vector<std::string> extra = {})
        : process([&] {
              std::vector<std::string> a{support::zmesh_cli(), "broker", "--mdp", "tcp://127.0.0.1:*",
                                         "--log-level", "warn"};
              a.insert(a.end(), extra.begin(), extra.end());
              return a;
          }()) {
        auto line = process.read_line(5000ms);
        REQUIRE(line);
        endpoint = *line;
        REQUIRE(endpoint.rfind("tcp://127.0.0.1:", 0) == 0);
    }
};

child_process start_worker(const std::string& endpoint, const std::string& service,
                           std::vector<std::string> mode) {
    std::vector<std::string> a{support::zmesh_cli(), "worker", "--broker", endpoint, "--service",
                               service, "--log-level", "warn"};
    a.insert(a.end(), mode.begin(), mode.end());
    return child_process(a);
}

} // namespace

TEST_SUITE("cli") {

TEST_CASE("help exits 0 and lists every command") {
    auto r = run_cli({"--help"});
    CHECK(r.code == 0);
    for (const char* c : {"broker", "worker", "request", "services", "stats", "version"})
        CHECK(r.out.find(c) != std::string::npos);
    for (const char* c : {"broker", "worker", "request", "services", "stats", "version"}) {
        CAPTURE(c);
        auto sub = run_cli({c, "--help"});
        CHECK(sub.code == 0);
        CHECK(sub.out.find("usage: zmesh") != std::string::npos);
    }
}

TEST_CASE("no command, an unknown command or a bad flag is a one-line error with exit 2") {
    CHECK(run_cli({}).code == 2);
    auto unknown = run_cli({"frobnicate"});
    CHECK(unknown.code == 2);
    CHECK(count_lines(unknown.err) == 1);
    for (std::vector<std::string> bad :
         {std::vector<std::string>{"broker", "--bogus"}, {"broker", "--mdp", "tcp://127.0.0.1"},
          {"broker", "--heartbeat-ms", "0"}, {"broker", "--log-level", "loud"},
          {"worker", "--broker", "tcp://127.0.0.1:1"}, // no --service
          {"worker", "--broker", "tcp://127.0.0.1:1", "--service", "s"}, // neither --echo nor --exec
          {"worker", "--broker", "tcp://127.0.0.1:1", "--service", "s", "--echo", "--credit", "0"},
          {"worker", "--broker", "tcp://127.0.0.1:1", "--service", "s", "--echo", "--credit", "1025"},
          {"titanic", "--broker", "tcp://127.0.0.1:1", "--credit", "0"},
          {"request", "--broker", "tcp://127.0.0.1:1"},                  // no --service
          {"request", "--broker", "udp://x:1", "--service", "s"},
          {"services", "--broker", "nonsense"}}) {
        CAPTURE(bad[0] + " " + bad[1]);
        auto r = run_cli(bad);
        CHECK(r.code == 2);
        CHECK(count_lines(r.err) == 1);
        CHECK(r.err.rfind("zmesh: " + bad[0] + ": ", 0) == 0);
    }
}

TEST_CASE("version prints the zmesh and libzmq versions") {
    auto r = run_cli({"version"});
    CHECK(r.code == 0);
    CHECK(r.out.find("zmesh ") == 0);
    CHECK(r.out.find("libzmq 4.") != std::string::npos);
}

TEST_CASE("a broker, an echo worker and a request round-trip on loopback") {
    broker_process broker;
    auto worker = start_worker(broker.endpoint, "echo", {"--echo"});
    auto r = run_cli({"request", "--broker", broker.endpoint, "--service", "echo", "hello zmesh"});
    CHECK(r.code == 0);
    CHECK(r.out == "hello zmesh\n");
}

TEST_CASE("a worker with credit serves requests through the broker") {
    broker_process broker;
    auto worker = start_worker(broker.endpoint, "echo", {"--echo", "--credit", "8"});
    for (const char* body : {"one", "two", "three"}) {
        auto r = run_cli({"request", "--broker", broker.endpoint, "--service", "echo", body});
        CHECK(r.code == 0);
        CHECK(r.out == std::string(body) + "\n");
    }
    // The broker sees one worker for the service, with room for more requests (idle).
    auto s = run_cli({"services", "--broker", broker.endpoint});
    CHECK(s.code == 0);
    CHECK(s.out.find("echo") != std::string::npos);
}

TEST_CASE("the benchmarks run briefly with credit and lose nothing") {
    // A correctness check, not a timing: each bench exits 1 if a request went unanswered (mdp)
    // or an acknowledged durable request lacks its own reply (titanic).
    if (run_cli({"bench", "--help"}).code != 0) {
        MESSAGE("this build has no benchmarks (ZMESH_BUILD_BENCH=OFF)");
        return;
    }
    auto mdp = run_cli({"bench", "mdp", "--workers", "2", "--window", "32", "--credit", "8",
                        "--duration", "0.3"});
    CHECK(mdp.code == 0);
    CHECK(mdp.out.find("broker ") != std::string::npos);
    auto titanic = run_cli({"bench", "titanic", "--clients", "2", "--window", "16", "--workers",
                            "2", "--duration", "0.5"});
    CHECK(titanic.code == 0);
    CHECK(titanic.out.find("2x64") != std::string::npos); // the node's default: credit
    // With CURVE beside the plain rows (the cost of encryption in one run): everything arrives.
    auto curve = run_cli({"bench", "mdp", "--window", "16", "--credit", "4", "--dedupe", "off",
                          "--curve", "both", "--duration", "0.3"});
    CHECK(curve.code == 0);
    CHECK(curve.out.find(" off     on ") != std::string::npos); // dedupe off, curve on
    CHECK(curve.out.find(" off     off ") != std::string::npos);
    auto pubsub = run_cli({"bench", "pubsub", "--mode", "broker", "--curve", "both",
                           "--duration", "0.3"});
    CHECK(pubsub.code == 0);
    CHECK(pubsub.out.find(" on  ") != std::string::npos);
    CHECK(run_cli({"bench", "pubsub", "--mode", "raw", "--curve", "on"}).code == 2);
}

TEST_CASE("the zmesh side of scripts/bench's peer rows runs briefly, loses nothing and writes its samples") {
    // A correctness check, not a timing: mdp-peer exits 1 if a request went unanswered.
    if (run_cli({"bench", "--help"}).code != 0) {
        MESSAGE("this build has no benchmarks (ZMESH_BUILD_BENCH=OFF)");
        return;
    }
    broker_process broker;
    support::temp_dir dir;
    const std::string samples = (dir.path() / "rtt").string();
    auto peer = run_cli({"bench", "mdp-peer", "--broker", broker.endpoint, "--workers", "2",
                         "--clients", "2", "--window", "8", "--duration", "0.3", "--samples", samples});
    CHECK(peer.code == 0);
    CHECK(peer.out.find("mdp-peer   2 ") != std::string::npos); // two clients
    // --samples: one round trip a line, in microseconds, sorted (the CDF is drawn from them).
    std::ifstream in(samples);
    std::vector<double> rtt;
    for (double v = 0; in >> v;) rtt.push_back(v);
    CHECK(rtt.size() > 10);
    CHECK(std::is_sorted(rtt.begin(), rtt.end()));
    CHECK((rtt.empty() || rtt.front() > 0));
    CHECK(run_cli({"bench", "mdp-peer", "--echo", "--window", "4", "--duration", "0.3"}).code == 0);
    auto freelance = run_cli({"bench", "freelance", "--size", "1024", "--duration", "0.3"});
    CHECK(freelance.code == 0);
    CHECK(freelance.out.find("freelance  1       1024") != std::string::npos);
    // Neither or both of --broker and --echo, or a malformed endpoint: one line, status 2.
    CHECK(run_cli({"bench", "mdp-peer"}).code == 2);
    CHECK(run_cli({"bench", "mdp-peer", "--echo", "--broker", broker.endpoint}).code == 2);
    auto bad = run_cli({"bench", "mdp-peer", "--broker", "nowhere"});
    CHECK(bad.code == 2);
    CHECK(bad.err.find("nowhere") != std::string::npos);
}

TEST_CASE("an exec worker pipes the body through the command and reports its failure") {
    broker_process broker;
    auto upper = start_worker(broker.endpoint, "upper", {"--exec", "tr a-z A-Z"});
    auto failing = start_worker(broker.endpoint, "fail", {"--exec", "echo broken >&2; exit 3"});
    auto ok = run_cli({"request", "--broker", broker.endpoint, "--service", "upper", "shout"});
    CHECK(ok.code == 0);
    CHECK(ok.out == "SHOUT\n");
    auto bad = run_cli({"request", "--broker", broker.endpoint, "--service", "fail", "x"});
    CHECK(bad.code == 1);
    CHECK(bad.err.find("status 3") != std::string::npos);
    CHECK(bad.err.find("broken") != std::string::npos);
    // The failing command did not kill its worker: it answers again.
    auto again = run_cli({"request", "--broker", broker.endpoint, "--service", "fail", "y"});
    CHECK(again.code == 1);
    CHECK(again.err.find("status 3") != std::string::npos);
}

TEST_CASE("a request nobody answers fails after its retries with exit 1 and a reason") {
    broker_process broker;
    // --plain: MDP/0.1 has no deadline, so only the client's retries end the wait. (By default
    // the broker answers 504 at the deadline: cli.request.)
    auto r = run_cli({"request", "--broker", broker.endpoint, "--service", "nobody", "--timeout-ms",
                      "100", "--retries", "2", "--plain", "x"});
    CHECK(r.code == 1);
    CHECK(count_lines(r.err) == 1);
    CHECK(r.err.find("after 2 attempts") != std::string::npos);
}

TEST_CASE("services and stats show what the broker knows") {
    broker_process broker;
    auto w1 = start_worker(broker.endpoint, "alpha", {"--echo"});
    auto w2 = start_worker(broker.endpoint, "beta", {"--echo"});
    // Each worker has registered once its service answers.
    for (const char* s : {"alpha", "beta"})
        REQUIRE(run_cli({"request", "--broker", broker.endpoint, "--service", s, "ping"}).code == 0);
    auto r = run_cli({"services", "--broker", broker.endpoint});
    CHECK(r.code == 0);
    CHECK(r.out.find("SERVICE") != std::string::npos);
    CHECK(r.out.find("alpha") != std::string::npos);
    CHECK(r.out.find("beta") != std::string::npos);
    auto stats = run_cli({"stats", "--broker", broker.endpoint});
    CHECK(stats.code == 0);
    CHECK(stats.out.find("requests") != std::string::npos);
    CHECK(stats.out.find("malformed") != std::string::npos);
}

TEST_CASE("the broker exits 0 within a second of SIGTERM and a worker exits 0 on SIGINT") {
    broker_process broker;
    auto worker = start_worker(broker.endpoint, "echo", {"--echo"});
    REQUIRE(run_cli({"request", "--broker", broker.endpoint, "--service", "echo", "x"}).code == 0);
    worker.signal(SIGINT);
    auto wcode = worker.wait_for(2000ms);
    REQUIRE(wcode);
    CHECK(*wcode == 0);
    broker.process.signal(SIGTERM);
    auto code = broker.process.wait_for(1000ms);
    REQUIRE(code);
    CHECK(*code == 0);
}

}
