// SPDX-License-Identifier: MPL-2.0
// test_clone_curve.cpp — Clone with CURVE (docs/security.md): a server with curve_server serves
// snapshots, changes and updates to admitted keys only; an unknown key and a plain client get
// nothing; set_access() cuts a removed key off both sockets while an admitted client carries on.
#include "support/support.hpp"

#include <zmesh/error.hpp>
#include <zmesh/patterns/clone.hpp>
#include <zmesh/security/keys.hpp>

#include <doctest/doctest.h>

#include <memory>
#include <thread>

using namespace std::chrono_literals;
namespace cl = zmesh::patterns::clone;
namespace sec = zmesh::security;

namespace {

/// A CURVE Clone server on a thread of its own, in a context of its own (one ZAP handler per
/// context), admitting @p admitted.
class curve_server {
  public:
    curve_server(const sec::certificate& server, const std::vector<sec::certificate>& admitted) {
        sec::curve_server_settings s;
        s.server = server;
        for (const auto& c : admitted) s.access.keys[c.public_key] = c.name;
        server_ = std::make_unique<cl::server>(ctx_, cl::server_options{.bind = "tcp://127.0.0.1:*",
                                                                        .hugz_interval = 100ms,
                                                                        .curve_server = s});
        thread_ = std::thread([this] { server_->run(); });
    }
    ~curve_server() {
        server_->stop();
        thread_.join();
    }
    curve_server(const curve_server&) = delete;
    curve_server& operator=(const curve_server&) = delete;

    cl::server* operator->() { return server_.get(); }
    cl::client_options client(std::optional<sec::curve_client_keys> curve) const {
        return {.server = server_->endpoint(),
                .updates = server_->updates_endpoint(),
                .timeout = 500ms,
                .curve = std::move(curve)};
    }

  private:
    zmq::context_t ctx_;
    std::unique_ptr<cl::server> server_;
    std::thread thread_;
};

} // namespace

TEST_SUITE("patterns.clone.curve") {

TEST_CASE("clone with CURVE: admitted keys share the state, an unknown key and a plain client get nothing") {
    const auto server_cert = sec::generate("server");
    const auto alice = sec::generate("alice");
    const auto bob = sec::generate("bob");
    const auto mallory = sec::generate("mallory");
    curve_server s(server_cert, {alice, bob});
    zmq::context_t ctx;

    cl::client a(ctx, s.client(sec::curve_client_keys{server_cert.public_key, alice}));
    cl::client b(ctx, s.client(sec::curve_client_keys{server_cert.public_key, bob}));
    a.sync();
    b.sync();
    const auto seq = a.set("/price", "101");
    REQUIRE(b.wait_for(seq, 2000ms)); // the update reached bob over the encrypted PUB
    CHECK(b.get("/price") == "101");

    cl::client m(ctx, s.client(sec::curve_client_keys{server_cert.public_key, mallory}));
    CHECK_THROWS_AS(m.sync(), zmesh::error);
    CHECK_THROWS_AS(m.set("/price", "0"), zmesh::error);
    cl::client plain(ctx, s.client(std::nullopt));
    CHECK_THROWS_AS(plain.sync(), zmesh::error);

    CHECK(s->stats().sequence == 1); // neither changed anything
    CHECK(s->stats().connections_refused >= 1);
}

TEST_CASE("clone with CURVE: set_access cuts a removed key off snapshots, changes and updates") {
    const auto server_cert = sec::generate("server");
    const auto alice = sec::generate("alice");
    const auto bob = sec::generate("bob");
    curve_server s(server_cert, {alice, bob});
    zmq::context_t ctx;
    cl::client a(ctx, s.client(sec::curve_client_keys{server_cert.public_key, alice}));
    cl::client b(ctx, s.client(sec::curve_client_keys{server_cert.public_key, bob}));
    a.sync();
    b.sync();
    REQUIRE(b.wait_for(a.set("/k", "1"), 2000ms));

    sec::access_policy only_alice;
    only_alice.keys[alice.public_key] = alice.name;
    s->set_access(only_alice);
    REQUIRE(support::eventually([&] { return s->stats().cut_off >= 1; }, 3s));

    CHECK_THROWS_AS(b.set("/k", "bob was here"), zmesh::error);
    const auto seq = a.set("/k", "2");
    CHECK(a.wait_for(seq, 2000ms));
    CHECK_FALSE(b.wait_for(seq, 500ms)); // no update reaches bob any more
    CHECK(b.get("/k") == "1");
    CHECK(s->stats().forbidden >= 1);
    CHECK(s->stats().sequence == 2); // bob's change never applied
}

TEST_CASE("clone: set_access on a plain server is refused") {
    zmq::context_t ctx;
    cl::server plain(ctx, {.bind = "tcp://127.0.0.1:*"});
    CHECK_THROWS_WITH_AS(plain.set_access({}), doctest::Contains("needs curve_server"),
                         zmesh::error);
}

} // TEST_SUITE
