// SPDX-License-Identifier: MPL-2.0
// titanic_bench.cpp — durable requests through the Titanic node (rfc 9/TSP): how many requests
// per second are acknowledged (stored and committed, "200" + id) and how long a request takes
// from submission until its reply can be fetched through `titanic.reply`.
//
// In one process, each role on its own thread, over tcp://127.0.0.1:
//   broker (in-process, own context) ← titanic_node (own context; store in a fresh temp dir)
//                                    ← W echo mdp::worker threads for "bench.echo" (own contexts)
//   C submitter threads (durable_client each): submit("bench.echo", body) in a loop, one at a
//     time, until the duration ends. Throughput = acknowledgements received within the
//     duration / duration. Every submission's ack latency (submit → "200") is recorded.
//     With --rate R the submitters share R submissions/s on a fixed schedule instead (latency at
//     a load the node sustains; flat out, the e2e figure is mostly the dispatch backlog).
//     With --window W > 1 each submitter is an asynchronous mdp::client that keeps W
//     `titanic.request`s in flight. A TSP acknowledgement names only the new id, and acks of one
//     client may come back out of order, so these submissions have no latency of their own: the
//     ack latency is then the probe's alone (one submission at a time, under that load).
//   1 probe thread (durable_client): submit, then poll `titanic.reply` every 0.5 ms until "200",
//     in a loop, under the submitters' load. Its samples are the end-to-end latency: submit →
//     reply available. (Sampling with a dedicated probe keeps the submitters' loop pure; the
//     0.5 ms poll interval bounds the figure's resolution.) Its acks count in the throughput.
// Afterwards, a bounded drain waits until the node has stored a reply for every stored request,
// then every acknowledged id is fetched through `titanic.reply` and its echo checked: an
// acknowledged request without its own reply counts as "unreplied" (must be 0).
#include "titanic_bench.hpp"

#include "latency.hpp"

#include <zmesh/error.hpp>
#include <zmesh/mdp/client.hpp>
#include <zmesh/mdp/durable_client.hpp>
#include <zmesh/mdp/worker.hpp>
#include <zmesh/message.hpp>
#include <zmesh/nodes/broker.hpp>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace zmesh::bench {
namespace {

constexpr std::string_view service = "bench.echo";

void echo_worker(const std::string& endpoint, const std::atomic<bool>& stop) {
    zmq::context_t ctx(1);
    mdp::worker w(ctx, endpoint, std::string(service));
    while (!stop.load(std::memory_order_relaxed)) {
        auto request = w.recv(std::chrono::milliseconds(100));
        if (request) w.reply(std::move(*request));
    }
}

/// The first 8 bytes of a body: which submitter and which of its requests, so that the reply
/// fetched at the end can be checked to be this request's echo.
std::uint64_t make_tag(int client, std::uint64_t seq) {
    return (static_cast<std::uint64_t>(client + 1) << 40) | seq;
}

message make_body(std::size_t size, std::uint64_t tag) {
    zmq::message_t frame(size);
    std::memset(frame.data(), 'x', size);
    std::memcpy(frame.data(), &tag, sizeof tag);
    message body;
    body.push_back(std::move(frame));
    return body;
}

bool is_echo(const message& reply, std::size_t size, std::uint64_t tag) {
    if (reply.size() != 1 || reply.front().size() != size) return false;
    std::uint64_t got = 0;
    std::memcpy(&got, reply.front().data(), sizeof got);
    return got == tag;
}

mdp::durable_client_options client_options() {
    mdp::durable_client_options o;
    o.mdp.timeout = std::chrono::milliseconds(5000);
    o.mdp.retries = 2;
    return o;
}

/// A fresh directory for the store, removed (with the store) when this goes out of scope.
class temp_dir {
  public:
    temp_dir() {
        std::string pattern =
            (std::filesystem::temp_directory_path() / "zmesh-bench-titanic-XXXXXX").string();
        if (::mkdtemp(pattern.data()) == nullptr)
            throw error(errc::storage, "cannot create a temporary directory for the store");
        path_ = pattern;
    }
    ~temp_dir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;
    [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }

  private:
    std::filesystem::path path_;
};

struct acked_request {
    std::string id;
    std::uint64_t tag = 0; ///< 0 = not known (window mode): any unused tag of its submitter
};

struct submitter_result {
    std::vector<acked_request> acked;
    std::uint64_t sent = 0;                // submissions made (their tags are 0..sent-1)
    std::uint64_t acked_in_time = 0;
    std::uint64_t errors = 0;
    std::vector<std::uint64_t> ack_ns;
    std::vector<std::uint64_t> e2e_ns;     // probe only
    std::uint64_t unreplied = 0;           // probe only: a wait that failed or a wrong echo
};

} // namespace

