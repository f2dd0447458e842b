// SPDX-License-Identifier: MPL-2.0
// config.cpp — the environment and the configuration file as layers under the command line
// (see config.hpp).
//
// Each layer is stored with po::store, one option at a time, and only for options no earlier
// layer set: store keeps the first value of a plain option but would add to a composing one,
// and storing one at a time lets an invalid value be reported with the file and line it came from.
#include "config.hpp"

#include "command.hpp"

#include <zmesh/nodes/broker.hpp>

#include <toml++/toml.h>

#include <cstdlib>
#include <map>
#include <optional>
#include <sstream>

namespace zmesh::cli {

namespace po = boost::program_options;

namespace {

std::map<std::string, origin>& origins() {
    static std::map<std::string, origin> all; // one command runs per process
    return all;
}

config_file_info& file_info() {
    static config_file_info info;
    return info;
}

/// A value the file gives an option: its tokens as the command line would have them.
struct file_value {
    std::vector<std::string> tokens;
    bool switch_off = false; ///< `flag = false` for a switch: nothing to store
    long line = 0;
};

bool is_set(const po::variables_map& vm, const std::string& name) {
    return vm.count(name) && !vm[name].defaulted();
}

/// @throws config_error naming @p where if the value is invalid for the option.
void store_one(const po::options_description& options, po::variables_map& vm,
               const std::string& name, std::vector<std::string> tokens, const std::string& where) {
    po::parsed_options parsed(&options);
    po::option opt(name, tokens);
    opt.original_tokens = std::move(tokens);
    parsed.options.push_back(std::move(opt));
    try {
        po::store(parsed, vm);
    } catch (const po::error& e) {
        throw config_error(where + ": " + e.what());
    }
}

std::string location(const std::filesystem::path& file, const toml::source_region& where) {
    return file.string() + ":" + std::to_string(where.begin.line);
}

/// The tokens of a TOML value: a string, number or boolean, or an array of them (a repeatable
/// flag). @throws config_error for anything else.
file_value value_of(const std::filesystem::path& file, const std::string& key,
                    const toml::node& node, bool is_switch) {
    file_value v;
    v.line = static_cast<long>(node.source().begin.line);
    auto scalar = [&](const toml::node& n) -> std::string {
        if (auto s = n.value<std::string>(); s && n.is_string()) return *s;
        if (n.is_integer()) return std::to_string(*n.value<std::int64_t>());
        if (n.is_floating_point()) {
            std::ostringstream out;
            out << *n.value<double>();
            return out.str();
        }
        if (n.is_boolean()) return *n.value<bool>() ? "true" : "false";
        throw config_error(location(file, n.source()) + ": '" + key +
                           "' must be a string, a number, a boolean or an array of them");
    };
    if (const auto* array = node.as_array()) {
        for (const auto& element : *array) v.tokens.push_back(scalar(element));
    } else if (is_switch && node.is_boolean()) {
        // A switch takes no value on the command line: true sets it, false leaves it off.
        v.switch_off = !*node.value<bool>();
    } else {
        v.tokens.push_back(scalar(node));
    }
    return v;
}

const common_setting* common_setting_named(const std::string& key) {
    for (const auto& s : common_settings())
        if (key == s.option) return &s;
    return nullptr;
}

bool is_command(const std::string& name) {
    for (const auto& c : commands())
        if (c.name == name) return true;
    return false;
}

/// Which file to read, if any can be named.
std::optional<config_file_info> locate(const po::variables_map& vm) {
    if (vm.count("config")) {
        const auto& path = vm["config"].as<std::string>();
        if (path.empty()) throw usage_error("--config needs a file name");
        return config_file_info{path, "--config"};
    }
    if (const char* env = std::getenv("ZMESH_CONFIG"); env && *env)
        return config_file_info{env, "env ZMESH_CONFIG"};
    // XDG Base Directory: a relative XDG_CONFIG_HOME is invalid and ignored.
    if (const char* xdg = std::getenv("XDG_CONFIG_HOME"); xdg && *xdg == '/')
        return config_file_info{std::filesystem::path(xdg) / "zmesh" / "config.toml",
                                "$XDG_CONFIG_HOME"};
    if (const char* home = std::getenv("HOME"); home && *home)
        return config_file_info{std::filesystem::path(home) / ".config" / "zmesh" / "config.toml",
                                "$HOME"};
    return std::nullopt;
}

/// The values the file gives @p command's options: its [command.NAME] table, then the top level.
/// Command tables are under [command] because a command and a setting may share a name
/// (`broker = "tcp://..."` and the options of `zmesh broker`), which TOML cannot tell apart.
/// @throws config_error for a malformed file, an unknown key or table, or an unusable value.
std::map<std::string, file_value> read_file(const std::filesystem::path& file,
                                            const std::string& command,
                                            const po::options_description& options) {
    toml::table root;
    try {
        root = toml::parse_file(file.string());
    } catch (const toml::parse_error& e) {
        const auto line = e.source().begin.line;
        throw config_error(file.string() + (line ? ":" + std::to_string(line) : std::string()) +
                           ": " + std::string(e.description()));
    }
    auto is_switch = [&](const std::string& name) {
        const auto* d = options.find_nothrow(name, false);
        return d && d->semantic()->max_tokens() == 0;
    };
    std::map<std::string, file_value> from_table, from_top;
    for (const auto& [k, node] : root) {
        const std::string key(k.str());
        if (key == "command" && node.is_table()) {
            for (const auto& [name_key, table_node] : *node.as_table()) {
                const std::string name(name_key.str());
                const auto* table = table_node.as_table();
                if (!table || !is_command(name))
                    throw config_error(location(file, name_key.source()) + ": unknown command '" +
                                       name + "': [command.NAME] tables are named after "
                                       "commands (zmesh --help)");
                if (name != command) continue;
                for (const auto& [ck, cnode] : *table) {
                    const std::string option(ck.str());
                    if (option == "config" || option == "help" ||
                        !options.find_nothrow(option, false))
                        throw config_error(location(file, ck.source()) + ": unknown key '" +
                                           option + "' in [command." + name +
                                           "]: not an option of zmesh " + name);
                    from_table[option] = value_of(file, option, cnode, is_switch(option));
                }
            }
        } else if (const auto* common = common_setting_named(key)) {
            if (options.find_nothrow(key, false) && common->applies_to(command))
                from_top[key] = value_of(file, key, node, is_switch(key));
        } else {
            std::string known;
            for (const auto& s : common_settings())
                known += std::string(known.empty() ? "" : ", ") + s.option;
            throw config_error(location(file, k.source()) + ": unknown key '" + key +
                               "' (at the top level: " + known + "; or [command.NAME] tables)");
        }
    }
    from_table.merge(from_top); // keeps the table's value where both set one
    return from_table;
}

} // namespace

const std::string& default_broker_endpoint() {
    static const std::string endpoint = nodes::broker_config{}.mdp_endpoint;
    return endpoint;
}

const std::vector<common_setting>& common_settings() {
    static const std::vector<common_setting> all = {
        {"broker", "ZMESH_BROKER", {}},
        // The wait for the broker's answer: the commands that ask and wait.
        {"timeout-ms", "ZMESH_TIMEOUT_MS", {"request", "services", "stats", "dlq", "config"}},
        {"log-level", "ZMESH_LOG_LEVEL", {}},
        {"log-format", "ZMESH_LOG_FORMAT", {}},
        // How long a command that connects waits for an answer before it says nothing answered.
        {"connect-timeout-ms", "ZMESH_CONNECT_TIMEOUT_MS", {}},
        {"curve-server-key", "ZMESH_CURVE_SERVER_KEY", {}},
        {"curve-key", "ZMESH_CURVE_KEY", {}},
    };
    return all;
}

bool common_setting::applies_to(const std::string& command) const {
    if (only.empty()) return true;
    for (const auto& c : only)
        if (c == command) return true;
    return false;
}

std::string origin::text() const {
    switch (from) {
    case kind::flag: return "flag";
    case kind::env: return "env " + detail;
    case kind::file: return "file " + detail;
    case kind::default_value: return "default";
    case kind::unset: break;
    }
    return "unset";
}

origin origin_of(const std::string& option) {
    auto it = origins().find(option);
    return it == origins().end() ? origin{} : it->second;
}

const config_file_info& config_file_in_effect() { return file_info(); }

void add_config_option(po::options_description& options) {
    options.add_options()("config", po::value<std::string>(),
                          "configuration file (default $XDG_CONFIG_HOME/zmesh/config.toml, else "
                          "~/.config/zmesh/config.toml; env ZMESH_CONFIG)");
}

void apply_configuration(const std::string& command, const po::options_description& options,
                         po::variables_map& vm) {
    auto& seen = origins();
    seen.clear();
    for (const auto& [name, value] : vm)
        if (!value.defaulted()) seen[name] = {origin::kind::flag, {}};

    const std::string table = command.substr(0, command.find(' ')); // "bench mdp": [bench]
    for (const auto& s : common_settings()) {
        if (!options.find_nothrow(s.option, false) || !s.applies_to(table) ||
            is_set(vm, s.option))
            continue;
        const char* value = std::getenv(s.env);
        if (!value || !*value) continue; // VAR= is the same as unset, as shells use it
        store_one(options, vm, s.option, {value}, s.env);
        seen[s.option] = {origin::kind::env, s.env};
    }

    auto& info = file_info();
    info = {};
    if (auto located = locate(vm)) {
        info = std::move(*located);
        std::error_code ec;
        const bool exists = std::filesystem::exists(info.path, ec);
        if (!exists && info.chosen_by.rfind("$", 0) != 0) // named by the user: it must be there
            throw config_error(info.path.string() + ": no such configuration file (" +
                               info.chosen_by + ")");
        if (exists) {
            info.read = true;
            for (auto& [name, value] : read_file(info.path, table, options)) {
                if (is_set(vm, name) || value.switch_off) continue;
                const std::string where = info.path.string() + ":" + std::to_string(value.line);
                store_one(options, vm, name, std::move(value.tokens), where);
                seen[name] = {origin::kind::file, where};
            }
        }
    }

    for (const auto& [name, value] : vm)
        if (value.defaulted() && !seen.count(name)) seen[name] = {origin::kind::default_value, {}};
}

} // namespace zmesh::cli
