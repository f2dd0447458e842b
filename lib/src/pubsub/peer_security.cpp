// SPDX-License-Identifier: MPL-2.0
// pubsub/peer_security.cpp — CURVE on a publisher's or subscriber's socket (peer_security.hpp).
#include "pubsub/peer_security.hpp"

#include <zmesh/error.hpp>


namespace zmesh::pubsub::detail {

std::unique_ptr<security::zap_handler>
apply_curve(zmq::context_t& ctx, zmq::socket_t& socket, const char* who,
            const std::optional<security::curve_client_keys>& client,
            const std::optional<security::curve_server_settings>& server,
            const std::vector<std::string>& bind, const std::vector<std::string>& connect) {
    const std::string name(who);
    if (client && server)
        throw error(errc::invalid_argument,
                    name + ": curve (CURVE client, for connect endpoints) and curve_server (CURVE "
                           "server, for bind endpoints) cannot both be set: one socket is either "
                           "a CURVE client or a CURVE server; use one socket per role");
    if (client) {
        if (!bind.empty())
            throw error(errc::invalid_argument,
                        name + ": curve (CURVE client keys) is for connect endpoints; a socket "
                               "that binds is the CURVE server of its peers: use curve_server");
        security::make_curve_client(socket, client->server_public, client->client);
        return nullptr;
    }
    if (!server) return nullptr;
    if (!connect.empty())
        throw error(errc::invalid_argument,
                    name + ": curve_server is for bind endpoints; a socket that connects is the "
                           "CURVE client of its peer: use curve");
    auto zap = security::start_curve_server(ctx, name + " (curve_server)", *server);
    security::make_curve_server(socket, server->server);
    return zap;
}

} // namespace zmesh::pubsub::detail
