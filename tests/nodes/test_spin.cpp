// SPDX-License-Identifier: MPL-2.0
// test_spin.cpp — the latency mode (subscriber_options::spin, client_options::spin,
// worker_options::spin): the same messages arrive as in blocking mode, and a wait with nothing to
// read still ends at its timeout, neither at once nor late.
#include <zmesh/mdp/client.hpp>
#include <zmesh/mdp/worker.hpp>
#include <zmesh/message.hpp>
#include <zmesh/nodes/broker.hpp>
#include <zmesh/pubsub/publisher.hpp>
#include <zmesh/pubsub/subscriber.hpp>

#include "support/support.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <string>
#include <thread>

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

TEST_SUITE("nodes.spin") {

TEST_CASE("a spinning subscriber gets every message in order and its empty wait ends at the timeout") {
    zmq::context_t ctx;
    zmesh::pubsub::publisher pub(ctx, {.bind = {"tcp://127.0.0.1:*"}});
    zmesh::pubsub::subscriber_options so;
    so.connect = {pub.endpoints().front()};
    so.topics = {"s."};
    so.spin = true;
    zmesh::pubsub::subscriber sub(ctx, so);
    std::atomic<bool> ready{false};
    std::thread answering([&] {
        while (!ready) pub.poll_subscriptions(10ms);
    });
    ready = sub.wait_ready(5s);
    answering.join();
    REQUIRE(sub.ready());

    for (int i = 1; i <= 200; ++i) {
        pub.publish("s.x", std::string_view(std::to_string(i)));
        auto d = sub.recv(2s);
        REQUIRE(d);
        CHECK(d->header.sequence == static_cast<std::uint64_t>(i));
        CHECK(zmesh::view(d->payload.front()) == std::to_string(i));
    }
    const auto start = clock_type::now();
    CHECK_FALSE(sub.recv(150ms));
    const auto waited = clock_type::now() - start;
    CHECK(waited >= 150ms);
    CHECK(waited < 2s);
    CHECK(sub.stats().gaps == 0);
}

TEST_CASE("a spinning client and a spinning credit worker answer every request through the broker") {
    zmq::context_t ctx;
    zmesh::nodes::broker_config config;
    config.mdp_endpoint = "tcp://127.0.0.1:*";
    zmesh::nodes::broker broker(ctx, config);
    const std::string endpoint = broker.endpoints().front();
    broker.start();
    struct stopper {
        zmesh::nodes::broker& b;
        ~stopper() { b.stop(); }
    } stop_broker{broker};

    std::atomic<bool> stop{false};
    std::thread worker([&] {
        zmesh::mdp::worker_options wo;
        wo.credit = 4;
        wo.spin = true;
        zmesh::mdp::worker w(ctx, endpoint, "spin.echo", wo);
        while (!stop.load())
            if (auto held = w.take(50ms)) w.reply(std::move(held->token), std::move(held->body));
    });
    struct joiner {
        std::atomic<bool>& stop;
        std::thread& t;
        ~joiner() {
            stop = true;
            t.join();
        }
    } join_worker{stop, worker};

    zmesh::mdp::client_options co;
    co.timeout = 5s;
    co.retries = 1;
    co.window = 4;
    co.spin = true;
    zmesh::mdp::client client(ctx, endpoint, co);
    for (int i = 0; i < 100; ++i) {
        auto reply = client.request("spin.echo", zmesh::message{std::to_string(i)});
        REQUIRE(reply.size() == 1);
        CHECK(zmesh::view(reply[0]) == std::to_string(i));
    }
    // Asynchronous: a window of 4 in flight, then a wait with nothing outstanding ends at once
    // and one with nothing coming ends at its timeout.
    for (int i = 0; i < 4; ++i) client.send("spin.echo", zmesh::message{"a" + std::to_string(i)});
    int got = 0;
    while (got < 4) {
        auto r = client.recv(2s);
        REQUIRE(r);
        ++got;
    }
    CHECK(client.outstanding() == 0);
    CHECK_FALSE(client.recv(100ms));
}

}
