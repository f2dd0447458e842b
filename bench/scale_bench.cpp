// SPDX-License-Identifier: MPL-2.0
// scale_bench.cpp — `zmesh bench scale`: what the broker costs as its work grows.
//
// Every row has a `zmesh broker` process of its own (this binary, spawned on an ephemeral
// loopback port), so that its resident memory (VmRSS in /proc/PID/status) is the broker's alone,
// beside the broker's own count of what it holds (zmesh.stats "memory", the count max_memory
// bounds). Clients are raw DEALER sockets speaking MDP/0.1 ("" "MDPC01" service body); echo
// workers are zmesh mdp::worker threads with credit in this process.
//
//  --clients N   N clients share a fixed total of requests in flight (--in-flight). Before the
//                load each sends one echo request and reads its reply, so the broker tracks
//                all N: bytes per client = (RSS with N connected and tracked - RSS before) / N.
//  --idle N      N idle clients beside a small load (one client, --load-window in flight). An
//                idle client, as the broker sees one, is a connection that sent one request
//                (mmi.service, answered by the broker itself), read its answer and then sends
//                nothing: the broker keeps its entry for service_ttl (30 s) and its connection
//                for as long as it is open. They live in child processes forked before any
//                thread or context exists here (a process has too few descriptors for 10,000
//                sockets: each takes one for its connection and one for its mailbox).
//  --queued N    one client queues N requests for a service with no worker (the broker's
//                limits raised to let them in); bytes per queued request from the broker's count
//                and from RSS; then workers start and the drain rate is timed.
// Every wait is bounded and names what it waits for; every process started is killed and
// reaped when the row ends, on error too (and dies with this one: PR_SET_PDEATHSIG).
#include "scale_bench.hpp"

#include "command.hpp"
#include "latency.hpp"

#include <zmesh/codec.hpp>
#include <zmesh/error.hpp>
#include <zmesh/mdp/client.hpp>
#include <zmesh/mdp/protocol.hpp>
#include <zmesh/mdp/worker.hpp>
#include <zmesh/message.hpp>

#include <zmq.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

namespace zmesh::bench {
namespace {

using steady = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr std::string_view echo_service = "bench.echo";
constexpr std::string_view queued_service = "bench.queued";
/// Sockets one idle-client process holds at most (two descriptors each).
constexpr std::size_t idle_per_process = 2500;
/// Idle clients connected at a time (see idle_holder).
constexpr std::size_t connect_step = 50;

struct scale_config {
    std::vector<std::size_t> clients, idle, queued;
    std::size_t in_flight = 1000;  ///< --clients: requests in flight, all clients together
    std::size_t load_window = 16;  ///< --idle: the small load's requests in flight
    std::size_t size = 64;         ///< request body bytes
    int workers = 2;
    std::uint32_t credit = 8;
    milliseconds duration{3000};
};

[[noreturn]] void fail(errc code, const std::string& what) { throw error(code, what); }

/// Raises this process's descriptor limit to its hard limit (children inherit it).
rlim_t raise_fd_limit() {
    rlimit r{};
    if (::getrlimit(RLIMIT_NOFILE, &r) != 0) return 1024;
    if (r.rlim_cur < r.rlim_max) {
        r.rlim_cur = r.rlim_max;
        (void)::setrlimit(RLIMIT_NOFILE, &r);
        (void)::getrlimit(RLIMIT_NOFILE, &r);
    }
    return r.rlim_cur;
}

std::string self_exe() {
    char buf[4096];
    const auto n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n <= 0) fail(errc::not_running, "cannot read /proc/self/exe to start 'zmesh broker'");
    return std::string(buf, static_cast<std::size_t>(n));
}

/// Resident bytes of process @p pid (VmRSS), 0 if it cannot be read.
std::size_t rss_of(pid_t pid) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(f, line))
        if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
    return 0;
}

/// Waits up to @p grace for @p pid to exit and reaps it; false if it is still running.
bool reaped_within(pid_t pid, milliseconds grace) noexcept {
    const auto until = steady::now() + grace;
    int status = 0;
    while (steady::now() < until) {
        const pid_t r = ::waitpid(pid, &status, WNOHANG);
        if (r == pid || (r < 0 && errno != EINTR)) return true;
        std::this_thread::sleep_for(milliseconds(10));
    }
    return false;
}

/// Sends SIGTERM to @p pid, waits up to @p grace, then SIGKILL; reaps it.
void stop_process(pid_t pid, milliseconds grace) noexcept {
    if (pid <= 0) return;
    ::kill(pid, SIGTERM);
    if (reaped_within(pid, grace)) return;
    int status = 0;
    ::kill(pid, SIGKILL);
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
}

