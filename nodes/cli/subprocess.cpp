// SPDX-License-Identifier: MPL-2.0
// subprocess.cpp — fork/exec with three pipes, multiplexed with poll() so that a command that
// writes a lot while we are still feeding its stdin cannot deadlock us.
//
// The command runs in a process group of its own, so that a deadline or a cancel reaches
// everything it started (`sh -c 'a | b'` forks; killing only the shell would leave its children
// holding the stdout pipe, and us waiting for them). The environment is built before fork():
// after fork() in a process with other threads (libzmq's) only async-signal-safe calls are
// allowed, and setenv() is not one.
#include "subprocess.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <system_error>

extern char** environ;

namespace zmesh::cli {
namespace {

using clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

/// After the group was killed, how long output still in the pipes is read before they are
/// closed: a process that left the group (setsid) could otherwise hold them open for ever.
constexpr milliseconds drain_after_kill{100};
/// How often a command that closed its output is checked for exit, and cancelled() is asked.
constexpr milliseconds exit_poll{10};
constexpr milliseconds cancel_poll{100};

void close_fd(int& fd) noexcept {
    if (fd >= 0) ::close(fd);
    fd = -1;
}

/// Three pipes (stdin, stdout, stderr), all closed again if one cannot be made.
struct pipes {
    int fds[3][2] = {{-1, -1}, {-1, -1}, {-1, -1}};
    pipes() {
        for (auto& p : fds) {
            if (::pipe2(p, O_CLOEXEC) != 0) {
                const int e = errno;
                close_all();
                throw std::system_error(e, std::generic_category(), "pipe");
            }
        }
    }
    void close_all() noexcept {
        for (auto& p : fds) {
            close_fd(p[0]);
            close_fd(p[1]);
        }
    }
};

/// The inherited environment with @p changes applied, as execve() takes it.
std::vector<std::string>
child_environment(const std::vector<std::pair<std::string, std::optional<std::string>>>& changes) {
    std::vector<std::string> env;
    for (char** e = environ; e && *e; ++e) {
        const std::string_view entry(*e);
        const auto name = entry.substr(0, entry.find('='));
        const bool changed = std::any_of(changes.begin(), changes.end(),
                                         [&](const auto& c) { return c.first == name; });
        if (!changed) env.emplace_back(entry);
    }
    for (const auto& [name, value] : changes)
        if (value) env.push_back(name + "=" + *value);
    return env;
}

/// The running child and its pipes; kills and reaps the child if the run ends early (a callback
/// threw), so that no command outlives run_subprocess().
struct child {
    pid_t pid = -1;
    bool reaped = false;
    int status = 0;
    int to_child = -1, from_out = -1, from_err = -1;
    struct sigaction previous_sigpipe {};
    bool sigpipe_saved = false; // previous_sigpipe holds the disposition to restore

    child() = default;
    child(const child&) = delete;
    child& operator=(const child&) = delete;
    ~child() {
        close_fd(to_child);
        close_fd(from_out);
        close_fd(from_err);
        if (pid > 0 && !reaped) {
            ::kill(-pid, SIGKILL);
            while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
            }
        }
        if (sigpipe_saved) ::sigaction(SIGPIPE, &previous_sigpipe, nullptr);
    }

    /// Reaps the child if it has exited, without waiting.
    void check_exit() noexcept {
        if (reaped) return;
        const pid_t r = ::waitpid(pid, &status, WNOHANG);
        if (r == pid || (r < 0 && errno == ECHILD)) reaped = true;
    }

    /// @p sig to the whole process group (the shell and everything it started).
    void signal_group(int sig) const noexcept { ::kill(-pid, sig); }

    [[nodiscard]] bool output_open() const noexcept { return from_out >= 0 || from_err >= 0; }
};

void start(child& c, const subprocess_options& options) {
    pipes p;
    auto& in = p.fds[0];
    auto& out = p.fds[1];
    auto& err = p.fds[2];
    const auto env = child_environment(options.environment);
    std::vector<char*> envp;
    for (const auto& e : env) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);
    char sh[] = "sh", dash_c[] = "-c";
    char* argv[] = {sh, dash_c, const_cast<char*>(options.command.c_str()), nullptr};

    const pid_t pid = ::fork();
    if (pid < 0) {
        const int e = errno;
        p.close_all();
        throw std::system_error(e, std::generic_category(), "fork");
    }
    if (pid == 0) {
        ::setpgid(0, 0);
        ::dup2(in[0], STDIN_FILENO);
        ::dup2(out[1], STDOUT_FILENO);
        ::dup2(err[1], STDERR_FILENO);
        ::signal(SIGPIPE, SIG_DFL);
        ::execve("/bin/sh", argv, envp.data());
        ::_exit(127);
    }
    // Also in the parent, so that the group exists before any kill(-pid) whichever process
    // runs first (the child's own call may not have happened yet).
    ::setpgid(pid, pid);
    c.pid = pid;
    ::close(in[0]);
    ::close(out[1]);
    ::close(err[1]);
    c.to_child = in[1];
    c.from_out = out[0];
    c.from_err = err[0];
    ::fcntl(c.to_child, F_SETFL, O_NONBLOCK);
    // A command that exits without reading its stdin must not kill us with SIGPIPE.
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    c.sigpipe_saved = ::sigaction(SIGPIPE, &ignore, &c.previous_sigpipe) == 0;
}

