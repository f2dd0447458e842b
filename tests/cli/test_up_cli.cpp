// SPDX-License-Identifier: MPL-2.0
// test_up_cli.cpp — `zmesh up` as a user drives it: references resolved into real processes,
// restarts with backoff, ordered stop on Ctrl-C with nothing left behind, readiness, and
// `--check` errors naming the line. Every process a test starts is killed at the end (the
// fixture SIGKILLs `zmesh up` and every pid its state file ever listed).
#include "support/process.hpp"
#include "support/support.hpp"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

bool contains(const std::string& s, const std::string& part) {
    return s.find(part) != std::string::npos;
}

std::string slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

/// Whether @p pid no longer runs (gone, or a zombie nobody has reaped yet).
bool gone(pid_t pid) {
    if (::kill(pid, 0) != 0) return errno == ESRCH;
    const auto stat = slurp("/proc/" + std::to_string(pid) + "/stat");
    const auto close = stat.rfind(')');
    return close != std::string::npos && close + 2 < stat.size() && stat[close + 2] == 'Z';
}

/// `zmesh up FILE --state STATE --no-color` on a topology written to a scratch directory.
struct up_run {
    support::temp_dir dir;
    fs::path file = dir.path() / "topology.toml";
    fs::path state = dir.path() / "state.json";
    fs::path run_dir = dir.path() / "run";
    fs::path err = dir.path() / "up.err";
    std::set<pid_t> seen; ///< every pid the state file listed (and a grandchild a test adds)
    std::vector<std::string> lines; ///< stdout of zmesh up, as read so far
    support::child_process up;

    explicit up_run(const std::string& topology, std::vector<std::string> env = {})
        : up(start(topology, env)) {}

    support::child_process start(const std::string& topology, const std::vector<std::string>& env) {
        std::ofstream(file) << topology;
        std::vector<std::string> argv{"/usr/bin/env"};
        argv.insert(argv.end(), env.begin(), env.end());
        argv.insert(argv.end(), {support::zmesh_cli(), "up", file.string(), "--state",
                                 state.string(), "--run-dir", run_dir.string(), "--no-color"});
        return support::child_process(argv, err.string());
    }

    ~up_run() {
        // The nodes still running are the children of zmesh up (PR_SET_PDEATHSIG would kill
        // them with it too); a pid is killed only while it is still one of ours, never a pid
        // the system has since given to another process.
        std::set<pid_t> ours{up.pid()};
        for (int round = 0; round < 2; ++round)
            for (auto pid : seen)
                if (ours.count(parent_of(pid))) ours.insert(pid);
        ours.erase(up.pid());
        for (auto pid : ours) ::kill(pid, SIGKILL);
        up.kill();
    }

    static pid_t parent_of(pid_t pid) {
        const auto stat = slurp("/proc/" + std::to_string(pid) + "/stat");
        const auto close = stat.rfind(')');
        if (close == std::string::npos) return -1;
        std::istringstream rest(stat.substr(close + 2));
        char st = 0;
        pid_t ppid = -1;
        rest >> st >> ppid;
        return ppid;
    }

    /// The state file now (null if not written yet); remembers its pids.
    json read_state() {
        std::ifstream in(state);
        if (!in) return nullptr;
        json j = json::parse(in, nullptr, false);
        if (j.is_discarded()) return nullptr; // cannot happen with rename, but never crash
        for (const auto& n : j["nodes"])
            if (n["pid"].is_number()) seen.insert(n["pid"].get<pid_t>());
        return j;
    }

    /// Polls the state file until @p pred holds (bounded).
    template <class Pred>
    json wait_state(Pred pred, std::chrono::milliseconds timeout = 8000ms) {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        while (std::chrono::steady_clock::now() < deadline) {
            auto j = read_state();
            if (!j.is_null() && pred(j)) return j;
            std::this_thread::sleep_for(20ms);
        }
        return nullptr;
    }

    json wait_ready() {
        return wait_state([](const json& j) { return j["ready"].get<bool>(); });
    }

