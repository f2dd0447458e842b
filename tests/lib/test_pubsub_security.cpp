// SPDX-License-Identifier: MPL-2.0
// test_pubsub_security.cpp — CURVE between brokerless peers (docs/security.md, "Brokerless
// peers"): a publisher or subscriber that binds with curve_server admits only the keys of its
// policy, and the peer that connects uses the curve client keys.
//
// Each refusal case runs beside an admitted peer on the same endpoint, so that "received
// nothing" means refused, not "nothing was published" or "the endpoint was wrong". Keys are
// generated in memory: the files are test_keys' business.
#include <zmesh/error.hpp>
#include <zmesh/pubsub/publisher.hpp>
#include <zmesh/pubsub/subscriber.hpp>
#include <zmesh/security/keys.hpp>
#include <zmesh/security/zap.hpp>

#include "support/support.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;
using zmesh::pubsub::publisher;
using zmesh::pubsub::publisher_options;
using zmesh::pubsub::subscriber;
using zmesh::pubsub::subscriber_options;
namespace security = zmesh::security;
using strings = std::vector<std::string>;
using support::texts;

/// How long a peer that should be refused gets to prove otherwise. An admitted peer is ready in
/// a few milliseconds on loopback; a refused one retries its handshake every 100 ms meanwhile.
constexpr auto refusal_window = 600ms;

/// The key pairs of one test: the binding peer's own, an admitted one and an unknown one.
struct keyring {
    security::certificate server = security::generate("server");
    security::certificate alice = security::generate("alice");     // admitted
    security::certificate mallory = security::generate("mallory"); // unknown to the server
    security::certificate impostor = security::generate("impostor"); // not the server

    [[nodiscard]] security::curve_server_settings server_settings() const {
        security::curve_server_settings s;
        s.server = server;
        s.access.keys = {{alice.public_key, alice.name}};
        return s;
    }
    /// Client keys of @p client for a server whose public key is @p server_cert's.
    [[nodiscard]] static security::curve_client_keys
    client(const security::certificate& server_cert, const security::certificate& client) {
        security::curve_client_keys k;
        k.server_public = server_cert.public_key;
        k.client = client;
        return k;
    }
};

std::string loopback() { return "tcp://127.0.0.1:*"; }

/// Runs sub.wait_ready() while another thread answers probes on @p pub, as a publisher idle on
/// its own reactor would. Only one thread touches each object at a time.
bool make_ready(publisher& pub, subscriber& sub, std::chrono::milliseconds timeout = 2s) {
    std::atomic<bool> done{false};
    std::thread pump([&] {
        while (!done)
            pub.poll_subscriptions(10ms);
    });
    const bool ready = sub.wait_ready(timeout);
    done = true;
    pump.join();
    return ready;
}

subscriber_options sub_connecting(const std::string& endpoint,
                                  std::optional<security::curve_client_keys> curve) {
    subscriber_options so;
    so.connect = {endpoint};
    so.topics = {"t"};
    so.curve = std::move(curve);
    return so;
}

/// Publishes "m0".."m{n-1}" on topic "t".
void publish_some(publisher& pub, int n) {
    for (int i = 0; i < n; ++i)
        pub.publish("t", "m" + std::to_string(i));
}

/// The payloads @p sub receives until @p n arrived or @p timeout passed without one.
strings drain(subscriber& sub, std::size_t n, std::chrono::milliseconds timeout) {
    strings got;
    while (got.size() < n) {
        auto d = sub.recv(timeout);
        if (!d)
            break;
        got.push_back(texts(d->payload).at(0));
    }
    return got;
}

const strings three{"m0", "m1", "m2"};

} // namespace

