// SPDX-License-Identifier: MPL-2.0
// test_forwarder_faults.cpp — the forwarder under the faults docs/pubsub.md ("Faults") lists: a
// lossless stream stalled by a subscriber that does not read while MDP traffic shares the loop,
// a flood of subscriptions against max_subscriptions (with libzmq's counting of duplicate and
// shared subscriptions), an oversized subscription, a flood of topics against the last-value
// cache, and what the broker logs about hostile topics.
#include "forwarder_fixture.hpp"
#include "stderr_capture.hpp"

#include <zmesh/mdp/worker.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

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

/// The subscription frames @p pub receives until it has seen a subscription to each of
/// @p topics (in any order), these included.
std::vector<std::string> frames_until(zmq::socket_t& pub, std::set<std::string> topics) {
    std::vector<std::string> seen;
    while (!topics.empty()) {
        auto m = support::recv_for(pub, 2000ms);
        REQUIRE(m);
        REQUIRE(m->size() == 1);
        auto f = zmesh::to_string((*m)[0]);
        if (!f.empty() && f[0] == '\1') topics.erase(f.substr(1));
        seen.push_back(std::move(f));
    }
    return seen;
}

std::string sub_frame(std::string_view topic) { return "\1" + std::string(topic); }
std::string unsub_frame(std::string_view topic) {
    return std::string(1, '\0') + std::string(topic);
}

/// A subscriber written by hand, as a hostile peer would: over a plain TCP connection to
/// @p endpoint (tcp://host:port) it speaks ZMTP 3.0 (NULL mechanism, socket type SUB) and sends
/// one subscription to @p topic, then waits up to 2 s for the other side to close, and leaves.
/// libzmq's own sockets cannot send a large subscription safely: they keep a copy in a trie of
/// their own, freed recursively as well.
/// @returns whether the other side closed the connection.
bool raw_subscribe_and_leave(const std::string& endpoint, const std::string& topic) {
    const auto colon = endpoint.rfind(':');
    REQUIRE(endpoint.rfind("tcp://", 0) == 0);
    REQUIRE(colon != std::string::npos);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(std::stoi(endpoint.substr(colon + 1))));
    REQUIRE(::inet_pton(AF_INET, endpoint.substr(6, colon - 6).c_str(), &addr.sin_addr) == 1);
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    struct closer {
        int fd;
        ~closer() { ::close(fd); }
    } guard{fd};
    REQUIRE(::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0);

    std::string out;
    // Greeting: signature, version 3.0, mechanism "NULL" padded to 20 bytes, as-server 0, filler.
    out += '\xff';
    out.append(8, '\0');
    out += '\x7f';
    out += '\3';
    out += '\0';
    out += "NULL";
    out.append(16, '\0');
    out.append(32, '\0');
    // READY command: a short command frame, "READY", property Socket-Type = SUB.
    std::string ready_body = "\5READY";
    ready_body += '\x0b';
    ready_body += "Socket-Type";
    ready_body += std::string("\0\0\0\3", 4);
    ready_body += "SUB";
    out += '\4';
    out += static_cast<char>(ready_body.size());
    out += ready_body;
    // The subscription: a long message frame (8-byte size), 0x01 then the topic.
    out += '\2';
    const std::uint64_t size = topic.size() + 1;
    for (int shift = 56; shift >= 0; shift -= 8) out += static_cast<char>((size >> shift) & 0xff);
    out += '\1';
    out += topic;
    for (std::size_t at = 0; at < out.size();) {
        const auto n = ::send(fd, out.data() + at, out.size() - at, MSG_NOSIGNAL);
        if (n <= 0) return true; // closed on us mid-frame
        at += static_cast<std::size_t>(n);
    }
    // Whatever the broker says (its greeting), until it closes.
    const auto deadline = std::chrono::steady_clock::now() + 2s;
    char buf[4096];
    while (std::chrono::steady_clock::now() < deadline) {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 50) <= 0) continue;
        if (::recv(fd, buf, sizeof buf, 0) <= 0) return true;
    }
    return false;
}

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

