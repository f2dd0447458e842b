// SPDX-License-Identifier: MPL-2.0
// test_forwarder_faults.cpp — the forwarder under the faults docs/pubsub.md ("Faults") lists: a
// lossless stream stalled by a subscriber that does not read while MDP traffic shares the loop.
#include "forwarder_fixture.hpp"

#include <zmesh/mdp/worker.hpp>

#include <algorithm>
#include <atomic>
#include <thread>

using namespace forwarder_test;

namespace {

/// An echo service on its own thread.
class echo_worker {
  public:
    echo_worker(zmq::context_t& ctx, std::string endpoint)
        : thread_([this, &ctx, endpoint = std::move(endpoint)] {
              zmesh::mdp::worker w(ctx, endpoint, "echo");
              while (!stop_.load()) {
                  auto r = w.recv(20ms);
                  if (r) w.reply(std::move(*r));
              }
              w.close();
          }) {}
    ~echo_worker() {
        stop_.store(true);
        thread_.join();
    }
    echo_worker(const echo_worker&) = delete;
    echo_worker& operator=(const echo_worker&) = delete;

  private:
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

} // namespace

TEST_SUITE("nodes.forwarder") {

TEST_CASE("lossless: a subscriber that never reads stalls the stream but not MDP, and the stream "
          "resumes whole when it reads") {
    fixture f(true);
    f.config.lossless = true;
    f.config.pubsub_hwm = 10;
    f.start();
    echo_worker worker(f.ctx, f.mdp);
    auto pub = f.publisher(10);
    auto sub = f.subscriber({"d."}, 10);
    ready(sub);
    (void)await_subscription(pub, "d.");

    constexpr std::uint64_t n = 2000; // far more than every queue on the way holds
    std::atomic<std::uint64_t> sent{0};
    std::thread producer([&] {
        for (std::uint64_t i = 1; i <= n; ++i) {
            if (data_message("d.x", i).send(pub) != zmesh::send_status::sent) return;
            sent = i;
        }
    });
    // The subscriber does not read: its queues fill, the forwarder holds a message and stops
    // reading the publisher, whose own queue then fills.
    REQUIRE(eventually([&] { return f.broker->stats().stalls >= 1; }));
    const auto forwarded = f.broker->stats().forwarded;

    // MDP shares the forwarder's loop; a stalled stream must not slow it.
    zmesh::mdp::client client(f.ctx, f.mdp);
    auto slowest = 0us;
    for (int i = 0; i < 200; ++i) {
        const auto body = "ping " + std::to_string(i);
        const auto t0 = std::chrono::steady_clock::now();
        auto reply = client.request("echo", message{body});
        const auto took = std::chrono::duration_cast<std::chrono::microseconds>(
            std::chrono::steady_clock::now() - t0);
        REQUIRE(support::texts(reply) == std::vector<std::string>{body});
        slowest = std::max(slowest, took);
    }
    MESSAGE("slowest of 200 MDP round trips during the stall: " << slowest.count() << " us");
    CHECK(slowest < 100ms);
    // Still stalled all along: the requests were served during the stall, not after it.
    CHECK(f.broker->stats().forwarded == forwarded);
    CHECK(sent.load() < n);

    // Every message, in order, once the subscriber reads.
    for (std::uint64_t i = 1; i <= n; ++i) {
        auto m = recv_data(sub);
        REQUIRE(m);
        REQUIRE(seq_of(*m) == i);
    }
    producer.join();
    CHECK(sent.load() == n);
    CHECK(eventually([&] { return f.broker->stats().forwarded == n; }));
    CHECK(f.broker->stats().dropped == 0);
}

}
