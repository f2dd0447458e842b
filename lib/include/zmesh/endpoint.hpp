// SPDX-License-Identifier: MPL-2.0
// endpoint.hpp — endpoint validation, and bind/connect that report the real endpoint.
//
// libzmq accepts an endpoint string and fails late or vaguely (EINVAL, EPROTONOSUPPORT) when it
// is wrong. zmesh checks the string first and says what is wrong with it, so that a typo in a
// flag or config file is a one-line message. Only the transports zmesh supports are accepted:
// tcp://host:port (port may be * for an ephemeral port when binding), ipc://path, inproc://name.
#pragma once

#include <zmesh/export.hpp>

#include <zmq.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <system_error>

namespace zmesh {

/// Transport of an endpoint.
enum class transport { tcp, ipc, inproc };

/// A validated endpoint, split into its parts.
struct endpoint_parts {
    transport kind;
    std::string address; ///< what follows "scheme://"
    std::string host;    ///< tcp only: host or interface ("*" for all), brackets removed
    std::string port;    ///< tcp only: decimal port, or "*"
};

/// Checks @p endpoint.
/// @returns its parts, or std::nullopt with @p ec = errc::invalid_endpoint and @p why saying
///          what is wrong (e.g. "port 70000 is out of range").
[[nodiscard]] ZMESH_EXPORT std::optional<endpoint_parts>
parse_endpoint(std::string_view endpoint, std::error_code& ec, std::string* why = nullptr);

/// Checks @p endpoint.
/// @throws zmesh::error (errc::invalid_endpoint) whose what() names the endpoint and the problem.
ZMESH_EXPORT endpoint_parts parse_endpoint(std::string_view endpoint);

/// Validates @p endpoint, binds @p socket to it and returns the endpoint actually bound
/// (tcp://127.0.0.1:* becomes tcp://127.0.0.1:41234).
/// @throws zmesh::error on an invalid endpoint (errc::invalid_endpoint), and when libzmq refuses
/// (EADDRINUSE…): then code() is the errno in std::generic_category() and what() reads
/// "cannot bind to 'EP': <libzmq's reason>".
ZMESH_EXPORT std::string bind(zmq::socket_t& socket, std::string_view endpoint);

/// Validates @p endpoint and connects @p socket to it. A wildcard port is refused.
/// @throws zmesh::error on an invalid endpoint, and when libzmq refuses (code() the errno in
/// std::generic_category(), what() "cannot connect to 'EP': <reason>").
ZMESH_EXPORT void connect(zmq::socket_t& socket, std::string_view endpoint);

} // namespace zmesh
