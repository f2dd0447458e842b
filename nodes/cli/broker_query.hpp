// SPDX-License-Identifier: MPL-2.0
// broker_query.hpp — internal: asks a zmesh broker one of its own services (zmesh.services,
// zmesh.stats) and decodes the msgpack map it answers with.
#pragma once

#include <boost/program_options.hpp>

#include "security_flags.hpp"

#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace zmesh::cli {

/// What a broker query is sent with: --broker, --timeout-ms and the CURVE flags.
struct broker_query_flags {
    std::string broker;
    int timeout_ms = 2500;
    client_security_flags security;
};

/// Declares --broker, --timeout-ms and the client CURVE flags on @p options.
void add_broker_query_options(boost::program_options::options_description& options,
                              broker_query_flags& flags);

/// The endpoints of flags.broker (a comma-separated list), checked.
/// @throws usage_error for a bad endpoint or a non-positive timeout.
std::vector<std::string> query_brokers(const broker_query_flags& flags);

/// Sends one request for @p service and decodes the single-frame msgpack reply into @p T.
/// With a list of brokers, each is asked in turn (flags.timeout_ms each) until one answers: the
/// active one of a Binary Star pair (for zmesh.stats, which a passive broker answers too, the
/// first whose ha_state is active or 0).
/// @throws usage_error for a bad endpoint; std::runtime_error if there is no or no valid answer
///         (with no answer, naming every endpoint tried).
template <class T> T query_broker(const broker_query_flags& flags, std::string_view service);

using service_table = std::map<std::string, std::map<std::string, std::uint64_t>>;
using counter_table = std::map<std::string, std::uint64_t>;
template <> counter_table query_broker<counter_table>(const broker_query_flags&, std::string_view);

} // namespace zmesh::cli
