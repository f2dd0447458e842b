// SPDX-License-Identifier: MPL-2.0
// test_completion_cli.cpp — the bash completion (nodes/cli/completion/zmesh.bash) completes
// subcommands, flags and fixed values from the zmesh binary itself. (The installed copy is
// checked by tests/consumer/run.sh; the zsh file sources this one through bashcompinit.)
#include "support/process.hpp"
#include "support/support.hpp"

#include <doctest/doctest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

namespace {

/// What the completion offers for the words @p line (the last one being completed).
std::string complete(const std::string& line) {
    support::temp_dir dir;
    const auto out = dir.path() / "out";
    const std::string script = std::string(ZMESH_SOURCE_DIR) + "/nodes/cli/completion/zmesh.bash";
    const std::string cmd = "bash -c 'source \"" + script + "\"; COMP_WORDS=(\"" +
                            support::zmesh_cli() + "\" " + line +
                            "); COMP_CWORD=$((${#COMP_WORDS[@]}-1)); _zmesh_bash; "
                            "echo \"${COMPREPLY[*]}\"' > \"" + out.string() + "\" 2>&1";
    const int rc = std::system(cmd.c_str());
    REQUIRE(rc == 0);
    std::ifstream in(out);
    std::ostringstream s;
    s << in.rdbuf();
    auto text = s.str();
    if (!text.empty() && text.back() == '\n') text.pop_back();
    return text;
}

} // namespace

TEST_SUITE("cli.completion") {

TEST_CASE("bash completion offers subcommands, their flags and fixed values") {
    CHECK(complete("bro") == "broker");
    CHECK(complete("st") == "stats");
    CHECK(complete("broker --max-q") == "--max-queue");
    CHECK(complete("broker --http --log-level d") == "debug");
    CHECK(complete("worker --log-format j") == "json");
    CHECK(complete("bench \"\"") == "mdp pubsub titanic mdp-peer freelance scale");
    // zmesh bench exists only where the benchmarks are built (not in the sanitizer builds).
    if (support::run_cli({"--help"}).out.find("\n  bench ") != std::string::npos)
        CHECK(complete("bench mdp --ded") == "--dedupe --dedupe-window-ms");
    CHECK(complete("stats --wa") == "--watch");
    CHECK(complete("directory l") == "list lookup");
    CHECK(complete("dlq re") == "replay");
    // Every flag a subcommand's --help lists, and only those.
    const auto all = complete("request --");
    CHECK(all.find("--service") != std::string::npos);
    CHECK(all.find("--timeout-ms") != std::string::npos);
    CHECK(all.find("--max-queue") == std::string::npos);
}

} // TEST_SUITE
