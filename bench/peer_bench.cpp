// SPDX-License-Identifier: MPL-2.0
// peer_bench.cpp — the zmesh side of the comparisons scripts/bench makes with other software.
//
// `zmesh bench mdp-peer`: one asynchronous MDP/0.1 client (a window of echo requests in flight)
// and N plain MDP/0.1 echo workers (credit 1, one request at a time), all against a broker that
// runs in another process: `zmesh broker` or the zguide's C mdbroker. The client and workers are
// the same code whichever broker it is, so the two figures differ by the broker only. --echo
// replaces the broker and workers by a ROUTER that echoes each message (the floor).
//
// `zmesh bench freelance`: brokerless request/reply, the Freelance pattern's client (one
// synchronous request at a time) against its server echoing in another thread. NNG's req/rep,
// also one request at a time (bench/peers/nng_reqrep.c), is its peer.
//
// Both print one result line like the other `zmesh bench` commands, and with --samples FILE
// write every round trip in microseconds, one a line (for the latency CDF in docs/perf.md).
#include "peer_bench.hpp"

#include "command.hpp"
#include "latency.hpp"

#include <zmesh/endpoint.hpp>
#include <zmesh/error.hpp>
#include <zmesh/mdp/client.hpp>
#include <zmesh/mdp/worker.hpp>
#include <zmesh/message.hpp>
#include <zmesh/patterns/freelance.hpp>

#include <zmq.hpp>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <thread>

