// SPDX-License-Identifier: MPL-2.0
// services_command.cpp — `zmesh services`: asks the broker's zmesh.services and prints a table.
#include "command.hpp"

#include <zmesh/endpoint.hpp>
#include <zmesh/mdp/client.hpp>
#include <zmesh/mdp/protocol.hpp>

#include <msgpack.hpp>

#include <cstdio>
#include <map>

namespace zmesh::cli {

int run_services(const std::vector<std::string>& args) {
    namespace po = boost::program_options;
    std::string broker;
    int timeout_ms = 2500;
    po::options_description options("options");
    options.add_options()
        ("broker", po::value(&broker)->required(), "broker endpoint, e.g. tcp://127.0.0.1:5555")
        ("timeout-ms", po::value(&timeout_ms)->default_value(timeout_ms), "wait for the answer, in ms");
    po::variables_map vm;
    if (!parse("services", "--broker EP", options, args, vm)) return ok;
    std::error_code ec;
    std::string why;
    if (!parse_endpoint(broker, ec, &why)) throw usage_error("invalid --broker '" + broker + "': " + why);

    zmq::context_t ctx;
    mdp::client client(ctx, broker, {.timeout = std::chrono::milliseconds(timeout_ms), .retries = 1});
    message reply = client.request(mdp::zmesh_services, message{""});
    if (reply.size() != 1) throw std::runtime_error("unexpected zmesh.services reply (is this a zmesh broker?)");
    std::map<std::string, std::map<std::string, std::uint64_t>> services;
    try {
        auto handle = msgpack::unpack(static_cast<const char*>(reply[0].data()), reply[0].size());
        handle.get().convert(services);
    } catch (const std::exception&) {
        throw std::runtime_error("undecodable zmesh.services reply (is this a zmesh broker?)");
    }
    std::printf("%-32s %8s %8s %8s %10s\n", "SERVICE", "WORKERS", "IDLE", "QUEUED", "IN_FLIGHT");
    for (auto& [name, s] : services)
        std::printf("%-32s %8llu %8llu %8llu %10llu\n", name.c_str(),
                    static_cast<unsigned long long>(s["workers"]), static_cast<unsigned long long>(s["idle"]),
                    static_cast<unsigned long long>(s["queued"]), static_cast<unsigned long long>(s["in_flight"]));
    return ok;
}

} // namespace zmesh::cli
