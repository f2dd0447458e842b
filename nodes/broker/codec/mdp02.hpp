// SPDX-License-Identifier: MPL-2.0
// codec/mdp02.hpp — internal: the 18/MDP (MDP/0.2) layout, https://rfc.zeromq.org/spec/18/, and
// zmesh's two protocols built on it, which add a header frame (docs/protocol.md):
//
//   client, DEALER, no empty delimiter:
//     REQUEST  C->B  "MDPC02" 0x01 service body...          "ZMCT02" 0x01 service header body...
//     PARTIAL  B->C  "MDPC02" 0x02 service body...          "ZMCT02" 0x02 service header body...
//     FINAL    B->C  "MDPC02" 0x03 service body...          "ZMCT02" 0x03 service header body...
//   worker, DEALER, no empty delimiter ("ZMWC02" adds the credit, the tag and the header):
//     READY       W->B  "MDPW02" 0x01 service              "ZMWC02" 0x01 service credit
//     REQUEST     B->W  "MDPW02" 0x02 client "" body...    "ZMWC02" 0x02 tag client "" header body...
//     PARTIAL     W->B  "MDPW02" 0x03 client "" body...    "ZMWC02" 0x03 tag client "" header body...
//     FINAL       W->B  "MDPW02" 0x04 client "" body...    "ZMWC02" 0x04 tag client "" header body...
//     HEARTBEAT   both  "MDPW02" 0x05                      "ZMWC02" 0x05
//     DISCONNECT  both  "MDPW02" 0x06                      "ZMWC02" 0x06
// ZMCT03 is ZMCT02 with the command byte appended to the protocol frame ("ZMCT03" 0x01 as one
// 7-byte frame), so that its messages have as many frames as 7/MDP's.
// Bodies may be empty in the 0.2 layout (18/MDP: "Frames 3+: request body", zero or more).
#pragma once

#include "commands.hpp"

namespace zmesh::nodes::detail::codec::mdp02 {

/// Decodes a client message whose protocol frame is "MDPC02" (@p with_header false) or
/// "ZMCT02" (true).
[[nodiscard]] command decode_client(const message& m, bool with_header);

/// Decodes a client message whose protocol frame is a ZMCT03 one, of command @p c.
[[nodiscard]] command decode_client_v3(const message& m, mdp::client_command_v2 c);

/// Appends the envelope of a ZMCT03 PARTIAL (@p final false) or FINAL to @p out, with @p header
/// (consumed). The body follows.
void reply_envelope_v3(message& out, std::string_view client_id, std::string_view service,
                       zmq::message_t&& header, bool final);

/// Decodes a worker message whose protocol frame is "MDPW02" (@p zmesh false) or "ZMWC02" (true).
[[nodiscard]] command decode_worker(const message& m, bool zmesh);

/// Appends the envelope of a PARTIAL (@p final false) or FINAL to @p out: MDPC02 without a
/// header, ZMCT02 with @p header (which it consumes). The body follows.
void reply_envelope(message& out, bool zmesh, std::string_view client_id, std::string_view service,
                    zmq::message_t&& header, bool final);

/// Appends the envelope of a REQUEST to @p out: MDPW02 (@p zmesh false; tag and header unused)
/// or ZMWC02 with @p tag and @p header (consumed). The body follows.
void request_envelope(message& out, bool zmesh, std::string_view worker_id, request_tag tag,
                      std::string_view client, zmq::message_t&& header);

/// Appends a HEARTBEAT or DISCONNECT (given in 7/MDP terms, sent in 18/MDP numbering).
void command_message(message& out, bool zmesh, std::string_view worker_id, mdp::worker_command c);

} // namespace zmesh::nodes::detail::codec::mdp02