/// `zmesh broker` in a process of its own on tcp://127.0.0.1:*, stopped with this object.
class broker_process {
  public:
    explicit broker_process(const std::vector<std::string>& extra) {
        std::vector<std::string> args{self_exe(),         "broker", "--mdp", "tcp://127.0.0.1:*",
                                      "--log-level",      "warn"};
        args.insert(args.end(), extra.begin(), extra.end());
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        int out[2];
        if (::pipe2(out, O_CLOEXEC) != 0)
            throw std::system_error(errno, std::generic_category(), "pipe for zmesh broker");
        const pid_t parent = ::getpid();
        pid_ = ::fork();
        if (pid_ < 0) {
            ::close(out[0]);
            ::close(out[1]);
            throw std::system_error(errno, std::generic_category(), "fork for zmesh broker");
        }
        if (pid_ == 0) {
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (::getppid() != parent) ::_exit(127);
            ::dup2(out[1], STDOUT_FILENO); // dup2 clears FD_CLOEXEC on the copy
            ::execv(argv[0], argv.data());
            ::_exit(127);
        }
        ::close(out[1]);
        out_ = out[0];
        endpoint_ = read_line(milliseconds(10000));
        if (endpoint_.rfind("tcp://", 0) != 0) {
            stop();
            fail(errc::timeout, "'zmesh broker --mdp tcp://127.0.0.1:*' printed no endpoint "
                                "within 10 s" +
                                    (endpoint_.empty() ? std::string() : " (it printed '" + endpoint_ + "')"));
        }
    }
    ~broker_process() { stop(); }
    broker_process(const broker_process&) = delete;
    broker_process& operator=(const broker_process&) = delete;

    [[nodiscard]] const std::string& endpoint() const noexcept { return endpoint_; }
    [[nodiscard]] std::size_t rss() const { return rss_of(pid_); }
    /// Whether the process still runs (a broker that died makes every figure meaningless).
    [[nodiscard]] bool alive() const noexcept {
        int status = 0;
        return pid_ > 0 && ::waitpid(pid_, &status, WNOHANG) == 0;
    }

    void stop() noexcept {
        stop_process(pid_, milliseconds(3000));
        pid_ = -1;
        if (out_ >= 0) ::close(out_);
        out_ = -1;
    }

  private:
    std::string read_line(milliseconds limit) {
        std::string line;
        const auto until = steady::now() + limit;
        while (steady::now() < until) {
            pollfd p{out_, POLLIN, 0};
            const auto left = std::chrono::duration_cast<milliseconds>(until - steady::now()).count();
            if (::poll(&p, 1, static_cast<int>(std::max<long>(left, 1))) <= 0) continue;
            char c;
            const auto n = ::read(out_, &c, 1);
            if (n <= 0) break;
            if (c == '\n') return line;
            line += c;
        }
        return line;
    }

    pid_t pid_ = -1;
    int out_ = -1;
    std::string endpoint_;
};

/// The broker's counters (zmesh.stats) through one MDP/0.1 client kept for the whole row, so the
/// broker tracks exactly one client for them (and keeps no reply for de-duplication).
class stats_reader {
  public:
    explicit stats_reader(const std::string& endpoint)
        : client_(ctx_, endpoint,
                  mdp::client_options{.timeout = milliseconds(5000),
                                      .retries = 1,
                                      .protocol = mdp::client_protocol::mdp}),
          endpoint_(endpoint) {}

    std::map<std::string, std::uint64_t> read() {
        message reply = client_.request(mdp::zmesh_stats, message{""});
        std::error_code ec;
        std::string why;
        if (reply.size() != 1) fail(errc::malformed, "zmesh.stats at " + endpoint_ + ": not one frame");
        auto decoded = unpack<std::map<std::string, std::uint64_t>>(reply[0], ec, &why);
        if (!decoded) fail(errc::malformed, "zmesh.stats at " + endpoint_ + ": " + why);
        return std::move(*decoded);
    }
    std::uint64_t get(const std::string& name) {
        auto t = read();
        const auto it = t.find(name);
        return it == t.end() ? 0 : it->second;
    }
    /// Waits until counter @p name reaches @p want; @throws zmesh::error naming both at @p limit.
    std::uint64_t wait_for(const std::string& name, std::uint64_t want, milliseconds limit,
                           const std::string& what) {
        const auto until = steady::now() + limit;
        std::uint64_t v = 0;
        while ((v = get(name)) < want) {
            if (steady::now() >= until)
                fail(errc::timeout, "the broker at " + endpoint_ + " shows " + std::to_string(v) +
                                        " " + what + " after " + std::to_string(limit.count() / 1000) +
                                        " s, waited for " + std::to_string(want));
            std::this_thread::sleep_for(milliseconds(20));
        }
        return v;
    }

  private:
    zmq::context_t ctx_{1};
    mdp::client client_;
    std::string endpoint_;
};