    /// Reads stdout lines until one contains @p text (bounded); true if one did.
    bool wait_line(const std::string& text, std::chrono::milliseconds timeout = 8000ms) {
        for (const auto& l : lines)
            if (contains(l, text)) return true;
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        while (std::chrono::steady_clock::now() < deadline) {
            auto l = up.read_line(100ms);
            if (!l) continue;
            lines.push_back(*l);
            if (contains(*l, text)) return true;
        }
        return false;
    }

    /// Reads the rest of stdout (after zmesh up exited).
    void read_all() {
        while (auto l = up.read_line(300ms)) lines.push_back(*l);
    }

    /// Index of the first line containing @p text, or -1.
    long line_index(const std::string& text) const {
        for (std::size_t k = 0; k < lines.size(); ++k)
            if (contains(lines[k], text)) return static_cast<long>(k);
        return -1;
    }
};

const json& node(const json& state, const std::string& name) {
    for (const auto& n : state["nodes"])
        if (n["name"] == name) return n;
    static const json none;
    FAIL("no node " << name << " in " << state.dump());
    return none;
}

std::vector<pid_t> pids(const json& state) {
    std::vector<pid_t> out;
    for (const auto& n : state["nodes"])
        if (n["pid"].is_number()) out.push_back(n["pid"].get<pid_t>());
    return out;
}

bool all_gone(const std::vector<pid_t>& ps, std::chrono::milliseconds timeout = 3000ms) {
    return support::eventually([&] { return std::all_of(ps.begin(), ps.end(), gone); }, timeout);
}

} // namespace

TEST_SUITE("cli.up") {

TEST_CASE("zmesh up resolves references: substituted argv and env arrive, and a request goes "
          "through the broker and workers it started") {
    const std::string topology = R"TOML(
[up]
name = "refs"

[env]
FROM_TOP = "${up.name}/${self.name}"

[node.broker]
run = ["zmesh", "broker", "--mdp", "${self.endpoint.mdp}", "--log-level", "warn"]
endpoints = { mdp = "tcp://127.0.0.1:*" }

[node.worker]
run = ["zmesh", "worker", "--broker", "${broker.endpoint.mdp}", "--service", "echo", "--echo",
       "--log-level", "warn"]
count = 2

[node.probe]
run = ["/bin/sh", "-c", 'printf "%s\n" "$@" > "$OUT"; env >> "$OUT"', "probe",
       "${broker.endpoint.mdp}", "${broker.address.mdp}", "${broker.port.mdp}",
       "${self.name}", "${self.index}", "${self.port.own}", "${up.dir}", "${up.run_dir}",
       "${UP_TEST_VAR}", "${UP_TEST_UNSET_VAR:-fallback}", "$$HOME"]
endpoints = { own = "tcp://127.0.0.1:*" }
env = { OUT = "${up.run_dir}/probe.txt", BROKER_PORT = "${broker.port.mdp}" }
after = ["worker"]
ready = "exit"
)TOML";
    up_run run(topology, {"-u", "UP_TEST_UNSET_VAR", "UP_TEST_VAR=from-environment"});
    const auto state = run.wait_ready();
    REQUIRE_MESSAGE(!state.is_null(), slurp(run.err));
    CHECK(state["name"] == "refs");
    const std::string mdp = node(state, "broker")["endpoints"]["mdp"];
    REQUIRE(mdp.rfind("tcp://127.0.0.1:", 0) == 0);
    const std::string port = mdp.substr(16);
    const std::string own = node(state, "probe")["endpoints"]["own"];
    CHECK(node(state, "worker.1")["state"] == "ready");
    CHECK(node(state, "worker.2")["state"] == "ready");
    CHECK(node(state, "probe")["state"] == "exited");
    CHECK(node(state, "probe")["exit_status"] == 0);

    const auto probe = slurp(run.run_dir / "probe.txt");
    const auto dir = fs::absolute(run.dir.path()).lexically_normal().string();
    const std::string argv = "tcp://127.0.0.1:" + port + "\n127.0.0.1:" + port + "\n" + port +
                             "\nprobe\n1\n" + own.substr(16) + "\n" + dir + "\n" +
                             run.run_dir.string() + "\nfrom-environment\nfallback\n$HOME\n";
    CHECK(probe.rfind(argv, 0) == 0);
    CHECK(contains(probe, "\nBROKER_PORT=" + port + "\n"));
    CHECK(contains(probe, "\nFROM_TOP=refs/probe\n"));

    // The broker and the two workers are real: a request finds the service through them.
    auto r = support::run_cli({"request", "--broker", mdp, "--service", "echo", "through up"});
    CHECK(r.code == 0);
    CHECK(r.out == "through up\n");
}

