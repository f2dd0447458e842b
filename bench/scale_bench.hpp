// SPDX-License-Identifier: MPL-2.0
// scale_bench.hpp — internal: `zmesh bench scale`, the cost of the broker as its work grows:
// connected clients, idle clients and queued requests, in throughput and in bytes.
#pragma once

#include <string>
#include <vector>

namespace zmesh::bench {

/// `zmesh bench scale [--clients N,..] [--idle N,..] [--queued N,..] [options]`: parses
/// @p args, runs each set asked for against a `zmesh broker` process of its own and prints one
/// table per set after @p machine_line.
/// @returns 0 if every count added up (every request answered, the broker saw every client and
///          every queued request), 1 if not.
/// @throws zmesh::cli::usage_error for a bad flag; zmesh::error when a process or a phase does
///         not come up in time (the message names what it waited for).
int run_scale_command(const std::vector<std::string>& args, const std::string& machine_line);

} // namespace zmesh::bench
