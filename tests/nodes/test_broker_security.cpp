// SPDX-License-Identifier: MPL-2.0
// test_broker_security.cpp — the broker with CURVE and its ZAP handler (docs/security.md), driven
// by zmesh's own client and worker over loopback TCP: allowed keys are served; an unknown key, a
// wrong server key and a plain (NULL) peer get nothing; set_access() cuts off a removed key's
// connection at once and admits a new key without a restart.
#include "tcp_broker.hpp"

#include "support/support.hpp"

#include <zmesh/mdp/client.hpp>
#include <zmesh/mdp/worker.hpp>
#include <zmesh/security/acl.hpp>
#include <zmesh/security/keys.hpp>
#include <zmesh/security/zap.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <thread>

using namespace std::chrono_literals;
using support::tcp_broker;
using zmesh::message;
namespace mdp = zmesh::mdp;
namespace security = zmesh::security;

namespace {

/// An echo worker on its own thread, with its own context, until destroyed.
struct echo_worker {
    zmq::context_t ctx;
    std::atomic<bool> stop{false};
    std::atomic<int> served{0};
    std::thread thread;

    echo_worker(const std::string& endpoint, std::optional<security::curve_client_keys> curve) {
        mdp::worker_options o;
        o.heartbeat = 200ms;
        o.reconnect_initial = 100ms;
        o.curve = std::move(curve);
        thread = std::thread([this, endpoint, o] {
            mdp::worker w(ctx, endpoint, "echo", o);
            while (!stop) {
                if (auto r = w.recv(50ms)) {
                    ++served;
                    w.reply(std::move(*r));
                }
            }
        });
    }
    ~echo_worker() {
        stop = true;
        thread.join();
    }
};

struct keyring {
    security::certificate server = security::generate("broker");
    security::certificate alice = security::generate("alice");
    security::certificate bob = security::generate("bob");
    security::certificate worker = security::generate("worker");
    security::certificate mallory = security::generate("mallory");

    security::curve_client_keys as(const security::certificate& c) const {
        return {server.public_key, c};
    }
    static void allow(security::access_policy& p, const security::certificate& c) {
        p.keys.insert_or_assign(c.public_key, c.name);
    }
};

/// A secure broker admitting alice, bob and the worker, with an echo worker running.
struct secure_setup {
    keyring keys;
    tcp_broker f;
    std::unique_ptr<echo_worker> w;

    secure_setup() {
        f.config.curve = keys.server;
        keyring::allow(f.config.access, keys.alice);
        keyring::allow(f.config.access, keys.bob);
        keyring::allow(f.config.access, keys.worker);
        f.config.heartbeat_interval = 200ms;
        f.start();
        w = std::make_unique<echo_worker>(f.endpoint, keys.as(keys.worker));
    }

    mdp::client client(zmq::context_t& ctx, std::optional<security::curve_client_keys> curve,
                       std::chrono::milliseconds timeout = 3000ms, int retries = 1) {
        mdp::client_options o;
        o.timeout = timeout;
        o.retries = retries;
        o.curve = std::move(curve);
        return mdp::client(ctx, f.endpoint, o);
    }
};

/// One request; the reply's first frame, or "" if none came.
std::string ask(mdp::client& c, const std::string& body) {
    std::error_code ec;
    auto reply = c.request("echo", message{body}, ec);
    if (!reply || reply->empty()) return {};
    return zmesh::to_string((*reply)[0]);
}

} // namespace

TEST_SUITE_BEGIN("nodes.broker.security");

TEST_CASE("with CURVE on, a client and a worker whose keys are allowed are served") {
    secure_setup s;
    zmq::context_t ctx;
    auto alice = s.client(ctx, s.keys.as(s.keys.alice));
    CHECK(ask(alice, "hello") == "hello");
    CHECK(s.w->served == 1);
    CHECK(s.f.stats().connections_admitted >= 2); // the worker and alice
    CHECK(s.f.stats().connections_refused == 0);
}

TEST_CASE("an unknown client key is refused in the handshake and gets nothing") {
    secure_setup s;
    zmq::context_t ctx;
    auto mallory = s.client(ctx, s.keys.as(s.keys.mallory), 700ms);
    CHECK(ask(mallory, "let me in") == "");
    CHECK(support::eventually([&] { return s.f.stats().connections_refused >= 1; }));
    CHECK(s.f.stats().requests == 0);
    CHECK(s.w->served == 0);
}

