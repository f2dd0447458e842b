// SPDX-License-Identifier: MPL-2.0
// subprocess.hpp — internal: runs a shell command with some bytes on its stdin and collects its
// stdout and stderr, calling back periodically so the caller can keep heartbeating.
#pragma once

#include <chrono>
#include <functional>
#include <string>

namespace zmesh::cli {

struct subprocess_result {
    int exit_status = -1;  ///< exit code, or 128 + signal number if it was killed
    std::string out;       ///< everything written to stdout
    std::string err;       ///< everything written to stderr
};

/// Runs `/bin/sh -c command`, writes @p input to its stdin, then closes it.
/// @p tick is called at least every @p tick_interval while the command runs.
/// @throws std::system_error if the process cannot be started.
subprocess_result run_subprocess(const std::string& command, const std::string& input,
                                 const std::function<void()>& tick,
                                 std::chrono::milliseconds tick_interval);

} // namespace zmesh::cli
