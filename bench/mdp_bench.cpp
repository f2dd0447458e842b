// SPDX-License-Identifier: MPL-2.0
// mdp_bench.cpp — one asynchronous MDP client keeps a window of echo requests in flight and
// measures replies per second and round-trip latency (send timestamp carried in the body).
//
// broker mode:  client → zmesh broker (in-process, own thread) → N mdp::worker threads
// direct mode:  client → a ROUTER that echoes each message back (the floor: no broker at all)
// Everything runs over tcp://127.0.0.1, so the kernel's loopback path is part of the figure, and
// each role has its own ZeroMQ context (its own I/O thread), as separate processes would.
#include "mdp_bench.hpp"

#include "latency.hpp"

#include <zmesh/endpoint.hpp>
#include <zmesh/error.hpp>
#include <zmesh/mdp/client.hpp>
#include <zmesh/mdp/worker.hpp>
#include <zmesh/message.hpp>
#include <zmesh/nodes/broker.hpp>
#include <zmesh/security/keys.hpp>

#include <atomic>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

namespace zmesh::bench {
namespace {

constexpr std::string_view service = "bench.echo";

void echo_worker(const std::string& endpoint, std::uint32_t credit, bool spin,
                 std::optional<security::curve_client_keys> curve, const std::atomic<bool>& stop) {
    zmq::context_t ctx(1); // each role has its own context and I/O thread, as a process would
    mdp::worker_options o;
    o.credit = credit;
    o.spin = spin;
    o.curve = std::move(curve);
    mdp::worker w(ctx, endpoint, std::string(service), o);
    while (!stop.load(std::memory_order_relaxed)) {
        auto request = w.recv(std::chrono::milliseconds(100));
        if (request) w.reply(std::move(*request));
    }
}

void router_echo(zmq::socket_t& router, bool spin, const std::atomic<bool>& stop) {
    zmq::pollitem_t item{router.handle(), 0, ZMQ_POLLIN, 0};
    message m;
    while (!stop.load(std::memory_order_relaxed)) {
        if (zmq::poll(&item, 1, std::chrono::milliseconds(spin ? 0 : 100)) <= 0) continue;
        while (m.recv(router, zmq::recv_flags::dontwait)) (void)m.send(router);
    }
}

message make_body(std::size_t size) {
    zmq::message_t frame(size);
    const std::uint64_t t = now_ns();
    std::memcpy(frame.data(), &t, sizeof t);
    message body;
    body.push_back(std::move(frame));
    return body;
}

} // namespace

mdp_bench_result run_mdp_bench(const mdp_bench_config& cfg) {
    if (cfg.size < sizeof(std::uint64_t)) throw error(errc::invalid_argument, "--size must be at least 8");
    if (cfg.window == 0) throw error(errc::invalid_argument, "--window must be positive");
    zmq::context_t broker_ctx(1), client_ctx(1);
    std::atomic<bool> stop{false};
    std::vector<std::thread> threads;
    std::unique_ptr<nodes::broker> broker;
    zmq::socket_t echo_router(broker_ctx, zmq::socket_type::router);
    echo_router.set(zmq::sockopt::linger, 0);
    std::string endpoint;
    // However the run ends, an error included, the echo threads stop and are joined before the
    // sockets they use close: a std::thread destroyed unjoined would abort the process instead
    // of letting the error be reported.
    struct join_on_exit {
        std::atomic<bool>& stop;
        std::vector<std::thread>& threads;
        ~join_on_exit() {
            stop = true;
            for (auto& t : threads)
                if (t.joinable()) t.join();
        }
    } joiner{stop, threads};
    // CURVE: keys made here, in memory, as `zmesh keygen` would make them.
    std::optional<security::curve_client_keys> client_keys, worker_keys;
    if (cfg.curve && cfg.mode != "broker")
        throw error(errc::invalid_argument, "CURVE needs --mode broker");
    if (cfg.mode == "broker") {
        nodes::broker_config bc;
        bc.mdp_endpoint = "tcp://127.0.0.1:*";
        bc.dedupe_window = cfg.dedupe_window;
        if (cfg.curve) {
            bc.curve = security::generate("broker");
            auto c = security::generate("bench-client");
            auto w = security::generate("bench-worker");
            bc.access.keys.emplace(c.public_key, c.name);
            bc.access.keys.emplace(w.public_key, w.name);
            client_keys = security::curve_client_keys{bc.curve->public_key, std::move(c)};
            worker_keys = security::curve_client_keys{bc.curve->public_key, std::move(w)};
        }
        broker = std::make_unique<nodes::broker>(broker_ctx, bc);
        endpoint = broker->endpoints().front();
        broker->start();
        for (int i = 0; i < cfg.workers; ++i)
            threads.emplace_back([&] { echo_worker(endpoint, cfg.credit, cfg.spin, worker_keys, stop); });
    } else if (cfg.mode == "direct") {
        echo_router.set(zmq::sockopt::sndhwm, 100000);
        echo_router.set(zmq::sockopt::rcvhwm, 100000);
        endpoint = bind(echo_router, "tcp://127.0.0.1:*");
        threads.emplace_back([&] { router_echo(echo_router, cfg.spin, stop); });
    } else {
        throw error(errc::invalid_argument, "--mode must be broker or direct");
    }

    if (cfg.dedupe && cfg.mode != "broker")
        throw error(errc::invalid_argument, "de-duplication needs --mode broker");
    // Asynchronous mode in both protocols: the same window, no retries, so the two rows differ
    // only by what ZMCT03 adds on the wire and in the broker (a header per message, an id table
    // with the kept reply per request).
    mdp::client client(client_ctx, endpoint,
                       {.timeout = std::chrono::milliseconds(5000),
                        .retries = 1,
                        .window = cfg.window,
                        .protocol = cfg.dedupe ? mdp::client_protocol::zmesh
                                               : mdp::client_protocol::mdp,
                        .curve = client_keys,
                        .spin = cfg.spin});
    latency_recorder latencies(20'000'000);
    mdp_bench_result result;
    auto on_reply = [&](const mdp::reply& r) {
        ++result.received;
        std::uint64_t t = 0;
        if (!r.body.empty() && r.body.front().size() >= sizeof t) {
            std::memcpy(&t, r.body.front().data(), sizeof t);
            latencies.record(now_ns() - t);
        }
    };

    // Warm-up: one round trip proves the workers are registered before the clock starts.
    client.send(service, make_body(cfg.size));
    if (!client.recv(std::chrono::milliseconds(5000))) throw error(errc::timeout, "no warm-up reply");

    const auto start = std::chrono::steady_clock::now();
    const auto end = start + cfg.duration;
    while (std::chrono::steady_clock::now() < end) {
        while (client.outstanding() < cfg.window) {
            client.send(service, make_body(cfg.size));
            ++result.sent;
        }
        if (auto r = client.recv(std::chrono::milliseconds(1000))) on_reply(*r);
    }
    const auto measured = std::chrono::steady_clock::now();
    const std::uint64_t received_in_time = result.received;
    // Drain: every request sent must come back, or it counts as lost.
    const auto drain_end = measured + std::chrono::seconds(2);
    while (client.outstanding() > 0 && std::chrono::steady_clock::now() < drain_end)
        if (auto r = client.recv(std::chrono::milliseconds(200))) on_reply(*r);

    result.seconds = std::chrono::duration<double>(measured - start).count();
    result.rate = static_cast<double>(received_in_time) / result.seconds;
    result.p50_us = latencies.percentile_us(0.50);
    result.p99_us = latencies.percentile_us(0.99);
    result.p999_us = latencies.percentile_us(0.999);

    stop = true;
    for (auto& t : threads) t.join();
    threads.clear();
    if (broker) broker->stop();
    return result;
}

} // namespace zmesh::bench