TEST_SUITE("lib.pubsub.security") {

TEST_CASE("a binding publisher with curve_server delivers to a subscriber with admitted keys") {
    const keyring k;
    zmq::context_t ctx;
    publisher pub(ctx, publisher_options{.bind = {loopback()}, .curve_server = k.server_settings()});
    subscriber sub(ctx, sub_connecting(pub.endpoints().at(0), keyring::client(k.server, k.alice)));
    REQUIRE(make_ready(pub, sub)); // the probe and its answer cross CURVE too
    publish_some(pub, 3);
    CHECK(drain(sub, 3, 2s) == three);
    CHECK(pub.stats().connections_admitted >= 1);
    CHECK(pub.stats().connections_refused == 0);
}

TEST_CASE("a binding publisher with curve_server gives nothing to an unknown key") {
    const keyring k;
    zmq::context_t ctx;
    zmq::context_t other; // the refused peer lives elsewhere, as it would on another host
    publisher pub(ctx, publisher_options{.bind = {loopback()}, .curve_server = k.server_settings()});
    const std::string ep = pub.endpoints().at(0);
    subscriber good(ctx, sub_connecting(ep, keyring::client(k.server, k.alice)));
    subscriber bad(other, sub_connecting(ep, keyring::client(k.server, k.mallory)));
    REQUIRE(make_ready(pub, good));
    CHECK_FALSE(make_ready(pub, bad, refusal_window));
    // Refused by the ZAP handler, not merely slow: the refusal is counted.
    CHECK(support::eventually([&] { return pub.stats().connections_refused >= 1; }));
    publish_some(pub, 3);
    CHECK(drain(good, 3, 2s) == three);
    CHECK(drain(bad, 1, 300ms).empty());
    CHECK(bad.stats().received == 0);
}

TEST_CASE("a binding publisher with curve_server gives nothing to a plain subscriber") {
    const keyring k;
    zmq::context_t ctx;
    publisher pub(ctx, publisher_options{.bind = {loopback()}, .curve_server = k.server_settings()});
    const std::string ep = pub.endpoints().at(0);
    subscriber good(ctx, sub_connecting(ep, keyring::client(k.server, k.alice)));
    subscriber plain(ctx, sub_connecting(ep, std::nullopt));
    REQUIRE(make_ready(pub, good));
    CHECK_FALSE(make_ready(pub, plain, refusal_window));
    publish_some(pub, 3);
    CHECK(drain(good, 3, 2s) == three);
    CHECK(drain(plain, 1, 300ms).empty());
}

TEST_CASE("a subscriber holding the wrong server key never connects to a curve_server publisher") {
    const keyring k;
    zmq::context_t ctx;
    publisher pub(ctx, publisher_options{.bind = {loopback()}, .curve_server = k.server_settings()});
    const std::string ep = pub.endpoints().at(0);
    subscriber good(ctx, sub_connecting(ep, keyring::client(k.server, k.alice)));
    // An admitted client key, but the server it trusts is someone else: the publisher cannot
    // read its HELLO, so the handshake fails before ZAP is asked.
    subscriber misled(ctx, sub_connecting(ep, keyring::client(k.impostor, k.alice)));
    REQUIRE(make_ready(pub, good));
    CHECK_FALSE(make_ready(pub, misled, refusal_window));
    publish_some(pub, 3);
    CHECK(drain(good, 3, 2s) == three);
    CHECK(drain(misled, 1, 300ms).empty());
    CHECK(pub.stats().connections_admitted == 1); // good's connection only
}

TEST_CASE("a binding subscriber with curve_server receives from a publisher with admitted keys") {
    const keyring k;
    zmq::context_t ctx;
    subscriber_options so;
    so.bind = {loopback()};
    so.topics = {"t"};
    so.curve_server = k.server_settings();
    subscriber sub(ctx, so);
    publisher pub(ctx, publisher_options{.connect = {sub.endpoints().at(0)},
                                         .curve = keyring::client(k.server, k.alice)});
    REQUIRE(make_ready(pub, sub));
    publish_some(pub, 3);
    CHECK(drain(sub, 3, 2s) == three);
    CHECK(sub.stats().connections_admitted >= 1);
}

TEST_CASE("a binding subscriber with curve_server takes nothing from refused publishers") {
    const keyring k;
    zmq::context_t ctx;
    zmq::context_t other;
    subscriber_options so;
    so.bind = {loopback()};
    so.topics = {"t"};
    so.curve_server = k.server_settings();
    subscriber sub(ctx, so);
    const std::string ep = sub.endpoints().at(0);

    struct refused_case {
        const char* name;
        std::optional<security::curve_client_keys> curve;
    };
    const std::vector<refused_case> cases{
        {"unknown key", keyring::client(k.server, k.mallory)},
        {"plain (NULL)", std::nullopt},
        {"wrong server key", keyring::client(k.impostor, k.alice)},
    };
    for (const auto& c : cases) {
        CAPTURE(c.name);
        publisher bad(other, publisher_options{.connect = {ep}, .curve = c.curve});
        // Nobody admitted is connected, so nobody answers the probe.
        CHECK_FALSE(make_ready(bad, sub, refusal_window));
        publish_some(bad, 3);
        CHECK(drain(sub, 1, 300ms).empty());
    }
    CHECK(sub.stats().connections_refused >= 1); // the unknown key, at least once

    // The subscriber itself works: an admitted publisher is heard, and only it.
    publisher bad(other, publisher_options{.connect = {ep},
                                           .curve = keyring::client(k.server, k.mallory)});
    publisher good(ctx, publisher_options{.connect = {ep},
                                          .curve = keyring::client(k.server, k.alice)});
    REQUIRE(make_ready(good, sub));
    publish_some(bad, 3);
    publish_some(good, 3);
    const strings got = drain(sub, 4, 500ms);
    CHECK(got == three);
    CHECK(sub.stats().received == 3);
}

TEST_CASE("curve_server and curve are each refused where they do not fit the endpoints") {
    const keyring k;
    zmq::context_t ctx;
    const auto client = keyring::client(k.server, k.alice);
    auto throws_naming = [](auto make, const char* words) {
        CHECK_THROWS_WITH_AS(make(), doctest::Contains(words), zmesh::error);
        try {
            make();
        } catch (const zmesh::error& e) {
            CHECK(e.code() == zmesh::errc::invalid_argument);
        }
    };
    // Both settings, on a socket that binds and connects: one socket cannot be both.
    throws_naming(
        [&] {
            return publisher(ctx, publisher_options{.bind = {loopback()},
                                                    .connect = {"tcp://127.0.0.1:1"},
                                                    .curve = client,
                                                    .curve_server = k.server_settings()});
        },
        "cannot both be set");
    throws_naming(
        [&] {
            subscriber_options so;
            so.bind = {loopback()};
            so.connect = {"tcp://127.0.0.1:1"};
            so.curve = client;
            so.curve_server = k.server_settings();
            return subscriber(ctx, so);
        },
        "cannot both be set");
    throws_naming(
        [&] {
            return publisher(ctx, publisher_options{.connect = {"tcp://127.0.0.1:1"},
                                                    .curve_server = k.server_settings()});
        },
        "curve_server is for bind endpoints");
    throws_naming(
        [&] { return publisher(ctx, publisher_options{.bind = {loopback()}, .curve = client}); },
        "use curve_server");
    throws_naming(
        [&] {
            auto s = k.server_settings();
            s.server.secret_key.reset(); // as load_public() reads it: NAME.key, not _secret
            return publisher(ctx, publisher_options{.bind = {loopback()}, .curve_server = s});
        },
        "secret key");
    publisher plain(ctx, publisher_options{.bind = {loopback()}});
    throws_naming([&] { plain.set_access({}); return 0; }, "needs curve_server");
}

TEST_CASE("two binding curve_server peers cannot share a context and each works in its own") {
    const keyring k;
    zmq::context_t ctx;
    {
        publisher first(ctx,
                        publisher_options{.bind = {loopback()}, .curve_server = k.server_settings()});
        subscriber_options so;
        so.bind = {loopback()};
        so.curve_server = k.server_settings();
        CHECK_THROWS_WITH_AS(subscriber(ctx, so), doctest::Contains("its own context"),
                             zmesh::error);
        CHECK_THROWS_WITH_AS(publisher(ctx, publisher_options{.bind = {loopback()},
                                                              .curve_server = k.server_settings()}),
                             doctest::Contains("its own context"), zmesh::error);
        // The refused constructions left the first peer's handler alone: it still refuses.
        zmq::context_t other;
        subscriber bad(other, sub_connecting(first.endpoints().at(0),
                                             keyring::client(k.server, k.mallory)));
        CHECK_FALSE(make_ready(first, bad, refusal_window));
        CHECK(first.stats().connections_refused >= 1);
    }
    // The handler belongs to its peer: once the first is gone, the context is free again.
    publisher again(ctx, publisher_options{.bind = {loopback()}, .curve_server = k.server_settings()});

    // A binding subscriber in a context of its own, fed by a publisher that connects.
    zmq::context_t own;
    subscriber_options so;
    so.bind = {loopback()};
    so.topics = {"t"};
    so.curve_server = k.server_settings();
    subscriber sub(own, so);
    publisher feeder(ctx, publisher_options{.connect = {sub.endpoints().at(0)},
                                            .curve = keyring::client(k.server, k.alice)});
    REQUIRE(make_ready(feeder, sub));
    publish_some(feeder, 3);
    CHECK(drain(sub, 3, 2s) == three);
}

TEST_CASE("set_access decides the handshakes that follow and leaves admitted peers connected") {
    const keyring k;
    zmq::context_t ctx;
    auto settings = k.server_settings();
    settings.access.keys.clear(); // nobody yet
    publisher pub(ctx, publisher_options{.bind = {loopback()}, .curve_server = settings});
    const std::string ep = pub.endpoints().at(0);
    const auto alice = keyring::client(k.server, k.alice);

    subscriber early(ctx, sub_connecting(ep, alice));
    CHECK_FALSE(make_ready(pub, early, refusal_window));
    CHECK(pub.stats().connections_refused >= 1);

    pub.set_access(k.server_settings().access);
    // libzmq does not retry a handshake that ZAP refused (status 400): the refused connection
    // stays down, and a new one is needed.
    subscriber later(ctx, sub_connecting(ep, alice));
    REQUIRE(make_ready(pub, later));

    pub.set_access({}); // alice removed
    subscriber after_removal(ctx, sub_connecting(ep, alice));
    CHECK_FALSE(make_ready(pub, after_removal, refusal_window));
    publish_some(pub, 3);
    CHECK(drain(later, 3, 2s) == three); // admitted before the change: still connected
    CHECK(drain(after_removal, 1, 300ms).empty());
    CHECK(drain(early, 1, 100ms).empty());
}

} // TEST_SUITE