TEST_CASE("lossless: a stalled stream moves on as soon as the subscriber holding it disconnects") {
    fixture f(true);
    f.config.lossless = true;
    f.config.pubsub_hwm = 10;
    f.start();
    auto pub = f.publisher(10);
    auto reader = f.subscriber({"d."}, 100000);
    auto stuck = f.subscriber({"d."}, 10);
    ready(reader);
    ready(stuck);
    (void)await_subscription(pub, "d.");

    constexpr std::uint64_t n = 2000;
    std::thread producer([&] {
        for (std::uint64_t i = 1; i <= n; ++i)
            if (data_message("d.x", i).send(pub) != zmesh::send_status::sent) return;
    });
    REQUIRE(eventually([&] { return f.broker->stats().stalls >= 1; }));
    // The reader gets what was forwarded before the stall, then nothing: lossless holds it back
    // with the subscriber that does not read.
    std::uint64_t next = 1;
    while (auto m = recv_data(reader, support::settle_time)) REQUIRE(seq_of(*m) == next++);
    CHECK(next <= n / 2);
    stuck.close();
    for (; next <= n; ++next) {
        auto m = recv_data(reader);
        REQUIRE(m);
        REQUIRE(seq_of(*m) == next);
    }
    producer.join();
    CHECK(f.broker->stats().dropped == 0);
}

TEST_CASE("subscriptions past max_subscriptions are refused: not passed upstream, counted, and "
          "not delivered") {
    fixture f;
    f.config.max_subscriptions = 3;
    f.start();
    auto pub = f.publisher();
    auto sub = f.subscriber({"a", "b", "c", "d"});
    ready(sub); // from here the forwarder has handled all four
    for (const auto& frame : frames_until(pub, {"a", "b", "c"}))
        CHECK(frame != sub_frame("d"));
    CHECK(eventually([&] { return f.broker->stats().subscriptions_refused == 1; }));

    // Subscriptions travel in order: had "d" gone upstream, the publisher would see it before
    // what follows.
    sub.set(zmq::sockopt::unsubscribe, "a");
    sub.set(zmq::sockopt::subscribe, "e");
    CHECK(await_subscription(pub, "e") == std::vector<std::string>{unsub_frame("a")});

    // Nothing reaches the subscriber under the refused prefix: no publisher knows of it.
    publish(pub, data_message("d.1", 1));
    publish(pub, data_message("e.1", 1));
    auto m = recv_data(sub);
    REQUIRE(m);
    CHECK(zmesh::view((*m)[0]) == "e.1");
    auto s = f.broker->stats();
    CHECK(s.subscriptions == 4); // a, b, c, e
    CHECK(s.subscriptions_refused == 1);
}

TEST_CASE("the limit counts distinct prefixes: repeats and shared prefixes take one slot, freed "
          "when the last subscriber leaves") {
    fixture f;
    f.config.max_subscriptions = 2;
    f.start();
    auto pub = f.publisher();
    auto s1 = f.subscriber({"p", "p"}); // libzmq's SUB sends both; XPUB reports both
    ready(s1);
    auto s2 = f.subscriber({"p"});
    ready(s2);
    auto s3 = f.subscriber({"q"});
    ready(s3);
    // "p" went upstream once: everything about p was handled before q was subscribed.
    CHECK(frames_until(pub, {"q"}) == std::vector<std::string>{sub_frame("p"), sub_frame("q")});

    auto s4 = f.subscriber({"r"});
    ready(s4); // probes are answered with the table full
    CHECK(eventually([&] { return f.broker->stats().subscriptions_refused == 1; }));

    // s1 leaves p (libzmq's SUB sends one cancel for its two subscribes); s2 still holds it, so
    // nothing goes upstream. s3's cancel of q marks the spot.
    s1.set(zmq::sockopt::unsubscribe, "p");
    s1.set(zmq::sockopt::unsubscribe, "p");
    ready(s1);
    s3.set(zmq::sockopt::unsubscribe, "q");
    CHECK(await_subscription(pub, "q", false).empty());

    // A slot is free: r, refused before, is admitted when subscribed again.
    s4.set(zmq::sockopt::subscribe, "r");
    CHECK(await_subscription(pub, "r").empty());

    // p's last subscriber disconnects: p is cancelled upstream and its slot freed.
    s2.close();
    CHECK(await_subscription(pub, "p", false).empty());
    auto s5 = f.subscriber({"t"});
    CHECK(await_subscription(pub, "t").empty());

    // XSUB's own count is right as well: a publisher that connects now is told of exactly r and
    // t, the prefixes someone holds.
    auto late = f.publisher();
    std::set<std::string> told;
    while (auto m = support::recv_for(late, support::settle_time))
        told.insert(zmesh::to_string((*m)[0]));
    CHECK(told == std::set<std::string>{sub_frame("r"), sub_frame("t")});
    auto s = f.broker->stats();
    CHECK(s.subscriptions == 4); // p, q, r, t
    CHECK(s.subscriptions_refused == 1);
}

