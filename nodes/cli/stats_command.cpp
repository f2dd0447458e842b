// SPDX-License-Identifier: MPL-2.0
// stats_command.cpp — `zmesh stats`: asks the broker's zmesh.stats and prints each counter.
#include "broker_query.hpp"
#include "command.hpp"

#include <zmesh/mdp/protocol.hpp>

#include <nlohmann/json.hpp>

#include <cstdio>

namespace zmesh::cli {

int run_stats(const std::vector<std::string>& args) {
    broker_query_flags flags;
    boost::program_options::options_description options("options");
    add_broker_query_options(options, flags);
    bool json = false;
    options.add_options()("json", boost::program_options::bool_switch(&json),
                          "print one JSON object, counter name to value, for scripts and jq");
    boost::program_options::variables_map vm;
    if (!parse("stats", "[--broker EP] [--json]", options, args, vm)) return ok;

    const auto counters = query_broker<counter_table>(flags, mdp::zmesh_stats);
    if (json) {
        std::printf("%s\n", nlohmann::ordered_json(counters).dump().c_str());
        return ok;
    }
    for (const auto& [name, value] : counters)
        std::printf("%-22s %llu\n", name.c_str(), static_cast<unsigned long long>(value));
    return ok;
}

} // namespace zmesh::cli
