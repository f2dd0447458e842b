// SPDX-License-Identifier: MPL-2.0
// titanic_bench.hpp — internal: durable (Titanic, rfc 9/TSP) request throughput and latency.
#pragma once

#include <zmesh/nodes/titanic.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>

namespace zmesh::bench {

struct titanic_bench_config {
    nodes::titanic_sync sync = nodes::titanic_sync::full;
    std::size_t size = 64;        ///< request body bytes (at least 8: the request's tag)
    int clients = 32;             ///< submitter threads
    std::size_t window = 1;       ///< submissions each submitter keeps in flight (> 1: async, no --rate)
    int workers = 4;              ///< echo workers of the target service
    std::size_t connections = 0;  ///< the node's request_connections; 0 = the node's default
    std::uint32_t credit = 0;     ///< the node's request_credit; 0 = the node's default
    std::size_t concurrency = 0;  ///< the node's dispatch_concurrency; 0 = the node's default
    std::uint64_t rate = 0;       ///< submissions/s shared by the submitters; 0 = flat out
    std::chrono::milliseconds duration{5000};
    std::chrono::milliseconds drain{60000}; ///< bound of the wait for every reply afterwards
};

struct titanic_bench_result {
    std::uint64_t acked = 0;           ///< submissions answered 200 within the duration
    std::uint64_t acked_total = 0;     ///< ... plus those whose answer came after it ended
    std::uint64_t submit_errors = 0;   ///< submissions that failed (timeout, 500): not acknowledged
    double seconds = 0;                ///< measured interval
    double rate = 0;                   ///< acked / seconds
    std::uint64_t commits = 0;         ///< the node's commits of submitted requests, in the interval
    double avg_batch = 0;              ///< requests stored per commit, in the interval
    std::uint64_t largest_batch = 0;   ///< the node's largest commit
    double replied_rate = 0;           ///< replies the node stored per second, in the interval
    std::size_t connections = 0;       ///< the node's request_connections used
    std::uint32_t credit = 0;          ///< the node's request_credit used
    double ack_p50_ms = 0, ack_p99_ms = 0;             ///< submit → "200" (every submission)
    std::uint64_t e2e_samples = 0;                      ///< probe requests measured end to end
    double e2e_p50_ms = 0, e2e_p99_ms = 0, e2e_p999_ms = 0; ///< submit → reply via titanic.reply
    double drain_seconds = 0;          ///< time after the interval until every reply was stored
    std::uint64_t unreplied = 0;       ///< acknowledged requests without their (echo) reply at the end
};

/// Runs the benchmark in this process, on tcp loopback, with threads for each role; the store
/// lives in a fresh temporary directory that is removed afterwards.
titanic_bench_result run_titanic_bench(const titanic_bench_config& config);

} // namespace zmesh::bench
