// SPDX-License-Identifier: MPL-2.0
// subprocess.cpp — fork/exec with three pipes, multiplexed with poll() so that a command that
// writes a lot while we are still feeding its stdin cannot deadlock us.
#include "subprocess.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

namespace zmesh::cli {
namespace {

void make_pipe(int fds[2]) {
    if (::pipe2(fds, O_CLOEXEC) != 0) throw std::system_error(errno, std::generic_category(), "pipe");
}

void close_fd(int& fd) {
    if (fd >= 0) ::close(fd);
    fd = -1;
}

} // namespace

subprocess_result run_subprocess(const std::string& command, const std::string& input,
                                 const std::function<void()>& tick,
                                 std::chrono::milliseconds tick_interval) {
    int in[2], out[2], err[2];
    make_pipe(in);
    make_pipe(out);
    make_pipe(err);
    const pid_t pid = ::fork();
    if (pid < 0) throw std::system_error(errno, std::generic_category(), "fork");
    if (pid == 0) {
        ::dup2(in[0], STDIN_FILENO);
        ::dup2(out[1], STDOUT_FILENO);
        ::dup2(err[1], STDERR_FILENO);
        ::signal(SIGPIPE, SIG_DFL);
        ::execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
        ::_exit(127);
    }
    ::close(in[0]);
    ::close(out[1]);
    ::close(err[1]);
    int to_child = in[1], from_out = out[0], from_err = err[0];
    ::fcntl(to_child, F_SETFL, O_NONBLOCK);
    // A command that exits without reading its stdin must not kill us with SIGPIPE.
    struct sigaction ignore {}, previous {};
    ignore.sa_handler = SIG_IGN;
    ::sigaction(SIGPIPE, &ignore, &previous);

    subprocess_result result;
    std::size_t written = 0;
    if (input.empty()) close_fd(to_child);
    char buf[65536];
    auto last_tick = std::chrono::steady_clock::now();
    while (from_out >= 0 || from_err >= 0) {
        pollfd fds[3];
        nfds_t n = 0;
        int* owners[3];
        if (to_child >= 0) { fds[n] = {to_child, POLLOUT, 0}; owners[n++] = &to_child; }
        if (from_out >= 0) { fds[n] = {from_out, POLLIN, 0}; owners[n++] = &from_out; }
        if (from_err >= 0) { fds[n] = {from_err, POLLIN, 0}; owners[n++] = &from_err; }
        const int rc = ::poll(fds, n, static_cast<int>(tick_interval.count()));
        if (rc < 0 && errno != EINTR) break;
        for (nfds_t i = 0; rc > 0 && i < n; ++i) {
            if (!fds[i].revents) continue;
            int& fd = *owners[i];
            if (&fd == &to_child) {
                ssize_t w = ::write(fd, input.data() + written, input.size() - written);
                if (w > 0) written += static_cast<std::size_t>(w);
                if (w < 0 && errno != EAGAIN) close_fd(fd);
                if (written == input.size()) close_fd(fd);
            } else {
                ssize_t r = ::read(fd, buf, sizeof buf);
                if (r > 0) (&fd == &from_out ? result.out : result.err).append(buf, static_cast<std::size_t>(r));
                else if (r == 0 || errno != EINTR) close_fd(fd);
            }
        }
        auto now = std::chrono::steady_clock::now();
        if (now - last_tick >= tick_interval) {
            last_tick = now;
            if (tick) tick();
        }
    }
    close_fd(to_child);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    ::sigaction(SIGPIPE, &previous, nullptr);
    if (WIFEXITED(status)) result.exit_status = WEXITSTATUS(status);
    else if (WIFSIGNALED(status)) result.exit_status = 128 + WTERMSIG(status);
    return result;
}

} // namespace zmesh::cli