TEST_CASE("zmesh up restarts a crashed node, and the backoff doubles across consecutive crashes") {
    const std::string topology = R"TOML(
[up]
restart_backoff_ms = [200, 5000]

[node.sleeper]
run = ["/bin/sleep", "30"]
ready = "none"

[node.flaky]
run = ["/bin/sh", "-c", "sleep 0.2; exit 3"]
ready = "none"
)TOML";
    up_run run(topology);
    auto state = run.wait_ready();
    REQUIRE_MESSAGE(!state.is_null(), slurp(run.err));
    const pid_t first = node(state, "sleeper")["pid"].get<pid_t>();
    CHECK(node(state, "sleeper")["restarts"] == 0);

    const auto killed_at = std::chrono::steady_clock::now();
    REQUIRE(::kill(first, SIGKILL) == 0);
    state = run.wait_state([&](const json& j) {
        const auto& n = node(j, "sleeper");
        return n["restarts"] == 1 && n["pid"].is_number() && n["pid"] != first;
    });
    REQUIRE(!state.is_null());
    CHECK(std::chrono::steady_clock::now() - killed_at >= 180ms); // the first backoff, 200 ms
    CHECK(node(state, "sleeper")["state"] == "ready");
    CHECK(node(state, "sleeper")["exit_status"] == 128 + SIGKILL);
    CHECK(gone(first));
    CHECK(run.wait_line("sleeper was killed by signal 9 (Killed); restarting in 200 ms (restart 1)"));

    // A second crash soon after: twice the delay.
    const pid_t second = node(state, "sleeper")["pid"].get<pid_t>();
    REQUIRE(::kill(second, SIGKILL) == 0);
    CHECK(run.wait_line("sleeper was killed by signal 9 (Killed); restarting in 400 ms (restart 2)"));
    state = run.wait_state([&](const json& j) { return node(j, "sleeper")["restarts"] == 2; });
    CHECK(!state.is_null());

    // A node that keeps failing: 200, 400, 800 ms, each with one line saying so.
    CHECK(run.wait_line("flaky exited with status 3; restarting in 200 ms (restart 1)"));
    CHECK(run.wait_line("flaky exited with status 3; restarting in 400 ms (restart 2)"));
    CHECK(run.wait_line("flaky exited with status 3; restarting in 800 ms (restart 3)"));
}

