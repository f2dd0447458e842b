// SPDX-License-Identifier: MPL-2.0
// client_handles.hpp — internal: the opaque handles the broker shows workers instead of its
// clients' ROUTER routing ids, and the seeding of libzmq's routing-id counter.
//
// Why: a ROUTER routing id is a capability. libzmq 4.3 gives a peer that claims no id a generated
// one (a zero byte, then a 4-byte counter) and aborts the whole process if a generated id is
// already held by a peer that claimed it (src/socket_base.cpp, duplicate pipe). A worker that
// could see or predict its clients' ids could therefore claim the next ones and crash the broker,
// or take replies meant for someone else. So no peer ever sees a routing id (docs/broker.md,
// "Client handles"):
//  - a handle is 16 bytes from the kernel's CSPRNG (getrandom(2)); knowing any number of handles
//    tells nothing about another, and a handle is never a routing id, so claiming it gains
//    nothing;
//  - the counter libzmq starts from rand() at socket creation is seeded from getrandom(2) first,
//    because unseeded it starts at glibc's fixed first value (0x6B8B4567) in every process, and
//    any client could claim the first generated ids blind.
// Stock libzmq 4.3 offers no way to refuse a peer that claims an id starting with a zero byte
// (the ZAP request carries the server socket's own routing id, not the peer's), so a blind claim
// of one 32-bit counter value remains possible; with a random start it succeeds with probability
// (claims / 2^32) per honest connection.
#pragma once

#include <zmq.hpp>

#include <array>
#include <cstddef>
#include <string>

namespace zmesh::nodes::detail {

/// Size of a client handle on the wire (the client-address frame of REQUEST and REPLY).
inline constexpr std::size_t client_handle_size = 16;

/// Makes client handles from getrandom(2), fetched in blocks so that a new client costs no
/// system call most of the time. Not thread-safe (the broker loop owns it).
class handle_source {
  public:
    /// A fresh handle of client_handle_size random bytes.
    /// @throws std::system_error if the kernel's random source fails (it does not block once
    /// the system has booted).
    std::string next();

  private:
    std::array<unsigned char, 64 * client_handle_size> pool_{};
    std::size_t used_ = pool_.size(); // bytes of pool_ already handed out
};


} // namespace zmesh::nodes::detail
