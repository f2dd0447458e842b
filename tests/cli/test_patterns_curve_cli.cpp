// SPDX-License-Identifier: MPL-2.0
// test_patterns_curve_cli.cpp — the pattern servers over CURVE (docs/security.md), keys from
// `zmesh keygen`: `zmesh serve` with `zmesh request --freelance`, and `zmesh clone-server` with
// `zmesh clone`. An admitted key is served, an unknown key and a plain client get nothing,
// SIGHUP re-reads --allow, and the flags that do not fit are refused with one line.
#include "support/process.hpp"
#include "support/support.hpp"

#include <doctest/doctest.h>

#include <csignal>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using support::child_process;
using support::run_cli;
namespace fs = std::filesystem;

namespace {

/// Key pairs made with `zmesh keygen`, and the --allow directory of the admitted ones.
struct keys {
    support::temp_dir dir;
    fs::path allowed = dir.path() / "allowed";

    explicit keys(const std::vector<std::string>& names) {
        fs::create_directory(allowed);
        for (const auto& n : names) {
            const auto r = run_cli({"keygen", n, "--dir", dir.path().string()});
            REQUIRE(r.code == 0);
        }
    }
    void admit(const std::string& name) const {
        fs::copy_file(dir.path() / (name + ".key"), allowed / (name + ".key"));
    }
    void withdraw(const std::string& name) const { fs::remove(allowed / (name + ".key")); }
    std::string secret(const std::string& name) const {
        return (dir.path() / (name + ".key_secret")).string();
    }
    std::string pub(const std::string& name) const {
        return (dir.path() / (name + ".key")).string();
    }
};

/// `zmesh serve --echo` with CURVE on an ephemeral loopback port, killed with the fixture.
struct curve_serve {
    child_process process;
    std::string endpoint;
    explicit curve_serve(const keys& k)
        : process({support::zmesh_cli(), "serve", "--bind", "tcp://127.0.0.1:*", "--echo",
                   "--curve-secret", k.secret("server"), "--allow", k.allowed.string(),
                   "--log-level", "warn"}) {
        auto line = process.read_line(5000ms);
        REQUIRE(line);
        endpoint = *line;
    }
};

support::cli_result request(const std::string& endpoint, const keys& k, const std::string& who,
                            const std::string& body) {
    return run_cli({"request", "--freelance", endpoint, "--timeout-ms", "500", "--retries", "1",
                    "--curve-server-key", k.pub("server"), "--curve-key", k.secret(who), body},
                   5000ms);
}

} // namespace

TEST_SUITE("cli.freelance.curve") {

TEST_CASE("serve with --curve-secret answers an admitted key and nobody else") {
    keys k({"server", "alice", "mallory"});
    k.admit("alice");
    curve_serve s(k);

    auto ok = request(s.endpoint, k, "alice", "hello");
    CHECK(ok.code == 0);
    CHECK(ok.out == "hello\n");

    auto refused = request(s.endpoint, k, "mallory", "hello");
    CHECK(refused.code == 1);
    CHECK(refused.out.empty());
    CHECK(refused.err.find(s.endpoint) != std::string::npos);

    // Without keys the client speaks NULL, which a CURVE server refuses in the handshake.
    auto plain = run_cli({"request", "--freelance", s.endpoint, "--timeout-ms", "500",
                          "--retries", "1", "hello"},
                         5000ms);
    CHECK(plain.code == 1);
    CHECK(plain.out.empty());
}

TEST_CASE("serve re-reads --allow on SIGHUP: a key added is served, a key removed is not") {
    keys k({"server", "alice", "bob"});
    k.admit("alice");
    curve_serve s(k);
    CHECK(request(s.endpoint, k, "alice", "a1").code == 0);
    CHECK(request(s.endpoint, k, "bob", "b1").code == 1);

    k.admit("bob");
    k.withdraw("alice");
    s.process.signal(SIGHUP);
    // The reload happens on the server's own thread: poll for it, bounded.
    bool bob_served = false;
    for (int i = 0; i < 20 && !bob_served; ++i) {
        bob_served = request(s.endpoint, k, "bob", "b2").code == 0;
        if (!bob_served) std::this_thread::sleep_for(100ms);
    }
    CHECK(bob_served);
    CHECK(request(s.endpoint, k, "alice", "a2").code == 1);
    // Still serving after the reload: the server did not stop on SIGHUP.
    CHECK(request(s.endpoint, k, "bob", "b3").code == 0);
}

TEST_CASE("serve refuses CURVE flags that do not fit, with one line") {
    keys k({"server"});
    auto no_allow = run_cli({"serve", "--bind", "tcp://127.0.0.1:*", "--echo", "--curve-secret",
                             k.secret("server")},
                            5000ms);
    CHECK(no_allow.code != 0);
    CHECK(support::count_lines(no_allow.err) == 1);
    CHECK(no_allow.err.find("--curve-secret needs --allow") != std::string::npos);

    auto no_secret = run_cli({"serve", "--bind", "tcp://127.0.0.1:*", "--echo", "--allow",
                              k.allowed.string()},
                             5000ms);
    CHECK(no_secret.code != 0);
    CHECK(no_secret.err.find("--allow needs --curve-secret") != std::string::npos);

    // A secret key others may read is refused before anything is bound.
    fs::permissions(k.secret("server"), fs::perms::others_read, fs::perm_options::add);
    auto readable = run_cli({"serve", "--bind", "tcp://127.0.0.1:*", "--echo", "--curve-secret",
                             k.secret("server"), "--allow", k.allowed.string()},
                            5000ms);
    CHECK(readable.code != 0);
    CHECK(readable.err.find(k.secret("server")) != std::string::npos);
}

} // TEST_SUITE

