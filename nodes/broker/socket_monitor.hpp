// SPDX-License-Identifier: MPL-2.0
// socket_monitor.hpp — internal: libzmq's socket monitor reduced to what the broker needs, the
// descriptors of connections that opened and closed.
//
// The broker matches peers to connections by the descriptor libzmq reports with each message
// (ZMQ_SRCFD). A descriptor is reused by the next connection once closed, so a table keyed by it
// must forget an entry as soon as the connection closes: the monitor's DISCONNECTED event says
// so, and libzmq emits it before it closes the descriptor.
#pragma once

#include <zmq.hpp>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <string>

namespace zmesh::nodes::detail {

/// Starts a monitor of @p watched's connections (@p events: ZMQ_EVENT_DISCONNECTED, maybe
/// ZMQ_EVENT_ACCEPTED) and returns the PAIR socket its events arrive on. @p name goes into the inproc endpoint, which is made unique per process: a new
/// socket at the address of one just destroyed must not meet the old endpoint, which libzmq may
/// not have released yet.
/// @throws zmq::error_t.
inline zmq::socket_t watch_connections(zmq::context_t& ctx, zmq::socket_t& watched,
                                       const char* name, int events = ZMQ_EVENT_DISCONNECTED) {
    static std::atomic<std::uint64_t> monitors{0};
    const std::string endpoint = std::string("inproc://zmesh.") + name + ".monitor." +
                                 std::to_string(monitors.fetch_add(1));
    if (zmq_socket_monitor(watched.handle(), endpoint.c_str(), events) != 0)
        throw zmq::error_t();
    zmq::socket_t monitor(ctx, zmq::socket_type::pair);
    monitor.set(zmq::sockopt::linger, 0);
    monitor.connect(endpoint);
    return monitor;
}

/// The descriptor a reactor polls for @p monitor's events (ZMQ_FD), in place of the socket.
///
/// Why not the socket: before it waits, zmq_poll asks every zmq socket in its set for
/// ZMQ_EVENTS, and each ask checks that socket's mailbox with a poll and a getpid. A monitor
/// speaks only when a connection opens or closes, yet in the set it cost those two system calls
/// every time the loop woke, about 11 of the broker's 67 per request with one in flight
/// (docs/perf.md, "Round trip with one request in flight"). Its descriptor instead goes into the
/// kernel's poll as it is, at no cost of its own.
///
/// libzmq makes it readable when commands wait in the socket's mailbox (a new event's pipe
/// activation among them) and clears it when a read finds the socket empty. So the handler must
/// read until EAGAIN, as drain_events() does; anything else that reads the monitor must too.
inline int monitor_descriptor(zmq::socket_t& monitor) { return monitor.get(zmq::sockopt::fd); }

/// Calls @p on_event(event, fd) for every event waiting on @p monitor, without blocking.
/// Event: 6 bytes (uint16 event, uint32 value = the descriptor), then the endpoint (libzmq 4.3's
/// monitor format).
template <typename F> void drain_events(zmq::socket_t& monitor, F&& on_event) {
    zmq::message_t event, address;
    while (monitor.recv(event, zmq::recv_flags::dontwait)) {
        if (event.more()) (void)monitor.recv(address, zmq::recv_flags::dontwait);
        if (event.size() < 6) continue;
        std::uint16_t id = 0;
        std::int32_t fd = -1;
        std::memcpy(&id, event.data(), sizeof id);
        std::memcpy(&fd, static_cast<const char*>(event.data()) + 2, sizeof fd);
        on_event(id, fd);
    }
}

} // namespace zmesh::nodes::detail
