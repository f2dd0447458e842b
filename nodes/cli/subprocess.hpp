// SPDX-License-Identifier: MPL-2.0
// subprocess.hpp — internal: runs a shell command with some bytes on its stdin and collects its
// stdout and stderr, calling back periodically so the caller can keep heartbeating, streaming
// stdout line by line if asked, and killing the command at a deadline.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace zmesh::cli {

/// What to run and how.
struct subprocess_options {
    std::string command; ///< run as `/bin/sh -c command`, in a process group of its own
    std::string input;   ///< written to its stdin, which is then closed
    /// Changes to the inherited environment: a value sets the variable, std::nullopt removes it.
    std::vector<std::pair<std::string, std::optional<std::string>>> environment;
    /// Called at least every tick_interval while the command runs (to heartbeat).
    std::function<void()> tick;
    std::chrono::milliseconds tick_interval{1000};
    /// If set: each complete line of stdout (with its '\n') as soon as it is read, and
    /// subprocess_result::out keeps only what follows the last newline.
    std::function<void(std::string&&)> on_line;
    /// If set, the command's process group is killed at this time (see kill_grace).
    std::optional<std::chrono::steady_clock::time_point> deadline;
    /// Polled about every 100 ms: true kills the command's process group as the deadline does.
    std::function<bool()> cancelled;
    /// Between SIGTERM and SIGKILL to the process group, at the deadline or on cancel: time for
    /// the command to clean up, short because its client has already given up.
    std::chrono::milliseconds kill_grace{200};
};

/// How the command ended and what it wrote.
struct subprocess_result {
    int exit_status = -1;  ///< exit code, or 128 + signal number if it was killed
    std::string out;       ///< everything written to stdout (the rest after the last line with
                           ///< on_line)
    std::string err;       ///< everything written to stderr
    bool timed_out = false; ///< killed at subprocess_options::deadline
    bool cancelled = false; ///< killed because subprocess_options::cancelled said so
};

/// Runs `/bin/sh -c command` as @p options say. The command, and everything it starts, is in a
/// process group of its own, killed as a whole at the deadline or on cancel: SIGTERM, then
/// SIGKILL kill_grace later if any of it still runs. If a callback throws, the group is killed
/// at once (SIGKILL) and reaped before the exception goes on: no child outlives the call.
/// @throws std::system_error if the process cannot be started.
subprocess_result run_subprocess(const subprocess_options& options);

} // namespace zmesh::cli