/// Echo workers (zmesh mdp::worker with credit) on threads of their own, stopped with this.
class worker_pool {
  public:
    worker_pool(const std::string& endpoint, std::string_view service, int n, std::uint32_t credit) {
        for (int i = 0; i < n; ++i)
            threads_.emplace_back([this, endpoint, svc = std::string(service), credit] {
                try {
                    zmq::context_t ctx(1);
                    mdp::worker_options o;
                    o.credit = credit;
                    mdp::worker w(ctx, endpoint, svc, o);
                    while (!stop_.load(std::memory_order_relaxed)) {
                        auto request = w.recv(milliseconds(100));
                        if (request) w.reply(std::move(*request));
                    }
                } catch (const std::exception& e) {
                    std::fprintf(stderr, "zmesh: bench scale: echo worker of '%s' at %s: %s\n",
                                 svc.c_str(), endpoint.c_str(), e.what());
                }
            });
    }
    ~worker_pool() {
        stop_ = true;
        for (auto& t : threads_) t.join();
    }
    worker_pool(const worker_pool&) = delete;
    worker_pool& operator=(const worker_pool&) = delete;

  private:
    std::atomic<bool> stop_{false};
    std::vector<std::thread> threads_;
};

/// N raw DEALER clients speaking MDP/0.1, in one context (max_sockets raised to fit).
class client_set {
  public:
    /// @p n clients connected now, room for @p capacity in all (add() connects more).
    client_set(const std::string& endpoint, std::size_t n, std::size_t capacity = 0)
        : endpoint_(endpoint) {
        capacity = std::max(capacity, n);
        ctx_.set(zmq::ctxopt::max_sockets, static_cast<int>(capacity + 64));
        sockets_.reserve(capacity);
        items_.reserve(capacity);
        add(n);
    }
    void add(std::size_t n) {
        for (std::size_t i = 0; i < n; ++i) {
            sockets_.emplace_back(ctx_, zmq::socket_type::dealer);
            sockets_.back().set(zmq::sockopt::linger, 0);
            sockets_.back().connect(endpoint_);
            items_.push_back({sockets_.back().handle(), 0, ZMQ_POLLIN, 0});
        }
    }
    [[nodiscard]] std::size_t size() const noexcept { return sockets_.size(); }
    std::vector<zmq::pollitem_t>& items() noexcept { return items_; }

    void send(std::size_t i, std::string_view service, const void* body, std::size_t size) {
        auto& s = sockets_[i];
        s.send(zmq::const_buffer("", 0), zmq::send_flags::sndmore);
        s.send(zmq::buffer(mdp::client_v1), zmq::send_flags::sndmore);
        s.send(zmq::buffer(service), zmq::send_flags::sndmore);
        s.send(zmq::const_buffer(body, size), zmq::send_flags::none);
    }
    /// One whole reply from client @p i without waiting. @returns false if none is there.
    /// @p body gets the first body frame (frame 3: "" "MDPC01" service body...).
    bool recv(std::size_t i, zmq::message_t& body, bool& error_reply) {
        auto& s = sockets_[i];
        zmq::message_t frame;
        if (!s.recv(frame, zmq::recv_flags::dontwait)) return false;
        std::size_t index = 0;
        error_reply = false;
        for (;;) {
            if (index == 3) {
                error_reply = frame.to_string_view() == mdp::error_type;
                body.move(frame);
            }
            const bool more = index == 3 ? body.more() : frame.more();
            if (!more) break;
            ++index;
            (void)s.recv(frame, zmq::recv_flags::none); // the rest of a message is there at once
        }
        return true;
    }

  private:
    std::string endpoint_;
    zmq::context_t ctx_{1};
    std::vector<zmq::socket_t> sockets_;
    std::vector<zmq::pollitem_t> items_;
};

/// Sends one request from clients [@p first, c.size()) and waits for every answer (bounded):
/// afterwards the broker tracks all of them. @returns the answers that were not errors.
std::size_t greet(client_set& c, std::size_t first, std::string_view service,
                  std::string_view body, milliseconds limit) {
    const std::size_t n = c.size() - first;
    for (std::size_t i = first; i < c.size(); ++i) c.send(i, service, body.data(), body.size());
    zmq::pollitem_t* items = c.items().data() + first;
    std::vector<bool> answered(n, false);
    std::size_t count = 0, good = 0;
    const auto until = steady::now() + limit;
    zmq::message_t frame;
    bool error_reply = false;
    while (count < n && steady::now() < until) {
        if (zmq::poll(items, n, milliseconds(100)) <= 0) continue;
        for (std::size_t i = 0; i < n; ++i) {
            if (!(items[i].revents & ZMQ_POLLIN)) continue;
            while (c.recv(first + i, frame, error_reply)) {
                if (!answered[i]) {
                    answered[i] = true;
                    ++count;
                    if (!error_reply) ++good;
                }
            }
        }
    }
    return good;
}
std::size_t greet_all(client_set& c, std::string_view service, std::string_view body,
                      milliseconds limit) {
    return greet(c, 0, service, body, limit);
}

