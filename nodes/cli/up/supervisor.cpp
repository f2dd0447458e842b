// SPDX-License-Identifier: MPL-2.0
// supervisor.cpp — runs a topology's processes (see supervisor.hpp and docs/up.md).
//
// One thread, one poll loop: the children's output pipes are polled with a short timeout, and
// each turn reaps exited children, starts those whose dependencies are ready, probes readiness,
// restarts after backoff, and, once a stop was asked for, stops the processes whose dependents
// are all gone. Nothing here blocks longer than one probe (bounded), so SIGINT is always seen.
//
// Each child runs in a process group of its own: Ctrl-C on a terminal goes to the foreground
// group only, i.e. to `zmesh up`, which then stops the children in order instead of all of them
// receiving SIGINT at once. PR_SET_PDEATHSIG kills a child if `zmesh up` is SIGKILLed.
#include "supervisor.hpp"

#include "../command.hpp"
#include "../stop_signal.hpp"

#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

extern char** environ;

namespace zmesh::cli::up {

namespace {

using clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

enum class state { waiting, starting, ready, backoff, exited, stopping, stopped };

const char* state_name(state s) {
    switch (s) {
    case state::waiting: return "waiting";
    case state::starting: return "starting";
    case state::ready: return "ready";
    case state::backoff: return "backoff";
    case state::exited: return "exited";
    case state::stopping: return "stopping";
    case state::stopped: return "stopped";
    }
    return "?";
}

/// A crash that follows this much time up is not "consecutive": backoff starts again.
constexpr milliseconds stable_after{10000};
/// First note about a readiness wait after this, then one every wait_note_every.
constexpr milliseconds wait_note_first{1000};
constexpr milliseconds wait_note_every{5000};
/// A line longer than this is printed in pieces (a child that never writes '\n' cannot make
/// `zmesh up` buffer without bound).
constexpr std::size_t max_line = 64 * 1024;

struct proc {
    const instance* spec = nullptr;
    state st = state::waiting;
    pid_t pid = -1;
    int restarts = 0;
    int exit_status = -1; ///< last exit: code, or 128 + signal; -1 for none yet
    bool ever_ready = false;
    long backoff_ms = 0;  ///< the delay before the next restart
    clock::time_point started{}, restart_at{}, ready_deadline{}, next_note{}, kill_at{};
    clock::time_point last_probe{};
    bool line_seen = false;
    bool term_sent = false, kill_sent = false;
    std::size_t colour = 0;
};

/// One output pipe of one child (a restarted child has new ones; old ones drain to EOF).
struct stream {
    std::size_t proc = 0;
    int fd = -1;
    bool is_err = false;
    std::string buf;
};

std::string describe_status(int status) {
    if (status >= 128 && status < 128 + 65) {
        const int sig = status - 128;
        const char* name = ::strsignal(sig);
        return "was killed by signal " + std::to_string(sig) + " (" + (name ? name : "?") + ")";
    }
    return "exited with status " + std::to_string(status);
}

/// Whether host:port accepts a TCP connection now (bounded: 200 ms for a remote host).
bool accepts(const std::string& host, int port) {
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    addrinfo* found = nullptr;
    const std::string service = std::to_string(port);
    if (::getaddrinfo(host.c_str(), service.c_str(), &hints, &found) != 0 || !found) return false;
    bool ok = false;
    for (auto* a = found; a && !ok; a = a->ai_next) {
        const int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                                a->ai_protocol);
        if (fd < 0) continue;
        if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
            ok = true;
        } else if (errno == EINPROGRESS) {
            pollfd p{fd, POLLOUT, 0};
            if (::poll(&p, 1, 200) == 1) {
                int err = 0;
                socklen_t len = sizeof err;
                ok = ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0;
            }
        }
        ::close(fd);
    }
    ::freeaddrinfo(found);
    return ok;
}

class supervisor {
  public:
    supervisor(const topology& topo, const supervisor_options& options)
        : topo_(topo), options_(options) {
        procs_.resize(topo.instances.size());
        width_ = 2; // "up"
        for (std::size_t i = 0; i < procs_.size(); ++i) {
            procs_[i].spec = &topo.instances[i];
            procs_[i].backoff_ms = topo.backoff_first_ms;
            procs_[i].colour = i;
            width_ = std::max(width_, topo.instances[i].name.size());
        }
    }

