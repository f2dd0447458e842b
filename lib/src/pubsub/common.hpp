// SPDX-License-Identifier: MPL-2.0
// pubsub/common.hpp — internal: wire constants and helpers shared by the publisher and the
// subscriber. Not installed; not part of the API.
//
// The control-topic layout is fixed by docs/pubsub.md: a topic that starts with the byte 0x00
// followed by "zmesh." is control traffic, and a readiness probe is
// "\0zmesh.probe." + 32 hex digits, answered with a header whose type is "zmesh.probe".
#pragma once

#include <zmq.hpp>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <string_view>

namespace zmesh::pubsub::detail {

using namespace std::string_view_literals;

/// Prefix of every control topic.
inline constexpr std::string_view control_prefix = "\0zmesh."sv;
/// Prefix of a readiness probe topic.
inline constexpr std::string_view probe_prefix = "\0zmesh.probe."sv;
/// Header type of a probe answer.
inline constexpr std::string_view probe_type = "zmesh.probe"sv;

/// XPUB subscription messages: one frame, this byte, then the topic prefix.
inline constexpr std::uint8_t unsubscribe_byte = 0;
inline constexpr std::uint8_t subscribe_byte = 1;

inline bool is_control(std::string_view topic) noexcept {
    return topic.substr(0, control_prefix.size()) == control_prefix;
}

inline bool is_probe(std::string_view topic) noexcept {
    return topic.substr(0, probe_prefix.size()) == probe_prefix;
}

/// Now on the system clock, in ns since the Unix epoch: the header's "ts".
inline std::int64_t now_ns() noexcept {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

/// libzmq takes durations as int milliseconds: clamps @p d to [0, INT_MAX].
inline std::chrono::milliseconds clamp_wait(std::chrono::milliseconds d) noexcept {
    constexpr std::chrono::milliseconds max{0x7fffffff};
    if (d < std::chrono::milliseconds(0))
        return std::chrono::milliseconds(0);
    return d > max ? max : d;
}

/// How a wait for input ended.
enum class wait_result { readable, timed_out, interrupted };

/// Waits up to @p timeout for @p s to be readable. A signal (EINTR) and context termination
/// (ETERM) end the wait early as wait_result::interrupted: callers find out about ETERM on their
/// next socket call, and a signal is the caller's business (the CLI checks its stop flag).
inline wait_result wait_readable(zmq::socket_ref s, std::chrono::milliseconds timeout) {
    zmq::pollitem_t item{s.handle(), 0, ZMQ_POLLIN, 0};
    try {
        zmq::poll(&item, 1, clamp_wait(timeout));
    } catch (const zmq::error_t& e) {
        if (e.num() != EINTR && e.num() != ETERM)
            throw;
        return wait_result::interrupted;
    }
    return (item.revents & ZMQ_POLLIN) != 0 ? wait_result::readable : wait_result::timed_out;
}

} // namespace zmesh::pubsub::detail
