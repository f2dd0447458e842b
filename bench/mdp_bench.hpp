// SPDX-License-Identifier: MPL-2.0
// mdp_bench.hpp — internal: request/reply throughput and latency through the zmesh broker.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace zmesh::bench {

struct mdp_bench_config {
    std::string mode = "broker";  ///< "broker": client → broker → workers; "direct": DEALER → ROUTER echo
    int workers = 2;              ///< echo workers (broker mode)
    std::size_t size = 64;        ///< request body bytes (at least 8: the send timestamp)
    std::size_t window = 256;     ///< requests in flight
    std::uint32_t credit = 1;     ///< each worker's credit (the worker library's protocol)
    /// The client protocol (broker mode): true = ZMCT03, every request with a header and a
    /// message id that the broker keeps for de-duplication (executed once); false = MDP/0.1, no
    /// id, nothing kept. The workers are the same either way.
    bool dedupe = false;
    /// The broker's dedupe_window (broker_config): replies kept for retries.
    std::chrono::milliseconds dedupe_window{60000};
    std::chrono::milliseconds duration{5000};
    /// Broker mode: every connection (client and workers) encrypted with CURVE and admitted by
    /// the broker's ZAP handler, as `zmesh broker --curve-secret --allow` runs it.
    bool curve = false;
    /// Latency mode: the client and the workers (or the direct echo) busy-poll instead of
    /// blocking (client_options::spin, worker_options::spin).
    bool spin = false;
};

struct mdp_bench_result {
    std::uint64_t sent = 0;
    std::uint64_t received = 0;   ///< replies, counted until every request was answered or 2 s passed
    double seconds = 0;           ///< measured interval
    double rate = 0;              ///< replies per second
    double p50_us = 0, p99_us = 0, p999_us = 0;
};

/// Runs the benchmark in this process, on tcp loopback, with threads for each role.
mdp_bench_result run_mdp_bench(const mdp_bench_config& config);

} // namespace zmesh::bench