struct load_result {
    std::uint64_t sent = 0, received = 0, errors = 0;
    double rate = 0, p50_us = 0, p99_us = 0;
    std::size_t rss_peak = 0;
};

/// Keeps window[i] requests in flight on client i for @p duration, then drains (up to 5 s).
load_result run_load(client_set& c, const std::vector<std::size_t>& window, std::size_t size,
                     milliseconds duration, const broker_process& broker) {
    load_result r;
    latency_recorder latencies(4'000'000);
    std::vector<char> body(size, 'x');
    std::vector<std::size_t> outstanding(c.size(), 0);
    std::size_t total_outstanding = 0;
    auto send = [&](std::size_t i) {
        const std::uint64_t t = now_ns();
        std::memcpy(body.data(), &t, sizeof t);
        c.send(i, echo_service, body.data(), body.size());
        ++outstanding[i];
        ++total_outstanding;
        ++r.sent;
    };
    auto& items = c.items();
    zmq::message_t frame;
    bool error_reply = false;
    auto take = [&](std::size_t i, bool resend) {
        while (c.recv(i, frame, error_reply)) {
            ++r.received;
            if (outstanding[i]) {
                --outstanding[i];
                --total_outstanding;
            }
            if (error_reply) {
                ++r.errors;
            } else if (frame.size() >= sizeof(std::uint64_t)) {
                std::uint64_t t = 0;
                std::memcpy(&t, frame.data(), sizeof t);
                latencies.record(now_ns() - t);
            }
            if (resend) send(i);
        }
    };
    const auto start = steady::now();
    const auto end = start + duration;
    for (std::size_t i = 0; i < c.size(); ++i)
        for (std::size_t k = 0; k < window[i]; ++k) send(i);
    auto next_sample = start;
    while (steady::now() < end) {
        if (steady::now() >= next_sample) {
            r.rss_peak = std::max(r.rss_peak, broker.rss());
            next_sample += milliseconds(250);
        }
        if (zmq::poll(items.data(), items.size(), milliseconds(100)) <= 0) continue;
        for (std::size_t i = 0; i < items.size(); ++i)
            if (items[i].revents & ZMQ_POLLIN) take(i, steady::now() < end);
    }
    const auto measured = steady::now();
    const auto in_time = r.received;
    const auto drain_end = measured + milliseconds(5000);
    while (total_outstanding > 0 && steady::now() < drain_end) {
        if (zmq::poll(items.data(), items.size(), milliseconds(100)) <= 0) continue;
        for (std::size_t i = 0; i < items.size(); ++i)
            if (items[i].revents & ZMQ_POLLIN) take(i, false);
    }
    r.rate = static_cast<double>(in_time) / std::chrono::duration<double>(measured - start).count();
    r.p50_us = latencies.percentile_us(0.50);
    r.p99_us = latencies.percentile_us(0.99);
    return r;
}

double per(std::int64_t bytes, std::size_t n) {
    return n ? static_cast<double>(bytes) / static_cast<double>(n) : 0.0;
}
std::int64_t diff(std::size_t a, std::size_t b) {
    return static_cast<std::int64_t>(a) - static_cast<std::int64_t>(b);
}

void check_broker(const broker_process& b) {
    if (!b.alive()) fail(errc::not_running, "the broker at " + b.endpoint() + " ended during the run");
}

// ---- --clients --------------------------------------------------------------------------

bool clients_row(const scale_config& cfg, std::size_t n) {
    broker_process broker({});
    stats_reader stats(broker.endpoint());
    worker_pool workers(broker.endpoint(), echo_service, cfg.workers, cfg.credit);
    stats.wait_for("workers", static_cast<std::uint64_t>(cfg.workers), milliseconds(10000),
                   "echo workers");
    // The baseline: the broker with its workers and the stats client, no load client yet.
    const auto base_clients = stats.get("clients");
    const auto base_memory = stats.get("memory");
    const auto base_rss = broker.rss();

    client_set clients(broker.endpoint(), n);
    std::vector<char> hello(cfg.size, 'h');
    const auto greeted = greet_all(clients, echo_service, {hello.data(), hello.size()},
                                   milliseconds(30000));
    check_broker(broker);
    const auto seen = stats.get("clients") - base_clients;
    const auto rest_memory = stats.get("memory");
    const auto rest_rss = broker.rss();

    std::vector<std::size_t> window(n);
    for (std::size_t i = 0; i < n; ++i)
        window[i] = std::max<std::size_t>(1, cfg.in_flight / n + (i < cfg.in_flight % n ? 1 : 0));
    std::size_t in_flight = 0;
    for (auto w : window) in_flight += w;
    const auto r = run_load(clients, window, cfg.size, cfg.duration, broker);
    check_broker(broker);
    const auto lost = r.sent - std::min(r.sent, r.received);
    std::printf("%-8zu %-9zu %10.0f %9.0f %9.0f %10zu %10zu %10zu %9.0f %9.0f %7llu %6llu %6llu\n",
                n, in_flight, r.rate, r.p50_us, r.p99_us, base_rss / 1024, rest_rss / 1024,
                std::max(r.rss_peak, rest_rss) / 1024, per(diff(rest_rss, base_rss), n),
                per(diff(rest_memory, base_memory), n), static_cast<unsigned long long>(seen),
                static_cast<unsigned long long>(lost + (n - greeted)),
                static_cast<unsigned long long>(r.errors));
    std::fflush(stdout);
    return greeted == n && seen == n && lost == 0 && r.errors == 0;
}