TEST_CASE("a refused subscription is logged with its topic escaped and truncated, rate limited") {
    node_test::stderr_capture err;
    fixture f;
    f.config.max_subscriptions = 1;
    f.start();
    auto sub = f.subscriber({"ok"});
    // A terminal escape, a forged log line and a long tail, on 50 distinct topics.
    const std::string evil = "\x1b[2J\nzmesh error: forged\\" + std::string(300, 'x');
    for (int i = 0; i < 50; ++i) sub.set(zmq::sockopt::subscribe, std::to_string(i) + evil);
    ready(sub);
    REQUIRE(eventually([&] { return f.broker->stats().subscriptions_refused == 50; }));
    f.broker->stop();
    err.restore();

    const auto lines = err.lines_with("refused");
    CHECK(!lines.empty());
    CHECK(lines.size() <= 10); // a burst, then counted in silence
    for (const auto& line : lines) {
        CAPTURE(line);
        CHECK(line.size() < 400);
        CHECK(std::none_of(line.begin(), line.end(), [](char c) {
            const auto u = static_cast<unsigned char>(c);
            return u < 0x20 || u >= 0x7f;
        }));
    }
    CHECK(lines.front().find("\\x1b[2J\\x0azmesh error: forged\\x5cxxx") != std::string::npos);
    CHECK(lines.front().find("... (326 bytes)") != std::string::npos);
    CHECK(err.lines_with("zmesh error: forged").size() == lines.size()); // never a line of its own
}

TEST_CASE("an oversized subscription closes its connection and never reaches libzmq's tables") {
    fixture f;
    f.start();
    auto pub = f.publisher();
    // libzmq 4.3 stores a subscription with one trie node per byte and frees the trie
    // recursively: 1 MiB from a peer that then leaves overflows the loop thread's stack.
    CHECK(raw_subscribe_and_leave(f.xpub, std::string(1 << 20, 'x')));
    CHECK(raw_subscribe_and_leave(f.xpub, std::string(1100, 'y'))); // just over the bound
    // The broker is alive, its forwarder works, and a long prefix within the bound is fine.
    const std::string topic(1000, 'k');
    auto sub = f.subscriber({topic});
    ready(sub);
    CHECK(await_subscription(pub, topic).empty()); // the oversized ones never went upstream
    publish(pub, data_message(topic + ".1", 1));
    auto m = recv_data(sub);
    REQUIRE(m);
    CHECK(seq_of(*m) == 1);
    CHECK(f.broker->stats().subscriptions == 1);
}

TEST_CASE("the last-value cache stays within lvc_max_topics under a flood of new topics") {
    fixture f;
    f.config.lvc = true;
    f.config.lvc_max_topics = 100;
    f.start();
    auto pub = f.publisher();
    (void)await_subscription(pub, "");
    constexpr int topics = 5000;
    for (int i = 0; i < topics; ++i) publish(pub, data_message("flood." + std::to_string(i), 1));
    REQUIRE(eventually([&] { return f.broker->stats().forwarded == topics; }));
    auto s = f.broker->stats();
    CHECK(s.lvc_topics == 100);
    CHECK(s.lvc_evictions == topics - 100);
    // What is left is the 100 newest, oldest first.
    auto snap = parse_snapshot(f.lvc("flood."));
    REQUIRE(snap.size() == 100);
    for (std::size_t i = 0; i < snap.size(); ++i)
        CHECK(snap[i].first == "flood." + std::to_string(topics - 100 + static_cast<int>(i)));
}

}
