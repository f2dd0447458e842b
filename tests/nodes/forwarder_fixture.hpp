// SPDX-License-Identifier: MPL-2.0
// forwarder_fixture.hpp — what the forwarder tests share: a broker with the forwarder on loopback
// TCP or inproc, raw ZeroMQ publishers (XPUB, so a test sees which subscriptions reach them) and
// subscribers (SUB), data messages built by hand as docs/pubsub.md specifies
// ([topic][zmesh header][payload]), the readiness handshake, and zmesh.lvc / zmesh.stats.
#pragma once

#include <zmesh/nodes/broker.hpp>

#include <zmesh/header.hpp>
#include <zmesh/mdp/client.hpp>
#include <zmesh/message.hpp>

#include "support/support.hpp"

#include <doctest/doctest.h>
#include <msgpack.hpp>

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace forwarder_test {

using namespace std::chrono_literals;
using namespace std::string_view_literals;
using zmesh::message;


constexpr std::string_view control_prefix = "\0zmesh."sv;
constexpr std::string_view probe_prefix = "\0zmesh.probe."sv;

inline bool is_control(const message& m) {
    return !m.empty() && zmesh::view(m[0]).starts_with(control_prefix);
}

inline message data_message(std::string_view topic, std::uint64_t seq, std::string type = "tick") {
    zmesh::header h = zmesh::make_header(std::move(type));
    h.sequence = seq;
    message m;
    m.push_back(topic);
    m.push_back(zmesh::encode(h));
    m.push_back("payload-" + std::string(topic) + "-" + std::to_string(seq));
    return m;
}

inline std::uint64_t seq_of(const message& m) { return zmesh::decode_header(m[1]).sequence; }

using support::eventually;

struct fixture {
    zmq::context_t ctx;
    zmesh::nodes::broker_config config;
    std::unique_ptr<zmesh::nodes::broker> broker;
    std::string mdp, xsub, xpub;

    /// inproc makes high-water marks exact (no kernel socket buffers): the slow-subscriber tests
    /// use it. The others run on loopback TCP.
    explicit fixture(bool inproc = false) {
        if (inproc) {
            config.mdp_endpoint = support::inproc_endpoint("mdp");
            config.xsub_endpoint = support::inproc_endpoint("xsub");
            config.xpub_endpoint = support::inproc_endpoint("xpub");
        } else {
            config.mdp_endpoint = config.xsub_endpoint = config.xpub_endpoint = "tcp://127.0.0.1:*";
        }
    }
    void start() {
        broker = std::make_unique<zmesh::nodes::broker>(ctx, config);
        auto eps = broker->endpoints();
        REQUIRE(eps.size() == 3);
        mdp = eps[0];
        xsub = eps[1];
        xpub = eps[2];
        broker->start();
    }
    ~fixture() {
        if (broker) broker->stop();
    }

    /// A plain SUB on the XPUB side; @p rcvhwm is set before connecting, as libzmq requires.
    zmq::socket_t subscriber(std::initializer_list<std::string_view> topics, int rcvhwm = 1000) {
        zmq::socket_t s(ctx, zmq::socket_type::sub);
        s.set(zmq::sockopt::linger, 0);
        s.set(zmq::sockopt::rcvhwm, rcvhwm);
        s.connect(xpub);
        for (auto t : topics) s.set(zmq::sockopt::subscribe, t);
        return s;
    }

    /// An XPUB on the XSUB side: it publishes, and reports the subscriptions that reach it.
    /// NODROP makes its blocking sends wait for room instead of dropping, so the only losses a
    /// test sees are the forwarder's.
    zmq::socket_t publisher(int sndhwm = 1000) {
        zmq::socket_t s(ctx, zmq::socket_type::xpub);
        s.set(zmq::sockopt::linger, 0);
        s.set(zmq::sockopt::sndhwm, sndhwm);
        s.set(zmq::sockopt::xpub_nodrop, 1);
        s.set(zmq::sockopt::sndtimeo, 10000); // a failing test must not leave a sender blocked
        s.connect(xsub);
        return s;
    }

    message lvc(std::string_view prefix) {
        zmesh::mdp::client c(ctx, mdp);
        return c.request("zmesh.lvc", message{prefix});
    }

    std::map<std::string, std::uint64_t> stats_map() {
        zmesh::mdp::client c(ctx, mdp);
        auto body = c.request("zmesh.stats", message{""});
        REQUIRE(body.size() == 1);
        auto oh = msgpack::unpack(static_cast<const char*>(body[0].data()), body[0].size());
        return oh.get().as<std::map<std::string, std::uint64_t>>();
    }
};

/// Receives the next message that is not control traffic.
inline std::optional<message> recv_data(zmq::socket_t& s,
                                        std::chrono::milliseconds timeout = 2000ms) {
    for (;;) {
        auto m = support::recv_for(s, timeout);
        if (!m || !is_control(*m)) return m;
    }
}

/// The readiness handshake of docs/pubsub.md: subscribe a unique probe topic, wait for its
/// answer, unsubscribe it. Afterwards every subscription made before is in effect at the
/// forwarder.
inline void ready(zmq::socket_t& sub) {
    const std::string topic = std::string(probe_prefix) + zmesh::message_id::generate().to_hex();
    sub.set(zmq::sockopt::subscribe, topic);
    for (;;) {
        auto m = support::recv_for(sub, 2000ms);
        REQUIRE(m);
        if (zmesh::view((*m)[0]) != topic) continue; // another subscriber's probe, seen by ""
        REQUIRE(m->size() == 2);
        CHECK(zmesh::decode_header((*m)[1]).type == "zmesh.probe");
        break;
    }
    sub.set(zmq::sockopt::unsubscribe, topic);
}

/// Waits until @p pub has been told of a subscription (or, with @p subscribe false, an
/// unsubscription) of @p topic. Returns the frames seen before it.
inline std::vector<std::string> await_subscription(zmq::socket_t& pub, std::string_view topic,
                                            bool subscribe = true) {
    const std::string want = std::string(1, subscribe ? '\1' : '\0') + std::string(topic);
    std::vector<std::string> before;
    for (;;) {
        auto m = support::recv_for(pub, 2000ms);
        REQUIRE(m);
        REQUIRE(m->size() == 1);
        auto f = zmesh::to_string((*m)[0]);
        if (f == want) return before;
        before.push_back(f);
    }
}

/// Waits until @p pub has been told of a subscription to each of @p topics, in any order.
inline void await_subscriptions(zmq::socket_t& pub, std::set<std::string> topics) {
    while (!topics.empty()) {
        auto m = support::recv_for(pub, 2000ms);
        REQUIRE(m);
        REQUIRE(m->size() == 1);
        const auto f = zmesh::view((*m)[0]);
        REQUIRE(!f.empty());
        if (f[0] == '\1') topics.erase(std::string(f.substr(1)));
    }
}

inline void publish(zmq::socket_t& pub, message m) {
    REQUIRE(m.send(pub) == zmesh::send_status::sent);
}

/// A zmesh.lvc snapshot: topic -> (sequence, payload frames).
struct cached {
    std::uint64_t seq;
    std::vector<std::string> payload;
};
inline std::vector<std::pair<std::string, cached>> parse_snapshot(const message& body) {
    REQUIRE(!body.empty());
    REQUIRE(zmesh::view(body[0]) == "200");
    std::vector<std::pair<std::string, cached>> out;
    std::size_t i = 1;
    while (i < body.size()) {
        const auto n = std::stoul(zmesh::to_string(body[i]));
        REQUIRE(i + 2 + n < body.size() + 1);
        cached c{zmesh::decode_header(body[i + 2]).sequence, {}};
        for (std::size_t k = 0; k < n; ++k) c.payload.push_back(zmesh::to_string(body[i + 3 + k]));
        out.emplace_back(zmesh::to_string(body[i + 1]), std::move(c));
        i += 3 + n;
    }
    return out;
}


} // namespace forwarder_test
