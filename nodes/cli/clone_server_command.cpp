// SPDX-License-Identifier: MPL-2.0
// clone_server_command.cpp — `zmesh clone-server`: a Clone server (patterns/clone, ZMCL01,
// docs/patterns/clone.md) that holds a key-value state for `zmesh clone get|set|del|watch`.
//
// Prints the endpoints it bound on stdout, the snapshot/change endpoint then the update
// endpoint, one per line (so that a script can read ephemeral ports), and logs them. With --ha
// it is one server of a Binary Star pair and prints its HA endpoint as a third line.
#include "command.hpp"
#include "security_flags.hpp"
#include "stop_signal.hpp"

#include <zmesh/endpoint.hpp>
#include <zmesh/log.hpp>
#include <zmesh/patterns/clone.hpp>

#include <cerrno>
#include <cstdio>
#include <optional>

namespace zmesh::cli {

int run_clone_server(const std::vector<std::string>& args) {
    namespace po = boost::program_options;
    std::string bind, publish, log_level = "info";
    std::string ha_role, ha_bind, ha_peer;
    int hugz_ms = 1000;
    int ha_heartbeat_ms = 1000;
    po::options_description options("options");
    options.add_options()
        ("bind", po::value(&bind)->required(),
         "endpoint for snapshots and changes (ROUTER): tcp://host:port, tcp://host:* for an "
         "ephemeral port, ipc://path")
        ("publish", po::value(&publish),
         "endpoint for updates (PUB); default: the --bind port + 1 (tcp), PATH.updates (ipc), "
         "another ephemeral port (tcp://host:*)")
        ("hugz-ms", po::value(&hugz_ms)->default_value(hugz_ms),
         "interval of the heartbeat that carries the current sequence; clients take the server "
         "for gone after 5 s without one")
        ("ha", po::value(&ha_role),
         "Binary Star: primary or backup of a high-availability pair (needs --ha-bind and "
         "--ha-peer; docs/patterns/clone.md)")
        ("ha-bind", po::value(&ha_bind),
         "Binary Star: endpoint where this server announces its state and endpoints")
        ("ha-peer", po::value(&ha_peer), "Binary Star: the peer's --ha-bind endpoint")
        ("ha-heartbeat-ms", po::value(&ha_heartbeat_ms)->default_value(ha_heartbeat_ms),
         "Binary Star: how often the state goes to the peer; it counts as gone after two")
        ("log-level", po::value(&log_level)->default_value(log_level),
         "error, warn, info or debug");
    server_security_flags security_flags;
    security_flags.add_peer_to(options, "clients");
    po::variables_map vm;
    if (!parse("clone-server",
               "--bind EP [--publish EP] [--ha primary|backup --ha-bind EP --ha-peer EP]",
               options, args, vm))
        return ok;
    for (const auto* ep : {&bind, &publish}) {
        if (ep->empty()) continue;
        std::error_code ec;
        std::string why;
        if (!parse_endpoint(*ep, ec, &why))
            throw usage_error("invalid endpoint '" + *ep + "': " + why);
    }
    if (publish.empty() && !patterns::clone::default_updates_endpoint(bind) &&
        bind.rfind("tcp://", 0) != 0)
        throw usage_error("give --publish for --bind " + bind);
    if (hugz_ms <= 0) throw usage_error("--hugz-ms must be positive");
    std::optional<patterns::binary_star::role> role;
    if (vm.count("ha") || vm.count("ha-bind") || vm.count("ha-peer")) {
        role = patterns::binary_star::parse_role(ha_role);
        if (!role) throw usage_error("invalid --ha '" + ha_role + "': give primary or backup");
        if (ha_bind.empty() || ha_peer.empty())
            throw usage_error("--ha needs --ha-bind and --ha-peer");
        for (const auto& [flag, ep] :
             {std::pair{"--ha-bind", &ha_bind}, std::pair{"--ha-peer", &ha_peer}}) {
            std::error_code ec;
            std::string why;
            if (!parse_endpoint(*ep, ec, &why))
                throw usage_error(std::string("invalid ") + flag + " '" + *ep + "': " + why);
        }
        if (ha_heartbeat_ms <= 0) throw usage_error("--ha-heartbeat-ms must be positive");
        if (!security_flags.curve_secret.empty())
            throw usage_error("--ha with --curve-secret is not supported yet (the pair's link and "
                              "the passive server's copy would travel in clear)");
    } else if (vm.count("ha-heartbeat-ms") && !vm["ha-heartbeat-ms"].defaulted()) {
        throw usage_error("--ha-heartbeat-ms needs --ha");
    }
    auto level = parse_log_level(log_level);
    if (!level) throw usage_error("invalid --log-level '" + log_level + "'");
    set_log_level(*level);

    auto curve_server = security_flags.peer_server(); // a bad key file or directory stops here

    peer_reloader reloader(security_flags, curve_server.has_value()); // before the context

    install_stop_signals();
    zmq::context_t ctx;
    std::unique_ptr<patterns::clone::server> server;
    try {
        server = std::make_unique<patterns::clone::server>(
            ctx,
            patterns::clone::server_options{.bind = bind,
                                            .publish = publish,
                                            .hugz_interval = std::chrono::milliseconds(hugz_ms),
                                            .curve_server = std::move(curve_server),
                                            .ha_role = role,
                                            .ha_bind = ha_bind,
                                            .ha_peer = ha_peer,
                                            .ha_heartbeat =
                                                std::chrono::milliseconds(ha_heartbeat_ms)});
    } catch (const zmq::error_t& e) {
        throw std::runtime_error("cannot bind " + bind + (publish.empty() ? "" : " or " + publish) +
                                 (ha_bind.empty() ? "" : " or " + ha_bind) + ": " + e.what());
    }
    const auto reloading = reloader.apply_to(*server);
    std::printf("%s\n%s\n", server->endpoint().c_str(), server->updates_endpoint().c_str());
    if (role) std::printf("%s\n", server->ha_endpoint().c_str());
    std::fflush(stdout);
    log(log_level::info, "clone-server: serving a key-value state (ZMCL01)%s: snapshots and changes "
                         "on %s, updates on %s",
        reloader.on() ? " with CURVE" : "", server->endpoint().c_str(),
        server->updates_endpoint().c_str());
    while (!stop_requested()) {
        try {
            server->run_once(std::chrono::milliseconds(200));
            if (server->stats().ha_fatal) {
                std::fprintf(stderr, "zmesh: clone-server: Binary Star fatal error (see the log "
                                     "above): stopping\n");
                return failure;
            }
        } catch (const zmq::error_t& e) {
            if (e.num() == EINTR) continue; // a stop signal interrupted the wait
            throw;
        }
    }
    const auto st = server->stats();
    log(log_level::info,
        "clone-server: stopped at sequence %llu with %llu keys (%llu connections refused, %llu "
        "cut off)",
        static_cast<unsigned long long>(st.sequence), static_cast<unsigned long long>(st.keys),
        static_cast<unsigned long long>(st.connections_refused),
        static_cast<unsigned long long>(st.cut_off));
    return ok;
}

} // namespace zmesh::cli
