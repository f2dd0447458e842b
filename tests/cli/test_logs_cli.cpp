// SPDX-License-Identifier: MPL-2.0
// test_logs_cli.cpp — what the nodes log, through the CLI: --log-format json (one JSON object a
// line, each with a time and a level), the same from ZMESH_LOG_FORMAT, a bad format refused, and
// the broker's info lines for a registration and a rejection, with the service and the reason.
#include "support/process.hpp"
#include "support/support.hpp"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using support::child_process;
using support::run_cli;

namespace {

std::string read_file(const std::filesystem::path& p) {
    std::ifstream in(p);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);)
        if (!line.empty()) out.push_back(line);
    return out;
}

/// Runs a broker (with @p extra flags) and a worker of 'echo', sends one request to a service
/// nobody serves with a deadline of 200 ms, stops the broker, and returns what it logged.
std::string broker_log(const std::vector<std::string>& extra) {
    support::temp_dir dir;
    const auto log = dir.path() / "broker.err";
    std::vector<std::string> argv{support::zmesh_cli(), "broker", "--mdp", "tcp://127.0.0.1:*",
                                  "--heartbeat-ms", "200"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    child_process broker(argv, log.string());
    const auto endpoint = broker.read_line(10000ms);
    REQUIRE(endpoint);
    child_process worker({support::zmesh_cli(), "worker", "--broker", *endpoint, "--service",
                          "echo", "--echo", "--heartbeat-ms", "200"},
                         (dir.path() / "worker.err").string());
    REQUIRE(support::eventually([&] { return read_file(log).find("echo") != std::string::npos; },
                                10000ms));
    auto r = run_cli({"request", "--broker", *endpoint, "--service", "nobody", "--ttl-ms", "200",
                      "--timeout-ms", "3000", "--retries", "1", "x"},
                     15000ms);
    CHECK(r.code == 1);
    worker.signal(SIGTERM);
    CHECK(worker.wait_for(5000ms));
    broker.signal(SIGTERM);
    CHECK(broker.wait_for(5000ms) == 0);
    return read_file(log);
}

} // namespace

TEST_SUITE("cli.logs") {

TEST_CASE("--log-format json writes one JSON object a line, with time, level and message") {
    const auto text = broker_log({"--log-format", "json"});
    CAPTURE(text);
    const auto lines = lines_of(text);
    REQUIRE(lines.size() >= 3);
    bool registered = false, rejected = false;
    for (const auto& line : lines) {
        CAPTURE(line);
        const auto j = nlohmann::json::parse(line); // throws, and fails the case, if not JSON
        REQUIRE(j.is_object());
        CHECK(j.size() == 3);
        const auto time = j.at("time").get<std::string>();
        // 2026-12-05T00:12:51.029Z
        CHECK(time.size() == 24);
        CHECK(time[10] == 'T');
        CHECK(time.back() == 'Z');
        const auto level = j.at("level").get<std::string>();
        CHECK((level == "error" || level == "warn" || level == "info" || level == "debug"));
        const auto msg = j.at("msg").get<std::string>();
        if (msg.find("worker registered for service 'echo'") != std::string::npos) registered = true;
        if (msg.find("rejected a request for service 'nobody'") != std::string::npos &&
            msg.find("504") != std::string::npos && msg.find("deadline") != std::string::npos)
            rejected = true;
    }
    CHECK(registered);
    CHECK(rejected);
}

TEST_CASE("ZMESH_LOG_FORMAT=json does the same, and text stays the default") {
    ::setenv("ZMESH_LOG_FORMAT", "json", 1);
    const auto json_text = broker_log({});
    ::unsetenv("ZMESH_LOG_FORMAT");
    for (const auto& line : lines_of(json_text)) {
        CAPTURE(line);
        CHECK(nlohmann::json::parse(line).contains("level"));
    }
    const auto plain = broker_log({});
    const auto lines = lines_of(plain);
    REQUIRE(!lines.empty());
    // HH:MM:SS.mmm zmesh LEVEL: message
    for (const auto& line : lines) {
        CAPTURE(line);
        CHECK(line.size() > 20);
        CHECK(line[2] == ':');
        CHECK(line.substr(12, 7) == " zmesh ");
    }
    CHECK(plain.find("info: worker registered for service 'echo'") != std::string::npos);
}

TEST_CASE("a log format other than text or json is refused with one line") {
    auto r = run_cli({"broker", "--mdp", "tcp://127.0.0.1:*", "--log-format", "yaml"});
    CHECK(r.code == 2);
    CHECK(support::count_lines(r.err) == 1);
    CHECK(r.err.find("invalid --log-format 'yaml'") != std::string::npos);
}

} // TEST_SUITE
