// SPDX-License-Identifier: MPL-2.0
// test_reactor.cpp — the event loop: timers, socket and descriptor handlers, changes made from
// inside handlers, stop from other threads and from signals, and context shutdown.
//
// Every run is bounded by run_for() with a cap far above what the test needs, so a broken wake-up
// shows as a failed check, never as a hang. Timing checks assert order and counts only.
#include <zmesh/error.hpp>
#include <zmesh/message.hpp>
#include <zmesh/reactor.hpp>

#include "support/support.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <future>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <signal.h>
#include <unistd.h>

using namespace std::chrono_literals;
using zmesh::reactor;

namespace {

// Far above any legitimate wait on a loaded machine; reaching it means a wake-up was lost.
constexpr auto cap = 20s;

struct pair_sockets {
    zmq::socket_t a;
    zmq::socket_t b;

    explicit pair_sockets(zmq::context_t& ctx)
        : a(ctx, zmq::socket_type::pair), b(ctx, zmq::socket_type::pair) {
        a.set(zmq::sockopt::linger, 0);
        b.set(zmq::sockopt::linger, 0);
        const auto ep = support::inproc_endpoint("reactor");
        a.bind(ep);
        b.connect(ep);
    }
};

// Waits (bounded) until every socket has input, so that one poll sees them all ready.
bool all_readable(std::vector<zmq::socket_ref> sockets) {
    const auto until = std::chrono::steady_clock::now() + 2s;
    std::vector<zmq::pollitem_t> items;
    for (auto s : sockets) items.push_back({s.handle(), 0, ZMQ_POLLIN, 0});
    while (std::chrono::steady_clock::now() < until) {
        zmq::poll(items, 100ms);
        bool all = true;
        for (const auto& i : items) all = all && (i.revents & ZMQ_POLLIN) != 0;
        if (all) return true;
    }
    return false;
}

struct pipe_fds {
    int read_end = -1;
    int write_end = -1;
    pipe_fds() {
        int fds[2];
        REQUIRE(::pipe(fds) == 0);
        read_end = fds[0];
        write_end = fds[1];
    }
    ~pipe_fds() {
        if (read_end >= 0) ::close(read_end);
        if (write_end >= 0) ::close(write_end);
    }
    pipe_fds(const pipe_fds&) = delete;
    pipe_fds& operator=(const pipe_fds&) = delete;
    void put(char c) const { REQUIRE(::write(write_end, &c, 1) == 1); }
};

volatile std::sig_atomic_t test_handler_calls = 0;
void counting_handler(int) { test_handler_calls = test_handler_calls + 1; }

// Installs counting_handler for @p sig for the scope, then puts back what was there.
struct scoped_test_handler {
    int sig;
    struct sigaction original {};
    explicit scoped_test_handler(int s) : sig(s) {
        struct sigaction action {};
        action.sa_handler = counting_handler;
        sigemptyset(&action.sa_mask);
        REQUIRE(::sigaction(sig, &action, &original) == 0);
    }
    ~scoped_test_handler() { ::sigaction(sig, &original, nullptr); }
    scoped_test_handler(const scoped_test_handler&) = delete;
    scoped_test_handler& operator=(const scoped_test_handler&) = delete;
};

bool current_handler_is(int sig, void (*handler)(int)) {
    struct sigaction now {};
    ::sigaction(sig, nullptr, &now);
    return now.sa_handler == handler;
}

} // namespace

