// SPDX-License-Identifier: MPL-2.0
// main.cpp — brokerless pub/sub: a publisher and a subscriber talk directly over tcp loopback.
//
// The subscriber proves its subscription reached the publisher (wait_ready) before anything is
// published, so the first message is not lost to the slow-joiner problem. The publisher answers
// that probe when it reads its socket, here on a helper thread while main() waits; a real
// publisher does it in publish() or on its reactor. Every message carries a per-topic sequence
// number, so a lost one would show up in take_gaps().
#include <zmesh/zmesh.hpp>

#include <atomic>
#include <cstdio>
#include <thread>

int main() try {
    zmq::context_t ctx;
    zmesh::pubsub::publisher pub(ctx, {.bind = {"tcp://127.0.0.1:*"}});
    zmesh::pubsub::subscriber sub(ctx, {.connect = {pub.endpoints().front()}, .topics = {"prices."}});

    std::atomic<bool> ready{false};
    std::thread answering([&] {
        while (!ready) pub.poll_subscriptions(std::chrono::milliseconds(10));
    });
    ready = sub.wait_ready(std::chrono::seconds(5));
    answering.join(); // from here on only main() uses the publisher
    if (!ready) throw std::runtime_error("the publisher never answered the readiness probe");

    for (const char* price : {"1.0842", "1.0843", "1.0841"}) pub.publish("prices.eur", price);
    for (int i = 0; i < 3; ++i) {
        auto d = sub.recv(std::chrono::seconds(2));
        if (!d) throw std::runtime_error("a message did not arrive");
        std::printf("%s #%llu: %s (lag %lld us)\n", d->topic.c_str(),
                    static_cast<unsigned long long>(d->header.sequence),
                    zmesh::to_string(d->payload.front()).c_str(),
                    static_cast<long long>(d->lag.count() / 1000));
    }
    return sub.take_gaps().empty() ? 0 : 1;
} catch (const std::exception& e) {
    std::fprintf(stderr, "pubsub_direct: %s\n", e.what());
    return 1;
}
