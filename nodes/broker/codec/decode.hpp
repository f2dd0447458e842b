// SPDX-License-Identifier: MPL-2.0
// codec/decode.hpp — internal: picks the codec of a message by its protocol frame, and builds
// outgoing envelopes in the protocol of their recipient.
#pragma once

#include "commands.hpp"

namespace zmesh::nodes::detail::codec {

/// Decodes a message as read from the broker's ROUTER (routing id first). Never throws on any
/// input; anything that is no valid command of the nine protocols is `malformed`.
[[nodiscard]] decoded decode(const message& m);

/// Whether @p p is a worker protocol (MDPW01, ZMWC01, MDPW02, ZMWC02).
[[nodiscard]] constexpr bool is_worker(protocol p) noexcept {
    return p == protocol::mdpw01 || p == protocol::zmwc01 || p == protocol::mdpw02 ||
           p == protocol::zmwc02;
}

/// Whether a worker speaking @p p holds requests by tag (credit): ZMWC01, ZMWC02.
[[nodiscard]] constexpr bool has_tags(protocol p) noexcept {
    return p == protocol::zmwc01 || p == protocol::zmwc02;
}

/// Appends the envelope of a REQUEST to a worker speaking @p p. @p header is sent to ZMWC02
/// workers only (consumed then).
void request_envelope(message& out, protocol p, std::string_view worker_id, request_tag tag,
                      std::string_view client, zmq::message_t&& header = {});

/// Appends a HEARTBEAT or DISCONNECT to a worker speaking @p p.
void command_message(message& out, protocol p, std::string_view worker_id, mdp::worker_command c);

/// Appends the envelope of a reply to a client speaking @p p: the REPLY of MDPC01, of ZMCT01
/// with @p tag, or a PARTIAL (@p final false) or FINAL of MDPC02, or of ZMCT02 with @p header.
/// Frames a protocol has no place for are ignored. The body follows.
void reply_envelope(message& out, protocol p, std::string_view client_id, std::string_view service,
                    zmq::message_t&& tag, zmq::message_t&& header = {}, bool final = true);

} // namespace zmesh::nodes::detail::codec