    int run();

  private:
    // Output.
    std::string prefix(const std::string& name, std::size_t colour, bool own) const;
    void say(const std::string& text);
    void error(const std::string& text);
    void node_line(std::size_t i, bool is_err, const std::string& line);
    void print_table();

    // Children.
    void spawn(std::size_t i);
    void on_exit(pid_t pid, int raw);
    void read_streams(int timeout_ms);
    bool probe(proc& p);
    std::string waits_for(const proc& p) const;
    void advance();
    void fail(const std::string& why);
    void begin_stop();
    void advance_stop();
    bool alive(const proc& p) const { return p.pid > 0; }
    void write_state();

    const topology& topo_;
    supervisor_options options_;
    std::vector<proc> procs_;
    std::vector<stream> streams_;
    std::size_t width_ = 2;
    bool stopping_ = false;
    bool all_ready_ = false;
    int exit_code_ = ok;
    bool dirty_ = true;
    pid_t self_ = ::getpid();
};

std::string supervisor::prefix(const std::string& name, std::size_t colour, bool own) const {
    std::string padded = name;
    padded.resize(std::max(width_, name.size()), ' ');
    if (!options_.color) return padded + " | ";
    static const char* palette[] = {"36", "32", "33", "35", "34", "31", "96", "92", "93", "95"};
    const std::string code = own ? "1" : palette[colour % (sizeof palette / sizeof *palette)];
    return "\033[" + code + "m" + padded + " |\033[0m ";
}

void supervisor::say(const std::string& text) {
    const auto line = prefix("up", 0, true) + text + "\n";
    std::fwrite(line.data(), 1, line.size(), stdout);
    std::fflush(stdout);
}

void supervisor::error(const std::string& text) {
    const auto line = prefix("up", 0, true) + "error: " + text + "\n";
    std::fwrite(line.data(), 1, line.size(), stderr);
    std::fflush(stderr);
}

void supervisor::node_line(std::size_t i, bool is_err, const std::string& line) {
    auto& p = procs_[i];
    if (p.spec->ready == ready_kind::line && !p.line_seen &&
        line.find(p.spec->ready_line) != std::string::npos)
        p.line_seen = true;
    const auto out = prefix(p.spec->name, p.colour, false) + line + "\n";
    std::FILE* f = is_err ? stderr : stdout;
    std::fwrite(out.data(), 1, out.size(), f);
}

void supervisor::print_table() {
    std::size_t w = 4;
    for (const auto& p : procs_) w = std::max(w, p.spec->name.size());
    char row[512];
    std::string text;
    std::snprintf(row, sizeof row, "%-*s  %-8s %-9s %-8s %s\n", static_cast<int>(w), "NODE", "PID",
                  "STATE", "RESTARTS", "ENDPOINTS");
    text += row;
    for (const auto& p : procs_) {
        std::string eps;
        for (const auto& e : p.spec->endpoints) eps += (eps.empty() ? "" : " ") + e.key + "=" + e.url;
        const std::string pid = p.pid > 0 ? std::to_string(p.pid) : "-";
        std::snprintf(row, sizeof row, "%-*s  %-8s %-9s %-8d ", static_cast<int>(w),
                      p.spec->name.c_str(), pid.c_str(), state_name(p.st), p.restarts);
        text += row + eps + "\n";
    }
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
}

