// SPDX-License-Identifier: MPL-2.0
// freelance_request.hpp — internal: `zmesh request --freelance`, kept apart from the broker
// request code of request_command.cpp.
#pragma once

#include <boost/program_options.hpp>

#include <string>

namespace zmesh::cli {

/// Sends @p body ("-": stdin) to the Freelance servers of @p endpoints (comma-separated) and
/// prints the reply, one frame per line. @p vm is checked for flags that do not apply.
/// @returns the exit code. @throws usage_error on a bad flag; std::exception on failure.
int run_freelance_request(const boost::program_options::variables_map& vm,
                          const std::string& endpoints, std::string body, int timeout_ms,
                          int retries);

} // namespace zmesh::cli
