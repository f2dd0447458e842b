// SPDX-License-Identifier: MPL-2.0
// codec/decode.hpp — internal: picks the codec of a message by its header frame.
#pragma once

#include "commands.hpp"

namespace zmesh::nodes::detail::codec {

/// Decodes a message as read from the broker's ROUTER (routing id first). Never throws on any
/// input; anything that is no valid command of the four protocols is `malformed`.
[[nodiscard]] decoded decode(const message& m);

/// Whether @p p is a worker protocol (MDPW01, ZMWC01).
[[nodiscard]] constexpr bool is_worker(protocol p) noexcept {
    return p == protocol::mdpw01 || p == protocol::zmwc01;
}

/// Appends the envelope of a REQUEST to a worker speaking @p p (MDPW01 or ZMWC01).
void request_envelope(message& out, protocol p, std::string_view worker_id, request_tag tag,
                      std::string_view client);

/// Appends a HEARTBEAT or DISCONNECT to a worker speaking @p p.
void command_message(message& out, protocol p, std::string_view worker_id, mdp::worker_command c);

/// Appends the envelope of a reply to a client: ZMCT01 if @p tag is not empty, else MDPC01.
void reply_envelope(message& out, std::string_view client_id, std::string_view service,
                    zmq::message_t&& tag);

} // namespace zmesh::nodes::detail::codec
