// SPDX-License-Identifier: MPL-2.0
// socket_options.hpp — the one place that applies zmesh's socket settings.
//
// Every socket a zmesh node or client opens goes through apply(), so high-water marks, linger,
// ZMTP heartbeats (37/ZMTP, which kill half-open TCP connections that MDP heartbeats cannot see)
// and the maximum accepted message size are set the same way everywhere. One exception: the
// broker's MDP ROUTER turns ZMTP heartbeats off and uses TCP keepalive (nodes/broker/broker.cpp
// says why: their cost in libzmq 4.3 grows with the square of the connections).
#pragma once

#include <zmesh/export.hpp>

#include <zmq.hpp>

#include <chrono>
#include <cstdint>

namespace zmesh {

/// Socket settings. The defaults are what zmesh nodes use.
struct socket_options {
    int send_hwm = 1000;                       ///< messages queued per peer before send blocks/drops
    int recv_hwm = 1000;                       ///< messages queued per peer before the peer is throttled
    std::chrono::milliseconds linger{0};       ///< how long close() may wait to flush; 0 never blocks
    /// ZMTP PING interval on connection-oriented transports; 0 turns ZMTP heartbeats off.
    std::chrono::milliseconds heartbeat_interval{5000};
    /// Close a connection that stays silent this long after a PING (0 = the interval).
    std::chrono::milliseconds heartbeat_timeout{15000};
    /// Ask the peer to close if it hears nothing from us this long (rounded to 100 ms; 0 = none).
    std::chrono::milliseconds heartbeat_ttl{15000};
    /// Drop a peer that sends a larger message (-1 = no limit). Protects nodes from memory abuse.
    std::int64_t max_message_size = -1;
    /// Queue only to completed connections (ZMQ_IMMEDIATE): nothing waits on a dead peer's pipe.
    bool immediate = false;
};

/// Applies @p options to @p socket. Call before bind/connect: libzmq reads most of these only
/// when a connection is made.
/// @throws zmq::error_t if libzmq rejects a value.
ZMESH_EXPORT void apply(zmq::socket_t& socket, const socket_options& options);

/// Seeds the C library's rand() from getrandom(2), then creates a ROUTER socket. libzmq 4.3
/// starts each ROUTER's routing-id counter at rand() in the socket's constructor, so this makes
/// the generated ids of that socket unguessable: a peer cannot claim the id the next connection
/// will get (../shared/PROTOCOLS.md 1.13). rand() is process-wide; seeding it is harmless to
/// other users (it was unseeded). Every ROUTER that peers reach should be made with it.
/// @throws std::system_error (random source), zmq::error_t (socket creation).
ZMESH_EXPORT zmq::socket_t make_seeded_router(zmq::context_t& ctx);

} // namespace zmesh