namespace zmesh::cli {
namespace {

constexpr std::string_view service = "bench.echo";

/// Round trips in nanoseconds, reserved up front so that recording allocates nothing.
struct samples {
    explicit samples(std::size_t capacity) { ns.reserve(capacity); }
    std::vector<std::uint64_t> ns;
    void record(std::uint64_t v) {
        if (ns.size() < ns.capacity()) ns.push_back(v);
    }
    double percentile_us(double q) {
        if (ns.empty()) return 0;
        std::sort(ns.begin(), ns.end());
        auto i = static_cast<std::size_t>(std::ceil(q * static_cast<double>(ns.size())));
        return static_cast<double>(ns[std::min(i == 0 ? 0 : i - 1, ns.size() - 1)]) / 1000.0;
    }
    /// Writes the samples (sorted by percentile_us) in microseconds, one a line.
    void write(const std::string& path) const {
        std::ofstream out(path);
        if (!out) throw std::runtime_error("cannot write the samples to " + path);
        char line[32];
        for (auto v : ns) {
            std::snprintf(line, sizeof line, "%.2f\n", static_cast<double>(v) / 1000.0);
            out << line;
        }
        if (!out) throw std::runtime_error("cannot write the samples to " + path);
    }
};

message stamped_body(std::size_t size) {
    zmq::message_t frame(size);
    std::memset(frame.data(), 0, size);
    const std::uint64_t t = bench::now_ns();
    std::memcpy(frame.data(), &t, sizeof t);
    message body;
    body.push_back(std::move(frame));
    return body;
}

std::uint64_t stamp_of(const message& body) {
    std::uint64_t t = 0;
    if (!body.empty() && body.front().size() >= sizeof t) std::memcpy(&t, body.front().data(), sizeof t);
    return t;
}

std::chrono::milliseconds seconds_flag(double seconds) {
    if (!(seconds > 0) || seconds > 3600) throw usage_error("--duration must be in (0, 3600]");
    return std::chrono::milliseconds(static_cast<long>(seconds * 1000));
}

void print_row(const char* name, int clients, std::size_t size, std::size_t window, double rate,
               samples& s, std::uint64_t lost) {
    std::printf("%-10s %-7s %-6s %-7s %12s %10s %10s %10s %8s\n", "bench", "clients", "size",
                "window", "req/s", "p50 us", "p99 us", "p99.9 us", "lost");
    const double p50 = s.percentile_us(0.5), p99 = s.percentile_us(0.99), p999 = s.percentile_us(0.999);
    std::printf("%-10s %-7d %-6zu %-7zu %12.0f %10.1f %10.1f %10.1f %8llu\n", name, clients, size,
                window, rate, p50, p99, p999, static_cast<unsigned long long>(lost));
    std::fflush(stdout);
}

void plain_echo_worker(const std::string& endpoint, const std::atomic<bool>& stop) try {
    zmq::context_t ctx(1); // its own context and I/O thread, as a process would have
    mdp::worker_options o;
    o.credit = 1; // plain MDP/0.1 from the start: one request at a time, no ZMWC02 probe
    o.protocol = mdp::worker_protocol::mdp;
    mdp::worker w(ctx, endpoint, std::string(service), o);
    while (!stop.load(std::memory_order_relaxed)) {
        auto request = w.recv(std::chrono::milliseconds(100));
        if (request) w.reply(std::move(*request));
    }
} catch (const std::exception& e) {
    // The client then gets no reply and says so; this says why.
    std::fprintf(stderr, "zmesh bench mdp-peer: a worker of %s stopped: %s\n", endpoint.c_str(), e.what());
}

void router_echo(zmq::socket_t& router, const std::atomic<bool>& stop) {
    zmq::pollitem_t item{router.handle(), 0, ZMQ_POLLIN, 0};
    message m;
    while (!stop.load(std::memory_order_relaxed)) {
        if (zmq::poll(&item, 1, std::chrono::milliseconds(100)) <= 0) continue;
        while (m.recv(router, zmq::recv_flags::dontwait)) (void)m.send(router);
    }
}

} // namespace

int run_mdp_peer_bench(const std::vector<std::string>& args) {
    namespace po = boost::program_options;
    std::string broker, samples_path;
    int workers = 2, clients = 1;
    std::size_t size = 64, window = 100;
    double seconds = 2;
    po::options_description options("options");
    options.add_options()
        ("broker", po::value(&broker), "the MDP broker's endpoint (a broker in another process, "
         "e.g. zmesh broker or the zguide's mdbroker)")
        ("echo", "no broker: a ROUTER in this process echoes each request (the floor)")
        ("workers", po::value(&workers)->default_value(workers), "plain MDP/0.1 echo workers")
        ("size", po::value(&size)->default_value(size), "request body bytes (>= 8)")
        ("window", po::value(&window)->default_value(window), "requests in flight per client")
        ("clients", po::value(&clients)->default_value(clients),
         "MDP/0.1 clients, each a thread with its own context")
        ("duration", po::value(&seconds)->default_value(seconds), "seconds to measure")
        ("samples", po::value(&samples_path),
         "write every round trip (microseconds, one a line, sorted) to this file");
    po::variables_map vm;
    if (!parse("bench mdp-peer", "(--broker EP | --echo) [options]", options, args, vm)) return ok;
    const bool echo = vm.count("echo") > 0;
    if (echo == !broker.empty()) throw usage_error("give exactly one of --broker EP and --echo");
    if (!echo) {
        std::error_code ec;
        std::string why;
        (void)parse_endpoint(broker, ec, &why);
        if (ec) throw usage_error("--broker " + broker + ": " + (why.empty() ? ec.message() : why));
    }
    if (size < 8) throw usage_error("--size must be at least 8");
    if (window < 1 || window > 100000) throw usage_error("--window must be in [1, 100000]");
    if (workers < 1 || workers > 256) throw usage_error("--workers must be in [1, 256]");
    if (clients < 1 || clients > 256) throw usage_error("--clients must be in [1, 256]");
    const auto duration = seconds_flag(seconds);

    zmq::context_t echo_ctx(1), client_ctx(1);
    std::atomic<bool> stop{false};
    std::vector<std::thread> threads;
    zmq::socket_t echo_router(echo_ctx, zmq::socket_type::router);
    echo_router.set(zmq::sockopt::linger, 0);
    std::string endpoint = broker;
    if (echo) {
        echo_router.set(zmq::sockopt::sndhwm, 100000);
        echo_router.set(zmq::sockopt::rcvhwm, 100000);
        endpoint = bind(echo_router, "tcp://127.0.0.1:*");
        threads.emplace_back([&] { router_echo(echo_router, stop); });
    } else {
        for (int i = 0; i < workers; ++i) threads.emplace_back([&] { plain_echo_worker(endpoint, stop); });
    }
    struct joiner {
        std::atomic<bool>& stop;
        std::vector<std::thread>& threads;
        ~joiner() {
            stop = true;
            for (auto& t : threads) t.join();
        }
    } join_at_exit{stop, threads};

    // Warm-up: a round trip proves the workers are registered before the clock starts (up to
    // 10 s: the broker may be starting, and the client's one attempt waits for it).
    {
        mdp::client probe(client_ctx, endpoint,
                          {.timeout = std::chrono::milliseconds(10000), .retries = 1, .window = 1,
                           .protocol = mdp::client_protocol::mdp});
        probe.send(service, stamped_body(size));
        bool warm = false;
        for (int second = 0; second < 10 && !warm; ++second)
            warm = probe.recv(std::chrono::milliseconds(1000)).has_value();
        if (!warm) {
            std::fprintf(stderr, "zmesh bench mdp-peer: no reply from %s (service %s) within 10 s\n",
                         endpoint.c_str(), std::string(service).c_str());
            return failure;
        }
        while (probe.outstanding() > 0) (void)probe.recv(std::chrono::milliseconds(1000));
    }

    // Each client: its own context and thread, a window of requests in flight, its own samples.
    struct tally {
        samples rtt{0};
        std::uint64_t sent = 0, received = 0, in_time = 0;
        std::string failed;
    };
    std::vector<tally> tallies(static_cast<std::size_t>(clients));
    const std::size_t per_client_samples = 20'000'000 / static_cast<std::size_t>(clients);
    for (auto& t : tallies) t.rtt.ns.reserve(per_client_samples);
    const auto start = std::chrono::steady_clock::now();
    const auto end = start + duration;
    std::vector<std::thread> client_threads;
    for (auto& t : tallies)
        client_threads.emplace_back([&endpoint, &t, size, window, end] {
            try {
                zmq::context_t ctx(1);
                mdp::client client(ctx, endpoint,
                                   {.timeout = std::chrono::milliseconds(5000),
                                    .retries = 1,
                                    .window = window,
                                    .protocol = mdp::client_protocol::mdp});
                auto on_reply = [&t](const mdp::reply& r) {
                    ++t.received;
                    if (const auto stamp = stamp_of(r.body)) t.rtt.record(bench::now_ns() - stamp);
                };
                while (std::chrono::steady_clock::now() < end) {
                    while (client.outstanding() < window) {
                        client.send(service, stamped_body(size));
                        ++t.sent;
                    }
                    if (auto r = client.recv(std::chrono::milliseconds(1000))) on_reply(*r);
                }
                t.in_time = t.received;
                const auto drain_end = std::chrono::steady_clock::now() + std::chrono::seconds(2);
                while (client.outstanding() > 0 && std::chrono::steady_clock::now() < drain_end)
                    if (auto r = client.recv(std::chrono::milliseconds(200))) on_reply(*r);
            } catch (const std::exception& e) {
                t.failed = e.what();
            }
        });
    for (auto& t : client_threads) t.join();
    const double measured_s = std::chrono::duration<double>(end - start).count();
    samples rtt(0);
    std::uint64_t sent = 0, received = 0, in_time = 0;
    bool all_ran = true;
    for (auto& t : tallies) {
        all_ran = all_ran && t.failed.empty();
        if (!t.failed.empty()) std::fprintf(stderr, "zmesh bench mdp-peer: a client failed: %s\n", t.failed.c_str());
        sent += t.sent;
        received += t.received;
        in_time += t.in_time;
        rtt.ns.insert(rtt.ns.end(), t.rtt.ns.begin(), t.rtt.ns.end());
    }
    print_row(echo ? "echo" : "mdp-peer", clients, size, window, static_cast<double>(in_time) / measured_s,
              rtt, sent - received);
    if (!samples_path.empty()) rtt.write(samples_path);
    return sent == received && all_ran ? ok : failure;
}

int run_freelance_bench(const std::vector<std::string>& args) {
    namespace po = boost::program_options;
    std::string samples_path;
    std::size_t size = 64;
    double seconds = 2;
    po::options_description options("options");
    options.add_options()
        ("size", po::value(&size)->default_value(size), "request body bytes (>= 8)")
        ("duration", po::value(&seconds)->default_value(seconds), "seconds to measure")
        ("samples", po::value(&samples_path),
         "write every round trip (microseconds, one a line, sorted) to this file");
    po::variables_map vm;
    if (!parse("bench freelance", "[options]", options, args, vm)) return ok;
    if (size < 8) throw usage_error("--size must be at least 8");
    const auto duration = seconds_flag(seconds);

    zmq::context_t server_ctx(1), client_ctx(1);
    namespace fl = patterns::freelance;
    fl::server server(server_ctx, {"tcp://127.0.0.1:*"},
                      [](message&& body) { return fl::answer::reply(std::move(body)); });
    const std::string endpoint = server.endpoints().front();
    std::thread serving([&] { server.run(); });
    struct stopper {
        fl::server& server;
        std::thread& thread;
        ~stopper() {
            server.stop();
            thread.join();
        }
    } stop_at_exit{server, serving};

    fl::client client(client_ctx, {endpoint}, {.timeout = std::chrono::milliseconds(5000), .retries = 1});
    (void)client.request(stamped_body(size)); // warm-up: the connection is up before the clock starts
    samples rtt(20'000'000);
    std::uint64_t done = 0;
    const auto start = std::chrono::steady_clock::now();
    const auto end = start + duration;
    while (std::chrono::steady_clock::now() < end) {
        const message reply = client.request(stamped_body(size));
        if (const auto t = stamp_of(reply)) rtt.record(bench::now_ns() - t);
        ++done;
    }
    const double rate = static_cast<double>(done) /
                        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    print_row("freelance", 1, size, 1, rate, rtt, 0);
    if (!samples_path.empty()) rtt.write(samples_path);
    return ok;
}

} // namespace zmesh::cli
