// SPDX-License-Identifier: MPL-2.0
// test_docs_cli.cpp — docs that stay true: every flag that any subcommand's --help lists must be
// written somewhere in README.md or docs/ (as "--flag"), so a flag added without documentation
// fails the suite. The subcommands come from `zmesh --help`, the flags from each `--help`.
#include "support/process.hpp"

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace fs = std::filesystem;

namespace {

std::string all_docs() {
    std::string text;
    std::vector<fs::path> files{fs::path(ZMESH_SOURCE_DIR) / "README.md"};
    for (const auto& e : fs::recursive_directory_iterator(fs::path(ZMESH_SOURCE_DIR) / "docs"))
        if (e.is_regular_file() && e.path().extension() == ".md") files.push_back(e.path());
    for (const auto& f : files) {
        std::ifstream in(f);
        std::ostringstream s;
        s << in.rdbuf();
        text += s.str();
        text += '\n';
    }
    return text;
}

/// Whether @p docs contains @p flag as a whole flag ("--max-queue", not "--max-queue-x").
bool documented(const std::string& docs, const std::string& flag) {
    for (auto at = docs.find(flag); at != std::string::npos; at = docs.find(flag, at + 1)) {
        const auto end = at + flag.size();
        if (end == docs.size()) return true;
        const char c = docs[end];
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-')) return true;
    }
    return false;
}

bool name_char(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'; }

/// The subcommand a line of `zmesh --help` lists ("  broker     run a..."), or "".
/// (Parsed by hand: std::regex trips GCC 12's -Wmaybe-uninitialized in the sanitizer builds.)
std::string command_of(const std::string& line) {
    if (line.size() < 3 || line[0] != ' ' || line[1] != ' ' || line[2] < 'a' || line[2] > 'z')
        return {};
    std::size_t end = 2;
    while (end < line.size() && name_char(line[end])) ++end;
    if (end == line.size() || line[end] != ' ') return {};
    return line.substr(2, end - 2);
}

/// The flag a Boost.Program_options help line declares ("  --mdp arg", "  -h [ --help ]"), or "".
std::string flag_of(const std::string& line) {
    std::size_t at = line.find_first_not_of(' ');
    if (at == 0 || at == std::string::npos) return {};
    if (line.compare(at, 1, "-") == 0 && line.compare(at, 2, "--") != 0) {
        // -h [ --help ]
        if (line.compare(at + 2, 3, " [ ") != 0) return {};
        at += 5;
    }
    if (line.compare(at, 2, "--") != 0) return {};
    std::size_t end = at + 2;
    while (end < line.size() && name_char(line[end])) ++end;
    return end > at + 2 ? line.substr(at, end - at) : std::string();
}

} // namespace

TEST_SUITE("cli.docs") {

TEST_CASE("every flag of every subcommand is documented in README.md or docs/") {
    const auto top = support::run_cli({"--help"});
    REQUIRE(top.code == 0);
    // Subcommands are the two-space-indented lines of zmesh --help.
    std::vector<std::string> commands;
    std::istringstream lines(top.out);
    for (std::string line; std::getline(lines, line);)
        if (const auto c = command_of(line); !c.empty()) commands.push_back(c);
    REQUIRE(commands.size() >= 10);
    // Options that only carry a subcommand's positional arguments (BODY, KEY VALUE, NAME...):
    // the synopsis documents those.
    const std::set<std::string> positional{"request --body", "clone --action", "clone --args",
                                           "pub --message", "dlq --action", "keygen --name"};
    const auto docs = all_docs();
    std::vector<std::string> missing;
    std::size_t checked = 0;
    for (const auto& c : commands) {
        std::vector<std::string> args;
        std::istringstream words(c);
        for (std::string w; words >> w;) args.push_back(w);
        args.push_back("--help");
        const auto r = support::run_cli(args);
        CAPTURE(c);
        REQUIRE(r.code == 0);
        std::istringstream help(r.out);
        for (std::string line; std::getline(help, line);) {
            const std::string flag = flag_of(line);
            if (flag.empty()) continue;
            ++checked;
            if (positional.count(c + " " + flag)) continue;
            if (!documented(docs, flag)) missing.push_back("zmesh " + c + " " + flag);
        }
    }
    CHECK(checked > 100);
    std::string list;
    for (const auto& m : missing) list += "\n  " + m;
    INFO("flags in --help but not in README.md or docs/:" << list);
    CHECK(missing.empty());
}

} // TEST_SUITE
