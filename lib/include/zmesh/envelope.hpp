// SPDX-License-Identifier: MPL-2.0
// envelope.hpp — ROUTER envelope helpers.
//
// A ROUTER socket prefixes each received message with the sender's routing id, and DEALER/REQ
// peers separate their address stack from the body with one empty delimiter frame. These helpers
// move those frames in and out of a zmesh::message without copying them.
#pragma once

#include <zmesh/export.hpp>
#include <zmesh/message.hpp>

#include <optional>

namespace zmesh {

/// Removes the routing frames up to and including the first empty delimiter and returns them
/// (without the delimiter).
/// @returns std::nullopt and leaves @p m unchanged if it has no empty frame.
[[nodiscard]] ZMESH_EXPORT std::optional<message> pop_envelope(message& m);

/// Puts an envelope back in front: the routing frames of @p envelope, then an empty delimiter.
ZMESH_EXPORT void push_envelope(message& m, message&& envelope);

/// Prepends [address][""] to @p m: the form a ROUTER needs to route a reply.
ZMESH_EXPORT void wrap(message& m, zmq::message_t&& address);

/// Pops the first frame (an address) and, if the next frame is empty, that delimiter too.
/// @returns the address, or std::nullopt if @p m is empty.
[[nodiscard]] ZMESH_EXPORT std::optional<zmq::message_t> unwrap(message& m);

} // namespace zmesh
