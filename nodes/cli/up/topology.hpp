// SPDX-License-Identifier: MPL-2.0
// topology.hpp — internal: a `zmesh up` topology file (docs/up.md) read into the processes to
// start, with every reference resolved, every `*` port allocated and every value substituted.
//
// This unit starts nothing: it parses, validates and orders, so `zmesh up --check` and the unit
// tests use it alone. Every error it throws begins with FILE:LINE, the line of the TOML value
// (or key) at fault, because a topology file is edited by hand and the line is what one needs.
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace zmesh::cli::up {

/// A file that cannot be used: the message is "FILE:LINE: what is wrong" (or "FILE: ..." when
/// no line applies, e.g. the file cannot be read).
class topology_error : public std::runtime_error {
    using std::runtime_error::runtime_error;
};

enum class restart_policy { on_failure, always, never };
enum class ready_kind { endpoints, exit, none, line };

/// One endpoint of one process, as allocated for this run.
struct endpoint {
    std::string key;       ///< its name in the node's `endpoints` table
    std::string url;       ///< e.g. tcp://127.0.0.1:40123 or ipc:///tmp/x.sock
    bool tcp = false;
    std::string host;      ///< tcp: the host to connect to (127.0.0.1 for * or 0.0.0.0)
    int port = 0;          ///< tcp: the port
    std::string ipc_path;  ///< ipc: the socket file
};

/// One process to run: a node with count = 1, or one replica (NODE.i) of a node with count > 1.
struct instance {
    std::string name;  ///< "broker", or "worker.2" for a replica
    std::string node;  ///< the [node.NAME] it comes from
    int index = 1;     ///< 1-based replica index (1 for count = 1)
    long line = 0;     ///< the line of its [node.NAME] table
    std::string exe;   ///< resolved executable (what is exec'd)
    std::vector<std::string> argv; ///< substituted `run`, argv[0] = exe
    /// [env] then the node's env, substituted (applied over the environment of `zmesh up`).
    std::vector<std::pair<std::string, std::string>> env;
    std::string cwd;   ///< absolute
    std::vector<endpoint> endpoints;
    std::vector<std::size_t> deps; ///< indices (into topology::instances) it waits for
    restart_policy restart = restart_policy::on_failure;
    ready_kind ready = ready_kind::endpoints;
    std::string ready_line;       ///< ready_kind::line: the text a line must contain
    long ready_timeout_ms = 30000;
};

struct topology {
    std::string name;    ///< [up] name, default the file's stem
    std::string file;    ///< the file as given (for messages)
    std::string dir;     ///< absolute directory of the file
    std::string run_dir; ///< ${up.run_dir}
    long backoff_first_ms = 200;
    long backoff_cap_ms = 5000;
    long stop_timeout_ms = 5000;
    std::size_t node_count = 0;       ///< [node.*] tables
    std::vector<instance> instances; ///< in start order: every dependency before its dependents
};

struct load_options {
    /// ${up.run_dir}. Empty: the placeholder "<run_dir>" (for --check, which creates nothing).
    std::string run_dir;
    /// What run[0] == "zmesh" runs: the binary of `zmesh up` itself.
    std::string zmesh_path;
    /// Environment lookup for ${VAR} (and PATH); default ::getenv.
    std::function<std::optional<std::string>(const std::string&)> getenv;
    /// Whether a run[0] that does not exist (or is not executable) is an error.
    bool check_executables = true;
};

/// Reads @p file. @throws topology_error as described above.
topology load_file(const std::string& file, const load_options& options);

/// The same from @p text, as if read from @p file (its directory is ${up.dir}).
topology load_text(const std::string& text, const std::string& file, const load_options& options);

/// A free TCP port on @p host (bind port 0, read it, close it: another process may take it
/// before the node binds it, a small race docs/up.md describes).
/// @throws std::runtime_error naming the host if it cannot bind.
int free_port(const std::string& host);

} // namespace zmesh::cli::up
