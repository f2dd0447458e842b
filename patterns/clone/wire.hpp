// SPDX-License-Identifier: MPL-2.0
// wire.hpp — internal: the ZMCL01 frames shared by the clone client and server
// (docs/patterns/clone.md).
#pragma once

#include <zmesh/message.hpp>
#include <zmesh/patterns/clone.hpp>

#include <zmq.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace zmesh::patterns::clone::detail {

/// A sequence number on the wire: an unsigned 64-bit integer, big-endian, 8 bytes.
inline constexpr std::size_t sequence_size = 8;

inline std::string encode_sequence(std::uint64_t n) {
    std::string out(sequence_size, '\0');
    for (std::size_t i = 0; i < sequence_size; ++i)
        out[sequence_size - 1 - i] = static_cast<char>((n >> (8 * i)) & 0xff);
    return out;
}

inline std::optional<std::uint64_t> decode_sequence(const zmq::message_t& frame) {
    if (frame.size() != sequence_size) return std::nullopt;
    const auto* p = static_cast<const unsigned char*>(frame.data());
    std::uint64_t n = 0;
    for (std::size_t i = 0; i < sequence_size; ++i) n = (n << 8) | p[i];
    return n;
}

/// The command of @p m if m[at] is the protocol frame and m[at + 1] one known command byte.
inline std::optional<command> command_at(const message& m, std::size_t at) {
    if (m.size() < at + 2 || view(m[at]) != protocol_v1 || m[at + 1].size() != 1)
        return std::nullopt;
    const auto c = static_cast<command>(static_cast<std::uint8_t>(view(m[at + 1])[0]));
    switch (c) {
    case command::snapshot_request:
    case command::set:
    case command::erase:
    case command::follow:
    case command::snapshot:
    case command::ack:
    case command::refused:
    case command::update:
    case command::removal:
    case command::hugz:
        return c;
    }
    return std::nullopt;
}

/// A change id on the wire (SET, ERASE, UPDATE, REMOVAL): 16 bytes, the client's random id and
/// its counter. Optional: a change without one is applied each time it arrives.
inline constexpr std::size_t change_id_size = 16;

inline std::string command_frame(command c) {
    return std::string(1, static_cast<char>(c));
}

} // namespace zmesh::patterns::clone::detail