// ---- --idle -----------------------------------------------------------------------------

/// A child process holding @p count idle clients (see the top of the file).
[[noreturn]] void idle_holder(int go, int report, const std::string& endpoint, std::size_t count) {
    char c = 0;
    if (::read(go, &c, 1) != 1) ::_exit(0); // the parent ended the run before it began
    std::size_t answered = 0;
    std::string problem;
    {
        try {
            // In steps of connect_step: ten thousand connections at once overflow the broker's
            // listen backlog (ZMQ_BACKLOG, 100), and the lost SYNs come back seconds later.
            client_set clients(endpoint, 0, count);
            const auto until = steady::now() + milliseconds(60000);
            while (clients.size() < count && steady::now() < until) {
                const std::size_t first = clients.size();
                clients.add(std::min(connect_step, count - first));
                answered += greet(clients, first, mdp::mmi_service, echo_service,
                                  std::chrono::duration_cast<milliseconds>(until - steady::now()));
            }
            const std::string line = std::to_string(answered) + "\n";
            (void)!::write(report, line.data(), line.size());
            // Idle until the parent says so or is gone (EOF).
            while (::read(go, &c, 1) < 0 && errno == EINTR) {
            }
        } catch (const std::exception& e) {
            problem = std::string("error ") + e.what() + "\n";
            (void)!::write(report, problem.data(), problem.size());
        }
    }
    ::_exit(0);
}

struct holder {
    pid_t pid = -1;
    int go = -1;      // write end: one byte starts it, closing it stops it
    int report = -1;  // read end: its line "<answered>\n" or "error ...\n"
};

/// The idle-client processes of one row, killed and reaped with this object.
class holders {
  public:
    holders(const std::string& endpoint, std::size_t n, std::size_t per_process) {
        std::vector<int> ours; // the parent's ends, closed in every later child
        for (std::size_t done = 0; done < n;) {
            const std::size_t count = std::min(per_process, n - done);
            int go[2], report[2];
            if (::pipe(go) != 0 || ::pipe(report) != 0)
                throw std::system_error(errno, std::generic_category(), "pipe for idle clients");
            const pid_t parent = ::getpid();
            const pid_t pid = ::fork();
            if (pid < 0) throw std::system_error(errno, std::generic_category(), "fork for idle clients");
            if (pid == 0) {
                ::prctl(PR_SET_PDEATHSIG, SIGKILL);
                if (::getppid() != parent) ::_exit(0);
                for (int fd : ours) ::close(fd);
                ::close(go[1]);
                ::close(report[0]);
                idle_holder(go[0], report[1], endpoint, count);
            }
            ::close(go[0]);
            ::close(report[1]);
            list_.push_back({pid, go[1], report[0]});
            ours.push_back(go[1]);
            ours.push_back(report[0]);
            done += count;
        }
    }
    ~holders() {
        for (auto& h : list_) {
            if (h.go >= 0) ::close(h.go); // EOF: the child closes its sockets and exits
        }
        for (auto& h : list_) {
            stop_process_after(h.pid, milliseconds(5000));
            if (h.report >= 0) ::close(h.report);
        }
    }
    holders(const holders&) = delete;
    holders& operator=(const holders&) = delete;

    /// Starts every child and waits (bounded) for each one's count of answered clients.
    std::size_t connect_all(milliseconds limit) {
        std::size_t answered = 0;
        const auto until = steady::now() + limit;
        for (auto& h : list_) {
            // One after the other, so that the connections come in steps (idle_holder).
            (void)!::write(h.go, "g", 1);
            std::string line;
            while (line.empty() || line.back() != '\n') {
                const auto left = std::chrono::duration_cast<milliseconds>(until - steady::now()).count();
                if (left <= 0)
                    fail(errc::timeout, "idle clients: a holder process (pid " + std::to_string(h.pid) +
                                            ") did not report its connections within " +
                                            std::to_string(limit.count() / 1000) + " s");
                pollfd p{h.report, POLLIN, 0};
                if (::poll(&p, 1, static_cast<int>(left)) <= 0) continue;
                char c;
                if (::read(h.report, &c, 1) != 1)
                    fail(errc::not_running, "idle clients: holder process " + std::to_string(h.pid) +
                                             " ended without reporting");
                line += c;
            }
            if (line.rfind("error", 0) == 0)
                fail(errc::not_running, "idle clients: holder process " + std::to_string(h.pid) + ": " +
                                         line.substr(0, line.size() - 1));
            answered += std::stoull(line);
        }
        return answered;
    }

