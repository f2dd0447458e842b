// SPDX-License-Identifier: MPL-2.0
// test_up_topology.cpp — the `zmesh up` topology reader on its own (nodes/cli/up/topology.hpp):
// substitution of every reference form, dependency order, and errors that name FILE:LINE.
#include "cli/up/topology.hpp"

#include <doctest/doctest.h>

#include <map>
#include <optional>
#include <string>

using namespace zmesh::cli::up;

namespace {

/// Options with a fixed environment (no dependence on the test's own) and /bin/sh for "zmesh".
load_options opts(std::map<std::string, std::string> env = {}) {
    load_options o;
    o.run_dir = "/run/x";
    o.zmesh_path = "/bin/sh";
    env.emplace("PATH", "/usr/bin:/bin");
    o.getenv = [env](const std::string& name) -> std::optional<std::string> {
        const auto it = env.find(name);
        if (it == env.end()) return std::nullopt;
        return it->second;
    };
    return o;
}

const instance& find(const topology& t, const std::string& name) {
    for (const auto& i : t.instances)
        if (i.name == name) return i;
    FAIL("no instance " << name);
    return t.instances.front();
}

std::size_t position(const topology& t, const std::string& name) {
    for (std::size_t k = 0; k < t.instances.size(); ++k)
        if (t.instances[k].name == name) return k;
    return t.instances.size();
}

/// The error message of loading @p text as /top/dir/t.toml, or "" if it loads.
std::string error_of(const std::string& text, std::map<std::string, std::string> env = {}) {
    try {
        load_text(text, "/top/dir/t.toml", opts(std::move(env)));
    } catch (const topology_error& e) {
        return e.what();
    }
    return {};
}

} // namespace

TEST_SUITE("cli.up") {

TEST_CASE("up topology: every reference form is substituted and dependencies start first") {
    // The worker comes first in the file but refers to the broker: the broker starts first.
    const std::string text = R"([up]
name = "demo"

[env]
COMMON = "${up.name}-${self.name}"

[node.worker]
run = ["zmesh", "-c", "${broker.endpoint.mdp}", "${broker.address.http}", "${broker.port.mdp}",
       "${self.name}", "${self.index}", "${self.port.ctl}", "${up.dir}", "${up.run_dir}",
       "${GIVEN}", "${ABSENT:-fallback}", "$$literal", "cost $5"]
count = 2
endpoints = { ctl = "tcp://127.0.0.1:*" }
env = { W = "${self.endpoint.ctl}" }
cwd = "sub"

[node.broker]
run = ["/bin/sh", "${self.address.http}"]
endpoints = { mdp = "tcp://127.0.0.1:*", http = "tcp://*:*", sock = "ipc://${up.run_dir}/b.sock" }

[node.client]
run = ["sh", "${worker.endpoint.ctl}", "${worker.2.port.ctl}"]
)";
    const auto t = load_text(text, "/top/dir/t.toml", opts({{"GIVEN", "given"}}));
    CHECK(t.name == "demo");
    CHECK(t.dir == "/top/dir");
    CHECK(t.node_count == 3);
    REQUIRE(t.instances.size() == 4);
    CHECK(position(t, "broker") < position(t, "worker.1"));
    CHECK(position(t, "worker.2") < position(t, "client"));

    const auto& b = find(t, "broker");
    REQUIRE(b.endpoints.size() == 3);
    std::map<std::string, endpoint> eps;
    for (const auto& e : b.endpoints) eps[e.key] = e;
    const int mdp = eps["mdp"].port, http = eps["http"].port;
    CHECK(mdp > 0);
    CHECK(http > 0);
    CHECK(mdp != http);
    CHECK(eps["mdp"].url == "tcp://127.0.0.1:" + std::to_string(mdp));
    CHECK(eps["http"].url == "tcp://*:" + std::to_string(http));
    CHECK(eps["sock"].url == "ipc:///run/x/b.sock");
    CHECK(eps["sock"].ipc_path == "/run/x/b.sock");
    CHECK(b.argv == std::vector<std::string>{"/bin/sh", "0.0.0.0:" + std::to_string(http)});
    CHECK(b.cwd == "/top/dir");

    const auto& w2 = find(t, "worker.2");
    REQUIRE(w2.endpoints.size() == 1);
    const auto ctl2 = std::to_string(w2.endpoints[0].port);
    const std::vector<std::string> want{
        "/bin/sh", "-c", "tcp://127.0.0.1:" + std::to_string(mdp),
        // Another node's wildcard endpoint is given to dependents as loopback.
        "127.0.0.1:" + std::to_string(http), std::to_string(mdp), "worker.2", "2", ctl2,
        "/top/dir", "/run/x", "given", "fallback", "$literal", "cost $5"};
    CHECK(w2.argv == want);
    CHECK(w2.cwd == "/top/dir/sub");
    REQUIRE(w2.env.size() == 2);
    CHECK(w2.env[0] == std::pair<std::string, std::string>{"COMMON", "demo-worker.2"});
    CHECK(w2.env[1] == std::pair<std::string, std::string>{"W", "tcp://127.0.0.1:" + ctl2});
    CHECK(w2.deps.size() == 1);

    const auto& w1 = find(t, "worker.1");
    const auto& c = find(t, "client");
    CHECK((c.argv[0] == "/usr/bin/sh" || c.argv[0] == "/bin/sh")); // found in PATH
    CHECK(c.argv[1] == "tcp://127.0.0.1:" + std::to_string(w1.endpoints[0].port) +
                           ",tcp://127.0.0.1:" + ctl2);
    CHECK(c.argv[2] == ctl2);
    CHECK(c.deps.size() == 2); // both replicas
}

