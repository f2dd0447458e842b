// SPDX-License-Identifier: MPL-2.0
// test_config_cli.cpp — one configuration (README "Configuration"): ZMESH_BROKER and the other
// variables, the TOML file ($XDG_CONFIG_HOME/zmesh/config.toml or --config), their order (flag >
// environment > file > default), the errors a bad file gets, and `zmesh config`.
//
// Every run has the zmesh variables removed and HOME and XDG_CONFIG_HOME set to a private
// scratch directory, so the user's own variables and file never take part. The rest of the
// environment stays: the sanitizer passes of scripts/test set their options there.
#include "support/process.hpp"
#include "support/support.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

using support::child_process;
using support::cli_result;
using support::count_lines;

bool contains(const std::string& s, const std::string& part) {
    return s.find(part) != std::string::npos;
}

/// A scratch HOME and XDG_CONFIG_HOME, and the zmesh CLI run in a clean environment with them.
struct sandbox {
    support::temp_dir dir;
    fs::path xdg = dir.path() / "xdg";
    fs::path default_file = xdg / "zmesh" / "config.toml";

    sandbox() { fs::create_directories(xdg / "zmesh"); }

    /// Writes @p text to @p path (the default file if empty); returns the path.
    std::string write(const std::string& text, fs::path path = {}) const {
        if (path.empty()) path = default_file;
        std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
        return path.string();
    }

    /// The argv of `zmesh ARGS` without any ZMESH_ variable but @p env, in the scratch HOME.
    std::vector<std::string> argv(const std::vector<std::string>& args,
                                  const std::map<std::string, std::string>& env = {}) const {
        std::vector<std::string> a{"/usr/bin/env"};
        for (const char* v : {"ZMESH_BROKER", "ZMESH_TIMEOUT_MS", "ZMESH_LOG_LEVEL",
                              "ZMESH_CURVE_SERVER_KEY", "ZMESH_CURVE_KEY", "ZMESH_CONFIG"})
            a.insert(a.end(), {"-u", v});
        a.push_back("HOME=" + dir.path().string());
        a.push_back("XDG_CONFIG_HOME=" + xdg.string());
        for (const auto& [k, v] : env) a.push_back(k + "=" + v);
        a.push_back(support::zmesh_cli());
        a.insert(a.end(), args.begin(), args.end());
        return a;
    }

    /// Runs `zmesh ARGS` to completion (within 10 s), as support::run_cli does.
    cli_result run(const std::vector<std::string>& args,
                   const std::map<std::string, std::string>& env = {}) const {
        static std::atomic<int> n{0};
        const auto err_path = (dir.path() / ("stderr-" + std::to_string(n++))).string();
        child_process p(argv(args, env), err_path);
        cli_result r;
        while (auto line = p.read_line(10000ms)) r.out += *line + "\n";
        if (auto code = p.wait_for(10000ms)) r.code = *code;
        p.kill();
        std::ifstream f(err_path);
        std::stringstream ss;
        ss << f.rdbuf();
        r.err = ss.str();
        return r;
    }
};

/// A broker on a free loopback port, started in the sandbox's clean environment.
struct broker_process {
    child_process process;
    std::string endpoint;
    explicit broker_process(const sandbox& box, std::vector<std::string> extra = {})
        : process(box.argv([&] {
              std::vector<std::string> a{"broker", "--mdp", "tcp://127.0.0.1:*", "--log-level",
                                         "warn"};
              a.insert(a.end(), extra.begin(), extra.end());
              return a;
          }())) {
        auto line = process.read_line(5000ms);
        REQUIRE(line);
        endpoint = *line;
    }
};

/// The line of `zmesh config`'s output that describes @p name.
std::string line_of(const std::string& out, const std::string& name) {
    std::istringstream in(out);
    for (std::string line; std::getline(in, line);)
        if (line.rfind(name + " ", 0) == 0) return line;
    return {};
}

// Nothing listens there: a command that uses it fails (exit 1) once its wait is over.
const std::string nowhere = "tcp://127.0.0.1:1";

} // namespace

