// SPDX-License-Identifier: MPL-2.0
// config.hpp — internal: one configuration for every subcommand (README "Configuration").
//
// A setting is taken from the first of: the command-line flag, its environment variable
// (ZMESH_BROKER for --broker... only the common settings have one), the configuration file
// (the command's [command.NAME] table before the top level), the built-in default. The file is --config FILE
// (or ZMESH_CONFIG), else $XDG_CONFIG_HOME/zmesh/config.toml, else ~/.config/zmesh/config.toml;
// it is TOML, read with toml++. parse() (command.hpp) applies all of it, so a subcommand only
// declares its options; origin_of() says where each value came from (zmesh config, and the
// few commands whose checks depend on it).
#pragma once

#include <boost/program_options.hpp>

#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

namespace zmesh::cli {

/// A bad configuration file, key or environment value: main prints it on one line (it already
/// names the file and line, or the variable) and exits with exit_code::usage.
class config_error : public std::runtime_error {
    using std::runtime_error::runtime_error;
};

/// The broker MDP endpoint every command connects to when none is configured: the endpoint
/// `zmesh broker` binds by default (nodes::broker_config::mdp_endpoint).
const std::string& default_broker_endpoint();

/// A setting shared by the commands, read from its environment variable and from the file's
/// top level.
struct common_setting {
    const char* option; ///< the flag's name, also the key in the file
    const char* env;    ///< its environment variable
    /// The commands it applies to, if not every command that has the option: --timeout-ms
    /// means something else to `zmesh sub` (give up) and `zmesh titanic` (a service's reply).
    std::vector<std::string> only;

    /// Whether it applies to @p command (given that the command has the option).
    [[nodiscard]] bool applies_to(const std::string& command) const;
};

/// broker, timeout-ms, log-level, connect-timeout-ms, curve-server-key, curve-key.
const std::vector<common_setting>& common_settings();

/// Where a value came from.
struct origin {
    enum class kind { unset, default_value, file, env, flag };
    kind from = kind::unset;
    std::string detail; ///< file: PATH:LINE; env: the variable's name
    /// "flag", "env ZMESH_BROKER", "file PATH:LINE", "default" or "unset".
    [[nodiscard]] std::string text() const;
};

/// Where @p option's value came from in the last parse().
origin origin_of(const std::string& option);

/// The configuration file the last parse() looked for: its path (empty if none could be
/// named) and how it was chosen ("--config", "env ZMESH_CONFIG", "$XDG_CONFIG_HOME", "$HOME").
struct config_file_info {
    std::filesystem::path path;
    std::string chosen_by;
    bool read = false; ///< false: the default file does not exist
};
const config_file_info& config_file_in_effect();

/// Adds --config to @p options (parse() does it for every command).
void add_config_option(boost::program_options::options_description& options);

/// After the command line is stored in @p vm: stores what the environment, then the
/// configuration file, set for the options of @p command that the command line did not, and
/// records every option's origin.
/// @throws config_error (a malformed file, an unknown key, a bad value), naming where.
void apply_configuration(const std::string& command,
                         const boost::program_options::options_description& options,
                         boost::program_options::variables_map& vm);

} // namespace zmesh::cli
