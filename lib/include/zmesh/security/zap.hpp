// SPDX-License-Identifier: MPL-2.0
// zap.hpp — who may connect: a ZAP handler (rfc 27) and the CURVE settings (rfc 26) of the
// sockets on both ends.
//
// A CURVE server without a ZAP handler encrypts but admits any client key (libzmq's
// curve_server.cpp: "Stonehouse"), so every zmesh server that turns CURVE on also runs a
// zap_handler in its context, and the handler admits only the keys of its policy. The handler
// answers with a User-Id, the key's name, which libzmq then attaches to every message of that
// connection (zmq_msg_gets(msg, "User-Id")): the hook for authorization per message.
//
// A CURVE server refuses a NULL-mechanism peer in the handshake (the mechanisms differ), so a
// plain connection gets nothing from it. Servers without CURVE can still use the handler for
// its address lists: they set a ZAP domain, and libzmq then asks the handler about NULL peers.
#pragma once

#include <zmesh/export.hpp>
#include <zmesh/security/keys.hpp>

#include <zmq.hpp>

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace zmesh::security {

/// The ZAP domain zmesh's servers use.
inline constexpr std::string_view zap_domain = "zmesh";

/// What a server admits.
struct access_policy {
    /// CURVE peers admitted: public key -> name (their User-Id). With CURVE on and no key here,
    /// nobody is admitted.
    std::map<key_bytes, std::string> keys;
    /// Peer addresses admitted (any, if empty) and refused (checked first), for every mechanism.
    /// An entry is an IPv4 address, an IPv4 network ("10.0.0.0/8") or an exact IPv6 address.
    std::vector<std::string> allow_addresses;
    std::vector<std::string> deny_addresses;
};

/// Reads every public certificate (*.key) in @p dir into a policy's keys, named by their
/// metadata name (the file stem if none). Other files are ignored, so a directory may hold
/// notes; a *.key file that does not parse is an error, not silently skipped.
/// @throws zmesh::error naming the directory or the file.
[[nodiscard]] ZMESH_EXPORT std::map<key_bytes, std::string>
load_allowed_keys(const std::filesystem::path& dir);

/// Checks an address rule ("127.0.0.1", "10.0.0.0/8", "::1").
/// @throws zmesh::error errc::invalid_argument naming @p rule.
ZMESH_EXPORT void check_address_rule(std::string_view rule);

/// Whether @p address (as ZAP reports it) matches @p rule.
[[nodiscard]] ZMESH_EXPORT bool address_matches(std::string_view rule,
                                                std::string_view address) noexcept;

/// Counts of the handler's decisions.
struct zap_stats {
    std::uint64_t admitted = 0;
    std::uint64_t refused = 0;
};

/// The ZAP handler of one context: binds inproc://zeromq.zap.01 and answers on its own thread.
/// At most one per context (libzmq allows one endpoint of that name). Every refusal is logged
/// (at warn, rate-limited), with the key or address that was refused.
class ZMESH_EXPORT zap_handler {
  public:
    /// @throws zmq::error_t (EADDRINUSE) if the context has a handler already;
    ///         zmesh::error errc::invalid_argument for a bad address rule.
    zap_handler(zmq::context_t& ctx, access_policy policy);
    ~zap_handler();
    zap_handler(const zap_handler&) = delete;
    zap_handler& operator=(const zap_handler&) = delete;

    /// Replaces the policy; the next handshake uses it. Thread-safe.
    /// @throws zmesh::error errc::invalid_argument for a bad address rule (the old one stays).
    void set_policy(access_policy policy);

    /// Whether a peer whose connection carries @p user_id is still admitted by the current
    /// policy: servers call it after set_policy() to cut off peers that were removed. A peer
    /// without a User-Id (NULL mechanism) is admitted. Thread-safe.
    [[nodiscard]] bool admits(std::string_view user_id) const;

    [[nodiscard]] zap_stats stats() const noexcept;

  private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

/// Makes @p socket a CURVE server with @p server's keys and zmesh's ZAP domain. Before bind.
/// @throws zmesh::error errc::invalid_argument if @p server has no secret key.
ZMESH_EXPORT void make_curve_server(zmq::socket_t& socket, const certificate& server);

/// Sets zmesh's ZAP domain on a socket without CURVE, so that the handler's address lists apply
/// to its NULL peers. Before bind.
ZMESH_EXPORT void use_zap(zmq::socket_t& socket);

/// The client side of CURVE: @p server_public is the server's public key, @p client the
/// client's own certificate (with its secret key). Before connect.
/// @throws zmesh::error errc::invalid_argument if @p client has no secret key.
ZMESH_EXPORT void make_curve_client(zmq::socket_t& socket, const key_bytes& server_public,
                                    const certificate& client);

/// What a client needs for CURVE: the server's public key and its own certificate.
struct curve_client_keys {
    key_bytes server_public{};
    certificate client;
};

/// What a server needs for CURVE: its own certificate, with the secret key, and the clients it
/// admits. The servers that are not nodes, the publishers and subscribers that bind
/// (pubsub::publisher_options::curve_server), take it whole and run the zap_handler themselves.
struct curve_server_settings {
    certificate server{};   ///< from load_secret() or generate(): must hold the secret key
    access_policy access{}; ///< the client keys admitted (load_allowed_keys()); none = nobody
};

/// Starts the ZAP handler that a CURVE server with @p settings needs in @p ctx, for a server
/// that is not a broker (a publisher or subscriber that binds, a Freelance or Clone server).
/// Then make each of its sockets a server with make_curve_server(socket, settings.server). The
/// caller keeps the handler alive for as long as its sockets, and destroys the sockets first.
/// @param who names the server in the messages ("freelance::server").
/// @throws zmesh::error errc::invalid_argument if @p settings has no secret key, or if @p ctx
///         has a ZAP handler already: libzmq has one ZAP endpoint per context, and sharing it
///         would merge the key lists of every server in the context.
[[nodiscard]] ZMESH_EXPORT std::unique_ptr<zap_handler>
start_curve_server(zmq::context_t& ctx, std::string_view who,
                   const curve_server_settings& settings);

/// The User-Id libzmq attached to @p frame's connection ("" if none, as for NULL peers).
[[nodiscard]] ZMESH_EXPORT std::string_view user_id(const zmq::message_t& frame) noexcept;

} // namespace zmesh::security