TEST_SUITE("cli.config") {

TEST_CASE("ZMESH_BROKER is used when --broker is absent, and --broker overrides it") {
    sandbox box;
    broker_process broker(box);
    auto from_env = box.run({"stats"}, {{"ZMESH_BROKER", broker.endpoint}});
    CHECK(from_env.code == 0);
    CHECK(contains(from_env.out, "requests"));
    auto flag_wins = box.run({"stats", "--broker", broker.endpoint}, {{"ZMESH_BROKER", nowhere}});
    CHECK(flag_wins.code == 0);
    CHECK(contains(flag_wins.out, "requests"));
    auto env_used = box.run({"stats", "--timeout-ms", "300"}, {{"ZMESH_BROKER", nowhere}});
    CHECK(env_used.code == 1);
    CHECK(contains(env_used.err, nowhere));
}

TEST_CASE("the file's broker and a command's own table are used, under the flags") {
    sandbox box;
    broker_process broker(box);
    // timeout-ms = -5 in [command.stats] is refused by stats only: that table's value counts.
    // [command.broker] sits beside the setting broker: the two never clash.
    box.write("broker = \"" + broker.endpoint + "\"\ntimeout-ms = 3000\n"
              "[command.stats]\ntimeout-ms = -5\n[command.broker]\nlog-level = \"warn\"\n");
    auto table = box.run({"stats"});
    CHECK(table.code == 2);
    CHECK(contains(table.err, "--timeout-ms must be positive"));
    auto flag = box.run({"stats", "--timeout-ms", "3000"});
    CHECK(flag.code == 0);
    CHECK(contains(flag.out, "requests"));
    auto other = box.run({"services"});
    CHECK(other.code == 0);
    CHECK(contains(other.out, "SERVICE"));
}

TEST_CASE("--config names the file: the default file may be missing, a named one may not") {
    sandbox box;
    broker_process broker(box);
    const auto named = box.write("broker = \"" + broker.endpoint + "\"\n",
                                 box.dir.path() / "mine.toml");
    CHECK(box.run({"stats", "--config", named}).code == 0);
    CHECK(box.run({"stats"}, {{"ZMESH_CONFIG", named}}).code == 0);
    auto none = box.run({"config"});
    CHECK(none.code == 0);
    CHECK(contains(line_of(none.out, "config"), "not found, skipped"));
    const auto missing = (box.dir.path() / "absent.toml").string();
    auto r = box.run({"stats", "--config", missing});
    CHECK(r.code == 2);
    CHECK(count_lines(r.err) == 1);
    CHECK(contains(r.err, missing));
}

TEST_CASE("the environment beats the file") {
    sandbox box;
    broker_process broker(box);
    box.write("broker = \"" + nowhere + "\"\ntimeout-ms = 300\n");
    auto r = box.run({"stats"}, {{"ZMESH_BROKER", broker.endpoint}});
    CHECK(r.code == 0);
    CHECK(contains(r.out, "requests"));
}

TEST_CASE("zmesh config shows each value and where it comes from") {
    sandbox box;
    const auto file = box.write("# shared\ntimeout-ms = 4000\ncurve-key = \"/k/me.key_secret\"\n"
                                "[command.request]\nretries = 5\n");
    auto r = box.run({"config", "--log-level", "debug"}, {{"ZMESH_BROKER", "tcp://h:7"}});
    CHECK(r.code == 0);
    CAPTURE(r.out);
    CHECK(contains(line_of(r.out, "config"), file));
    CHECK(contains(line_of(r.out, "config"), "$XDG_CONFIG_HOME"));
    CHECK(contains(line_of(r.out, "broker"), "tcp://h:7"));
    CHECK(contains(line_of(r.out, "broker"), "env ZMESH_BROKER"));
    CHECK(contains(line_of(r.out, "timeout-ms"), "4000"));
    CHECK(contains(line_of(r.out, "timeout-ms"), "file " + file + ":2"));
    CHECK(contains(line_of(r.out, "log-level"), "debug"));
    CHECK(contains(line_of(r.out, "log-level"), "flag"));
    CHECK(contains(line_of(r.out, "curve-key"), "file " + file + ":3"));
    CHECK(contains(line_of(r.out, "curve-server-key"), "unset"));

    auto defaults = sandbox().run({"config"});
    CHECK(contains(line_of(defaults.out, "broker"), "tcp://127.0.0.1:5555"));
    CHECK(contains(line_of(defaults.out, "broker"), "default"));

    auto json = box.run({"config", "--json"}, {{"ZMESH_BROKER", "tcp://\"q\":7"}});
    CHECK(json.code == 0);
    CHECK(count_lines(json.out) == 1);
    CHECK(contains(json.out,
                   R"("broker":{"value":"tcp://\"q\":7","source":"env ZMESH_BROKER"})"));
    CHECK(contains(json.out, R"("timeout-ms":{"value":4000,"source":"file )" + file + ":2\"}"));
    CHECK(contains(json.out, R"("curve-server-key":{"value":null,"source":"unset"})"));
}

TEST_CASE("a malformed file, an unknown key or a bad value is one line naming file and line") {
    sandbox box;
    struct bad {
        std::string text;
        std::string line; // ":N" expected after the file name
        std::string says;
        bool for_every_command; // not only in [command.stats], which only stats reads
    };
    const std::vector<bad> cases{
        {"broker = \"tcp://127.0.0.1:5555\"\n[stats\n", ":2", "", true},
        {"timeout-ms = 1\n\nbrokr = \"x\"\n", ":3", "unknown key 'brokr'", true},
        {"[command.stats]\ntimeout-ms = 1\nretries = 2\n", ":3",
         "unknown key 'retries' in [command.stats]", false},
        {"[command.nope]\nx = 1\n", ":1", "unknown command 'nope'", true},
        {"[nope]\nx = 1\n", ":1", "unknown key 'nope'", true},
        {"[command.stats]\n\ntimeout-ms = \"soon\"\n", ":3", "timeout-ms", false},
    };
    for (const auto& c : cases) {
        CAPTURE(c.text);
        const auto file = box.write(c.text);
        auto r = box.run({"stats", "--broker", nowhere});
        CHECK(r.code == 2);
        CHECK(count_lines(r.err) == 1);
        CHECK(contains(r.err, file + c.line + ":"));
        CHECK(contains(r.err, c.says));
        if (c.for_every_command) CHECK(box.run({"config"}).code == 2);
    }
    auto env = box.run({"stats"}, {{"ZMESH_TIMEOUT_MS", "soon"}});
    CHECK(env.code == 2);
    CHECK(count_lines(env.err) == 1);
    CHECK(contains(env.err, "ZMESH_TIMEOUT_MS"));
}

TEST_CASE("CURVE client keys from the file reach a CURVE broker") {
    sandbox box;
    const auto keys = box.dir.path() / "keys";
    const auto allowed = box.dir.path() / "allowed";
    fs::create_directories(allowed);
    for (const char* name : {"server", "client"})
        REQUIRE(box.run({"keygen", name, "--dir", keys.string()}).code == 0);
    fs::copy_file(keys / "client.key", allowed / "client.key");
    broker_process broker(box, {"--curve-secret", (keys / "server.key_secret").string(),
                                "--allow", allowed.string()});
    box.write("broker = \"" + broker.endpoint + "\"\ntimeout-ms = 3000\n"
              "curve-server-key = \"" + (keys / "server.key").string() + "\"\n"
              "curve-key = \"" + (keys / "client.key_secret").string() + "\"\n");
    auto r = box.run({"stats"});
    CHECK(r.code == 0);
    CHECK(contains(r.out, "requests"));
    // Without the keys the broker does not answer; with them in the environment it does.
    const auto plain_file = box.write("timeout-ms = 300\nbroker = \"" + broker.endpoint + "\"\n",
                                      box.dir.path() / "plain.toml");
    CHECK(box.run({"stats", "--config", plain_file}).code == 1);
    auto env = box.run({"stats", "--config", plain_file, "--timeout-ms", "3000"},
                       {{"ZMESH_CURVE_SERVER_KEY", (keys / "server.key").string()},
                        {"ZMESH_CURVE_KEY", (keys / "client.key_secret").string()}});
    CHECK(env.code == 0);
    CHECK(contains(env.out, "requests"));
}

} // TEST_SUITE