  private:
    static void stop_process_after(pid_t pid, milliseconds grace) noexcept {
        // It exits by itself on EOF; SIGTERM/SIGKILL only if it does not within the grace.
        if (!reaped_within(pid, grace)) stop_process(pid, milliseconds(500));
    }
    std::vector<holder> list_;
};

bool idle_row(const scale_config& cfg, std::size_t n, rlim_t fd_limit) {
    // Each holder process as many sockets as its descriptors allow (two each), 2500 at most.
    const std::size_t per_process =
        std::min<std::size_t>(idle_per_process, fd_limit > 66 ? (fd_limit - 64) / 2 : 1);
    broker_process broker({});
    // Forked first, while this process has no thread and no context.
    holders idle(broker.endpoint(), n, per_process);
    stats_reader stats(broker.endpoint());
    worker_pool workers(broker.endpoint(), echo_service, cfg.workers, cfg.credit);
    stats.wait_for("workers", static_cast<std::uint64_t>(cfg.workers), milliseconds(10000),
                   "echo workers");
    const auto base_clients = stats.get("clients");
    client_set load(broker.endpoint(), 1);
    std::vector<char> hello(cfg.size, 'h');
    const bool load_greeted = greet_all(load, echo_service, {hello.data(), hello.size()},
                                        milliseconds(10000)) == 1;
    const std::vector<std::size_t> window{cfg.load_window};

    const auto without = run_load(load, window, cfg.size, cfg.duration, broker);
    check_broker(broker);
    const auto before_clients = stats.get("clients") - base_clients;
    const auto before_memory = stats.get("memory");
    const auto before_rss = broker.rss();

    const auto connect_start = steady::now();
    const auto answered = idle.connect_all(milliseconds(120000));
    const double connect_s = std::chrono::duration<double>(steady::now() - connect_start).count();
    check_broker(broker);
    const auto with_clients = stats.get("clients") - base_clients;
    const auto with_memory = stats.get("memory");
    const auto with_rss = broker.rss();
    const auto with = run_load(load, window, cfg.size, cfg.duration, broker);
    check_broker(broker);
    const auto after_clients = stats.get("clients") - base_clients;

    auto row = [&](const char* phase, std::size_t idle_n, const load_result& r, std::size_t rss,
                   std::uint64_t seen, const std::string& b_rss, const std::string& b_acct) {
        std::printf("%-8zu %-8s %10.0f %9.0f %9.0f %10zu %7llu %11s %11s %6llu %6llu\n", idle_n,
                    phase, r.rate, r.p50_us, r.p99_us, rss / 1024,
                    static_cast<unsigned long long>(seen), b_rss.c_str(), b_acct.c_str(),
                    static_cast<unsigned long long>(r.sent - std::min(r.sent, r.received)),
                    static_cast<unsigned long long>(r.errors));
    };
    char b_rss[32], b_acct[32];
    std::snprintf(b_rss, sizeof b_rss, "%.0f", per(diff(with_rss, before_rss), n));
    std::snprintf(b_acct, sizeof b_acct, "%.0f", per(diff(with_memory, before_memory), n));
    row("without", n, without, before_rss, before_clients, "-", "-");
    row("with", n, with, std::max(with_rss, with.rss_peak), with_clients, b_rss, b_acct);
    std::printf("# idle %zu: %zu answered mmi.service, connected in %.1f s; the broker tracked "
                "%llu clients after the second load (the load client included)\n",
                n, answered, connect_s, static_cast<unsigned long long>(after_clients));
    std::fflush(stdout);
    const auto lost = [](const load_result& r) { return r.sent != r.received || r.errors != 0; };
    return load_greeted && answered == n && before_clients == 1 && with_clients == n + 1 &&
           !lost(without) && !lost(with);
}

// ---- --queued ---------------------------------------------------------------------------

