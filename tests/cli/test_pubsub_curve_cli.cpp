// SPDX-License-Identifier: MPL-2.0
// test_pubsub_curve_cli.cpp — `zmesh pub` and `zmesh sub` between brokerless peers over CURVE
// (docs/security.md, "Brokerless peers"): the peer that binds takes --curve-secret and --allow,
// the one that connects --curve-server-key and --curve-key; keys come from `zmesh keygen`.
// Every process is killed if the test fails.
#include "support/process.hpp"
#include "support/support.hpp"

#include <doctest/doctest.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using support::child_process;
using support::run_cli;
namespace fs = std::filesystem;

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

bool contains(const std::string& s, const std::string& part) {
    return s.find(part) != std::string::npos;
}

std::string read_file(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

/// Key pairs made with `zmesh keygen` in a scratch directory, and an --allow directory that
/// holds the public files of the admitted ones.
struct keys {
    support::temp_dir dir;
    fs::path allowed = dir.path() / "allowed";

    keys() { fs::create_directory(allowed); }
    void make(const std::string& name) {
        const auto r = run_cli({"keygen", name, "--dir", dir.path().string()});
        REQUIRE(r.code == 0);
    }
    void admit(const std::string& name) {
        fs::copy_file(dir.path() / (name + ".key"), allowed / (name + ".key"));
    }
    std::string secret(const std::string& name) const {
        return (dir.path() / (name + ".key_secret")).string();
    }
    std::string pub(const std::string& name) const {
        return (dir.path() / (name + ".key")).string();
    }
    /// The flags of a peer that connects to the binding peer @p server as @p client.
    std::vector<std::string> client_flags(const std::string& server,
                                          const std::string& client) const {
        return {"--curve-server-key", pub(server), "--curve-key", secret(client)};
    }
};

/// `zmesh sub --connect EP --topic q --count 1` with @p extra flags.
child_process subscriber(const std::string& endpoint, std::vector<std::string> extra) {
    // An explicit --ready-ms is a requirement (exit 1 unconfirmed): room for a loaded machine.
    auto a = cli({"sub", "--connect", endpoint, "--topic", "q", "--count", "1", "--ready-ms",
                  "3000", "--timeout-ms", "4000"});
    a.insert(a.end(), extra.begin(), extra.end());
    return child_process(a);
}

} // namespace

