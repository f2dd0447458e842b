// SPDX-License-Identifier: MPL-2.0
// test_freelance_curve.cpp — Freelance with CURVE (docs/security.md): a server with
// curve_server admits the client keys of its policy only; an unknown key, a plain client and a
// client holding the wrong server key get no answer; set_access() removes a key from a client
// that is already connected.
#include "support/support.hpp"

#include <zmesh/error.hpp>
#include <zmesh/patterns/freelance.hpp>
#include <zmesh/security/keys.hpp>

#include <doctest/doctest.h>

#include <memory>
#include <thread>

using namespace std::chrono_literals;
namespace fl = zmesh::patterns::freelance;
namespace sec = zmesh::security;

namespace {

/// A CURVE echo server on a thread of its own, in a context of its own (one ZAP handler per
/// context), admitting @p admitted.
class curve_server {
  public:
    curve_server(const sec::certificate& server, const std::vector<sec::certificate>& admitted) {
        sec::curve_server_settings s;
        s.server = server;
        for (const auto& c : admitted) s.access.keys[c.public_key] = c.name;
        server_ = std::make_unique<fl::server>(
            ctx_, std::vector<std::string>{"tcp://127.0.0.1:*"},
            [](zmesh::message&& body) { return fl::answer::reply(std::move(body)); },
            fl::server_options{.curve_server = std::move(s)});
        thread_ = std::thread([this] { server_->run(); });
    }
    ~curve_server() {
        server_->stop();
        thread_.join();
    }
    curve_server(const curve_server&) = delete;
    curve_server& operator=(const curve_server&) = delete;

    fl::server& get() { return *server_; }
    const std::string& endpoint() const { return server_->endpoints().front(); }

  private:
    zmq::context_t ctx_;
    std::unique_ptr<fl::server> server_;
    std::thread thread_;
};

fl::client_options short_client(std::optional<sec::curve_client_keys> curve) {
    return {.timeout = 400ms, .retries = 1, .curve = std::move(curve)};
}

std::string first_frame(const zmesh::message& m) {
    REQUIRE(m.size() >= 1);
    return std::string(zmesh::view(m[0]));
}

} // namespace

TEST_SUITE("patterns.freelance.curve") {

TEST_CASE("freelance with CURVE: an admitted key is served, an unknown one and a plain client are not") {
    const auto server_cert = sec::generate("server");
    const auto alice = sec::generate("alice");
    const auto mallory = sec::generate("mallory");
    curve_server server(server_cert, {alice});
    zmq::context_t ctx;

    fl::client good(ctx, {server.endpoint()},
                    short_client(sec::curve_client_keys{server_cert.public_key, alice}));
    CHECK(first_frame(good.request(zmesh::message{"hello"})) == "hello");

    fl::client unknown(ctx, {server.endpoint()},
                       short_client(sec::curve_client_keys{server_cert.public_key, mallory}));
    CHECK_THROWS_AS(unknown.request(zmesh::message{"hello"}), zmesh::error);

    fl::client plain(ctx, {server.endpoint()}, short_client(std::nullopt));
    CHECK_THROWS_AS(plain.request(zmesh::message{"hello"}), zmesh::error);

    // A client that trusts another server key never completes the handshake.
    const auto impostor = sec::generate("impostor");
    fl::client wrong_server(ctx, {server.endpoint()},
                            short_client(sec::curve_client_keys{impostor.public_key, alice}));
    CHECK_THROWS_AS(wrong_server.request(zmesh::message{"hello"}), zmesh::error);

    const auto st = server.get().stats();
    CHECK(st.requests == 1);
    CHECK(st.connections_admitted >= 1);
    CHECK(st.connections_refused >= 1); // mallory's handshake
}

TEST_CASE("freelance with CURVE: set_access removes a key from a client already connected") {
    const auto server_cert = sec::generate("server");
    const auto alice = sec::generate("alice");
    const auto bob = sec::generate("bob");
    curve_server server(server_cert, {alice, bob});
    zmq::context_t ctx;
    fl::client a(ctx, {server.endpoint()},
                 short_client(sec::curve_client_keys{server_cert.public_key, alice}));
    fl::client b(ctx, {server.endpoint()},
                 short_client(sec::curve_client_keys{server_cert.public_key, bob}));
    CHECK(first_frame(a.request(zmesh::message{"1"})) == "1");
    CHECK(first_frame(b.request(zmesh::message{"2"})) == "2");

    sec::access_policy only_alice;
    only_alice.keys[alice.public_key] = alice.name;
    server.get().set_access(only_alice);
    CHECK(first_frame(a.request(zmesh::message{"3"})) == "3");
    CHECK_THROWS_AS(b.request(zmesh::message{"4"}), zmesh::error);
    CHECK(server.get().stats().forbidden >= 1);
    CHECK(server.get().stats().requests == 3);
}

TEST_CASE("freelance: set_access on a plain server and curve_server without a secret key are refused") {
    zmq::context_t ctx;
    fl::server plain(ctx, {"tcp://127.0.0.1:*"},
                     [](zmesh::message&& b) { return fl::answer::reply(std::move(b)); });
    CHECK_THROWS_WITH_AS(plain.set_access({}), doctest::Contains("needs curve_server"),
                         zmesh::error);

    sec::curve_server_settings no_secret;
    no_secret.server = sec::generate("server");
    no_secret.server.secret_key.reset();
    zmq::context_t other;
    CHECK_THROWS_WITH_AS(
        fl::server(other, {"tcp://127.0.0.1:*"},
                   [](zmesh::message&& b) { return fl::answer::reply(std::move(b)); },
                   fl::server_options{.curve_server = no_secret}),
        doctest::Contains("secret key"), zmesh::error);
}

} // TEST_SUITE
