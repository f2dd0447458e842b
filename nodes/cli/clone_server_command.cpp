// SPDX-License-Identifier: MPL-2.0
// clone_server_command.cpp — `zmesh clone-server`: a Clone server (patterns/clone, ZMCL01,
// docs/patterns/clone.md) that holds a key-value state for `zmesh clone get|set|del|watch`.
//
// Prints the endpoints it bound on stdout, the snapshot/change endpoint then the update
// endpoint, one per line (so that a script can read ephemeral ports), and logs them.
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
    int hugz_ms = 1000;
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
        ("log-level", po::value(&log_level)->default_value(log_level),
         "error, warn, info or debug");
    server_security_flags security_flags;
    security_flags.add_peer_to(options, "clients");
    po::variables_map vm;
    if (!parse("clone-server", "--bind EP [--publish EP]", options, args, vm)) return ok;
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
                                            .curve_server = std::move(curve_server)});
    } catch (const zmq::error_t& e) {
        throw std::runtime_error("cannot bind " + bind + (publish.empty() ? "" : " or " + publish) +
                                 ": " + e.what());
    }
    const auto reloading = reloader.apply_to(*server);
    std::printf("%s\n%s\n", server->endpoint().c_str(), server->updates_endpoint().c_str());
    std::fflush(stdout);
    log(log_level::info, "clone-server: serving a key-value state (ZMCL01)%s: snapshots and changes "
                         "on %s, updates on %s",
        reloader.on() ? " with CURVE" : "", server->endpoint().c_str(),
        server->updates_endpoint().c_str());
    while (!stop_requested()) {
        try {
            server->run_once(std::chrono::milliseconds(200));
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