TEST_CASE("a client holding the wrong server key never connects") {
    secure_setup s;
    zmq::context_t ctx;
    security::curve_client_keys wrong = s.keys.as(s.keys.alice);
    wrong.server_public = s.keys.mallory.public_key; // not the broker's
    auto alice = s.client(ctx, wrong, 700ms);
    CHECK(ask(alice, "hello") == "");
    CHECK(s.f.stats().requests == 0);
    CHECK(s.f.stats().connections_admitted == 1); // the worker only
}

TEST_CASE("a plain (NULL) client gets nothing from a CURVE broker") {
    secure_setup s;
    zmq::context_t ctx;
    auto plain = s.client(ctx, std::nullopt, 700ms);
    CHECK(ask(plain, "hello") == "");
    CHECK(s.f.stats().requests == 0);
    CHECK(s.w->served == 0);
}

TEST_CASE("set_access cuts off a removed key at once and admits a new one, without a restart") {
    secure_setup s;
    zmq::context_t ctx;
    auto alice = s.client(ctx, s.keys.as(s.keys.alice), 700ms);
    auto bob = s.client(ctx, s.keys.as(s.keys.bob), 700ms);
    REQUIRE(ask(alice, "a1") == "a1");
    REQUIRE(ask(bob, "b1") == "b1");

    security::access_policy next; // bob removed, carol added
    security::certificate carol = security::generate("carol");
    keyring::allow(next, s.keys.alice);
    keyring::allow(next, s.keys.worker);
    keyring::allow(next, carol);
    s.f.broker->set_access(next);
    CHECK(support::eventually([&] { return s.f.stats().cut_off >= 1; }));

    CHECK(ask(bob, "b2") == "");         // cut off, and its reconnection is refused
    CHECK(ask(alice, "a2") == "a2");     // kept its connection
    auto c = s.client(ctx, s.keys.as(carol));
    CHECK(ask(c, "c1") == "c1");
    CHECK(s.f.stats().connections_refused >= 1);
}

TEST_CASE("a worker whose key is removed is cut off, and its service waits for another") {
    secure_setup s;
    zmq::context_t ctx;
    auto alice = s.client(ctx, s.keys.as(s.keys.alice), 700ms);
    REQUIRE(ask(alice, "a1") == "a1");
    security::access_policy next;
    keyring::allow(next, s.keys.alice);
    s.f.broker->set_access(next);
    CHECK(support::eventually([&] { return s.f.stats().workers == 0; }));
    // Queued, since no worker may serve it now, until its deadline (the client's whole wait):
    // then the broker answers 504 and dead-letters it.
    CHECK(ask(alice, "a2") == "zmesh.error");
    CHECK(s.f.stats().dead_lettered == 1);
}

TEST_CASE("address lists without CURVE: a denied address gets nothing, an allowed one is served") {
    tcp_broker f;
    f.config.access.deny_addresses = {"127.0.0.0/8"};
    f.start();
    zmq::context_t ctx;
    mdp::client_options o;
    o.timeout = 700ms;
    o.retries = 1;
    mdp::client c(ctx, f.endpoint, o);
    std::error_code ec;
    CHECK_FALSE(c.request("zmesh.stats", message{}, ec));
    CHECK(support::eventually([&] { return f.stats().connections_refused >= 1; }));

    tcp_broker g;
    g.config.access.allow_addresses = {"127.0.0.1"};
    g.start();
    mdp::client d(ctx, g.endpoint, o);
    CHECK(d.request("zmesh.stats", message{}, ec));
}

TEST_CASE("a bad address rule is refused with a message naming it") {
    tcp_broker f;
    f.config.access.allow_addresses = {"10.0.0.0/33"};
    CHECK_THROWS_WITH_AS(f.start(), doctest::Contains("10.0.0.0/33"), zmesh::error);
}

