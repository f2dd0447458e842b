// SPDX-License-Identifier: MPL-2.0
// pubsub_bench.hpp — internal: pub/sub throughput, loss and latency, with zmesh's forwarder and
// libzmq's own zmq_proxy measured side by side under the same load.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace zmesh::bench {

struct pubsub_bench_config {
    /// raw:    a plain PUB socket straight to SUB sockets (the floor for everything else)
    /// direct: zmesh::pubsub::publisher straight to zmesh::pubsub::subscriber (zmesh's format:
    ///         header with id, source, sequence and time on every message; gap checking)
    /// broker: plain PUB → zmesh broker forwarder (XSUB/XPUB, lossless) → plain SUBs
    /// proxy:  plain PUB → zmq_proxy(XSUB, XPUB with NODROP) → plain SUBs
    std::string mode = "broker";
    int subscribers = 1;
    std::size_t size = 64;            ///< payload bytes (at least 8: the send timestamp)
    std::chrono::milliseconds duration{5000};
    std::uint64_t rate = 0;           ///< messages/s the publisher aims for; 0 = as fast as it can
    int io_threads = 1;               ///< ZMQ_IO_THREADS of the forwarder's (or proxy's) context
    /// broker mode: run the forwarder in its default lossy policy (a full subscriber loses
    /// messages, counted as lost here) instead of lossless.
    bool lossy = false;
    /// broker mode: the forwarder's XSUB and XPUB are CURVE servers with the broker's ZAP
    /// handler, and the publisher and subscribers CURVE clients with keys it admits.
    bool curve = false;
    /// Latency mode: the subscribers busy-poll instead of blocking (the zmesh subscriber's
    /// subscriber_options::spin in direct mode; zmq_poll with timeout 0 for the plain SUBs).
    bool spin = false;
};

struct pubsub_bench_result {
    std::uint64_t sent = 0;
    double seconds = 0;
    double rate = 0;                  ///< messages/s received, averaged over subscribers
    std::uint64_t lost = 0;           ///< sent × subscribers − received, after a drain
    double p50_us = 0, p99_us = 0, p999_us = 0;
};

/// Runs the benchmark in this process over tcp loopback. Every role (publisher, forwarder or
/// proxy, each subscriber) has its own thread and its own ZeroMQ context, as separate
/// processes would. Every hop is lossless (NODROP) unless config.lossy, and messages that do not
/// arrive are reported as lost, so a figure never hides dropped messages.
pubsub_bench_result run_pubsub_bench(const pubsub_bench_config& config);

} // namespace zmesh::bench
