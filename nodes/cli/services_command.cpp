// SPDX-License-Identifier: MPL-2.0
// services_command.cpp — `zmesh services`: asks the broker's zmesh.services and prints a table.
#include "broker_query.hpp"
#include "command.hpp"

#include <zmesh/mdp/protocol.hpp>

#include <nlohmann/json.hpp>

#include <cstdio>

namespace zmesh::cli {

int run_services(const std::vector<std::string>& args) {
    broker_query_flags flags;
    boost::program_options::options_description options("options");
    add_broker_query_options(options, flags);
    bool json = false;
    options.add_options()("json", boost::program_options::bool_switch(&json),
                          "print one JSON object: service name to its workers, idle, queued and "
                          "in_flight");
    boost::program_options::variables_map vm;
    if (!parse("services", "[--broker EP] [--json]", options, args, vm)) return ok;

    auto services = query_broker<service_table>(flags, mdp::zmesh_services);
    if (json) {
        // Service names are printable ASCII (the broker checks them): valid JSON as they are.
        std::printf("%s\n", nlohmann::ordered_json(services).dump().c_str());
        return ok;
    }
    std::printf("%-32s %8s %8s %8s %10s\n", "SERVICE", "WORKERS", "IDLE", "QUEUED", "IN_FLIGHT");
    for (auto& [name, s] : services)
        std::printf("%-32s %8llu %8llu %8llu %10llu\n", name.c_str(),
                    static_cast<unsigned long long>(s["workers"]), static_cast<unsigned long long>(s["idle"]),
                    static_cast<unsigned long long>(s["queued"]), static_cast<unsigned long long>(s["in_flight"]));
    return ok;
}

} // namespace zmesh::cli