TEST_CASE("Ctrl-C stops every node in reverse dependency order and leaves no process behind") {
    const std::string topology = R"TOML(
[node.a]
run = ["/bin/sh", "-c", 'sleep 60 & echo $! > "$0"; wait', "${up.run_dir}/grandchild.pid"]
ready = "none"

[node.b]
run = ["/bin/sleep", "60"]
after = ["a"]
ready = "none"

[node.c]
run = ["/bin/sleep", "60"]
count = 2
after = ["b"]
ready = "none"
)TOML";
    up_run run(topology);
    const auto state = run.wait_ready();
    REQUIRE_MESSAGE(!state.is_null(), slurp(run.err));
    auto listed = pids(state);
    REQUIRE(listed.size() == 4);
    pid_t grandchild = 0;
    CHECK(support::eventually([&] {
        std::ifstream(run.run_dir / "grandchild.pid") >> grandchild;
        return grandchild > 0;
    }));
    if (grandchild > 0) run.seen.insert(grandchild);

    run.up.signal(SIGINT);
    CHECK(run.up.wait_for(8000ms) == 0);
    run.read_all();
    // Dependents first: both c replicas are stopped before b is asked to stop, b before a.
    const auto c1 = run.line_index("c.1 stopped"), c2 = run.line_index("c.2 stopped");
    const auto stop_b = run.line_index("stopping b (pid"), b = run.line_index("b stopped");
    const auto stop_a = run.line_index("stopping a (pid");
    CAPTURE(run.lines.size());
    CHECK(c1 >= 0);
    CHECK(c2 >= 0);
    CHECK(c1 < stop_b);
    CHECK(c2 < stop_b);
    CHECK(b < stop_a);
    CHECK(stop_b >= 0);
    CHECK(all_gone(listed));
    if (grandchild > 0) CHECK(all_gone({grandchild})); // what a node started goes with it
    const auto last = run.read_state();
    for (const auto& n : last["nodes"]) {
        CAPTURE(n.dump());
        CHECK(n["state"] == "stopped");
        CHECK(n["pid"].is_null());
    }
}

TEST_CASE("stopping a node sends it one SIGTERM, so zmesh broker stops cleanly") {
    // zmesh broker takes a second signal as "stop now", with the default action: a first
    // version of the supervisor signalled the group and then the node, and brokers were
    // reported killed by signal 15 (in 4 of 5 runs; this test then fails about as often).
    const std::string topology = R"TOML(
[node.broker]
run = ["zmesh", "broker", "--mdp", "${self.endpoint.mdp}", "--log-level", "warn"]
endpoints = { mdp = "tcp://127.0.0.1:*" }
)TOML";
    up_run run(topology);
    const auto state = run.wait_ready();
    REQUIRE_MESSAGE(!state.is_null(), slurp(run.err));
    run.up.signal(SIGINT);
    CHECK(run.up.wait_for(8000ms) == 0);
    run.read_all();
    CHECK(run.line_index("broker stopped") >= 0);
    CHECK(run.line_index("killed by signal") < 0);
}

TEST_CASE("when zmesh up is SIGKILLed its children die too") {
    const std::string topology = R"TOML(
[node.a]
run = ["/bin/sleep", "60"]
ready = "none"

[node.b]
run = ["/bin/sleep", "60"]
count = 2
after = ["a"]
ready = "none"
)TOML";
    up_run run(topology);
    const auto state = run.wait_ready();
    REQUIRE_MESSAGE(!state.is_null(), slurp(run.err));
    const auto listed = pids(state);
    REQUIRE(listed.size() == 3);
    run.up.kill();
    CHECK(all_gone(listed));
}