void supervisor::spawn(std::size_t i) {
    auto& p = procs_[i];
    const auto& s = *p.spec;
    std::error_code ec;
    if (!std::filesystem::is_directory(s.cwd, ec)) {
        fail(topo_.file + ":" + std::to_string(s.line) + ": " + s.name + ": the directory '" +
             s.cwd + "' does not exist (cwd)");
        return;
    }
    // Everything the child needs is built before fork: after it, only async-signal-safe calls.
    std::vector<std::string> env_strings;
    for (char** e = environ; e && *e; ++e) {
        const std::string kv(*e);
        const auto name = kv.substr(0, kv.find('='));
        const bool replaced = std::any_of(s.env.begin(), s.env.end(),
                                          [&](const auto& o) { return o.first == name; });
        if (!replaced) env_strings.push_back(kv);
    }
    for (const auto& kv : s.env) env_strings.push_back(kv.first + "=" + kv.second);
    std::vector<char*> envp, argv;
    for (auto& e : env_strings) envp.push_back(e.data());
    envp.push_back(nullptr);
    std::vector<std::string> args = s.argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const std::string exec_failed = "zmesh up: cannot run " + s.exe + ": ";
    const std::string chdir_failed = "zmesh up: cannot enter " + s.cwd + ": ";

    // A socket file left by an earlier run would make the node look ready before it binds
    // (ZeroMQ replaces it on bind anyway). Only sockets: never another kind of file.
    for (const auto& e : s.endpoints) {
        struct stat st {};
        if (!e.tcp && ::lstat(e.ipc_path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode))
            ::unlink(e.ipc_path.c_str());
    }
    int out[2], err[2];
    if (::pipe2(out, O_CLOEXEC) != 0) {
        fail("cannot make a pipe for " + s.name + ": " + std::strerror(errno));
        return;
    }
    if (::pipe2(err, O_CLOEXEC) != 0) {
        ::close(out[0]);
        ::close(out[1]);
        fail("cannot make a pipe for " + s.name + ": " + std::strerror(errno));
        return;
    }
    const pid_t parent = self_;
    const pid_t pid = ::fork();
    if (pid == 0) {
        // Own process group: a terminal's Ctrl-C reaches `zmesh up` only (see the file comment).
        ::setpgid(0, 0);
        // Die with `zmesh up`; if it died before prctl took effect, getppid() is no longer it.
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::getppid() != parent) ::_exit(1);
        sigset_t none;
        sigemptyset(&none);
        ::sigprocmask(SIG_SETMASK, &none, nullptr);
        ::signal(SIGPIPE, SIG_DFL); // `zmesh up` ignores it; ignored signals survive exec
        ::signal(SIGINT, SIG_DFL);
        ::signal(SIGTERM, SIG_DFL);
        const int devnull = ::open("/dev/null", O_RDONLY);
        if (devnull >= 0) ::dup2(devnull, STDIN_FILENO); // no child reads the terminal
        ::dup2(out[1], STDOUT_FILENO);
        ::dup2(err[1], STDERR_FILENO);
        if (::chdir(s.cwd.c_str()) != 0) {
            const char* why = std::strerror(errno);
            (void)!::write(STDERR_FILENO, chdir_failed.data(), chdir_failed.size());
            (void)!::write(STDERR_FILENO, why, std::strlen(why));
            ::_exit(127);
        }
        ::execve(s.exe.c_str(), argv.data(), envp.data());
        const char* why = std::strerror(errno);
        (void)!::write(STDERR_FILENO, exec_failed.data(), exec_failed.size());
        (void)!::write(STDERR_FILENO, why, std::strlen(why));
        (void)!::write(STDERR_FILENO, "\n", 1);
        ::_exit(127);
    }
    ::close(out[1]);
    ::close(err[1]);
    if (pid < 0) {
        ::close(out[0]);
        ::close(err[0]);
        fail("cannot start " + s.name + ": fork: " + std::strerror(errno));
        return;
    }
    ::setpgid(pid, pid); // also here: whichever of parent and child runs first, it is set
    for (int fd : {out[0], err[0]}) {
        ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
        streams_.push_back({i, fd, fd == err[0], {}});
    }
    const auto now = clock::now();
    p.pid = pid;
    p.st = state::starting;
    p.started = now;
    p.line_seen = false;
    p.term_sent = p.kill_sent = false;
    if (!p.ever_ready) {
        p.ready_deadline = now + milliseconds(s.ready_timeout_ms);
        p.next_note = now + wait_note_first;
    }
    // Nothing to wait for: ready as it starts (one state file change, not two).
    if (s.ready == ready_kind::none || (s.ready == ready_kind::endpoints && s.endpoints.empty())) {
        p.st = state::ready;
        p.ever_ready = true;
    }
    dirty_ = true;
}

