// SPDX-License-Identifier: MPL-2.0
// codec/commands.hpp — internal: the typed commands the broker's protocol codecs decode.
//
// The broker reads one multipart message at a time from its ROUTER socket: the peer's routing id,
// then the frames the peer sent. A codec per protocol header turns those frames into one of the
// commands below, or into `malformed` with the reason, and never throws or asserts on input:
//   MDPC01  7/MDP client            codec/mdpc01.hpp
//   ZMCT01  zmesh tagged client     codec/zmct01.hpp
//   MDPW01  7/MDP worker            codec/mdpw01.hpp
//   ZMWC01  zmesh worker with credit codec/zmwc01.hpp
//   MDPC02  18/MDP client             codec/mdp02.hpp
//   ZMCT02  zmesh client with header  codec/mdp02.hpp
//   ZMCT03  ZMCT02 in one frame fewer codec/mdp02.hpp
//   MDPW02  18/MDP worker             codec/mdp02.hpp
//   ZMWC02  zmesh worker with header  codec/mdp02.hpp
// (docs/protocol.md). decode() (codec/decode.hpp) picks the codec by the header frame. A command refers to frames of
// the message by index and by string_view, so it is valid only while the message is unchanged.
// What the broker does with each command is decided in mdp_engine (its state table).
#pragma once

#include <zmesh/message.hpp>
#include <zmesh/mdp/protocol.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <variant>

namespace zmesh::nodes::detail::codec {

/// Frame positions, as read from the ROUTER (routing id first). The "...01" protocols have an
/// empty delimiter at f_empty and their protocol frame at f_header; the "...02" ones (18/MDP
/// layout) have their protocol frame at f_empty. Frame 1 is a frame off the wire either way.
inline constexpr std::size_t f_identity = 0, f_empty = 1, f_header = 2;

/// The protocols the broker speaks, by their protocol frame.
enum class protocol : std::uint8_t {
    mdpc01, zmct01, mdpw01, zmwc01, mdpc02, zmct02, mdpw02, zmwc02, zmct03
};

/// The header frame of @p p.
[[nodiscard]] constexpr std::string_view header_of(protocol p) noexcept {
    switch (p) {
    case protocol::mdpc01: return mdp::client_v1;
    case protocol::zmct01: return mdp::client_tagged_v1;
    case protocol::mdpw01: return mdp::worker_v1;
    case protocol::zmwc01: return mdp::worker_credit_v1;
    case protocol::mdpc02: return mdp::client_v2;
    case protocol::zmct02: return mdp::client_header_v2;
    case protocol::mdpw02: return mdp::worker_v2;
    case protocol::zmwc02: return mdp::worker_header_v2;
    case protocol::zmct03: return mdp::client_header_v3;
    }
    return {};
}

/// Longest service name (mdp/protocol.hpp).
using mdp::max_service_name;

/// A service name the broker accepts: the rule of mdp::service_name_problem(), 1..255 printable
/// ASCII bytes without spaces, so that no name can carry control bytes into a log or a terminal.
[[nodiscard]] constexpr bool valid_service_name(std::string_view name) noexcept {
    return mdp::service_name_problem(name).empty();
}

/// The 8-byte tag of a ZMWC01 REQUEST and REPLY: the slot the request sits in at its worker and
/// its generation, so that a late or forged REPLY for a reused slot is recognised as wrong.
struct request_tag {
    std::uint32_t slot = 0;
    std::uint32_t generation = 0;
};
static_assert(sizeof(request_tag) == mdp::request_tag_size);

/// Whether replies to @p p may stream (PARTIAL ... FINAL) and carry 18/MDP's layout.
[[nodiscard]] constexpr bool is_v2(protocol p) noexcept {
    return p == protocol::mdpc02 || p == protocol::zmct02 || p == protocol::mdpw02 ||
           p == protocol::zmwc02 || p == protocol::zmct03;
}

/// Whether @p p is a zmesh client protocol with a header frame (ZMCT02, ZMCT03): its requests
/// have message ids, and its errors are typed FINALs.
[[nodiscard]] constexpr bool has_client_header(protocol p) noexcept {
    return p == protocol::zmct02 || p == protocol::zmct03;
}

/// A client's request.
struct client_request {
    std::string_view service; ///< the service frame, as sent (check service_ok)
    bool service_ok = false;  ///< valid_service_name(service)
    std::size_t tag_at = 0;   ///< index of the ZMCT01 tag frame; 0 for other protocols
    std::size_t body_at = 0;  ///< index of the first body frame (== size: no body, 02 only)
    std::size_t header_at = 0; ///< index of the ZMCT02/03 header frame; 0 for other protocols
};

/// READY: a worker registers for one service.
struct worker_ready {
    std::string_view service;
    bool service_ok = false;  ///< valid_service_name(service)
    std::uint32_t credit = 1; ///< 1 for MDPW01; 1..mdp::max_worker_credit for ZMWC01
};

/// REPLY, PARTIAL or FINAL: a worker answers a request it holds.
struct worker_reply {
    request_tag tag;          ///< ZMWC01, ZMWC02 only
    std::string_view client;  ///< the client-address frame (a client handle, client_handles.hpp)
    std::size_t body_at = 0;  ///< first body frame; == message size if the worker sent none
    std::size_t header_at = 0; ///< ZMWC02: the header frame (may be empty); 0 otherwise
    bool final = true;        ///< false for a PARTIAL (02 protocols)
};

struct worker_heartbeat {};
struct worker_disconnect {};
/// REQUEST sent by a worker: a valid command in the wrong direction.
struct worker_request {};

/// Frames that are no valid command. `command` is set when the command byte was valid and only
/// the frames after it were wrong (so the peer is a worker that broke the protocol).
struct malformed {
    std::string_view why;
    std::optional<mdp::worker_command> command;
};

using command = std::variant<malformed, client_request, worker_ready, worker_reply,
                             worker_heartbeat, worker_disconnect, worker_request>;

/// A decoded message: its protocol (meaningless if the header was unknown) and its command.
struct decoded {
    protocol proto = protocol::mdpc01;
    command cmd;
};

} // namespace zmesh::nodes::detail::codec
