// SPDX-License-Identifier: MPL-2.0
// codec/zmct01.hpp — internal: zmesh's tagged clients (docs/broker.md, "Tagged clients"): the
// MDPC01 frames with a tag the broker returns in every reply to the request.
//
//   REQUEST  C->B  "" "ZMCT01" service tag body...   (tag: 1..mdp::max_client_tag opaque bytes)
//   REPLY    B->C  "" "ZMCT01" service tag body...
#pragma once

#include "commands.hpp"

namespace zmesh::nodes::detail::codec::zmct01 {

/// Decodes a client message whose header frame is "ZMCT01".
[[nodiscard]] command decode(const message& m);

/// Appends the envelope of a reply carrying @p tag to @p out; the body follows.
void reply_envelope(message& out, std::string_view client_id, std::string_view service,
                    zmq::message_t&& tag);

} // namespace zmesh::nodes::detail::codec::zmct01
