// SPDX-License-Identifier: MPL-2.0
// broker_command.cpp — `zmesh broker`: maps flags to a broker_config and runs the broker node.
#include "command.hpp"

#include <zmesh/endpoint.hpp>
#include <zmesh/log.hpp>
#include <zmesh/nodes/broker.hpp>

#include <cstdio>

namespace zmesh::cli {

int run_broker(const std::vector<std::string>& args) {
    namespace po = boost::program_options;
    nodes::broker_config cfg;
    int heartbeat_ms = static_cast<int>(cfg.heartbeat_interval.count());
    std::string log_level = "info";
    std::size_t max_queue = cfg.max_queue;
    unsigned max_attempts = cfg.max_attempts;
    po::options_description options("options");
    options.add_options()
        ("mdp", po::value(&cfg.mdp_endpoint)->default_value(cfg.mdp_endpoint),
         "MDP endpoint to bind (tcp://127.0.0.1:* picks a free port)")
        ("heartbeat-ms", po::value(&heartbeat_ms)->default_value(heartbeat_ms),
         "heartbeat interval towards workers, in ms")
        ("liveness", po::value(&cfg.liveness)->default_value(cfg.liveness),
         "missed heartbeats before a worker is declared dead")
        ("max-queue", po::value(&max_queue)->default_value(max_queue),
         "requests a service may queue before new ones are rejected")
        ("max-attempts", po::value(&max_attempts)->default_value(max_attempts),
         "deliveries of a request to dying workers before it is rejected")
        ("log-level", po::value(&log_level)->default_value(log_level), "error, warn, info or debug");
    po::variables_map vm;
    if (!parse("broker", "[options]", options, args, vm)) return ok;

    auto level = parse_log_level(log_level);
    if (!level) throw usage_error("invalid --log-level '" + log_level + "'");
    if (heartbeat_ms <= 0) throw usage_error("--heartbeat-ms must be positive");
    if (cfg.liveness < 1) throw usage_error("--liveness must be at least 1");
    if (max_queue == 0) throw usage_error("--max-queue must be positive");
    if (max_attempts == 0) throw usage_error("--max-attempts must be positive");
    std::error_code ec;
    std::string why;
    if (!parse_endpoint(cfg.mdp_endpoint, ec, &why))
        throw usage_error("invalid --mdp '" + cfg.mdp_endpoint + "': " + why);
    set_log_level(*level);
    cfg.heartbeat_interval = std::chrono::milliseconds(heartbeat_ms);
    cfg.max_queue = max_queue;
    cfg.max_attempts = max_attempts;

    zmq::context_t ctx;
    nodes::broker broker(ctx, cfg);
    // One line per bound endpoint, so a script can read ephemeral ports.
    for (const auto& ep : broker.endpoints()) std::printf("%s\n", ep.c_str());
    std::fflush(stdout);
    broker.run(true);
    return ok;
}

} // namespace zmesh::cli
