// SPDX-License-Identifier: MPL-2.0
// pubsub_bench.cpp — one publisher, N subscribers, one topic; every hop lossless (NODROP), so the
// publisher is paced by the slowest path and "lost" must read 0. The payload's first 8 bytes are
// the send time on the steady clock (all roles share this process), giving one-way latency.
//
// Before the clock starts, the publisher sends warm-up messages (timestamp 0) until every
// subscriber has seen one: that proves each subscription reached the publisher, through the
// forwarder or proxy where there is one, so no measured message is lost to the slow joiner.
#include "pubsub_bench.hpp"

#include "latency.hpp"

#include <zmesh/endpoint.hpp>
#include <zmesh/error.hpp>
#include <zmesh/message.hpp>
#include <zmesh/nodes/broker.hpp>
#include <zmesh/security/keys.hpp>
#include <zmesh/security/zap.hpp>
#include <zmesh/pubsub/publisher.hpp>
#include <zmesh/pubsub/subscriber.hpp>

#include <atomic>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

namespace zmesh::bench {
namespace {

using clock = std::chrono::steady_clock;
constexpr std::string_view topic = "bench.quotes";

/// What one subscriber thread saw.
struct subscriber_tally {
    explicit subscriber_tally(std::size_t capacity) : latencies(capacity) {}
    std::atomic<bool> warmed{false};
    std::atomic<std::uint64_t> received{0};
    std::atomic<std::int64_t> last_ns{0};     // steady-clock time of the last measured message
    latency_recorder latencies;
};

std::uint64_t stamp_of(const zmq::message_t& payload) {
    std::uint64_t t = 0;
    if (payload.size() >= sizeof t) std::memcpy(&t, payload.data(), sizeof t);
    return t;
}

void record(subscriber_tally& tally, const zmq::message_t& payload) {
    const std::uint64_t t = stamp_of(payload);
    if (t == 0) {
        tally.warmed.store(true, std::memory_order_relaxed);
        return;
    }
    const std::uint64_t now = now_ns();
    tally.latencies.record(now - t);
    tally.last_ns.store(static_cast<std::int64_t>(now), std::memory_order_relaxed);
    tally.received.fetch_add(1, std::memory_order_relaxed);
}

void run_subscriber(const std::string& endpoint,
                    const std::optional<security::curve_client_keys>& curve,
                    subscriber_tally& tally, bool spin, const std::atomic<bool>& stop) {
    zmq::context_t ctx(1);
    zmq::socket_t sub(ctx, zmq::socket_type::sub);
    sub.set(zmq::sockopt::linger, 0);
    sub.set(zmq::sockopt::subscribe, topic);
    if (curve) security::make_curve_client(sub, curve->server_public, curve->client);
    connect(sub, endpoint);
    zmq::pollitem_t item{sub.handle(), 0, ZMQ_POLLIN, 0};
    message m;
    while (!stop.load(std::memory_order_relaxed)) {
        if (zmq::poll(&item, 1, std::chrono::milliseconds(spin ? 0 : 50)) <= 0) continue;
        while (m.recv(sub, zmq::recv_flags::dontwait)) record(tally, m.back());
    }
}

void run_zmesh_subscriber(const std::string& endpoint, subscriber_tally& tally, bool spin,
                          const std::atomic<bool>& stop) {
    zmq::context_t ctx(1);
    pubsub::subscriber_options o;
    o.connect = {endpoint};
    o.topics = {std::string(topic)};
    o.spin = spin;
    pubsub::subscriber sub(ctx, o);
    while (!stop.load(std::memory_order_relaxed))
        if (auto d = sub.recv(std::chrono::milliseconds(50)); d && !d->payload.empty())
            record(tally, d->payload.back());
}

zmq::message_t payload(std::size_t size, std::uint64_t stamp) {
    zmq::message_t p(size);
    std::memset(p.data(), 0, size);
    std::memcpy(p.data(), &stamp, sizeof stamp);
    return p;
}

/// The stream's source: a plain PUB socket, or zmesh's publisher in direct mode. It binds (raw,
/// direct) or connects to the forwarder's or proxy's XSUB side.
class stream_source {
  public:
    explicit stream_source(bool zmesh_format) : pub_(ctx_, zmq::socket_type::pub) {
        pub_.set(zmq::sockopt::linger, 0);
        // PUB drops at the high-water mark unless told not to; a benchmark must not hide loss.
        pub_.set(zmq::sockopt::xpub_nodrop, 1);
        if (zmesh_format) {
            pubsub::publisher_options o;
            o.bind = {"tcp://127.0.0.1:*"};
            o.lossless = true;
            zmesh_ = std::make_unique<pubsub::publisher>(ctx_, o);
        }
    }
    std::string bind_loopback() {
        return zmesh_ ? zmesh_->endpoints().front() : bind(pub_, "tcp://127.0.0.1:*");
    }
    void connect_to(const std::string& ep,
                    const std::optional<security::curve_client_keys>& curve = std::nullopt) {
        if (curve) security::make_curve_client(pub_, curve->server_public, curve->client);
        connect(pub_, ep);
    }
    void send(std::size_t size, std::uint64_t stamp) {
        if (zmesh_) {
            // publish() empties body_ but keeps its frame storage, so nothing is allocated here.
            body_.push_back(payload(size, stamp));
            zmesh_->publish(topic, std::move(body_));
            return;
        }
        pub_.send(zmq::message_t(topic.data(), topic.size()), zmq::send_flags::sndmore);
        pub_.send(payload(size, stamp), zmq::send_flags::none);
    }

