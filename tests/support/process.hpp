// SPDX-License-Identifier: MPL-2.0
// process.hpp — test helper: a child process that is killed and reaped when the handle goes out
// of scope, so a failing test never leaves a broker or worker running.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace support {

/// Path of the zmesh CLI built with the tests (from the ZMESH_CLI_PATH compile definition).
std::string zmesh_cli();

/// What a finished CLI run printed and returned.
struct cli_result {
    int code = -1;   ///< exit code (128 + signal if killed); -1 if it did not finish in time
    std::string out; ///< stdout
    std::string err; ///< stderr
};

/// Runs the zmesh CLI with @p args to completion, within @p timeout (then it is killed).
cli_result run_cli(std::vector<std::string> args,
                   std::chrono::milliseconds timeout = std::chrono::milliseconds(10000));

/// Number of lines (newline characters) in @p text.
inline int count_lines(const std::string& text) {
    int n = 0;
    for (char c : text) n += c == '\n';
    return n;
}

class child_process {
  public:
    /// Starts @p argv[0] with @p argv. Its stdout is captured through a pipe (see read_line());
    /// its stderr goes to @p stderr_path if given, else is inherited.
    explicit child_process(std::vector<std::string> argv, std::string stderr_path = {});
    ~child_process();
    child_process(child_process&& other) noexcept;
    child_process& operator=(child_process&& other) noexcept;
    child_process(const child_process&) = delete;
    child_process& operator=(const child_process&) = delete;

    [[nodiscard]] pid_t pid() const noexcept { return pid_; }

    /// Reads one line of the child's stdout within @p timeout (without the newline).
    std::optional<std::string> read_line(std::chrono::milliseconds timeout);

    /// Sends @p sig (SIGTERM, SIGKILL...).
    void signal(int sig) noexcept;

    /// Waits up to @p timeout for the child to exit.
    /// @returns its exit code, or 128 + signal if a signal killed it; std::nullopt on timeout.
    std::optional<int> wait_for(std::chrono::milliseconds timeout);

    /// SIGKILL (if still running) and reap. Idempotent.
    void kill() noexcept;

  private:
    pid_t pid_ = -1;
    int stdout_fd_ = -1;
    std::string buffer_;     // stdout read but not yet returned as a line
    std::optional<int> exit_code_;
};

} // namespace support
