// SPDX-License-Identifier: MPL-2.0
// error.hpp — zmesh's error codes, their std::error_category, and the exception thrown on setup
// failures and API misuse.
//
// Policy (see the project conventions): setup and misuse throw zmesh::error; expected outcomes
// (timeout, no reply, would block) are values; untrusted network input decodes to an
// std::error_code and is counted and dropped by nodes. zmq::error_t passes through unchanged.
#pragma once

#include <zmesh/export.hpp>

#include <string>
#include <system_error>

namespace zmesh {

/// Error conditions raised by zmesh itself.
enum class errc {
    invalid_endpoint = 1, ///< an endpoint string is not a valid tcp://, ipc:// or inproc:// address
    invalid_argument,     ///< an argument or configuration value is out of range
    truncated,            ///< an encoded buffer ended before the value it announced
    oversized,            ///< an encoded buffer or field is larger than the accepted limit
    malformed,            ///< an encoded buffer is not the expected structure
    protocol_violation,   ///< a peer sent frames that break the protocol
    timeout,              ///< no answer arrived in time (after every retry)
    not_running,          ///< the object is closed, stopped or not yet started
    storage,              ///< the durable store failed
    // Status codes a zmesh broker answers a request with (docs/protocol.md, "Errors are exact").
    // 504 (deadline passed before a worker took the request) maps to timeout.
    bad_request,          ///< 400: the broker found the request invalid
    not_found,            ///< 404: fail fast, no worker has ever served the service
    refused,              ///< 422: a worker refused the request
    exhausted,            ///< 500: the request's workers died on every attempt
    unavailable,          ///< 503: a broker limit (queue, memory, clients); worth retrying later
    remote_error,         ///< any other status a broker or service reported
    forbidden,            ///< 403: the broker's access list does not allow this key the service
};

/// The category of zmesh::errc; its name() is "zmesh".
ZMESH_EXPORT const std::error_category& error_category() noexcept;

/// Makes an std::error_code in zmesh's category (found by ADL).
inline std::error_code make_error_code(errc e) noexcept {
    return {static_cast<int>(e), error_category()};
}

/// The exception zmesh throws. code() is in zmesh::error_category() unless stated otherwise.
class ZMESH_EXPORT error : public std::system_error {
  public:
    error(errc e, const std::string& what) : std::system_error(make_error_code(e), what) {}
    error(std::error_code ec, const std::string& what) : std::system_error(ec, what) {}
};

} // namespace zmesh

template <> struct std::is_error_code_enum<zmesh::errc> : std::true_type {};
