// SPDX-License-Identifier: MPL-2.0
// freelance_request.hpp — internal: `zmesh request --freelance`, kept apart from the broker
// request code of request_command.cpp.
#pragma once

#include <zmesh/security/zap.hpp>

#include <boost/program_options.hpp>

#include <optional>
#include <string>

namespace zmesh::cli {

/// Sends @p body ("-": stdin) to the Freelance servers of @p endpoints (comma-separated) and
/// prints the reply, one frame per line. @p vm is checked for flags that do not apply. With
/// @p curve, every server must be a CURVE server with that key (`zmesh serve --curve-secret`).
/// @returns the exit code. @throws usage_error on a bad flag; std::exception on failure.
int run_freelance_request(const boost::program_options::variables_map& vm,
                          const std::string& endpoints, std::string body, int timeout_ms,
                          int retries, std::optional<security::curve_client_keys> curve);

} // namespace zmesh::cli