bool queued_row(const scale_config& cfg, std::size_t n) {
    // Limits raised so that all n fit: one client, one service, nothing expires during the run.
    const std::string limit = std::to_string(std::max<std::size_t>(n, 10000));
    broker_process broker({"--max-queue", limit, "--max-client-requests", limit,
                           "--max-memory", "4G", "--max-client-memory", "4G",
                           "--request-ttl-ms", "0"});
    stats_reader stats(broker.endpoint());
    client_set client(broker.endpoint(), 1);
    // Tracked first (an mmi.service answer), so the baseline holds its client entry.
    const bool greeted = greet_all(client, mdp::mmi_service, queued_service, milliseconds(10000)) == 1;
    const auto base_memory = stats.get("memory");
    const auto base_rss = broker.rss();

    std::vector<char> body(cfg.size, 'q');
    for (std::size_t i = 0; i < n; ++i) client.send(0, queued_service, body.data(), body.size());
    const auto seen = stats.wait_for("queued", n, milliseconds(60000), "requests queued");
    check_broker(broker);
    const auto queued_memory = stats.get("memory");
    const auto queued_bytes = stats.get("queued_bytes");
    const auto queued_rss = broker.rss();

    // The drain: workers start now; timed from their start to the last reply.
    std::size_t replies = 0, errors = 0;
    const auto start = steady::now();
    double drain_s = 0;
    {
        worker_pool workers(broker.endpoint(), queued_service, cfg.workers, cfg.credit);
        auto& items = client.items();
        zmq::message_t frame;
        bool error_reply = false;
        const auto until = start + milliseconds(120000);
        while (replies < n && steady::now() < until) {
            if (zmq::poll(items.data(), items.size(), milliseconds(100)) <= 0) continue;
            while (client.recv(0, frame, error_reply)) {
                ++replies;
                if (error_reply) ++errors;
            }
        }
        drain_s = std::chrono::duration<double>(steady::now() - start).count();
    }
    check_broker(broker);
    const auto after_memory = stats.get("memory");
    std::printf("%-8zu %10llu %9.0f %9.0f %10zu %9.0f %7llu %8zu %8.2f %10.0f %6zu %9lld\n", n,
                static_cast<unsigned long long>(queued_memory - std::min(queued_memory, base_memory)),
                per(diff(queued_memory, base_memory), n), per(static_cast<std::int64_t>(queued_bytes), n),
                queued_rss / 1024, per(diff(queued_rss, base_rss), n),
                static_cast<unsigned long long>(seen), replies, drain_s,
                drain_s > 0 ? static_cast<double>(replies) / drain_s : 0.0, errors,
                static_cast<long long>(diff(after_memory, base_memory)));
    std::fflush(stdout);
    return greeted && seen == n && replies == n && errors == 0 && after_memory == base_memory;
}

std::vector<std::size_t> counts(const std::vector<std::string>& flags, const char* name,
                                std::size_t max) {
    std::vector<std::size_t> out;
    for (const auto& flag : flags) {
        std::size_t start = 0;
        for (;;) {
            const auto comma = flag.find(',', start);
            const auto item = flag.substr(start, comma == std::string::npos ? comma : comma - start);
            std::size_t v = 0, used = 0;
            try {
                v = std::stoull(item, &used);
            } catch (const std::exception&) {
                used = 0;
            }
            if (item.empty() || used != item.size() || item[0] == '-' || v < 1 || v > max)
                throw cli::usage_error(std::string("invalid --") + name + " '" + item +
                                       "': a count in 1.." + std::to_string(max) +
                                       " (or a comma-separated list of them)");
            out.push_back(v);
            if (comma == std::string::npos) break;
            start = comma + 1;
        }
    }
    return out;
}

} // namespace

