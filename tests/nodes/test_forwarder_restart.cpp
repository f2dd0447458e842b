// SPDX-License-Identifier: MPL-2.0
// test_forwarder_restart.cpp — pub/sub through the broker survives the broker restarting: the
// subscriber's and publisher's subscriptions reach the new broker by themselves (libzmq #4057,
// #4063 report the opposite with plain proxies), and every message is either delivered or
// counted in a sequence gap: nothing vanishes silently. (A connecting publisher keeps messages
// queued for a broker that is away, so most of those published meanwhile still arrive.)
#include <zmesh/nodes/broker.hpp>

#include <zmesh/pubsub/publisher.hpp>
#include <zmesh/pubsub/subscriber.hpp>

#include "support/support.hpp"

#include <doctest/doctest.h>

#include <memory>
#include <thread>

using namespace std::chrono_literals;

namespace {

std::unique_ptr<zmesh::nodes::broker> start_broker(zmq::context_t& ctx, const std::string& xsub,
                                                   const std::string& xpub) {
    zmesh::nodes::broker_config cfg;
    cfg.mdp_endpoint = support::inproc_endpoint("restart-mdp");
    cfg.xsub_endpoint = xsub;
    cfg.xpub_endpoint = xpub;
    auto b = std::make_unique<zmesh::nodes::broker>(ctx, cfg);
    b->start();
    return b;
}

} // namespace

TEST_SUITE("nodes.forwarder") {

TEST_CASE("publishers and subscribers carry on by themselves after the broker restarts") {
    zmq::context_t broker_ctx, peers_ctx;
    auto broker = start_broker(broker_ctx, "tcp://127.0.0.1:*", "tcp://127.0.0.1:*");
    // The restarted broker must come back on the same ports, as a real one would.
    const auto eps = broker->endpoints();
    const std::string xsub = eps.at(1), xpub = eps.at(2);

    zmesh::socket_options fast_reconnect;
    fast_reconnect.linger = 0ms;
    zmesh::pubsub::publisher pub(peers_ctx, {.connect = {xsub}, .socket = fast_reconnect});
    zmesh::pubsub::subscriber sub(peers_ctx,
                                  {.connect = {xpub}, .topics = {"ticks"}, .socket = fast_reconnect});
    std::uint64_t first = 0, received = 0;
    auto count = [&](const std::optional<zmesh::pubsub::delivery>& d) {
        if (!d) return;
        if (first == 0) first = d->header.sequence;
        ++received;
    };
    // Publish a stream and read it; returns the sequence of the first message at least `from`.
    auto stream_until = [&](std::uint64_t from, std::chrono::milliseconds timeout) -> std::uint64_t {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        while (std::chrono::steady_clock::now() < deadline) {
            pub.publish("ticks", "x");
            auto d = sub.recv(10ms);
            count(d);
            if (d && d->header.sequence >= from) return d->header.sequence;
        }
        return 0;
    };

    REQUIRE(sub.wait_ready(5s));
    const std::uint64_t before = stream_until(1, 5s);
    REQUIRE(before > 0);

    broker->stop();
    broker.reset();
    // Published while no broker runs.
    for (int i = 0; i < 20; ++i) {
        pub.publish("ticks", "meanwhile");
        count(sub.recv(5ms));
    }
    broker = start_broker(broker_ctx, xsub, xpub);

    // Nobody resubscribes by hand: libzmq re-sends the SUB's subscription to the new XPUB, the
    // forwarder passes it upstream, and the new XSUB hands it to the reconnected publisher.
    const std::uint64_t after = stream_until(before + 21, 10s);
    CHECK(after > before + 20);
    std::uint64_t missed = 0;
    for (const auto& g : sub.take_gaps()) {
        CHECK(g.topic == "ticks");
        missed += g.missed();
    }
    MESSAGE("across the restart: " << received << " delivered, " << missed << " reported missing");
    // Every sequence number from the first delivered to the last is accounted for.
    CHECK(received + missed == after - first + 1);
    CHECK(broker->stats().subscriptions >= 1);
}

}