TEST_CASE("zmesh up --check rejects a bad file with FILE:LINE and accepts a good one") {
    support::temp_dir dir;
    auto write = [&](const std::string& name, const std::string& text) {
        const auto p = (dir.path() / name).string();
        std::ofstream(p) << text;
        return p;
    };
    struct bad {
        const char* what;
        std::string text;
        int line;
        const char* says;
    };
    const std::vector<bad> cases{
        {"syntax error", "[node.a]\nrun = [\"/bin/sh\"]\ncount = = 2\n", 3, ""},
        {"unknown key", "[node.a]\nrun = [\"/bin/sh\"]\n\nreadyy = \"none\"\n", 4,
         "unknown key 'node.a.readyy'"},
        {"unknown node", "[node.a]\nrun = [\"/bin/sh\", \"${broker.endpoint.mdp}\"]\n", 2,
         "unknown node 'broker'"},
        {"unknown endpoint key",
         "[node.b]\nrun = [\"/bin/sh\"]\nendpoints = { mdp = \"tcp://127.0.0.1:*\" }\n\n"
         "[node.a]\nrun = [\"/bin/sh\", \"${b.endpoint.http}\"]\n",
         6, "node b has no endpoint 'http'"},
        {"cycle",
         "[node.a]\nrun = [\"/bin/sh\", \"${b.port.x}\"]\nendpoints = { x = \"tcp://127.0.0.1:*\" }\n"
         "[node.b]\nrun = [\"/bin/sh\", \"${a.port.x}\"]\nendpoints = { x = \"tcp://127.0.0.1:*\" }\n",
         5, "dependency cycle"},
        {"unset variable", "[node.a]\nrun = [\"/bin/sh\", \"${UP_CHECK_NEVER_SET}\"]\n", 2,
         "${UP_CHECK_NEVER_SET} is not set"},
        {"missing executable", "[node.a]\nrun = [\"./no-such-script.sh\"]\n", 2,
         "is not an executable file"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.what);
        const auto file = write("bad.toml", c.text);
        auto r = support::run_cli({"up", "--check", file});
        CAPTURE(r.err);
        CHECK(r.code == 1);
        CHECK(r.err.rfind(file + ":" + std::to_string(c.line) + ": ", 0) == 0);
        CHECK(contains(r.err, c.says));
        CHECK(support::count_lines(r.err) == 1);
        CHECK(r.out.empty());
    }
    // A good file: checked, nothing started (the node would write a file).
    const auto marker = dir.path() / "started";
    const auto good = write("good.toml", "[node.a]\nrun = [\"/bin/sh\", \"-c\", \"touch " +
                                             marker.string() + "\"]\nready = \"exit\"\n"
                                             "[node.b]\nrun = [\"zmesh\", \"version\"]\n"
                                             "count = 3\nready = \"exit\"\n"
                                             "[node.c]\nrun = [\"/bin/true\"]\nafter = [\"a\", \"b\"]\n");
    auto r = support::run_cli({"up", "--check", good});
    CHECK(r.code == 0);
    CHECK(r.out == good + ": ok, 3 nodes (5 processes)\n");
    CHECK(!fs::exists(marker));
    // Without --check a bad file is refused the same way, before anything starts.
    const auto file = write("bad.toml", "[node.a]\nrun = [\"/bin/sh\"]\nbogus = 1\n");
    auto up = support::run_cli({"up", file});
    CHECK(up.code == 1);
    CHECK(up.err.rfind(file + ":3: ", 0) == 0);
    // A state file in a directory that does not exist: refused at once, nothing started.
    auto no_dir = support::run_cli({"up", good, "--state", (dir.path() / "no" / "s.json").string()});
    CHECK(no_dir.code == 2);
    CHECK(support::count_lines(no_dir.err) == 1);
    CHECK(contains(no_dir.err, "does not exist"));
    CHECK(!fs::exists(marker));
}

TEST_CASE("a dependent starts only once its dependency accepts connections, and ready = exit "
          "orders a setup step") {
    // slow binds its endpoint 1.5 s after it starts; check connects to it once, at once, and
    // fails if nothing listens; last starts only after check has exited 0.
    const std::string topology = R"TOML(
[node.slow]
run = ["/bin/sh", "-c", 'sleep 1.5; exec "$0" broker --mdp "$1" --log-level warn', "ZMESH",
       "${self.endpoint.mdp}"]
endpoints = { mdp = "tcp://127.0.0.1:*" }

[node.check]
run = ["/usr/bin/python3", "-c", "import socket, sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 2).close(); open(sys.argv[2], 'w').write('connected')",
       "${slow.port.mdp}", "${up.run_dir}/check.txt"]
ready = "exit"

[node.last]
run = ["/bin/sh", "-c", 'cat "$0" > "$1"; exec sleep 60', "${up.run_dir}/check.txt",
       "${up.run_dir}/last.txt"]
after = ["check"]
ready = "none"
)TOML";
    std::string text = topology;
    text.replace(text.find("\"ZMESH\""), 7, "\"" + support::zmesh_cli() + "\"");
    up_run run(text);
    const auto state = run.wait_ready();
    REQUIRE_MESSAGE(!state.is_null(), slurp(run.err));
    CHECK(slurp(run.run_dir / "check.txt") == "connected");
    CHECK(support::eventually([&] { return slurp(run.run_dir / "last.txt") == "connected"; }));
    CHECK(node(state, "check")["exit_status"] == 0);
    // While it waited, it said what for.
    const std::string mdp = node(state, "slow")["endpoints"]["mdp"];
    CHECK(run.wait_line("waits for " + mdp + " (endpoint mdp) to accept connections"));
}