int run_scale_command(const std::vector<std::string>& args, const std::string& machine_line) {
    namespace po = boost::program_options;
    scale_config cfg;
    std::vector<std::string> clients, idle, queued;
    double seconds = 3;
    po::options_description options("options");
    options.add_options()
        ("clients", po::value(&clients)->multitoken(),
         "connected clients sharing --in-flight requests, one row each (e.g. 1,10,100,1000)")
        ("idle", po::value(&idle)->multitoken(),
         "idle clients (each sent one mmi.service request, then nothing) beside a small load, "
         "one row pair each (e.g. 10000)")
        ("queued", po::value(&queued)->multitoken(),
         "requests queued for a service with no worker, then drained, one row each (e.g. "
         "1000,10000,100000)")
        ("in-flight", po::value(&cfg.in_flight)->default_value(cfg.in_flight),
         "--clients: requests in flight, all clients together (at least one each)")
        ("load-window", po::value(&cfg.load_window)->default_value(cfg.load_window),
         "--idle: requests in flight of the small load")
        ("size", po::value(&cfg.size)->default_value(cfg.size), "request body bytes (>= 8)")
        ("workers", po::value(&cfg.workers)->default_value(cfg.workers), "echo workers")
        ("credit", po::value(&cfg.credit)->default_value(cfg.credit), "each echo worker's credit")
        ("duration", po::value(&seconds)->default_value(seconds), "seconds of load per row");
    po::variables_map vm;
    if (!cli::parse("bench scale", "[--clients N,..] [--idle N,..] [--queued N,..] [options]",
                    options, args, vm))
        return cli::ok;
    cfg.clients = counts(clients, "clients", 10000);
    cfg.idle = counts(idle, "idle", 100000);
    cfg.queued = counts(queued, "queued", 1000000);
    if (cfg.clients.empty() && cfg.idle.empty() && cfg.queued.empty())
        throw cli::usage_error("bench scale: give --clients, --idle or --queued (or several)");
    if (cfg.size < 8) throw cli::usage_error("--size must be at least 8");
    // At most the broker's default max_client_requests, which one client alone must not pass.
    if (cfg.in_flight < 1 || cfg.in_flight > 10000)
        throw cli::usage_error("--in-flight must be in [1, 10000]");
    if (cfg.load_window < 1 || cfg.load_window > 10000)
        throw cli::usage_error("--load-window must be in [1, 10000]");
    if (cfg.workers < 1 || cfg.workers > 64) throw cli::usage_error("--workers must be in [1, 64]");
    if (cfg.credit < 1 || cfg.credit > mdp::max_worker_credit)
        throw cli::usage_error("--credit must be in 1.." + std::to_string(mdp::max_worker_credit));
    if (!(seconds > 0) || seconds > 600) throw cli::usage_error("--duration must be in (0, 600]");
    cfg.duration = milliseconds(static_cast<long>(seconds * 1000));

    // Before any thread: the children of every row inherit it.
    const rlim_t fd_limit = raise_fd_limit();
    // The broker process holds every idle client's connection (one descriptor each).
    for (auto n : cfg.idle)
        if (n + 64 > fd_limit)
            throw cli::usage_error("--idle " + std::to_string(n) + " needs about " +
                                   std::to_string(n + 64) + " descriptors in the broker, but "
                                   "RLIMIT_NOFILE's hard limit is " + std::to_string(fd_limit) +
                                   " (ulimit -Hn)");
    for (auto n : cfg.clients)
        if (n + 64 > fd_limit / 2)
            throw cli::usage_error("--clients " + std::to_string(n) + " needs about " +
                                   std::to_string(2 * (n + 64)) +
                                   " descriptors, but RLIMIT_NOFILE's hard limit is " +
                                   std::to_string(fd_limit) + " (ulimit -Hn)");
    std::printf("%s\n", machine_line.c_str());
    std::printf("# RLIMIT_NOFILE %llu; each row has a zmesh broker process of its own; rss = its "
                "VmRSS, acct = its own count (zmesh.stats memory); B/x = bytes per client or "
                "request; %zu B bodies, %d echo workers with credit %u\n",
                static_cast<unsigned long long>(fd_limit), cfg.size, cfg.workers, cfg.credit);
    bool all = true;
    if (!cfg.clients.empty()) {
        std::printf("# clients: N DEALERs (MDP/0.1) share %zu requests in flight for %.1f s; "
                    "rss at rest = every client connected and tracked (seen), before the load\n",
                    cfg.in_flight, seconds);
        std::printf("%-8s %-9s %10s %9s %9s %10s %10s %10s %9s %9s %7s %6s %6s\n", "clients",
                    "inflight", "req/s", "p50_us", "p99_us", "base_KiB", "rest_KiB", "load_KiB",
                    "rss_B/cl", "acct_B/cl", "seen", "lost", "errors");
        std::fflush(stdout);
        for (auto n : cfg.clients) all = clients_row(cfg, n) && all;
    }
    if (!cfg.idle.empty()) {
        std::printf("# idle: one client with %zu in flight for %.1f s, without then with N idle "
                    "clients (each sent one mmi.service request and read its answer; held by "
                    "child processes of %zu sockets at most)\n",
                    cfg.load_window, seconds, idle_per_process);
        std::printf("%-8s %-8s %10s %9s %9s %10s %7s %11s %11s %6s %6s\n", "idle", "phase",
                    "req/s", "p50_us", "p99_us", "rss_KiB", "seen", "rss_B/idle", "acct_B/idle",
                    "lost", "errors");
        std::fflush(stdout);
        for (auto n : cfg.idle) all = idle_row(cfg, n, fd_limit) && all;
    }
    if (!cfg.queued.empty()) {
        std::printf("# queued: one client queues N requests for a service with no worker; then "
                    "%d workers start and the drain is timed to the last reply; left = the "
                    "broker's count after the drain minus before the requests (0: all given "
                    "back)\n",
                    cfg.workers);
        std::printf("%-8s %10s %9s %9s %10s %9s %7s %8s %8s %10s %6s %9s\n", "queued", "acct_B",
                    "acct_B/rq", "body_B/rq", "rss_KiB", "rss_B/rq", "seen", "drained", "drain_s",
                    "drain_rq/s", "errors", "left_B");
        std::fflush(stdout);
        for (auto n : cfg.queued) all = queued_row(cfg, n) && all;
    }
    return all ? cli::ok : cli::failure;
}

} // namespace zmesh::bench