TEST_CASE("up topology: a default may hold references, which imply dependencies too") {
    const std::string text = R"([node.db]
run = ["sh"]
endpoints = { sql = "tcp://127.0.0.1:*" }

[node.app]
run = ["sh", "${DB:-sqlite:${up.run_dir}/app.db}", "${URL:-${db.endpoint.sql}}", "${SET:-${up.dir}}"]
)";
    const auto t = load_text(text, "/top/dir/t.toml", opts({{"SET", "given"}}));
    const auto& app = find(t, "app");
    const auto& db = find(t, "db");
    REQUIRE(app.argv.size() == 4);
    CHECK(app.argv[1] == "sqlite:/run/x/app.db");
    CHECK(app.argv[2] == db.endpoints[0].url);
    CHECK(app.argv[3] == "given"); // set: the default is not used
    CHECK(position(t, "db") < position(t, "app"));
    CHECK(app.deps.size() == 1);
    // A reference in a default is checked like any other.
    CHECK(error_of(R"([node.a]
run = ["sh", "${X:-${nobody.endpoint.k}}"]
)").find("t.toml:2") != std::string::npos);
    CHECK(error_of(R"([node.a]
run = ["sh", "${X:-${up.dir}"]
)").find("unterminated") != std::string::npos);
}

TEST_CASE("up topology: a bad file is an error that names FILE and LINE") {
    struct bad {
        const char* what;
        std::string text;
        long line;
        const char* says;
    };
    const std::vector<bad> cases{
        {"syntax", "[node.a]\nrun = [\"sh\"\n", 2, ""},
        {"unknown top-level key", "[node.a]\nrun = [\"sh\"]\n[nodes.b]\nrun = [\"sh\"]\n", 3,
         "unknown key 'nodes'"},
        {"unknown node key", "[node.a]\nrun = [\"sh\"]\nrestarts = 3\n", 3,
         "unknown key 'node.a.restarts'"},
        {"unknown node", "[node.a]\nrun = [\"sh\"]\n\n[node.b]\nrun = [\"sh\", \"${c.endpoint.x}\"]\n",
         5, "unknown node 'c'"},
        {"unknown endpoint key",
         "[node.a]\nrun = [\"sh\"]\nendpoints = { x = \"tcp://127.0.0.1:*\" }\n[node.b]\n"
         "run = [\"sh\",\n  \"${a.port.y}\"]\n",
         6, "node a has no endpoint 'y'"},
        {"unknown self endpoint", "[node.a]\nrun = [\"sh\", \"${self.endpoint.q}\"]\n", 2,
         "node a has no endpoint 'q'"},
        {"cycle",
         "[node.a]\nrun = [\"sh\"]\nafter = [\"c\"]\n[node.b]\nrun = [\"sh\"]\nafter = [\"a\"]\n"
         "[node.c]\nrun = [\"sh\"]\nafter = [\"b\"]\n",
         6, "dependency cycle: a -> c -> b -> a"},
        {"unset variable", "[node.a]\nrun = [\"sh\"]\nenv = { X = \"${NOT_SET_ANYWHERE}\" }\n", 3,
         "${NOT_SET_ANYWHERE} is not set"},
        {"missing executable", "[node.a]\nrun = [\"no-such-program-zz\"]\n", 2,
         "'no-such-program-zz' is not found in PATH"},
        {"missing relative executable", "[node.a]\nrun = [\"./bin/nope\"]\n", 2,
         "'/top/dir/bin/nope' is not an executable file"},
        {"bad reference", "[node.a]\nrun = [\"sh\", \"${self.colour}\"]\n", 2,
         "unknown reference '${self.colour}'"},
        {"unterminated", "[node.a]\nrun = [\"sh\", \"${up.dir\"]\n", 2, "unterminated"},
        {"wrong type", "[node.a]\nrun = \"sh\"\n", 2, "node.a.run must be a non-empty array"},
        {"bad restart", "[node.a]\nrun = [\"sh\"]\nrestart = \"sometimes\"\n", 3, "node.a.restart"},
        {"no run", "\n[node.a]\ncount = 2\n", 2, "node.a has no run"},
        {"replica out of range",
         "[node.a]\nrun = [\"sh\"]\ncount = 2\nendpoints = { x = \"tcp://127.0.0.1:*\" }\n"
         "[node.b]\nrun = [\"sh\", \"${a.3.endpoint.x}\"]\n",
         6, "has 2 replica(s), not 3"},
        {"endpoint scheme", "[node.a]\nrun = [\"sh\"]\nendpoints = { x = \"udp://h:1\" }\n", 3,
         "must be tcp://HOST:PORT or ipc://PATH"},
        {"address of ipc", "[node.a]\nrun = [\"sh\", \"${self.port.x}\"]\nendpoints = { x = \"ipc:///tmp/a\" }\n",
         2, "it has no port"},
        {"reserved name", "[node.self]\nrun = [\"sh\"]\n", 1, "reserved"},
        {"after unknown", "[node.a]\nrun = [\"sh\"]\nafter = [\n \"zz\"]\n", 4, "unknown node 'zz'"},
        {"no nodes", "[up]\nname = \"x\"\n", 0, "no nodes"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.what);
        const auto message = error_of(c.text);
        const std::string where =
            c.line > 0 ? "/top/dir/t.toml:" + std::to_string(c.line) + ": " : "/top/dir/t.toml: ";
        CHECK(message.rfind(where, 0) == 0);
        CHECK(message.find(c.says) != std::string::npos);
        CHECK(message.find('\n') == std::string::npos);
    }
    // A program a setup step makes in the run directory is not looked for in advance.
    CHECK(error_of("[node.a]\nrun = [\"${up.run_dir}/bin/made-later\"]\n") == "");
    // The same file loads once the variable is set.
    CHECK(error_of("[node.a]\nrun = [\"sh\"]\nenv = { X = \"${NOT_SET_ANYWHERE}\" }\n",
                   {{"NOT_SET_ANYWHERE", "1"}}) == "");
}

TEST_CASE("up topology: a port is never given twice and a fixed port is kept") {
    std::string text;
    for (int i = 0; i < 20; ++i)
        text += "[node.n" + std::to_string(i) + "]\nrun = [\"sh\"]\nendpoints = { a = "
                "\"tcp://127.0.0.1:*\", b = \"tcp://localhost:*\" }\n";
    text += "[node.fixed]\nrun = [\"sh\"]\nendpoints = { a = \"tcp://127.0.0.1:5999\" }\n";
    const auto t = load_text(text, "/top/dir/t.toml", opts());
    std::map<int, int> seen;
    for (const auto& i : t.instances)
        for (const auto& e : i.endpoints) ++seen[e.port];
    CHECK(seen.size() == 41);
    CHECK(seen.count(5999) == 1);
}

} // TEST_SUITE
