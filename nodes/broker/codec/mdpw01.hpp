// SPDX-License-Identifier: MPL-2.0
// codec/mdpw01.hpp — internal: the worker side of 7/MDP (MDP/0.1), https://rfc.zeromq.org/spec/7/
//
//   READY       W->B  "" "MDPW01" 0x01 service
//   REQUEST     B->W  "" "MDPW01" 0x02 client "" body...
//   REPLY       W->B  "" "MDPW01" 0x03 client "" body...  (7/MDP: "6 or more frames")
//   HEARTBEAT   both  "" "MDPW01" 0x04
//   DISCONNECT  both  "" "MDPW01" 0x05
// 7/MDP: REQUEST and REPLY "MUST contain precisely one client address frame", followed by an
// empty frame. A REPLY with no body frame is decoded (body_at == size) so that the broker can
// still deliver the work done; see docs/broker.md.
#pragma once

#include "commands.hpp"

namespace zmesh::nodes::detail::codec::mdpw01 {

/// Decodes a worker message whose header frame is "MDPW01".
[[nodiscard]] command decode(const message& m);

/// Appends the envelope of a REQUEST to worker @p worker_id for @p client to @p out; the body
/// follows.
void request_envelope(message& out, std::string_view worker_id, std::string_view client);

/// Appends a command without frames (HEARTBEAT, DISCONNECT) to @p out.
void command_message(message& out, std::string_view worker_id, mdp::worker_command c);

} // namespace zmesh::nodes::detail::codec::mdpw01