titanic_bench_result run_titanic_bench(const titanic_bench_config& cfg) {
    if (cfg.size < sizeof(std::uint64_t)) throw error(errc::invalid_argument, "--size must be at least 8");
    if (cfg.clients < 1 || cfg.workers < 1)
        throw error(errc::invalid_argument, "--clients and --workers must be at least 1");

    temp_dir dir;
    titanic_bench_result result;
    std::atomic<bool> stop_workers{false};
    std::vector<std::thread> workers;

    zmq::context_t broker_ctx(1), node_ctx(1), client_ctx(1);
    nodes::broker_config bc;
    bc.mdp_endpoint = "tcp://127.0.0.1:*";
    nodes::broker broker(broker_ctx, bc);
    const std::string endpoint = broker.endpoints().front();
    broker.start();
    for (int i = 0; i < cfg.workers; ++i) workers.emplace_back([&] { echo_worker(endpoint, stop_workers); });

    nodes::titanic_config tc;
    tc.broker_endpoint = endpoint;
    tc.store_path = dir.path() / "titanic.db";
    tc.sync = cfg.sync;
    if (cfg.connections > 0) tc.request_connections = cfg.connections;
    result.connections = tc.request_connections;
    if (cfg.credit > 0) tc.request_credit = cfg.credit;
    result.credit = tc.request_credit;
    if (cfg.concurrency > 0) tc.dispatch_concurrency = cfg.concurrency;
    auto node = std::make_unique<nodes::titanic_node>(node_ctx, tc);
    node->start();

    auto shutdown = [&] {
        if (node) node->stop();
        stop_workers = true;
        for (auto& t : workers) t.join();
        workers.clear();
        broker.stop();
    };

    try {
        // Warm-up: one durable request answered end to end proves the node and the workers are
        // registered before the clock starts.
        {
            mdp::durable_client warm(client_ctx, endpoint, client_options());
            const std::string id = warm.submit(service, make_body(cfg.size, 0));
            (void)warm.wait(id, std::chrono::seconds(10));
            warm.close(id);
        }

        const auto before = node->stats();
        std::atomic<bool> stop{false};
        std::vector<submitter_result> results(static_cast<std::size_t>(cfg.clients) + 1);
        std::vector<std::thread> threads;
        const auto start = std::chrono::steady_clock::now();
        const auto end = start + cfg.duration;

        for (int c = 0; c < cfg.clients && cfg.window > 1; ++c) {
            threads.emplace_back([&, c] {
                auto& r = results[static_cast<std::size_t>(c)];
                mdp::client client(client_ctx, endpoint,
                                   {.timeout = std::chrono::milliseconds(5000), .retries = 1,
                                    .window = cfg.window});
                auto take_ack = [&](mdp::reply& reply) {
                    if (reply.body.size() == 2 && view(reply.body[0]) == "200") {
                        if (std::chrono::steady_clock::now() <= end) ++r.acked_in_time;
                        r.acked.push_back({to_string(reply.body[1]), 0});
                    } else {
                        ++r.errors;
                    }
                };
                try {
                    while (!stop.load(std::memory_order_relaxed)) {
                        while (client.outstanding() < cfg.window) {
                            message m = make_body(cfg.size, make_tag(c, r.sent++));
                            m.push_front(service);
                            client.send("titanic.request", std::move(m));
                        }
                        if (auto reply = client.recv(std::chrono::milliseconds(100))) take_ack(*reply);
                    }
                    // The acks still on their way count in the total, not in the rate.
                    while (client.outstanding() > 0) {
                        auto reply = client.recv(std::chrono::milliseconds(5000));
                        if (!reply) break;
                        take_ack(*reply);
                    }
                } catch (const std::exception&) {
                    ++r.errors;
                }
                r.errors += client.outstanding(); // never acknowledged
            });
        }
        for (int c = 0; c < cfg.clients && cfg.window == 1; ++c) {
            threads.emplace_back([&, c] {
                auto& r = results[static_cast<std::size_t>(c)];
                mdp::durable_client client(client_ctx, endpoint, client_options());
                for (std::uint64_t seq = 0; !stop.load(std::memory_order_relaxed); ++seq) {
                    if (cfg.rate > 0) { // paced: this client's share of --rate, on a fixed schedule
                        const auto due = start + std::chrono::nanoseconds(static_cast<std::int64_t>(
                                                     1e9 * static_cast<double>(seq) * cfg.clients /
                                                     static_cast<double>(cfg.rate)));
                        if (due >= end) break;
                        std::this_thread::sleep_until(due);
                    }
                    const std::uint64_t tag = make_tag(c, seq);
                    const std::uint64_t t0 = now_ns();
                    try {
                        std::string id = client.submit(service, make_body(cfg.size, tag));
                        const std::uint64_t t1 = now_ns();
                        if (std::chrono::steady_clock::now() <= end) ++r.acked_in_time;
                        r.ack_ns.push_back(t1 - t0);
                        r.acked.push_back({std::move(id), tag});
                    } catch (const std::exception&) {
                        ++r.errors;
                    }
                }
            });
        }
        // The probe: submit, then poll titanic.reply until the reply is there.
        threads.emplace_back([&] {
            auto& r = results.back();
            const int c = cfg.clients;
            mdp::durable_client client(client_ctx, endpoint, client_options());
            for (std::uint64_t seq = 0; !stop.load(std::memory_order_relaxed); ++seq) {
                const std::uint64_t tag = make_tag(c, seq);
                const std::uint64_t t0 = now_ns();
                std::string id;
                try {
                    id = client.submit(service, make_body(cfg.size, tag));
                } catch (const std::exception&) {
                    ++r.errors;
                    continue;
                }
                if (std::chrono::steady_clock::now() <= end) ++r.acked_in_time;
                r.ack_ns.push_back(now_ns() - t0);
                std::optional<message> reply;
                const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
                while (!reply && std::chrono::steady_clock::now() < deadline) {
                    try {
                        reply = client.poll(id);
                    } catch (const std::exception&) {
                    }
                    if (!reply) std::this_thread::sleep_for(std::chrono::microseconds(500));
                }
                if (reply && is_echo(*reply, cfg.size, tag))
                    r.e2e_ns.push_back(now_ns() - t0);
                else
                    ++r.unreplied; // acknowledged, yet no (correct) reply within 30 s
            }
        });

        std::this_thread::sleep_until(end);
        stop = true;
        const auto at_end = node->stats();
        for (auto& t : threads) t.join();
        threads.clear();
        const auto measured = std::chrono::steady_clock::now();
        const auto after = node->stats();

        // Drain: wait (bounded) until the node has a stored reply for every stored request.
        const auto drain_end = measured + cfg.drain;
        while (std::chrono::steady_clock::now() < drain_end) {
            const auto s = node->stats();
            if (s.replied + s.dead_lettered >= s.stored) break;
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        result.drain_seconds =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - measured).count();

        // Verify: every acknowledged request of the submitters has its own echo as its reply.
        std::atomic<std::uint64_t> unreplied{0};
        for (int c = 0; c < cfg.clients; ++c) {
            threads.emplace_back([&, c] {
                mdp::durable_client client(client_ctx, endpoint, client_options());
                const auto& r = results[static_cast<std::size_t>(c)];
                std::vector<bool> seen(r.sent); // window mode: each tag answers one id at most
                for (const auto& a : r.acked) {
                    bool ok = false;
                    try {
                        auto reply = client.poll(a.id);
                        if (reply && a.tag != 0) {
                            ok = is_echo(*reply, cfg.size, a.tag);
                        } else if (reply && reply->size() == 1 &&
                                   reply->front().size() == cfg.size) {
                            std::uint64_t tag = 0;
                            std::memcpy(&tag, reply->front().data(), sizeof tag);
                            const std::uint64_t seq = tag & ((std::uint64_t{1} << 40) - 1);
                            ok = tag == make_tag(c, seq) && seq < r.sent && !seen[seq];
                            if (ok) seen[seq] = true;
                        }
                    } catch (const std::exception&) {
                    }
                    if (!ok) unreplied.fetch_add(1, std::memory_order_relaxed);
                }
            });
        }
        for (auto& t : threads) t.join();
        threads.clear();

        latency_recorder ack(20'000'000), e2e(1'000'000);
        for (const auto& r : results) {
            result.acked += r.acked_in_time;
            result.acked_total += r.acked.size();
            result.submit_errors += r.errors;
            for (auto ns : r.ack_ns) ack.record(ns);
            for (auto ns : r.e2e_ns) e2e.record(ns);
            result.unreplied += r.unreplied;
        }
        result.acked_total += results.back().e2e_ns.size() + results.back().unreplied;
        result.unreplied += unreplied.load();
        result.seconds = std::chrono::duration<double>(end - start).count(); // acks counted up to `end`
        result.rate = static_cast<double>(result.acked) / result.seconds;
        result.commits = after.batches - before.batches;
        result.avg_batch = result.commits == 0
                               ? 0.0
                               : static_cast<double>(after.stored - before.stored) /
                                     static_cast<double>(result.commits);
        result.largest_batch = after.largest_batch;
        result.replied_rate = static_cast<double>(at_end.replied - before.replied) / result.seconds;
        result.ack_p50_ms = ack.percentile_us(0.50) / 1000.0;
        result.ack_p99_ms = ack.percentile_us(0.99) / 1000.0;
        result.e2e_samples = e2e.count();
        result.e2e_p50_ms = e2e.percentile_us(0.50) / 1000.0;
        result.e2e_p99_ms = e2e.percentile_us(0.99) / 1000.0;
        result.e2e_p999_ms = e2e.percentile_us(0.999) / 1000.0;
    } catch (...) {
        shutdown();
        throw;
    }
    shutdown();
    node.reset(); // closes the store before the directory is removed
    return result;
}

} // namespace zmesh::bench
