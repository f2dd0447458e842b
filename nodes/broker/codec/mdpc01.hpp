// SPDX-License-Identifier: MPL-2.0
// codec/mdpc01.hpp — internal: the client side of 7/MDP (MDP/0.1), https://rfc.zeromq.org/spec/7/
//
//   REQUEST  C->B  "" "MDPC01" service body...      (7/MDP: "4 or more frames": a body frame
//   REPLY    B->C  "" "MDPC01" service body...       is required in both directions)
#pragma once

#include "commands.hpp"

namespace zmesh::nodes::detail::codec::mdpc01 {

/// Decodes a client message whose header frame is "MDPC01".
[[nodiscard]] command decode(const message& m);

/// Appends the envelope of a reply to @p client_id for @p service to @p out; the body follows.
void reply_envelope(message& out, std::string_view client_id, std::string_view service);

} // namespace zmesh::nodes::detail::codec::mdpc01
