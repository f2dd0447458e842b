// SPDX-License-Identifier: MPL-2.0
// command.hpp — internal: the registry of zmesh subcommands.
//
// main() finds the subcommand named by the first argument and hands it the remaining arguments.
// Each subcommand lives in its own <name>_command.cpp, declares its options with
// Boost.Program_options and calls the library; it holds no messaging logic of its own.
#pragma once

#include <boost/program_options.hpp>

#include <cstddef>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace zmesh::cli {

/// A peer's bytes (a frame, a reason, a type) as one printable line: printable ASCII as is, any
/// other byte (and the backslash) as \xNN.
inline std::string printable(std::string_view bytes) {
    static constexpr char hex[] = "0123456789abcdef";
    std::string out;
    for (char c : bytes) {
        const auto u = static_cast<unsigned char>(c);
        if (u >= 0x20 && u < 0x7f && c != '\\') {
            out += c;
        } else {
            out += "\\x";
            out += hex[u >> 4];
            out += hex[u & 0xf];
        }
    }
    return out;
}

/// Exit codes of the zmesh binary.
enum exit_code : int { ok = 0, failure = 1, usage = 2 };

/// A bad flag or argument: main prints it on one line and exits with exit_code::usage.
class usage_error : public std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct command {
    std::string name;
    std::string summary;
    /// Runs the command with its arguments (without the command name); returns the exit code.
    std::function<int(const std::vector<std::string>& args)> run;
};

/// Every subcommand, in the order `zmesh --help` lists them.
const std::vector<command>& commands();

/// Parses @p args against @p options (and @p positional, if any) into @p vm, then completes it
/// from the environment and the configuration file (config.hpp); adds --help and --config.
/// @returns false if --help was given, after printing usage for @p name.
/// @throws usage_error on unknown or malformed options, config_error on a bad file or variable.
bool parse(const std::string& name, const std::string& synopsis,
           boost::program_options::options_description& options,
           const std::vector<std::string>& args, boost::program_options::variables_map& vm,
           const boost::program_options::positional_options_description* positional = nullptr);

/// A byte count as flags take it: digits, then optionally k, M or G (powers of 1024; k and K
/// alike). @returns std::nullopt for anything else, or on overflow.
inline std::optional<std::size_t> parse_byte_size(const std::string& text) {
    std::size_t i = 0, value = 0;
    for (; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i) {
        const auto digit = static_cast<std::size_t>(text[i] - '0');
        if (value > (static_cast<std::size_t>(-1) - digit) / 10) return std::nullopt;
        value = value * 10 + digit;
    }
    if (i == 0) return std::nullopt;
    unsigned shift = 0;
    if (i + 1 == text.size()) {
        switch (text[i]) {
        case 'k': case 'K': shift = 10; break;
        case 'M': shift = 20; break;
        case 'G': shift = 30; break;
        default: return std::nullopt;
        }
    } else if (i != text.size()) {
        return std::nullopt;
    }
    if (shift && value > (static_cast<std::size_t>(-1) >> shift)) return std::nullopt;
    return value << shift;
}

// Subcommand entry points, one per <name>_command.cpp.
int run_broker(const std::vector<std::string>& args);
int run_worker(const std::vector<std::string>& args);
int run_request(const std::vector<std::string>& args);
int run_serve(const std::vector<std::string>& args);
int run_clone_server(const std::vector<std::string>& args);
int run_clone(const std::vector<std::string>& args);
int run_services(const std::vector<std::string>& args);
int run_stats(const std::vector<std::string>& args);
int run_directory(const std::vector<std::string>& args);
int run_pub(const std::vector<std::string>& args);
int run_sub(const std::vector<std::string>& args);
int run_titanic(const std::vector<std::string>& args);
int run_dlq(const std::vector<std::string>& args);
int run_keygen(const std::vector<std::string>& args);
int run_config(const std::vector<std::string>& args);
int run_up(const std::vector<std::string>& args);
int run_version(const std::vector<std::string>& args);
#ifdef ZMESH_HAVE_BENCH
int run_bench(const std::vector<std::string>& args);
#endif

} // namespace zmesh::cli
