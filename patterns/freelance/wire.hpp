// SPDX-License-Identifier: MPL-2.0
// wire.hpp — internal: the ZMFL01 frames shared by the freelance client and server
// (docs/patterns/freelance.md).
#pragma once

#include <zmesh/message.hpp>
#include <zmesh/patterns/freelance.hpp>

#include <zmq.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace zmesh::patterns::freelance::detail {

/// Size of the request id frame: an unsigned 64-bit integer, big-endian.
inline constexpr std::size_t request_id_size = 8;

inline std::string encode_id(std::uint64_t id) {
    std::string out(request_id_size, '\0');
    for (std::size_t i = 0; i < request_id_size; ++i)
        out[request_id_size - 1 - i] = static_cast<char>((id >> (8 * i)) & 0xff);
    return out;
}

/// The id in @p frame, or std::nullopt if it is not exactly 8 bytes.
inline std::optional<std::uint64_t> decode_id(const zmq::message_t& frame) {
    if (frame.size() != request_id_size) return std::nullopt;
    const auto* p = static_cast<const unsigned char*>(frame.data());
    std::uint64_t id = 0;
    for (std::size_t i = 0; i < request_id_size; ++i) id = (id << 8) | p[i];
    return id;
}

/// The command of a message whose frames are [routing id][protocol][command]...; std::nullopt
/// if the protocol frame or the command frame is not ZMFL01's.
inline std::optional<command> command_of(const message& m) {
    if (m.size() < 3 || view(m[1]) != protocol_v1 || m[2].size() != 1) return std::nullopt;
    const auto c = static_cast<std::uint8_t>(view(m[2])[0]);
    if (c < static_cast<std::uint8_t>(command::ping) ||
        c > static_cast<std::uint8_t>(command::error))
        return std::nullopt;
    return static_cast<command>(c);
}

inline std::string command_frame(command c) {
    return std::string(1, static_cast<char>(c));
}

} // namespace zmesh::patterns::freelance::detail
