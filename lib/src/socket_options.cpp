// SPDX-License-Identifier: MPL-2.0
// socket_options.cpp — applies socket_options.
#include <zmesh/socket_options.hpp>

#include <sys/random.h>

#include <cerrno>
#include <cstdlib>
#include <system_error>

namespace zmesh {
namespace {
int ms(std::chrono::milliseconds d) { return static_cast<int>(d.count()); }
} // namespace

void apply(zmq::socket_t& socket, const socket_options& o) {
    socket.set(zmq::sockopt::sndhwm, o.send_hwm);
    socket.set(zmq::sockopt::rcvhwm, o.recv_hwm);
    socket.set(zmq::sockopt::linger, ms(o.linger));
    socket.set(zmq::sockopt::heartbeat_ivl, ms(o.heartbeat_interval));
    if (o.heartbeat_interval.count() > 0) {
        socket.set(zmq::sockopt::heartbeat_timeout, ms(o.heartbeat_timeout));
        socket.set(zmq::sockopt::heartbeat_ttl, ms(o.heartbeat_ttl));
    }
    socket.set(zmq::sockopt::maxmsgsize, o.max_message_size);
    socket.set(zmq::sockopt::immediate, o.immediate ? 1 : 0);
}

zmq::socket_t make_seeded_router(zmq::context_t& ctx) {
    unsigned seed = 0;
    auto* p = reinterpret_cast<unsigned char*>(&seed);
    std::size_t left = sizeof seed;
    while (left > 0) {
        const auto got = ::getrandom(p, left, 0);
        if (got < 0) {
            if (errno == EINTR) continue;
            throw std::system_error(errno, std::generic_category(), "getrandom");
        }
        p += got;
        left -= static_cast<std::size_t>(got);
    }
    std::srand(seed);
    return zmq::socket_t(ctx, zmq::socket_type::router);
}

} // namespace zmesh