  private:
    zmq::context_t ctx_{1};
    zmq::socket_t pub_;
    std::unique_ptr<pubsub::publisher> zmesh_;
    message body_;
};

} // namespace

pubsub_bench_result run_pubsub_bench(const pubsub_bench_config& cfg) {
    if (cfg.size < sizeof(std::uint64_t)) throw error(errc::invalid_argument, "--size must be at least 8");
    if (cfg.subscribers < 1) throw error(errc::invalid_argument, "--subs must be at least 1");
    const bool direct = cfg.mode == "direct";
    stream_source pub(direct);
    std::string sub_endpoint;

    // The middle hop, if any, with its own context (a separate process, in effect).
    zmq::context_t middle_ctx(cfg.io_threads);
    std::unique_ptr<nodes::broker> broker;
    std::thread proxy_thread;
    zmq::socket_t proxy_xsub(middle_ctx, zmq::socket_type::xsub);
    zmq::socket_t proxy_xpub(middle_ctx, zmq::socket_type::xpub);
    std::optional<security::curve_client_keys> pub_keys, sub_keys; // broker mode with CURVE
    if (cfg.curve && cfg.mode != "broker")
        throw error(errc::invalid_argument, "CURVE needs --mode broker");
    if (cfg.mode == "raw" || direct) {
        sub_endpoint = pub.bind_loopback();
    } else if (cfg.mode == "broker") {
        nodes::broker_config bc;
        bc.mdp_endpoint = "tcp://127.0.0.1:*";
        bc.xsub_endpoint = "tcp://127.0.0.1:*";
        bc.xpub_endpoint = "tcp://127.0.0.1:*";
        bc.lossless = !cfg.lossy;
        if (cfg.curve) {
            bc.curve = security::generate("broker");
            auto p = security::generate("bench-publisher");
            auto s = security::generate("bench-subscriber");
            bc.access.keys.emplace(p.public_key, p.name);
            bc.access.keys.emplace(s.public_key, s.name);
            pub_keys = security::curve_client_keys{bc.curve->public_key, std::move(p)};
            sub_keys = security::curve_client_keys{bc.curve->public_key, std::move(s)};
        }
        broker = std::make_unique<nodes::broker>(middle_ctx, bc);
        const auto eps = broker->endpoints();
        pub.connect_to(eps.at(1), pub_keys);
        sub_endpoint = eps.at(2);
        broker->start();
    } else if (cfg.mode == "proxy") {
        proxy_xsub.set(zmq::sockopt::linger, 0);
        proxy_xpub.set(zmq::sockopt::linger, 0);
        proxy_xpub.set(zmq::sockopt::xpub_nodrop, 1);
        pub.connect_to(bind(proxy_xsub, "tcp://127.0.0.1:*"));
        sub_endpoint = bind(proxy_xpub, "tcp://127.0.0.1:*");
        proxy_thread = std::thread([&] {
            try {
                zmq::proxy(proxy_xsub, proxy_xpub);
            } catch (const zmq::error_t&) {
                // ETERM: the benchmark is over.
            }
            proxy_xsub.close();
            proxy_xpub.close();
        });
    } else {
        throw error(errc::invalid_argument, "--mode must be raw, direct, broker or proxy");
    }

    std::atomic<bool> stop{false};
    std::vector<std::unique_ptr<subscriber_tally>> tallies;
    std::vector<std::thread> subscribers;
    const std::size_t capacity = 4'000'000;
    for (int i = 0; i < cfg.subscribers; ++i) {
        tallies.push_back(std::make_unique<subscriber_tally>(capacity));
        subscribers.emplace_back([&, t = tallies.back().get()] {
            if (direct) run_zmesh_subscriber(sub_endpoint, *t, cfg.spin, stop);
            else run_subscriber(sub_endpoint, sub_keys, *t, cfg.spin, stop);
        });
    }

    // Warm-up: until every subscriber has heard the stream (bounded).
    const auto warm_deadline = clock::now() + std::chrono::seconds(10);
    auto all_warm = [&] {
        for (auto& t : tallies)
            if (!t->warmed.load()) return false;
        return true;
    };
    while (!all_warm()) {
        if (clock::now() > warm_deadline) {
            stop = true;
            for (auto& s : subscribers) s.join();
            throw error(errc::timeout, "subscribers never received the warm-up stream");
        }
        pub.send(cfg.size, 0);
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }

    pubsub_bench_result result;
    const auto start = clock::now();
    const auto end = start + cfg.duration;
    const auto interval = cfg.rate ? std::chrono::nanoseconds(1'000'000'000 / cfg.rate)
                                   : std::chrono::nanoseconds(0);
    auto next = start;
    while (clock::now() < end) {
        // Check the clock every 256 messages: it is not free, and a run lasts seconds.
        for (int i = 0; i < 256; ++i) {
            if (cfg.rate) {
                while (clock::now() < next) {}
                next += interval;
            }
            pub.send(cfg.size, now_ns());
            ++result.sent;
        }
    }

    // Drain: wait until every subscriber has everything, or progress stops for a second.
    std::uint64_t last_total = 0;
    auto last_progress = clock::now();
    for (;;) {
        std::uint64_t total = 0;
        for (auto& t : tallies) total += t->received.load();
        if (total == result.sent * tallies.size()) break;
        if (total != last_total) {
            last_total = total;
            last_progress = clock::now();
        } else if (clock::now() - last_progress > std::chrono::seconds(1)) {
            break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    stop = true;
    for (auto& s : subscribers) s.join();

    const auto start_ns = static_cast<std::int64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(start.time_since_epoch()).count());
    std::int64_t last_ns = start_ns;
    std::uint64_t received = 0;
    for (auto& t : tallies) {
        received += t->received.load();
        last_ns = std::max(last_ns, t->last_ns.load());
    }
    // Latency percentiles over the first subscriber: every subscriber sees the same stream.
    result.p50_us = tallies.front()->latencies.percentile_us(0.50);
    result.p99_us = tallies.front()->latencies.percentile_us(0.99);
    result.p999_us = tallies.front()->latencies.percentile_us(0.999);
    result.seconds = static_cast<double>(last_ns - start_ns) / 1e9;
    result.rate = result.seconds > 0
                      ? static_cast<double>(received) / static_cast<double>(tallies.size()) / result.seconds
                      : 0;
    result.lost = result.sent * tallies.size() - received;

    if (broker) broker->stop();
    if (proxy_thread.joinable()) {
        middle_ctx.shutdown();
        proxy_thread.join();
    }
    return result;
}

} // namespace zmesh::bench
