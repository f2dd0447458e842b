// SPDX-License-Identifier: MPL-2.0
// test_errors_cli.cpp — errors that name what failed (issue 14), each through the CLI with a time
// bound and an assertion on the message: a non-200 answer of a broker service exits 1 naming the
// service and the status; a worker with nobody at its endpoint says which endpoint it waits for
// and warns every --connect-timeout-ms; a subscriber whose --ready-ms passes unconfirmed exits 1
// naming its endpoint, and so does a publisher whose --wait-subscribers passes; a body over the
// broker's frame limit is refused before it is sent; and an --exec command that ignores SIGTERM
// is killed on Ctrl-C and at its deadline.
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

std::size_t occurrences(const std::string& s, const std::string& part) {
    std::size_t n = 0;
    for (auto at = s.find(part); at != std::string::npos; at = s.find(part, at + 1)) ++n;
    return n;
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

/// Whether process @p pid is gone (or a zombie: it runs no more either way).
bool gone(pid_t pid) {
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    if (!stat) return true;
    std::string line;
    std::getline(stat, line);
    const auto close = line.rfind(')');
    return close != std::string::npos && close + 2 < line.size() && line[close + 2] == 'Z';
}

/// The pid a command wrote to @p file, once it has (0 if it did not within the time).
pid_t pid_written(const std::filesystem::path& file) {
    pid_t pid = 0;
    support::eventually(
        [&] {
            std::ifstream in(file);
            return static_cast<bool>(in >> pid) && pid > 0;
        },
        5000ms);
    return pid;
}

/// A command that ignores SIGTERM (so only SIGKILL ends it) and writes its long-running
/// child's pid to @p pid_file.
std::string stubborn_command(const std::filesystem::path& pid_file) {
    return "trap '' TERM; sleep 30 & echo $! > '" + pid_file.string() + "'; wait";
}

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

TEST_CASE("a worker with no broker at its endpoint names it and warns every "
          "--connect-timeout-ms") {
    const auto nowhere = support::ipc_endpoint("no-broker");
    support::temp_dir dir;
    const auto log = dir.path() / "worker.err";
    child_process worker({support::zmesh_cli(), "worker", "--broker", nowhere, "--service",
                          "echo", "--echo", "--connect-timeout-ms", "300"},
                         log.string());
    CHECK(support::eventually(
        [&] { return occurrences(read_file(log), "no answer from the broker at " + nowhere) >= 2; },
        5000ms));
    const auto err = read_file(log);
    CAPTURE(err);
    CHECK(contains(err, "waiting for the broker at " + nowhere));
    CHECK_FALSE(contains(err, "serving"));
    // Waiting is a worker's job: a stop signal ends it normally.
    worker.signal(SIGINT);
    auto code = worker.wait_for(5000ms);
    REQUIRE(code);
    CHECK(*code == 0);

    auto bad = run_cli({"worker", "--broker", nowhere, "--service", "echo", "--echo",
                        "--connect-timeout-ms", "0"});
    CHECK(bad.code == 2);
    CHECK(count_lines(bad.err) == 1);
    CHECK(contains(bad.err, "--connect-timeout-ms"));
}

TEST_CASE("ZMESH_CONNECT_TIMEOUT_MS sets the worker's interval, and zmesh config shows it") {
    const auto nowhere = support::ipc_endpoint("no-broker");
    support::temp_dir dir;
    const auto log = dir.path() / "worker.err";
    // exec: the signal below reaches the worker itself, not a shell.
    child_process worker({"/bin/sh", "-c",
                          "ZMESH_CONNECT_TIMEOUT_MS=300 exec '" + support::zmesh_cli() +
                              "' worker --broker '" + nowhere + "' --service echo --echo"},
                         log.string());
    // Well before the default 5000 ms.
    CHECK(support::eventually(
        [&] { return contains(read_file(log), "no answer from the broker at " + nowhere); },
        3000ms));
    worker.signal(SIGINT);
    auto code = worker.wait_for(5000ms);
    REQUIRE(code);
    CHECK(*code == 0);

    child_process config({"/bin/sh", "-c",
                          "ZMESH_CONNECT_TIMEOUT_MS=300 exec '" + support::zmesh_cli() +
                              "' config"});
    std::string shown;
    while (auto line = config.read_line(5000ms))
        if (line->rfind("connect-timeout-ms ", 0) == 0) shown = *line;
    CHECK(contains(shown, "300"));
    CHECK(contains(shown, "env ZMESH_CONNECT_TIMEOUT_MS"));
    CHECK(config.wait_for(5000ms) == 0);
}

TEST_CASE("a worker says it is serving only once the broker answered") {
    broker_process broker;
    support::temp_dir dir;
    const auto log = dir.path() / "worker.err";
    child_process worker({support::zmesh_cli(), "worker", "--broker", broker.endpoint,
                          "--service", "echo", "--echo", "--connect-timeout-ms", "300"},
                         log.string());
    CHECK(support::eventually(
        [&] { return contains(read_file(log), "serving 'echo' via " + broker.endpoint); },
        5000ms));
    CHECK_FALSE(contains(read_file(log), "no answer"));
    worker.signal(SIGINT);
    auto code = worker.wait_for(5000ms);
    REQUIRE(code);
    CHECK(*code == 0);
}

TEST_CASE("a subscriber whose --ready-ms passes unconfirmed exits 1 naming the endpoint") {
    const auto nowhere = support::ipc_endpoint("no-publisher");
    const auto start = std::chrono::steady_clock::now();
    auto r = run_cli({"sub", "--connect", nowhere, "--topic", "t", "--ready-ms", "300"}, 10000ms);
    CHECK(std::chrono::steady_clock::now() - start < 5s);
    CHECK(r.code == 1);
    CHECK(count_lines(r.err) == 1);
    CHECK(contains(r.err, "zmesh: sub: "));
    CHECK(contains(r.err, nowhere));
    CHECK(contains(r.err, "300 ms"));
}

TEST_CASE("a subscriber without --ready-ms says once which endpoint it waits for, and waits") {
    const auto nowhere = support::ipc_endpoint("no-publisher");
    support::temp_dir dir;
    const auto log = dir.path() / "sub.err";
    child_process sub({support::zmesh_cli(), "sub", "--connect", nowhere, "--topic", "t"},
                      log.string());
    CHECK(support::eventually([&] { return contains(read_file(log), "waiting for " + nowhere); },
                              8000ms));
    CHECK(count_lines(read_file(log)) == 1);
    sub.signal(SIGINT);
    auto code = sub.wait_for(5000ms);
    REQUIRE(code);
    CHECK(*code == 0);
}

TEST_CASE("a publisher whose --wait-subscribers passes exits 1 naming the endpoint") {
    const auto nowhere = support::ipc_endpoint("no-forwarder");
    auto r = run_cli({"pub", "--connect", nowhere, "--topic", "t", "--wait-subscribers", "1",
                      "--wait-ms", "300", "hello"},
                     10000ms);
    CHECK(r.code == 1);
    CHECK(count_lines(r.err) == 1);
    CHECK(contains(r.err, "zmesh: pub: fewer than 1 subscriptions within 300 ms"));
    CHECK(contains(r.err, nowhere));
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
    auto code = request.wait_for(20000ms);
    REQUIRE(code);
    CHECK(*code == 1);
    const auto err = read_file(log);
    CAPTURE(err);
    CHECK(count_lines(err) == 1);
    CHECK(contains(err, "zmesh: request: body of more than 67108864 bytes"));
    CHECK(contains(err, "frame limit of 67108864 bytes"));
}

TEST_CASE("an endless body on stdin is refused once it passes the frame limit") {
    const auto nowhere = support::ipc_endpoint("no-broker");
    support::temp_dir dir;
    const auto log = dir.path() / "request.err";
    // cat never ends by itself: the request must stop reading one byte past the limit.
    child_process request({"/bin/sh", "-c",
                           "cat /dev/zero | '" + support::zmesh_cli() + "' request --broker '" +
                               nowhere + "' --service echo --timeout-ms 30000 --retries 1 -"},
                          log.string());
    auto code = request.wait_for(20000ms);
    REQUIRE(code);
    CHECK(*code == 1);
    const auto err = read_file(log);
    CAPTURE(err);
    CHECK(contains(err, "body of more than 67108864 bytes"));
}

TEST_CASE("an --exec command that ignores SIGTERM is killed on Ctrl-C and at its deadline") {
    broker_process broker;
    support::temp_dir dir;
    const auto pid_file = dir.path() / "pid";
    const auto log = dir.path() / "worker.err";
    child_process worker({support::zmesh_cli(), "worker", "--broker", broker.endpoint,
                          "--service", "stubborn", "--exec", stubborn_command(pid_file)},
                         log.string());
    REQUIRE(support::eventually(
        [&] { return contains(read_file(log), "serving 'stubborn'"); }, 5000ms));

    SUBCASE("at the request's deadline: SIGTERM, then SIGKILL, and a 504") {
        const auto start = std::chrono::steady_clock::now();
        auto r = run_cli({"request", "--broker", broker.endpoint, "--service", "stubborn",
                          "--ttl-ms", "500", "--timeout-ms", "3000", "--retries", "1", "x"},
                         10000ms);
        CHECK(r.code == 1);
        CHECK(contains(r.err, "service 'stubborn' failed: 504"));
        const pid_t pid = pid_written(pid_file);
        REQUIRE(pid > 0);
        CHECK(support::eventually([&] { return gone(pid); }, 2000ms));
        CHECK(std::chrono::steady_clock::now() - start < 4s);
        const std::string killed = "killed the command at the request's deadline";
        CHECK(support::eventually([&] { return contains(read_file(log), killed); }, 2000ms));
    }
    SUBCASE("on Ctrl-C: the worker exits 0 at once and the command is gone") {
        child_process request({support::zmesh_cli(), "request", "--broker", broker.endpoint,
                               "--service", "stubborn", "--timeout-ms", "20000", "--retries",
                               "1", "x"},
                              (dir.path() / "request.err").string());
        const pid_t pid = pid_written(pid_file);
        REQUIRE(pid > 0);
        const auto start = std::chrono::steady_clock::now();
        worker.signal(SIGINT);
        auto code = worker.wait_for(3000ms);
        REQUIRE(code);
        CHECK(*code == 0);
        CHECK(std::chrono::steady_clock::now() - start < 2s);
        CHECK(support::eventually([&] { return gone(pid); }, 2000ms));
        CHECK(contains(read_file(log), "killed the command"));
    }
}

} // TEST_SUITE
