// SPDX-License-Identifier: MPL-2.0
// codec/zmwc01.hpp — internal: zmesh's workers with credit (docs/broker.md, "Workers with
// credit"): the 7/MDP worker commands under their own header, READY with a credit, REQUEST and
// REPLY with an 8-byte tag.
//
//   READY       W->B  "" "ZMWC01" 0x01 service credit     (credit: 1..1024, decimal ASCII)
//   REQUEST     B->W  "" "ZMWC01" 0x02 tag client "" body...
//   REPLY       W->B  "" "ZMWC01" 0x03 tag client "" body...
//   HEARTBEAT   both  "" "ZMWC01" 0x04
//   DISCONNECT  both  "" "ZMWC01" 0x05
#pragma once

#include "commands.hpp"

namespace zmesh::nodes::detail::codec::zmwc01 {

/// Decodes a worker message whose header frame is "ZMWC01".
[[nodiscard]] command decode(const message& m);

/// Appends the envelope of a REQUEST tagged @p tag to @p out; the body follows.
void request_envelope(message& out, std::string_view worker_id, request_tag tag,
                      std::string_view client);

/// Appends a command without frames (HEARTBEAT, DISCONNECT) to @p out.
void command_message(message& out, std::string_view worker_id, mdp::worker_command c);

} // namespace zmesh::nodes::detail::codec::zmwc01
