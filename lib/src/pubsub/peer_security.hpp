// SPDX-License-Identifier: MPL-2.0
// pubsub/peer_security.hpp — internal: CURVE on the socket of a publisher or subscriber, in
// either role. Not installed; not part of the API.
//
// A zmesh peer that connects is the CURVE client of what it connects to (a broker, or a peer
// that binds); a peer that binds is the CURVE server of what connects to it, and then runs the
// ZAP handler of its context, because a CURVE server with no handler admits every client key.
// libzmq makes the mechanism a property of the whole socket, so one socket cannot be a client
// on its connects and a server on its binds: such a mix is refused with a message that says so.
#pragma once

#include <zmesh/security/zap.hpp>

#include <zmq.hpp>

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace zmesh::pubsub::detail {

/// Checks the CURVE settings of a peer against its endpoints and applies them to @p socket:
/// before any bind or connect. With @p server, starts a ZAP handler in @p ctx and returns it;
/// the caller keeps it alive for as long as the socket (destroy the socket first).
/// @param who "pubsub::publisher" or "pubsub::subscriber", for the messages.
/// @throws zmesh::error errc::invalid_argument for a client and a server setting together, a
///         client setting with bind endpoints, a server setting with connect endpoints, a
///         certificate without its secret key, or a context whose ZAP endpoint is taken.
std::unique_ptr<security::zap_handler>
apply_curve(zmq::context_t& ctx, zmq::socket_t& socket, const char* who,
            const std::optional<security::curve_client_keys>& client,
            const std::optional<security::curve_server_settings>& server,
            const std::vector<std::string>& bind, const std::vector<std::string>& connect);

} // namespace zmesh::pubsub::detail
