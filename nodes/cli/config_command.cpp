// SPDX-License-Identifier: MPL-2.0
// config_command.cpp — `zmesh config`: the effective common settings, one per line with where
// each comes from (flag, env VAR, file PATH:LINE, default), or one JSON object with --json.
//
// It declares the common settings as any command does and goes through the same parse(), so
// what it shows is what another command would get (a [command.NAME] table aside: see --help).
#include "command.hpp"
#include "config.hpp"

#include <cstdio>
#include <optional>

namespace zmesh::cli {

namespace {

/// @p text as a JSON string, quotes included.
std::string json_string(const std::string& text) {
    static constexpr char hex[] = "0123456789abcdef";
    std::string out = "\"";
    for (char c : text) {
        const auto u = static_cast<unsigned char>(c);
        switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default:
            if (u < 0x20 || u == 0x7f) {
                out += "\\u00";
                out += hex[u >> 4];
                out += hex[u & 0xf];
            } else {
                out += c; // UTF-8 passes through
            }
        }
    }
    return out + "\"";
}

struct row {
    std::string name;
    std::optional<std::string> value; ///< nullopt: unset
    std::string source;
};

} // namespace

int run_config(const std::vector<std::string>& args) {
    namespace po = boost::program_options;
    std::string broker = default_broker_endpoint(), log_level = "info", server_key, key;
    int timeout_ms = 2500, connect_timeout_ms = 5000;
    bool json = false;
    po::options_description options("options");
    options.add_options()
        ("broker", po::value(&broker)->default_value(broker), "broker endpoint (env ZMESH_BROKER)")
        ("timeout-ms", po::value(&timeout_ms)->default_value(timeout_ms),
         "wait for a reply, in ms (env ZMESH_TIMEOUT_MS)")
        ("log-level", po::value(&log_level)->default_value(log_level),
         "error, warn, info or debug (env ZMESH_LOG_LEVEL)")
        ("connect-timeout-ms", po::value(&connect_timeout_ms)->default_value(connect_timeout_ms),
         "how long a command that connects waits before it says nothing answered, in ms (env "
         "ZMESH_CONNECT_TIMEOUT_MS)")
        ("curve-server-key", po::value(&server_key),
         "the server's public certificate (env ZMESH_CURVE_SERVER_KEY)")
        ("curve-key", po::value(&key), "this client's own certificate (env ZMESH_CURVE_KEY)")
        ("json", po::bool_switch(&json), "print one JSON object instead of lines");
    po::variables_map vm;
    if (!parse("config", "[--config FILE] [--json]\n\n"
                         "Shows the settings every command shares, their values and where each "
                         "comes from: flag > environment > configuration file > default. A "
                         "command's own [command.NAME] table in the file is applied by that "
                         "command only.",
               options, args, vm))
        return ok;

    const auto& file = config_file_in_effect();
    std::vector<row> rows;
    if (file.path.empty())
        rows.push_back({"config", std::nullopt, "unset"});
    else
        rows.push_back({"config", file.path.string(),
                        file.chosen_by + (file.read ? "" : " (not found, skipped)")});
    auto add = [&](const char* name, std::optional<std::string> value) {
        rows.push_back({name, value, origin_of(name).text()});
    };
    add("broker", broker);
    add("timeout-ms", std::to_string(timeout_ms));
    add("log-level", log_level);
    add("connect-timeout-ms", std::to_string(connect_timeout_ms));
    auto given = [&](const char* name, const std::string& value) {
        return vm.count(name) ? std::optional(value) : std::nullopt;
    };
    add("curve-server-key", given("curve-server-key", server_key));
    add("curve-key", given("curve-key", key));

    if (json) {
        std::string out = "{";
        for (const auto& r : rows) {
            if (out.size() > 1) out += ",";
            out += json_string(r.name) + ":{\"value\":";
            if (!r.value) out += "null";
            else if (r.name == "timeout-ms" || r.name == "connect-timeout-ms") out += *r.value;
            else out += json_string(*r.value);
            out += ",\"source\":" + json_string(r.source) + "}";
        }
        std::printf("%s}\n", out.c_str());
        return ok;
    }
    for (const auto& r : rows)
        std::printf("%-18s %-32s %s\n", r.name.c_str(),
                    r.value ? printable(*r.value).c_str() : "(none)", r.source.c_str());
    return ok;
}

} // namespace zmesh::cli
