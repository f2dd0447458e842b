// SPDX-License-Identifier: MPL-2.0
// test_message.cpp — multipart message I/O and ROUTER envelope helpers.
#include <zmesh/envelope.hpp>
#include <zmesh/message.hpp>

#include "support/support.hpp"

#include <doctest/doctest.h>

#include <memory>
#include <string>
#include <vector>

TEST_SUITE("lib.message") {

TEST_CASE("a multipart message round-trips over a socket pair with frames intact") {
    zmq::context_t ctx;
    zmq::socket_t a(ctx, zmq::socket_type::pair), b(ctx, zmq::socket_type::pair);
    a.set(zmq::sockopt::linger, 0);
    b.set(zmq::sockopt::linger, 0);
    auto ep = support::inproc_endpoint("msg");
    a.bind(ep);
    b.connect(ep);

    zmesh::message out{"one", "", "three"};
    out.push_back(zmq::message_t(std::string(100000, 'x')));
    REQUIRE(out.send(a) == zmesh::send_status::sent);
    CHECK(out.empty());

    auto in = support::recv_for(b);
    REQUIRE(in);
    REQUIRE(in->size() == 4);
    CHECK(zmesh::view((*in)[0]) == "one");
    CHECK((*in)[1].size() == 0);
    CHECK(zmesh::view((*in)[2]) == "three");
    CHECK((*in)[3].size() == 100000);
    CHECK(in->byte_size() == 3 + 5 + 100000);
}

TEST_CASE("recv with dontwait on an idle socket reports nothing and leaves the message empty") {
    zmq::context_t ctx;
    zmq::socket_t a(ctx, zmq::socket_type::pair);
    a.set(zmq::sockopt::linger, 0);
    a.bind(support::inproc_endpoint("idle"));
    zmesh::message m{"stale"};
    CHECK_FALSE(m.recv(a, zmq::recv_flags::dontwait));
    CHECK(m.empty());
}

TEST_CASE("a mandatory router reports an unknown peer as unroutable and keeps the message") {
    zmq::context_t ctx;
    zmq::socket_t r(ctx, zmq::socket_type::router);
    r.set(zmq::sockopt::linger, 0);
    r.set(zmq::sockopt::router_mandatory, 1);
    r.bind(support::inproc_endpoint("mandatory"));
    zmesh::message m{"nobody", "", "body"};
    CHECK(m.send(r, zmq::send_flags::dontwait) == zmesh::send_status::unroutable);
    CHECK(m.size() == 3);
}

TEST_CASE("envelope pop and push restore the routing frames and the delimiter") {
    zmesh::message m{"addr1", "addr2", "", "body"};
    auto env = zmesh::pop_envelope(m);
    REQUIRE(env);
    CHECK(env->size() == 2);
    CHECK(m.size() == 1);
    CHECK(zmesh::view(m.front()) == "body");
    zmesh::push_envelope(m, std::move(*env));
    REQUIRE(m.size() == 4);
    CHECK(zmesh::view(m[0]) == "addr1");
    CHECK(zmesh::view(m[1]) == "addr2");
    CHECK(m[2].size() == 0);
}

TEST_CASE("a message without a delimiter has no envelope and is left unchanged") {
    zmesh::message m{"a", "b"};
    CHECK_FALSE(zmesh::pop_envelope(m));
    CHECK(m.size() == 2);
}

TEST_CASE("wrap and unwrap add and remove an address with its delimiter") {
    zmesh::message m{"body"};
    zmesh::wrap(m, zmq::message_t(std::string_view("peer")));
    REQUIRE(m.size() == 3);
    auto addr = zmesh::unwrap(m);
    REQUIRE(addr);
    CHECK(zmesh::view(*addr) == "peer");
    REQUIRE(m.size() == 1);
    CHECK(zmesh::view(m.front()) == "body");
    zmesh::message none;
    CHECK_FALSE(zmesh::unwrap(none));
}

TEST_CASE("move_tail_to moves frames without copying and clone copies deeply") {
    // Frames above libzmq's 33-byte inline limit live on the heap, so a move keeps their address.
    const std::string big(64, 'b');
    zmesh::message m{"h1", "h2", big, "b2"};
    const void* data = m[2].data();
    zmesh::message body;
    m.move_tail_to(2, body);
    CHECK(m.size() == 2);
    REQUIRE(body.size() == 2);
    CHECK(body[0].data() == data);
    auto copy = body.clone();
    CHECK(copy[0].data() != data);
    CHECK(zmesh::view(copy[1]) == "b2");
}

TEST_CASE("share keeps a large frame's bytes in one place, and each message outlives the other") {
    const std::string big(4096, 'x');
    auto original = std::make_unique<zmesh::message>(zmesh::message{"small", big});
    const void* data = (*original)[1].data();
    zmesh::message shared = original->share();
    REQUIRE(shared.size() == 2);
    CHECK(shared[1].data() == data); // reference-counted, not copied
    CHECK(zmesh::view(shared[0]) == "small");
    CHECK(zmesh::view(shared[1]) == big);
    // The copy survives the original (and the reverse: the original is the one sent on retries).
    original.reset();
    CHECK(zmesh::view(shared[1]) == big);
    zmesh::message again = shared.share();
    shared.clear();
    CHECK(zmesh::view(again[1]) == big);
    CHECK(again[1].data() == data);
}

namespace {
std::vector<std::string> numbered(std::size_t n) {
    std::vector<std::string> out;
    for (std::size_t i = 0; i < n; ++i) out.push_back("f" + std::to_string(i));
    return out;
}
} // namespace

TEST_CASE("frames beyond the inline ones spill to the heap in order, and every operation keeps them") {
    // Every size around the inline capacity: all inline, exactly full, spilled by one, spilled far.
    for (std::size_t n = 0; n <= zmesh::message::inline_frames * 3 + 1; ++n) {
        CAPTURE(n);
        zmesh::message m;
        for (const auto& f : numbered(n)) m.push_back(f);
        CHECK(m.size() == n);
        CHECK(m.capacity() >= n);
        CHECK(support::texts(m) == numbered(n));

        // Moving: the source is left empty and usable, the target has every frame.
        zmesh::message moved(std::move(m));
        CHECK(m.empty()); // NOLINT(bugprone-use-after-move): documented as left empty
        CHECK(support::texts(moved) == numbered(n));
        m.push_back(std::string_view("again"));
        CHECK(support::texts(m) == std::vector<std::string>{"again"});

        // Move-assigning over a message that holds frames (inline or spilled) releases them.
        zmesh::message target;
        for (const auto& f : numbered(9)) target.push_back(f);
        target = std::move(moved);
        CHECK(moved.empty()); // NOLINT(bugprone-use-after-move)
        CHECK(support::texts(target) == numbered(n));

        // push_front and pop_front across the inline boundary.
        target.push_front(std::string_view("head"));
        auto expected = numbered(n);
        expected.insert(expected.begin(), "head");
        CHECK(support::texts(target) == expected);
        CHECK(zmesh::to_string(target.pop_front()) == "head");
        CHECK(support::texts(target) == numbered(n));
        if (n > 0) {
            CHECK(zmesh::to_string(target.pop_back()) == "f" + std::to_string(n - 1));
            CHECK(target.size() == n - 1);
        }

        // move_tail_to from an inline or spilled message into one that already has frames.
        zmesh::message rest{"x", "y", "z"};
        const std::size_t had = target.size();
        target.move_tail_to(had / 2, rest);
        CHECK(target.size() == had / 2);
        CHECK(rest.size() == 3 + (had - had / 2));

        // std::swap, as the last-value cache uses it.
        std::swap(target, rest);
        CHECK(rest.size() == had / 2);
        CHECK(target.size() == 3 + (had - had / 2));
        CHECK(zmesh::view(target[0]) == "x");
    }
}

TEST_CASE("clear keeps a spilled message's storage, so refilling it allocates nothing") {
    zmesh::message m;
    for (const auto& f : numbered(zmesh::message::inline_frames + 5)) m.push_back(f);
    const std::size_t capacity = m.capacity();
    const auto* storage = &m[0];
    m.clear();
    CHECK(m.empty());
    CHECK(m.capacity() == capacity);
    for (const auto& f : numbered(capacity)) m.push_back(f);
    CHECK(&m[0] == storage);
}

TEST_CASE("a spilled message round-trips over a socket pair") {
    zmq::context_t ctx;
    zmq::socket_t a(ctx, zmq::socket_type::pair), b(ctx, zmq::socket_type::pair);
    const std::string ep = support::inproc_endpoint("message-spill");
    a.bind(ep);
    b.connect(ep);
    zmesh::message out;
    for (const auto& f : numbered(11)) out.push_back(f);
    REQUIRE(out.send(a) == zmesh::send_status::sent);
    CHECK(out.empty());
    zmesh::message in;
    REQUIRE(in.recv(b));
    CHECK(support::texts(in) == numbered(11));
}

}