/// Hands each complete line in @p pending to @p on_line, keeping the unfinished rest.
void emit_lines(std::string& pending, const std::function<void(std::string&&)>& on_line) {
    std::size_t start = 0;
    for (auto nl = pending.find('\n'); nl != std::string::npos; nl = pending.find('\n', start)) {
        on_line(pending.substr(start, nl + 1 - start));
        start = nl + 1;
    }
    pending.erase(0, start);
}

} // namespace

subprocess_result run_subprocess(const subprocess_options& options) {
    child c;
    start(c, options);

    subprocess_result result;
    std::size_t written = 0;
    if (options.input.empty()) close_fd(c.to_child);
    char buf[65536];
    auto next_tick = clock::now() + options.tick_interval;
    auto next_cancel_check = clock::now();
    // Killing: SIGTERM first, SIGKILL at sigkill_at; then output is drained until close_at.
    std::optional<clock::time_point> sigkill_at, close_at;

    auto kill_group = [&](clock::time_point now) {
        c.signal_group(SIGTERM);
        sigkill_at = now + options.kill_grace;
    };

    for (;;) {
        auto now = clock::now();
        c.check_exit();
        if (c.reaped && !c.output_open()) break;
        if (close_at && now >= *close_at) break;

        if (!sigkill_at && options.deadline && now >= *options.deadline) {
            result.timed_out = true;
            kill_group(now);
        }
        if (!sigkill_at && options.cancelled && now >= next_cancel_check) {
            next_cancel_check = now + cancel_poll;
            if (options.cancelled()) {
                result.cancelled = true;
                kill_group(now);
            }
        }
        if (sigkill_at && !close_at && now >= *sigkill_at) {
            c.signal_group(SIGKILL);
            close_at = now + drain_after_kill;
        }
        if (c.reaped && sigkill_at && !close_at) close_at = now + drain_after_kill;

        // Sleep until the first of: output, the next tick, the next kill step or check.
        auto wake = next_tick;
        if (!sigkill_at && options.deadline) wake = std::min(wake, *options.deadline);
        if (!sigkill_at && options.cancelled) wake = std::min(wake, next_cancel_check);
        if (sigkill_at && !close_at) wake = std::min(wake, *sigkill_at);
        if (close_at) wake = std::min(wake, *close_at);
        if (!c.output_open() && !c.reaped) wake = std::min(wake, now + exit_poll);
        const auto timeout = std::max(milliseconds(0), std::chrono::ceil<milliseconds>(wake - now));

        pollfd fds[3];
        nfds_t n = 0;
        int* owners[3];
        if (c.to_child >= 0) { fds[n] = {c.to_child, POLLOUT, 0}; owners[n++] = &c.to_child; }
        if (c.from_out >= 0) { fds[n] = {c.from_out, POLLIN, 0}; owners[n++] = &c.from_out; }
        if (c.from_err >= 0) { fds[n] = {c.from_err, POLLIN, 0}; owners[n++] = &c.from_err; }
        const int rc = ::poll(fds, n, static_cast<int>(timeout.count()));
        if (rc < 0 && errno != EINTR)
            throw std::system_error(errno, std::generic_category(), "poll");
        for (nfds_t i = 0; rc > 0 && i < n; ++i) {
            if (!fds[i].revents) continue;
            int& fd = *owners[i];
            if (&fd == &c.to_child) {
                const ssize_t w = ::write(fd, options.input.data() + written,
                                          options.input.size() - written);
                if (w > 0) written += static_cast<std::size_t>(w);
                if ((w < 0 && errno != EAGAIN) || written == options.input.size()) close_fd(fd);
            } else {
                const ssize_t r = ::read(fd, buf, sizeof buf);
                if (r > 0) {
                    auto& sink = &fd == &c.from_out ? result.out : result.err;
                    sink.append(buf, static_cast<std::size_t>(r));
                    if (&fd == &c.from_out && options.on_line) emit_lines(result.out, options.on_line);
                } else if (r == 0 || errno != EINTR) {
                    close_fd(fd);
                }
            }
        }
        now = clock::now();
        if (now >= next_tick) {
            next_tick = now + options.tick_interval;
            if (options.tick) options.tick();
        }
    }
    if (!c.reaped) {
        // Output closed early or the drain time ran out: the group was SIGKILLed, or the
        // command exited (check_exit() saw it), so this wait is short.
        c.signal_group(SIGKILL);
        while (::waitpid(c.pid, &c.status, 0) < 0 && errno == EINTR) {
        }
        c.reaped = true;
    }
    if (WIFEXITED(c.status)) result.exit_status = WEXITSTATUS(c.status);
    else if (WIFSIGNALED(c.status)) result.exit_status = 128 + WTERMSIG(c.status);
    return result;
}

} // namespace zmesh::cli
