// SPDX-License-Identifier: MPL-2.0
// test_forwarder_loop.cpp — the forwarder (an internal of the broker, nodes/broker/forwarder.hpp)
// driven by a reactor the test owns, so that a test can time each turn of the loop. The broker
// shares that loop between the forwarder and the MDP engine: while a lossless stream is stalled
// by a subscriber that does not read, the forwarder must neither block the loop nor spin on it,
// and it must resume as soon as the subscriber reads.
#include "broker/forwarder.hpp"

#include "forwarder_fixture.hpp"

#include <zmesh/reactor.hpp>

#include <sys/resource.h>

using namespace forwarder_test;
using zmesh::reactor;

namespace {

/// Times the calling thread gave up the processor of its own accord (slept or blocked).
long voluntary_switches() {
    rusage u{};
    REQUIRE(::getrusage(RUSAGE_THREAD, &u) == 0);
    return u.ru_nvcsw;
}

struct loop_fixture {
    zmq::context_t ctx;
    zmesh::nodes::broker_config config;
    std::optional<zmesh::nodes::detail::forwarder> fwd;
    reactor r;

    loop_fixture() {
        config.xsub_endpoint = support::inproc_endpoint("loop-xsub");
        config.xpub_endpoint = support::inproc_endpoint("loop-xpub");
        config.lossless = true;
        config.pubsub_hwm = 10;
        fwd.emplace(ctx, config);
        fwd->attach(r);
    }
    ~loop_fixture() { fwd->detach(); }

    zmesh::nodes::broker_stats stats() const {
        zmesh::nodes::broker_stats s;
        fwd->fill(s);
        return s;
    }

    /// Turns the loop until @p done holds (at most 2 s).
    template <class Done> bool turn_until(Done done) {
        const auto deadline = reactor::clock::now() + 2s;
        while (!done()) {
            if (reactor::clock::now() >= deadline) return false;
            (void)r.run_once(10ms);
        }
        return true;
    }
};

} // namespace

TEST_SUITE("nodes.forwarder") {

TEST_CASE("lossless: a stalled forwarder never blocks its loop and wakes it only rarely, then "
          "resumes as soon as the subscriber reads") {
    loop_fixture f;
    zmq::socket_t pub(f.ctx, zmq::socket_type::xpub);
    pub.set(zmq::sockopt::linger, 0);
    pub.set(zmq::sockopt::sndhwm, 10);
    pub.set(zmq::sockopt::xpub_nodrop, 1);
    pub.connect(f.fwd->xsub_endpoint());
    zmq::socket_t sub(f.ctx, zmq::socket_type::sub);
    sub.set(zmq::sockopt::linger, 0);
    sub.set(zmq::sockopt::rcvhwm, 10);
    sub.connect(f.fwd->xpub_endpoint());
    sub.set(zmq::sockopt::subscribe, "d.");
    zmq::message_t frame;
    REQUIRE(f.turn_until([&] { return pub.recv(frame, zmq::recv_flags::dontwait).has_value(); }));
    CHECK(zmesh::view(frame) == "\1d.");

    // Publish until every queue on the way is full: the forwarder holds one message and stops
    // reading, and then the publisher's own queue fills. Short turns, so that the stall starts
    // just before the window measured below, with the retry's back-off still short.
    std::uint64_t published = 0;
    const auto fill_deadline = reactor::clock::now() + 2s;
    for (;;) {
        REQUIRE(reactor::clock::now() < fill_deadline);
        if (data_message("d.x", published + 1).send(pub, zmq::send_flags::dontwait) ==
            zmesh::send_status::sent)
            ++published;
        else if (f.stats().stalls > 0)
            break;
        (void)f.r.run_once(1ms);
    }
    const auto forwarded = f.stats().forwarded;

    // Stalled and idle for 300 ms. Each turn polls without waiting, so the test thread sleeps
    // only if a handler does: it gives up the processor voluntarily only then. (Wall time would
    // not tell, on a busy machine: a retry falls due while the thread is preempted, so the turn
    // that runs it includes the preemption.)
    const auto switches_before = voluntary_switches();
    int turns = 0;
    const auto end = reactor::clock::now() + 300ms;
    while (reactor::clock::now() < end)
        if (f.r.run_once(0ms) > 0) ++turns;
    const auto slept = voluntary_switches() - switches_before;
    CHECK(f.stats().forwarded == forwarded); // still stalled
    MESSAGE(turns << " turns ran a handler in 300 ms; the loop slept " << slept << " times");
    // Retrying every millisecond would be about 300 turns (150 if each retry also waited 1 ms);
    // the forwarder backs off to one retry per 100 ms.
    CHECK(turns >= 1);
    CHECK(turns <= 20);
    // A handler that waits for room sleeps in that wait, once per retry; a few spare for the
    // runtime's own (a page fault, a sanitizer's lock).
    CHECK(slept <= 3);

    // The subscriber reads its queue: the forwarder is woken at once by the XPUB's ZMQ_FD, not
    // by the next retry (then 100 ms away), and the stream moves again.
    for (int i = 0; i < 20; ++i) {
        auto m = support::recv_for(sub, 2000ms);
        REQUIRE(m);
        REQUIRE(seq_of(*m) == static_cast<std::uint64_t>(i + 1));
    }
    const auto t0 = reactor::clock::now();
    REQUIRE(f.turn_until([&] { return f.stats().forwarded > forwarded; }));
    const auto resumed = reactor::clock::now() - t0;
    MESSAGE("resumed after "
            << std::chrono::duration_cast<std::chrono::microseconds>(resumed).count() << " us");
    CHECK(resumed < 50ms);

    // And the rest arrives whole and in order, the publisher sending as room appears.
    std::uint64_t next = 21;
    constexpr std::uint64_t total = 500;
    REQUIRE(f.turn_until([&] {
        if (published < total &&
            data_message("d.x", published + 1).send(pub, zmq::send_flags::dontwait) ==
                zmesh::send_status::sent)
            ++published;
        message m;
        while (m.recv(sub, zmq::recv_flags::dontwait)) {
            REQUIRE(seq_of(m) == next);
            ++next;
        }
        return next > total;
    }));
    CHECK(f.stats().dropped == 0);
}

}