void supervisor::read_streams(int timeout_ms) {
    std::vector<pollfd> fds;
    fds.reserve(streams_.size());
    for (const auto& s : streams_) fds.push_back({s.fd, POLLIN, 0});
    const int n = ::poll(fds.data(), fds.size(), timeout_ms);
    if (n <= 0) return;
    char chunk[8192];
    for (std::size_t k = 0; k < fds.size(); ++k) {
        if (!(fds[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        auto& s = streams_[k];
        bool eof = false;
        for (int reads = 0; reads < 16; ++reads) { // bounded: one chatty child cannot starve the loop
            const auto got = ::read(s.fd, chunk, sizeof chunk);
            if (got > 0) {
                s.buf.append(chunk, static_cast<std::size_t>(got));
                continue;
            }
            if (got == 0 || (errno != EAGAIN && errno != EINTR)) eof = true;
            break;
        }
        std::size_t start = 0;
        for (;;) {
            const auto nl = s.buf.find('\n', start);
            if (nl == std::string::npos) break;
            node_line(s.proc, s.is_err, s.buf.substr(start, nl - start));
            start = nl + 1;
        }
        s.buf.erase(0, start);
        if (s.buf.size() >= max_line || (eof && !s.buf.empty())) {
            node_line(s.proc, s.is_err, s.buf);
            s.buf.clear();
        }
        if (eof) {
            ::close(s.fd);
            s.fd = -1;
        }
    }
    std::fflush(stdout);
    std::fflush(stderr);
    streams_.erase(std::remove_if(streams_.begin(), streams_.end(),
                                  [](const stream& s) { return s.fd < 0; }),
                   streams_.end());
}

void supervisor::on_exit(pid_t pid, int raw) {
    const auto it = std::find_if(procs_.begin(), procs_.end(),
                                 [&](const proc& p) { return p.pid == pid; });
    if (it == procs_.end()) return;
    auto& p = *it;
    const auto& s = *p.spec;
    // Whatever the node left running in its group goes with it: no orphan keeps a port.
    ::kill(-pid, SIGKILL);
    const int status = WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw);
    p.exit_status = status;
    p.pid = -1;
    dirty_ = true;
    const auto now = clock::now();
    if (stopping_ || p.st == state::stopping) {
        p.st = state::stopped;
        say(s.name + " stopped (" + describe_status(status) + ")");
        return;
    }
    if (s.ready == ready_kind::exit) {
        p.st = state::exited;
        if (status == 0) {
            p.ever_ready = true;
            say(s.name + " exited with status 0 (ready)");
        } else {
            fail(s.name + " " + describe_status(status) +
                 " (ready = \"exit\" needs status 0; such a setup step is not restarted)");
        }
        return;
    }
    const bool restart = s.restart == restart_policy::always ||
                         (s.restart == restart_policy::on_failure && status != 0);
    if (!restart) {
        p.st = state::exited;
        if (!p.ever_ready) {
            fail(s.name + " " + describe_status(status) + " before it was ready (restart = \"" +
                 (s.restart == restart_policy::never ? "never" : "on-failure") + "\")");
            return;
        }
        say(s.name + " " + describe_status(status) + "; not restarted (restart = \"" +
            (s.restart == restart_policy::never ? "never" : "on-failure") + "\")");
        return;
    }
    // Consecutive crashes double the delay; a crash after a stable run starts again.
    if (now - p.started >= stable_after) p.backoff_ms = topo_.backoff_first_ms;
    const long delay = p.backoff_ms;
    p.backoff_ms = std::min(p.backoff_ms * 2, topo_.backoff_cap_ms);
    p.st = state::backoff;
    p.restart_at = now + milliseconds(delay);
    say(s.name + " " + describe_status(status) + "; restarting in " + std::to_string(delay) +
        " ms (restart " + std::to_string(p.restarts + 1) + ")");
}

bool supervisor::probe(proc& p) {
    const auto& s = *p.spec;
    switch (s.ready) {
    case ready_kind::none: return true;
    case ready_kind::exit: return false; // on_exit decides
    case ready_kind::line: return p.line_seen;
    case ready_kind::endpoints: break;
    }
    for (const auto& e : s.endpoints) {
        if (e.tcp) {
            if (!accepts(e.host, e.port)) return false;
        } else {
            struct stat st {};
            if (::stat(e.ipc_path.c_str(), &st) != 0) return false;
        }
    }
    return true;
}

std::string supervisor::waits_for(const proc& p) const {
    const auto& s = *p.spec;
    switch (s.ready) {
    case ready_kind::exit: return "it to exit with status 0 (ready = \"exit\")";
    case ready_kind::line: return "a line of its output containing \"" + s.ready_line + "\"";
    case ready_kind::none: return "nothing";
    case ready_kind::endpoints: break;
    }
    std::string what;
    for (const auto& e : s.endpoints) {
        if (e.tcp && accepts(e.host, e.port)) continue;
        if (!e.tcp) {
            struct stat st {};
            if (::stat(e.ipc_path.c_str(), &st) == 0) continue;
        }
        what += (what.empty() ? "" : ", ") + e.url + " (endpoint " + e.key + ")";
    }
    if (what.empty()) return "its endpoints";
    return what + (s.endpoints.size() == 1 || what.find(',') == std::string::npos
                       ? (s.endpoints.front().tcp ? " to accept connections" : " to exist")
                       : " to accept connections");
}

void supervisor::fail(const std::string& why) {
    error(why);
    exit_code_ = failure;
    begin_stop();
}

void supervisor::begin_stop() {
    if (stopping_) return;
    stopping_ = true;
    say("stopping " + std::to_string(std::count_if(procs_.begin(), procs_.end(),
                                                   [this](const proc& p) { return alive(p); })) +
        " process(es) in reverse dependency order");
    for (auto& p : procs_) {
        if (!alive(p) && p.st != state::exited) p.st = state::stopped;
    }
    dirty_ = true;
}

void supervisor::advance_stop() {
    const auto now = clock::now();
    for (std::size_t k = procs_.size(); k-- > 0;) {
        auto& p = procs_[k];
        if (!alive(p)) continue;
        if (!p.term_sent) {
            // Dependents first: a process is stopped once nothing that depends on it runs.
            bool dependents_gone = true;
            for (std::size_t j = 0; j < procs_.size(); ++j) {
                const auto& d = procs_[j].spec->deps;
                if (alive(procs_[j]) && std::find(d.begin(), d.end(), k) != d.end())
                    dependents_gone = false;
            }
            if (!dependents_gone) continue;
            say("stopping " + p.spec->name + " (pid " + std::to_string(p.pid) + ")");
            // One SIGTERM, to the group when the node still leads it (its children go with it),
            // else to the node alone: a second one would reach a node that already began its
            // orderly stop, and nodes such as zmesh broker take a second signal as "now".
            if (::kill(-p.pid, SIGTERM) != 0) ::kill(p.pid, SIGTERM);
            p.term_sent = true;
            p.st = state::stopping;
            p.kill_at = now + milliseconds(topo_.stop_timeout_ms);
            dirty_ = true;
        } else if (!p.kill_sent && now >= p.kill_at) {
            say(p.spec->name + " did not stop within " + std::to_string(topo_.stop_timeout_ms) +
                " ms; killing it");
            ::kill(-p.pid, SIGKILL);
            ::kill(p.pid, SIGKILL);
            p.kill_sent = true;
        }
    }
}

void supervisor::advance() {
    const auto now = clock::now();
    for (std::size_t i = 0; i < procs_.size() && !stopping_; ++i) {
        auto& p = procs_[i];
        const auto& s = *p.spec;
        switch (p.st) {
        case state::waiting: {
            std::string pending;
            for (auto d : s.deps)
                if (!procs_[d].ever_ready)
                    pending += (pending.empty() ? "" : ", ") + procs_[d].spec->name;
            if (pending.empty()) {
                spawn(i);
            } else if (now >= p.next_note && p.next_note != clock::time_point{}) {
                say(s.name + " waits for " + pending + " to be ready");
                p.next_note = now + wait_note_every;
            } else if (p.next_note == clock::time_point{}) {
                p.next_note = now + wait_note_first;
            }
            break;
        }
        case state::starting:
            if (now - p.last_probe >= milliseconds(50) || s.ready != ready_kind::endpoints) {
                p.last_probe = now;
                if (probe(p)) {
                    p.st = state::ready;
                    p.ever_ready = true;
                    dirty_ = true;
                    break;
                }
            }
            if (!p.ever_ready && now >= p.ready_deadline) {
                fail(s.name + " was not ready within " + std::to_string(s.ready_timeout_ms) +
                     " ms: waited for " + waits_for(p));
                break;
            }
            if (!p.ever_ready && now >= p.next_note) {
                const auto waited =
                    std::chrono::duration_cast<milliseconds>(now - p.started).count();
                say(s.name + " (pid " + std::to_string(p.pid) + ") waits for " + waits_for(p) +
                    " (" + std::to_string(waited / 1000) + " s of " +
                    std::to_string(s.ready_timeout_ms / 1000) + " s)");
                p.next_note = now + wait_note_every;
            }
            break;
        case state::backoff:
            if (now >= p.restart_at) {
                ++p.restarts;
                spawn(i);
                if (!stopping_) {
                    say(s.name + " restarted (pid " + std::to_string(p.pid) + ", restart " +
                        std::to_string(p.restarts) + ")");
                    print_table();
                }
            }
            break;
        default:
            break;
        }
    }
    if (!all_ready_ && !stopping_ &&
        std::all_of(procs_.begin(), procs_.end(), [](const proc& p) { return p.ever_ready; })) {
        all_ready_ = true;
        dirty_ = true;
        say(topo_.name + ": all " + std::to_string(procs_.size()) + " process(es) ready (run dir " +
            topo_.run_dir + ")");
        print_table();
    }
}

void supervisor::write_state() {
    dirty_ = false;
    if (options_.state_path.empty()) return;
    nlohmann::ordered_json j;
    j["name"] = topo_.name;
    j["file"] = topo_.file;
    j["run_dir"] = topo_.run_dir;
    j["ready"] = all_ready_;
    j["up_pid"] = static_cast<long>(self_);
    j["stopping"] = stopping_;
    auto nodes = nlohmann::ordered_json::array();
    for (const auto& p : procs_) {
        nlohmann::ordered_json n;
        n["name"] = p.spec->name;
        n["node"] = p.spec->node;
        n["pid"] = p.pid > 0 ? nlohmann::ordered_json(static_cast<long>(p.pid))
                             : nlohmann::ordered_json(nullptr);
        n["state"] = state_name(p.st);
        n["restarts"] = p.restarts;
        n["exit_status"] = p.exit_status >= 0 ? nlohmann::ordered_json(p.exit_status)
                                              : nlohmann::ordered_json(nullptr);
        auto eps = nlohmann::ordered_json::object();
        for (const auto& e : p.spec->endpoints) eps[e.key] = e.url;
        n["endpoints"] = eps;
        nodes.push_back(std::move(n));
    }
    j["nodes"] = std::move(nodes);
    // Atomic for readers: a whole file or the previous one, never half of one.
    const std::string tmp = options_.state_path + ".tmp." + std::to_string(self_);
    {
        std::ofstream f(tmp, std::ios::trunc);
        f << j.dump(2) << "\n";
        if (!f) {
            error("cannot write the state file " + tmp);
            return;
        }
    }
    if (std::rename(tmp.c_str(), options_.state_path.c_str()) != 0)
        error("cannot rename " + tmp + " to " + options_.state_path + ": " + std::strerror(errno));
}

int supervisor::run() {
    install_stop_signals();
    std::signal(SIGPIPE, SIG_IGN); // a closed stdout must not kill the supervisor mid-stop
    say(topo_.name + ": starting " + std::to_string(procs_.size()) + " process(es) from " +
        topo_.file + " (run dir " + topo_.run_dir + ")");
    for (;;) {
        read_streams(50);
        int raw = 0;
        for (pid_t pid; (pid = ::waitpid(-1, &raw, WNOHANG)) > 0;) on_exit(pid, raw);
        if (!stopping_ && stop_requested()) {
            say("stop requested");
            begin_stop();
        }
        if (!stopping_) advance();
        if (stopping_) advance_stop();
        if (dirty_) write_state();
        if (stopping_ && std::none_of(procs_.begin(), procs_.end(),
                                      [this](const proc& p) { return alive(p); }))
            break;
    }
    // The last output of the stopped children (bounded: their pipes close as they exit).
    const auto drain_until = clock::now() + milliseconds(500);
    while (!streams_.empty() && clock::now() < drain_until) read_streams(50);
    for (auto& s : streams_) ::close(s.fd);
    streams_.clear();
    say(exit_code_ == ok ? "all stopped" : "all stopped after an error");
    write_state();
    return exit_code_;
}

} // namespace

int supervise(const topology& topo, const supervisor_options& options) {
    supervisor s(topo, options);
    return s.run();
}

} // namespace zmesh::cli::up