namespace {

/// `zmesh clone-server` with CURVE on ephemeral loopback ports, killed with the fixture.
struct curve_clone_server {
    child_process process;
    std::string endpoint, updates;
    explicit curve_clone_server(const keys& k)
        : process({support::zmesh_cli(), "clone-server", "--bind", "tcp://127.0.0.1:*",
                   "--curve-secret", k.secret("server"), "--allow", k.allowed.string(),
                   "--log-level", "warn"}) {
        auto first = process.read_line(5000ms);
        auto second = process.read_line(5000ms);
        REQUIRE(first);
        REQUIRE(second);
        endpoint = *first;
        updates = *second;
    }
    support::cli_result clone(const keys& k, const std::string& who,
                              std::vector<std::string> rest) const {
        std::vector<std::string> a{"clone", "--server", endpoint, "--updates", updates,
                                   "--timeout-ms", "500"};
        if (!who.empty())
            a.insert(a.end(), {"--curve-server-key", k.pub("server"), "--curve-key", k.secret(who)});
        a.insert(a.end(), rest.begin(), rest.end());
        return run_cli(a, 5000ms);
    }
};

} // namespace

TEST_SUITE("cli.clone.curve") {

TEST_CASE("clone-server with --curve-secret: admitted keys set and get, others get nothing") {
    keys k({"server", "alice", "bob", "mallory"});
    k.admit("alice");
    k.admit("bob");
    curve_clone_server s(k);
    CHECK(s.clone(k, "alice", {"set", "/level", "3"}).code == 0);
    auto got = s.clone(k, "bob", {"get", "/level"});
    CHECK(got.code == 0);
    CHECK(got.out == "3\n");

    auto refused = s.clone(k, "mallory", {"get", "/level"});
    CHECK(refused.code == 1);
    CHECK(refused.out.empty());
    CHECK(support::count_lines(refused.err) == 1);
    CHECK(s.clone(k, "mallory", {"set", "/level", "0"}).code == 1);
    CHECK(s.clone(k, "", {"get", "/level"}).code == 1); // plain
    CHECK(s.clone(k, "alice", {"get", "/level"}).out == "3\n"); // nothing changed it
}

TEST_CASE("clone-server re-reads --allow on SIGHUP") {
    keys k({"server", "alice", "bob"});
    k.admit("alice");
    curve_clone_server s(k);
    CHECK(s.clone(k, "alice", {"set", "/a", "1"}).code == 0);
    CHECK(s.clone(k, "bob", {"get", "/a"}).code == 1);
    k.admit("bob");
    k.withdraw("alice");
    s.process.signal(SIGHUP);
    bool bob_served = false;
    for (int i = 0; i < 20 && !bob_served; ++i) {
        bob_served = s.clone(k, "bob", {"get", "/a"}).out == "1\n";
        if (!bob_served) std::this_thread::sleep_for(100ms);
    }
    CHECK(bob_served);
    CHECK(s.clone(k, "alice", {"get", "/a"}).code == 1);
}

} // TEST_SUITE

TEST_SUITE("cli.broker.ha.curve") {

TEST_CASE("broker --ha with --curve-secret needs --ha-peer-key, and --ha-peer-key needs both") {
    keys k({"a", "b"});
    k.admit("b");
    const std::vector<std::string> ha{"broker", "--mdp", "tcp://127.0.0.1:*", "--ha", "primary",
                                      "--ha-bind", "tcp://127.0.0.1:*", "--ha-peer",
                                      "tcp://127.0.0.1:1"};
    auto with = [&](std::vector<std::string> base, std::vector<std::string> extra) {
        base.insert(base.end(), extra.begin(), extra.end());
        return run_cli(base, 5000ms);
    };
    auto missing = with(ha, {"--curve-secret", k.secret("a"), "--allow", k.allowed.string()});
    CHECK(missing.code != 0);
    CHECK(support::count_lines(missing.err) == 1);
    CHECK(missing.err.find("needs --ha-peer-key") != std::string::npos);

    auto plain = with(ha, {"--ha-peer-key", k.pub("b")});
    CHECK(plain.code != 0);
    CHECK(plain.err.find("--ha-peer-key is for a broker with --curve-secret") != std::string::npos);

    auto alone = run_cli({"broker", "--mdp", "tcp://127.0.0.1:*", "--ha-peer-key", k.pub("b")},
                         5000ms);
    CHECK(alone.code != 0);
    CHECK(alone.err.find("--ha-peer-key needs --ha") != std::string::npos);

    // The peer's key not admitted: the broker says so and exits.
    fs::remove(k.allowed / "b.key");
    auto not_admitted = with(ha, {"--curve-secret", k.secret("a"), "--allow", k.allowed.string(),
                                  "--ha-peer-key", k.pub("b")});
    CHECK(not_admitted.code != 0);
    CHECK(not_admitted.err.find("must admit its peer's key") != std::string::npos);
}

} // TEST_SUITE