TEST_CASE("the access list: 403 for a service a key may not call, DISCONNECT for one it may not serve") {
    keyring keys;
    security::certificate rogue = security::generate("rogue");
    tcp_broker f;
    f.config.curve = keys.server;
    for (const auto* c : {&keys.alice, &keys.bob, &keys.worker, &rogue})
        keyring::allow(f.config.access, *c);
    f.config.acl = std::make_shared<const security::access_list>(security::access_list::parse(
        "alice call echo\nworker serve echo\nbob call other\n", "test"));
    f.config.heartbeat_interval = 200ms;
    f.start();
    echo_worker w(f.endpoint, keys.as(keys.worker));
    zmq::context_t ctx;
    mdp::client_options o;
    o.timeout = 3000ms;
    o.retries = 1;
    o.curve = keys.as(keys.alice);
    mdp::client alice(ctx, f.endpoint, o);
    CHECK(ask(alice, "allowed") == "allowed");

    o.curve = keys.as(keys.bob);
    mdp::client bob(ctx, f.endpoint, o);
    std::error_code ec;
    auto r = bob.request("echo", message{"not for bob"}, mdp::request_options{}, ec);
    CHECK(ec == zmesh::errc::forbidden);
    REQUIRE(r);
    REQUIRE(r->body.size() == 2);
    CHECK(zmesh::to_string(r->body[0]) == "403");
    CHECK(zmesh::to_string(r->body[1]).find("echo") != std::string::npos);
    CHECK(w.served == 1);
    // The broker's own services need admin: nobody here has it.
    (void)alice.request("zmesh.stats", message{}, mdp::request_options{}, ec);
    CHECK(ec == zmesh::errc::forbidden);

    // A key that may not serve echo is refused at READY: it never gets a request.
    mdp::worker_options wo;
    wo.curve = keys.as(rogue);
    wo.protocol = mdp::worker_protocol::zmesh;
    zmq::context_t wctx;
    mdp::worker thief(wctx, f.endpoint, "echo", wo);
    CHECK_THROWS_WITH_AS((void)thief.recv(3000ms), doctest::Contains("access list"), zmesh::error);
    CHECK(f.stats().forbidden == 3); // bob's call, alice's zmesh.stats, the thief's READY
    CHECK(f.stats().workers == 1);

    // A new list from set_acl applies to the next request: bob may call echo now.
    f.broker->set_acl(std::make_shared<const security::access_list>(security::access_list::parse(
        "alice call echo\nbob call echo\nworker serve echo\n", "test")));
    CHECK(support::eventually([&] { return ask(bob, "now yes") == "now yes"; }));
}

TEST_CASE("one key over several connections is held to max_key_requests, and other keys are not") {
    keyring keys;
    tcp_broker f;
    f.config.curve = keys.server;
    keyring::allow(f.config.access, keys.alice);
    keyring::allow(f.config.access, keys.bob);
    f.config.max_key_requests = 3; // each connection alone stays under max_client_requests
    f.start();
    zmq::context_t ctx;
    auto client_of = [&](const security::certificate& c) {
        mdp::client_options o;
        o.timeout = 3000ms;
        o.retries = 1;
        o.window = 10;
        o.protocol = mdp::client_protocol::mdp; // errors as a zmesh.error body
        o.curve = keys.as(c);
        return std::make_unique<mdp::client>(ctx, f.endpoint, o);
    };
    auto a1 = client_of(keys.alice);
    auto a2 = client_of(keys.alice);
    auto b = client_of(keys.bob);
    // No worker for "slow": requests wait in the queue, outstanding.
    a1->send("slow", message{"1"});
    a1->send("slow", message{"2"});
    a2->send("slow", message{"3"});
    a2->send("slow", message{"4"});
    int refused = 0;
    for (auto* c : {a1.get(), a2.get()}) {
        while (auto r = c->recv(500ms)) {
            REQUIRE(r->body.size() == 3);
            CHECK(zmesh::to_string(r->body[0]) == "zmesh.error");
            CHECK(zmesh::to_string(r->body[1]) == "503");
            CHECK(zmesh::to_string(r->body[2]).find("max_key_requests") != std::string::npos);
            ++refused;
        }
    }
    CHECK(refused == 1); // the fourth, whichever connection it came on
    CHECK(f.stats().queued == 3);
    b->send("slow", message{"5"}); // bob's key has its own count
    CHECK_FALSE(b->recv(300ms));
    CHECK(support::eventually([&] { return f.stats().queued == 4; }));
}

TEST_CASE("an access list without CURVE is refused: no peer would have a name") {
    tcp_broker f;
    f.config.acl = std::make_shared<const security::access_list>();
    CHECK_THROWS_WITH_AS(f.start(), doctest::Contains("needs CURVE"), zmesh::error);
}

TEST_SUITE_END();