TEST_SUITE("lib.reactor") {

TEST_CASE("a one-shot timer fires exactly once") {
    reactor r;
    int fired = 0;
    r.add_timer(5ms, [&] { ++fired; });
    r.add_timer(150ms, [&] { r.stop(); });
    CHECK(r.run_for(cap) == reactor::run_result::stopped);
    CHECK(fired == 1);
    CHECK(r.stopped());
}

TEST_CASE("a repeating timer fires until it cancels itself from its own handler") {
    reactor r;
    int fired = 0;
    bool cancelled = false, cancelled_twice = true;
    r.add_repeating_timer(2ms, [&](reactor::timer_id self) {
        if (++fired == 5) {
            cancelled = r.cancel(self);
            cancelled_twice = r.cancel(self);
            r.add_timer(100ms, [&] { r.stop(); }); // time for a wrongly kept timer to fire again
        }
    });
    CHECK(r.run_for(cap) == reactor::run_result::stopped);
    CHECK(fired == 5);
    CHECK(cancelled);
    CHECK_FALSE(cancelled_twice);
}

TEST_CASE("timers fire in deadline order, not in the order they were added") {
    reactor r;
    std::vector<int> order;
    r.add_timer(40ms, [&] { order.push_back(4); });
    r.add_timer(10ms, [&] { order.push_back(1); });
    r.add_timer(30ms, [&] { order.push_back(3); });
    r.add_timer(20ms, [&] { order.push_back(2); });
    r.add_timer(0ms, [&] { order.push_back(0); });
    r.add_timer(20ms, [&] { order.push_back(22); }); // equal deadlines keep insertion order
    r.add_timer(60ms, [&] { r.stop(); });
    CHECK(r.run_for(cap) == reactor::run_result::stopped);
    CHECK(order == std::vector<int>{0, 1, 2, 22, 3, 4});
}

TEST_CASE("a timer cancelled before its deadline never fires") {
    reactor r;
    int fired = 0;
    const auto early = r.add_timer(20ms, [&] { ++fired; });
    const auto later = r.add_timer(60ms, [&] { ++fired; });
    CHECK(r.cancel(early));
    CHECK_FALSE(r.cancel(early));
    r.add_timer(1ms, [&] { CHECK(r.cancel(later)); }); // cancelled from inside the loop
    r.add_timer(150ms, [&] { r.stop(); });
    CHECK(r.run_for(cap) == reactor::run_result::stopped);
    CHECK(fired == 0);
}

TEST_CASE("many cancelled timers leave the remaining ones firing in order") {
    reactor r;
    std::vector<int> fired;
    std::vector<reactor::timer_id> ids;
    for (int i = 0; i < 1000; ++i)
        ids.push_back(r.add_timer(std::chrono::microseconds(20 * i), [&fired, i] { fired.push_back(i); }));
    for (int i = 0; i < 1000; ++i)
        if (i % 10 != 0) CHECK(r.cancel(ids[static_cast<std::size_t>(i)]));
    r.add_timer(100ms, [&] { r.stop(); });
    CHECK(r.run_for(cap) == reactor::run_result::stopped);
    REQUIRE(fired.size() == 100);
    for (std::size_t k = 0; k < fired.size(); ++k) CHECK(fired[k] == static_cast<int>(k * 10));
}

TEST_CASE("a socket handler is called when a message arrives") {
    zmq::context_t ctx;
    pair_sockets p(ctx);
    reactor r;
    std::string got;
    r.add(p.b, [&](zmq::socket_ref s) {
        zmesh::message m;
        REQUIRE(m.recv(s, zmq::recv_flags::dontwait));
        got = zmesh::to_string(m.front());
        r.stop();
    });
    r.add_timer(10ms, [&] {
        zmesh::message out{"ping"};
        REQUIRE(out.send(p.a) == zmesh::send_status::sent);
    });
    CHECK(r.run_for(cap) == reactor::run_result::stopped);
    CHECK(got == "ping");
}

TEST_CASE("a descriptor handler is called when a pipe is readable and on hang-up") {
    pipe_fds fds;
    reactor r;
    std::string got;
    bool saw_eof = false;
    r.add_fd(fds.read_end, [&](int fd) {
        char c = 0;
        const auto n = ::read(fd, &c, 1);
        if (n == 1) {
            got += c;
            if (got == "xy") { // then hang up
                ::close(fds.write_end);
                fds.write_end = -1;
            }
        } else {
            saw_eof = true;
            CHECK(r.remove_fd(fd));
            r.stop();
        }
    });
    fds.put('x');
    fds.put('y');
    CHECK(r.run_for(cap) == reactor::run_result::stopped);
    CHECK(got == "xy");
    CHECK(saw_eof);
}

TEST_CASE("a handler that removes another ready socket keeps it from being called in the same round") {
    zmq::context_t ctx;
    pair_sockets p1(ctx), p2(ctx);
    reactor r;
    int calls1 = 0, calls2 = 0;
    bool removed = false;
    r.add(p1.b, [&](zmq::socket_ref) {
        ++calls1;
        removed = r.remove(p2.b);
    });
    r.add(p2.b, [&](zmq::socket_ref) {
        ++calls2;
        removed = r.remove(p1.b);
    });
    zmesh::message m1{"one"}, m2{"two"};
    REQUIRE(m1.send(p1.a) == zmesh::send_status::sent);
    REQUIRE(m2.send(p2.a) == zmesh::send_status::sent);
    REQUIRE(all_readable({p1.b, p2.b}));

    CHECK(r.run_once(2s) == 1);
    CHECK(removed);
    CHECK(calls1 + calls2 == 1);

    // Neither handler read its message, so a surviving registration would be called again.
    r.add_timer(50ms, [&] { r.stop(); });
    r.run_for(cap);
    CHECK(calls1 + calls2 > 1);
    CHECK((calls1 == 0 || calls2 == 0));
}

TEST_CASE("a handler can remove its own socket and add sockets and timers") {
    zmq::context_t ctx;
    pair_sockets p1(ctx), p2(ctx);
    reactor r;
    int calls1 = 0, calls2 = 0;
    r.add(p1.b, [&](zmq::socket_ref self) {
        ++calls1;
        CHECK(r.remove(self));
        CHECK_FALSE(r.remove(self));
        r.add(p2.b, [&](zmq::socket_ref s) {
            ++calls2;
            zmesh::message m;
            REQUIRE(m.recv(s, zmq::recv_flags::dontwait));
            r.add_timer(0ms, [&] { r.stop(); });
        });
        zmesh::message out{"go"};
        REQUIRE(out.send(p2.a) == zmesh::send_status::sent);
    });
    zmesh::message first{"start"};
    REQUIRE(first.send(p1.a) == zmesh::send_status::sent);
    CHECK(r.run_for(cap) == reactor::run_result::stopped);
    CHECK(calls1 == 1); // its unread message would have called it again had it stayed
    CHECK(calls2 == 1);
}

TEST_CASE("stop from another thread wakes a blocked run") {
    reactor r;
    std::promise<void> running;
    r.add_timer(0ms, [&] { running.set_value(); });
    std::thread stopper([&] {
        running.get_future().wait();
        std::this_thread::sleep_for(support::settle_time); // let the loop block in poll
        r.stop();
    });
    const auto t0 = std::chrono::steady_clock::now();
    const auto result = r.run_for(cap);
    stopper.join();
    CHECK(result == reactor::run_result::stopped);
    CHECK(std::chrono::steady_clock::now() - t0 < cap / 2);

    SUBCASE("a stop is sticky until restart") {
        CHECK(r.run_for(cap) == reactor::run_result::stopped);
        r.restart();
        CHECK_FALSE(r.stopped());
        CHECK(r.run_for(10ms) == reactor::run_result::timed_out);
    }
}

TEST_CASE("a stop signal ends run cleanly, is reported, and the previous handler comes back") {
    scoped_test_handler term(SIGTERM), interrupt(SIGINT);
    test_handler_calls = 0;
    {
        reactor r;
        r.stop_on_signals({SIGINT, SIGTERM});
        CHECK_FALSE(r.last_signal());

        SUBCASE("raised on the loop's own thread") {
            r.add_timer(1ms, [] { std::raise(SIGTERM); });
            CHECK(r.run_for(cap) == reactor::run_result::signalled);
            CHECK(r.last_signal() == SIGTERM);
        }
        SUBCASE("sent to the process from another thread") {
            std::promise<void> running;
            r.add_timer(0ms, [&] { running.set_value(); });
            std::thread sender([&] {
                running.get_future().wait();
                ::kill(::getpid(), SIGINT);
            });
            const auto result = r.run_for(cap);
            sender.join();
            CHECK(result == reactor::run_result::signalled);
            CHECK(r.last_signal() == SIGINT);
        }
        CHECK(r.stopped());
        CHECK(test_handler_calls == 0);
    }
    CHECK(current_handler_is(SIGTERM, counting_handler));
    CHECK(current_handler_is(SIGINT, counting_handler));
    std::raise(SIGTERM);
    CHECK(test_handler_calls == 1);
}

TEST_CASE("a signal can stop only one reactor at a time and SIGKILL cannot be caught") {
    scoped_test_handler term(SIGTERM);
    reactor first, second;
    first.stop_on_signals({SIGTERM});
    first.stop_on_signals({SIGTERM}); // again on the same reactor: no change
    CHECK_THROWS_AS(second.stop_on_signals({SIGTERM}), zmesh::error);
    try {
        second.stop_on_signals({SIGKILL});
        FAIL("SIGKILL accepted");
    } catch (const zmesh::error& e) {
        CHECK(e.code() == zmesh::errc::invalid_argument);
    }
}

TEST_CASE("shutting the context down ends run without an exception") {
    zmq::context_t ctx;
    zmq::socket_t s(ctx, zmq::socket_type::pair);
    s.set(zmq::sockopt::linger, 0);
    s.bind(support::inproc_endpoint("eterm"));

    reactor r;
    int calls = 0;
    r.add(s, [&](zmq::socket_ref) { ++calls; });
    std::promise<void> running;
    r.add_timer(0ms, [&] { running.set_value(); });
    std::thread closer([&] {
        running.get_future().wait();
        ctx.shutdown();
    });
    reactor::run_result result = reactor::run_result::timed_out;
    CHECK_NOTHROW(result = r.run_for(cap));
    closer.join();
    CHECK(result == reactor::run_result::terminated);
    CHECK(r.terminated());
    CHECK(calls == 0);
    CHECK_FALSE(r.stopped()); // shutdown is its own way to end, not a stop
}

TEST_CASE("an exception from a handler propagates out of run and the loop can run again") {
    reactor r;
    int after = 0;
    r.add_timer(1ms, [] { throw std::runtime_error("handler failed"); });
    r.add_repeating_timer(1ms, [&] { ++after; });
    CHECK_THROWS_AS(r.run_for(cap), std::runtime_error);
    r.add_timer(30ms, [&] { r.stop(); });
    CHECK(r.run_for(cap) == reactor::run_result::stopped);
    CHECK(after > 0);
}

TEST_CASE("misuse throws zmesh::error and a moved reactor keeps its registrations") {
    zmq::context_t ctx;
    pair_sockets p(ctx);
    reactor r;
    r.add(p.b, [](zmq::socket_ref) {});
    CHECK_THROWS_AS(r.add(p.b, [](zmq::socket_ref) {}), zmesh::error);
    CHECK_THROWS_AS(r.add_fd(-1, [](int) {}), zmesh::error);
    CHECK_THROWS_AS(r.add_repeating_timer(0ms, [] {}), zmesh::error);
    CHECK_THROWS_AS(r.add_timer(1ms, reactor::timer_handler{}), zmesh::error);

    bool nested_refused = false;
    r.add_timer(0ms, [&] {
        try {
            r.run_once(0ms);
        } catch (const zmesh::error& e) {
            nested_refused = e.code() == zmesh::errc::invalid_argument;
        }
    });
    r.run_once(cap);
    CHECK(nested_refused);

    reactor moved(std::move(r));
    CHECK_THROWS_AS(r.run_once(0ms), zmesh::error); // NOLINT(bugprone-use-after-move)
    CHECK_FALSE(r.remove(p.b));
    CHECK(moved.remove(p.b));
}

} // TEST_SUITE