TEST_CASE("ready = line waits for a line of the node's output") {
    // server writes its flag file, then the line; copy starts only after the line, so it
    // always finds the flag (started at once, it would find none and exit 1).
    const std::string topology = R"TOML(
[node.server]
run = ["/bin/sh", "-c", 'sleep 0.5; echo up > "$0"; echo "server: listening now"; exec sleep 60',
       "${up.run_dir}/flag"]
ready = { line = "listening" }

[node.copy]
run = ["/bin/sh", "-c", 'cat "$0" > "$1"', "${up.run_dir}/flag", "${up.run_dir}/copy"]
after = ["server"]
ready = "exit"
)TOML";
    up_run run(topology);
    const auto state = run.wait_ready();
    REQUIRE_MESSAGE(!state.is_null(), slurp(run.err));
    CHECK(slurp(run.run_dir / "copy") == "up\n");
    CHECK(node(state, "copy")["exit_status"] == 0);
    CHECK(run.wait_line("server | server: listening now"));
}

TEST_CASE("a readiness timeout stops everything and names the node and the endpoint") {
    const std::string topology = R"TOML(
[node.deaf]
run = ["/bin/sleep", "30"]
endpoints = { api = "tcp://127.0.0.1:*" }
ready_timeout_ms = 600

[node.after]
run = ["/bin/sleep", "30"]
after = ["deaf"]
)TOML";
    up_run run(topology);
    const auto started = run.wait_state([](const json& j) { return node(j, "deaf")["pid"].is_number(); });
    REQUIRE(!started.is_null());
    const auto deaf = node(started, "deaf")["pid"].get<pid_t>();
    const std::string api = node(started, "deaf")["endpoints"]["api"];
    CHECK(run.up.wait_for(6000ms) == 1);
    const auto err = slurp(run.err);
    CAPTURE(err);
    CHECK(contains(err, "deaf was not ready within 600 ms: waited for " + api +
                            " (endpoint api) to accept connections"));
    CHECK(all_gone({deaf}));
    const auto last = run.read_state();
    CHECK(node(last, "after")["exit_status"].is_null()); // never started
    CHECK(last["ready"] == false);
}

TEST_CASE("bash completion completes zmesh up's flags and topology files") {
    support::temp_dir dir;
    std::ofstream(dir.path() / "orders.toml") << "";
    std::ofstream(dir.path() / "notes.txt") << "";
    const auto out = dir.path() / "out";
    auto complete = [&](const std::string& line) {
        const std::string script = std::string(ZMESH_SOURCE_DIR) + "/nodes/cli/completion/zmesh.bash";
        const std::string cmd = "cd \"" + dir.path().string() + "\" && bash -c 'source \"" + script +
                                "\"; COMP_WORDS=(\"" + support::zmesh_cli() + "\" " + line +
                                "); COMP_CWORD=$((${#COMP_WORDS[@]}-1)); _zmesh_bash; "
                                "echo \"${COMPREPLY[*]}\"' > \"" + out.string() + "\" 2>&1";
        REQUIRE(std::system(cmd.c_str()) == 0);
        auto text = slurp(out);
        if (!text.empty() && text.back() == '\n') text.pop_back();
        return text;
    };
    CHECK(complete("u") == "up");
    CHECK(complete("up --st") == "--state");
    CHECK(complete("up --ch") == "--check");
    CHECK(complete("up --check o") == "orders.toml");
    CHECK(complete("up n") == "");
}

} // TEST_SUITE
