// SPDX-License-Identifier: MPL-2.0
// test_zap.cpp — the ZAP handler's pieces (zap.hpp): address rules, the allowed-keys directory,
// and the handler answering rfc 27 requests over inproc as libzmq would ask them.
#include <zmesh/error.hpp>
#include <zmesh/security/keys.hpp>
#include <zmesh/security/zap.hpp>

#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace security = zmesh::security;
namespace fs = std::filesystem;

namespace {

struct temp_dir {
    fs::path path;
    temp_dir() {
        std::string pattern = (fs::temp_directory_path() / "zmesh-zap-XXXXXX").string();
        REQUIRE(::mkdtemp(pattern.data()) != nullptr);
        path = pattern;
    }
    ~temp_dir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

/// Asks the handler of @p ctx as libzmq would: "1.0", id, domain, address, identity, mechanism,
/// credentials. Returns the status code.
std::string ask(zmq::context_t& ctx, const std::string& address, const std::string& mechanism,
                const std::vector<std::string>& credentials, std::string* user = nullptr) {
    zmq::socket_t req(ctx, zmq::socket_type::req);
    req.set(zmq::sockopt::rcvtimeo, 2000);
    req.connect("inproc://zeromq.zap.01");
    std::vector<std::string> frames{"1.0", "req-7", "zmesh", address, "", mechanism};
    frames.insert(frames.end(), credentials.begin(), credentials.end());
    for (std::size_t i = 0; i < frames.size(); ++i)
        (void)req.send(zmq::buffer(frames[i]),
                       i + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
    std::vector<std::string> reply;
    for (;;) {
        zmq::message_t m;
        REQUIRE(req.recv(m));
        reply.push_back(m.to_string());
        if (!m.more()) break;
    }
    REQUIRE(reply.size() == 6);
    CHECK(reply[0] == "1.0");
    CHECK(reply[1] == "req-7");
    if (user) *user = reply[4];
    return reply[2];
}

std::string key_frame(const security::certificate& c) {
    return std::string(reinterpret_cast<const char*>(c.public_key.data()), c.public_key.size());
}

} // namespace

TEST_SUITE("lib.security.zap") {

TEST_CASE("address rules: IPv4 addresses and networks, IPv6 addresses") {
    CHECK(security::address_matches("127.0.0.1", "127.0.0.1"));
    CHECK_FALSE(security::address_matches("127.0.0.1", "127.0.0.2"));
    CHECK(security::address_matches("10.0.0.0/8", "10.200.3.4"));
    CHECK_FALSE(security::address_matches("10.0.0.0/8", "11.0.0.1"));
    CHECK(security::address_matches("0.0.0.0/0", "192.168.1.1"));
    CHECK(security::address_matches("192.168.1.7/32", "192.168.1.7"));
    CHECK(security::address_matches("::1", "::1"));
    CHECK_FALSE(security::address_matches("::1", "127.0.0.1"));
    CHECK_FALSE(security::address_matches("10.0.0.0/8", "not an address"));
    for (const char* bad : {"10.0.0.0/33", "10.0.0/8", "300.1.1.1", "", "10.0.0.0/x", "::g"})
        CHECK_THROWS_WITH_AS(security::check_address_rule(bad), doctest::Contains(bad),
                             zmesh::error);
}

TEST_CASE("the allowed-keys directory: *.key files by name, other files ignored") {
    temp_dir d;
    const auto alice = security::generate("alice");
    const auto bob = security::generate("bob");
    security::write_certificate(alice, d.path);
    security::write_certificate(bob, d.path);
    std::ofstream(d.path / "README.txt") << "notes are fine here\n";
    const auto keys = security::load_allowed_keys(d.path);
    REQUIRE(keys.size() == 2);
    CHECK(keys.at(alice.public_key) == "alice");
    CHECK(keys.at(bob.public_key) == "bob");
}

TEST_CASE("the allowed-keys directory: a missing directory, a bad file and a duplicate name") {
    temp_dir d;
    CHECK_THROWS_WITH_AS((void)security::load_allowed_keys(d.path / "nope"),
                         doctest::Contains("nope"), zmesh::error);
    security::write_certificate(security::generate("alice"), d.path);
    fs::create_directories(d.path / "other");
    security::write_certificate(security::generate("alice"), d.path / "other");
    fs::rename(d.path / "other" / "alice.key", d.path / "alice-2.key");
    CHECK_THROWS_WITH_AS((void)security::load_allowed_keys(d.path),
                         doctest::Contains("same name 'alice'"), zmesh::error);
    fs::remove(d.path / "alice-2.key");
    std::ofstream(d.path / "broken.key") << "curve\n    public-key = \"short\"\n";
    CHECK_THROWS_WITH_AS((void)security::load_allowed_keys(d.path),
                         doctest::Contains("broken.key"), zmesh::error);
}

TEST_CASE("the handler admits listed keys by name and refuses others, NULL and PLAIN") {
    zmq::context_t ctx;
    const auto alice = security::generate("alice");
    const auto mallory = security::generate("mallory");
    security::access_policy p;
    p.keys.emplace(alice.public_key, "alice");
    security::zap_handler h(ctx, p);
    std::string user;
    CHECK(ask(ctx, "127.0.0.1", "CURVE", {key_frame(alice)}, &user) == "200");
    CHECK(user == "alice");
    CHECK(ask(ctx, "127.0.0.1", "CURVE", {key_frame(mallory)}) == "400");
    CHECK(ask(ctx, "127.0.0.1", "CURVE", {"short"}) == "400");
    CHECK(ask(ctx, "127.0.0.1", "PLAIN", {"user", "password"}) == "400");
    // NULL reaches a handler only from sockets without CURVE (address lists only): admitted.
    CHECK(ask(ctx, "127.0.0.1", "NULL", {}) == "200");
    CHECK(h.stats().admitted == 2);
    CHECK(h.stats().refused == 3);
    CHECK(h.admits("alice"));
    CHECK_FALSE(h.admits("mallory"));
    CHECK(h.admits("")); // a NULL peer has no User-Id
}

TEST_CASE("address lists: deny first, then allow, and a new policy applies to the next handshake") {
    zmq::context_t ctx;
    const auto alice = security::generate("alice");
    security::access_policy p;
    p.keys.emplace(alice.public_key, "alice");
    p.allow_addresses = {"10.0.0.0/8"};
    p.deny_addresses = {"10.0.0.66"};
    security::zap_handler h(ctx, p);
    CHECK(ask(ctx, "10.1.2.3", "CURVE", {key_frame(alice)}) == "200");
    CHECK(ask(ctx, "10.0.0.66", "CURVE", {key_frame(alice)}) == "400");
    CHECK(ask(ctx, "192.168.0.1", "NULL", {}) == "400");
    security::access_policy next;
    next.keys = p.keys;
    h.set_policy(next); // no address lists now
    CHECK(ask(ctx, "192.168.0.1", "CURVE", {key_frame(alice)}) == "200");
    security::access_policy bad;
    bad.allow_addresses = {"10.0.0.0/99"};
    CHECK_THROWS_AS(h.set_policy(bad), zmesh::error);
    CHECK(ask(ctx, "192.168.0.1", "CURVE", {key_frame(alice)}) == "200"); // the old one stays
    security::access_policy none;
    h.set_policy(none);
    CHECK_FALSE(h.admits("alice"));
    CHECK(ask(ctx, "192.168.0.1", "CURVE", {key_frame(alice)}) == "400");
}

TEST_CASE("one handler per context: a second one is refused") {
    zmq::context_t ctx;
    security::zap_handler h(ctx, {});
    CHECK_THROWS_AS(security::zap_handler(ctx, {}), zmq::error_t);
}

} // TEST_SUITE
