// SPDX-License-Identifier: MPL-2.0
// supervisor.hpp — internal: runs a resolved topology (topology.hpp) until it is told to stop.
//
// It starts each process once its dependencies are ready, prefixes its output lines with its
// name, restarts the ones that crash (with backoff), keeps a state file for scripts and tests,
// and on SIGINT/SIGTERM stops them in reverse dependency order. See docs/up.md.
#pragma once

#include "topology.hpp"

#include <string>

namespace zmesh::cli::up {

struct supervisor_options {
    std::string state_path; ///< --state: a JSON file rewritten on every change ("" for none)
    bool color = false;     ///< colour the name prefixes
};

/// Runs @p topo. Returns when every process has stopped: exit_code::ok after a stop signal,
/// exit_code::failure when a node could not be made ready (timeout, a setup step that failed,
/// a node that exited for good before it was ready), after everything else was stopped.
int supervise(const topology& topo, const supervisor_options& options);

} // namespace zmesh::cli::up