TEST_SUITE("cli.pubsub.curve") {

TEST_CASE("a publisher that binds with --curve-secret reaches admitted keys only") {
    keys k;
    for (const char* name : {"feed", "alice", "mallory"}) k.make(name);
    k.admit("alice");
    const fs::path pub_log = k.dir.path() / "pub.err";
    child_process pub(cli({"pub", "--bind", "tcp://127.0.0.1:*", "--topic", "q", "--curve-secret",
                           k.secret("feed"), "--allow", k.allowed.string(), "--count", "40",
                           "--rate", "20", "--wait-subscribers", "1", "--wait-ms", "15000",
                           "sealed"}),
                      pub_log.string());
    const auto bound = pub.read_line(5000ms);
    REQUIRE(bound);

    // The refused ones first, so they are trying while the publisher publishes.
    child_process mallory = subscriber(*bound, k.client_flags("feed", "mallory"));
    child_process plain = subscriber(*bound, {});
    child_process alice = subscriber(*bound, k.client_flags("feed", "alice"));

    const auto [alice_lines, alice_code] = finish(alice);
    CHECK(alice_code == 0);
    REQUIRE(alice_lines.size() == 1);
    CHECK(alice_lines[0].rfind("q ", 0) == 0);
    CHECK(contains(alice_lines[0], "sealed"));

    const auto [mallory_lines, mallory_code] = finish(mallory);
    // Unconfirmed within --ready-ms: CURVE gives a refused client no error, only silence.
    CHECK(mallory_code == 1);
    CHECK(mallory_lines.empty());
    const auto [plain_lines, plain_code] = finish(plain);
    CHECK(plain_code == 1);
    CHECK(plain_lines.empty());

    CHECK(pub.wait_for(10000ms) == 0);
    // The publisher says whom it refused, by key.
    CHECK(contains(read_file(pub_log), "refused a CURVE connection"));
}

TEST_CASE("a subscriber that binds with --curve-secret hears an admitted publisher") {
    keys k;
    for (const char* name : {"sink", "alice"}) k.make(name);
    k.admit("alice");
    // zmesh sub does not print what it binds (its stdout is the messages): a scratch ipc path.
    const std::string ep = support::ipc_endpoint("pubsub-curve");
    child_process sub(cli({"sub", "--bind", ep, "--topic", "q", "--count", "1", "--timeout-ms",
                           "8000", "--curve-secret", k.secret("sink"), "--allow",
                           k.allowed.string()}));
    // The publisher keeps publishing for a while: a subscriber binds at its own pace.
    child_process pub(cli({"pub", "--connect", ep, "--topic", "q", "--count", "60", "--rate", "20",
                           "--curve-server-key", k.pub("sink"), "--curve-key", k.secret("alice"),
                           "from-alice"}));
    const auto [lines, code] = finish(sub);
    CHECK(code == 0);
    REQUIRE(lines.size() == 1);
    CHECK(contains(lines[0], "from-alice"));
    pub.kill();
}

TEST_CASE("SIGHUP makes a binding publisher re-read --allow") {
    keys k;
    for (const char* name : {"feed", "alice"}) k.make(name);
    const fs::path pub_log = k.dir.path() / "pub.err";
    child_process pub(cli({"pub", "--bind", "tcp://127.0.0.1:*", "--topic", "q", "--curve-secret",
                           k.secret("feed"), "--allow", k.allowed.string(), "--count", "40",
                           "--rate", "20", "--wait-subscribers", "1", "--wait-ms", "20000",
                           "welcome"}),
                      pub_log.string());
    const auto bound = pub.read_line(5000ms);
    REQUIRE(bound);
    {
        child_process early = subscriber(*bound, k.client_flags("feed", "alice"));
        CHECK(finish(early).second == 1); // not admitted yet
    }
    k.admit("alice");
    pub.signal(SIGHUP);
    REQUIRE(support::eventually([&] { return contains(read_file(pub_log), "SIGHUP: reloaded 1"); },
                                5000ms));
    child_process later = subscriber(*bound, k.client_flags("feed", "alice"));
    const auto [lines, code] = finish(later);
    CHECK(code == 0);
    REQUIRE(lines.size() == 1);
    CHECK(contains(lines[0], "welcome"));
    CHECK(pub.wait_for(10000ms) == 0);
}

TEST_CASE("pub and sub refuse CURVE flags that do not fit their endpoints with one line") {
    keys k;
    for (const char* name : {"peer", "alice"}) k.make(name);
    const std::string allowed = k.allowed.string();
    const std::vector<std::string> server{"--curve-secret", k.secret("peer"), "--allow", allowed};
    const auto client = k.client_flags("peer", "alice");
    auto with = [](std::vector<std::string> a, const std::vector<std::string>& more) {
        a.insert(a.end(), more.begin(), more.end());
        return a;
    };
    struct bad_case {
        std::vector<std::string> args;
        const char* says;
    };
    const std::vector<bad_case> cases{
        {with({"pub", "--connect", "tcp://127.0.0.1:1", "--topic", "t"}, server),
         "--curve-secret and --allow are for --bind"},
        {with({"pub", "--bind", "tcp://127.0.0.1:*", "--connect", "tcp://127.0.0.1:1", "--topic",
               "t"},
              server),
         "cannot go with --connect"},
        {with({"pub", "--bind", "tcp://127.0.0.1:*", "--topic", "t"}, client),
         "a publisher that binds takes --curve-secret and --allow"},
        {{"pub", "--bind", "tcp://127.0.0.1:*", "--topic", "t", "--curve-secret", k.secret("peer")},
         "--curve-secret needs --allow"},
        {{"pub", "--bind", "tcp://127.0.0.1:*", "--topic", "t", "--allow", allowed},
         "--allow needs --curve-secret"},
        {with({"sub", "--connect", "tcp://127.0.0.1:1", "--topic", "t"}, server),
         "--curve-secret and --allow are for --bind"},
        {with({"sub", "--bind", "tcp://127.0.0.1:*", "--connect", "tcp://127.0.0.1:1", "--topic",
               "t"},
              server),
         "cannot go with --connect or --resolve"},
        {with({"sub", "--bind", "tcp://127.0.0.1:*", "--topic", "t"}, client),
         "a subscriber that binds takes --curve-secret and --allow"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.says);
        const auto r = run_cli(c.args);
        CHECK(r.code == 2);
        CHECK(contains(r.err, c.says));
        CHECK(support::count_lines(r.err) == 1);
    }
}

}
