// SPDX-License-Identifier: MPL-2.0
// serve_command.cpp — `zmesh serve`: a Freelance server (patterns/freelance, ZMFL01,
// docs/patterns/freelance.md) that `zmesh request --freelance` talks to directly, without a
// broker. It echoes each request, or runs a shell command per request as `zmesh worker --exec`
// does (the body on stdin, the reply = stdout; a failing command is an error reply).
//
// The endpoints actually bound are printed on stdout, one per line (so that a script can read an
// ephemeral port), and logged with what is served.
#include "command.hpp"
#include "security_flags.hpp"
#include "stop_signal.hpp"
#include "subprocess.hpp"

#include <zmesh/endpoint.hpp>
#include <zmesh/log.hpp>
#include <zmesh/patterns/freelance.hpp>

#include <cerrno>
#include <cstdio>
#include <optional>

namespace zmesh::cli {

namespace {

namespace fl = patterns::freelance;

fl::answer run_command(const std::string& command, message&& body) {
    subprocess_options so;
    so.command = command;
    for (const auto& f : body) so.input.append(view(f));
    // Ctrl-C while a command runs: kill it; the client retries elsewhere.
    so.cancelled = [] { return stop_requested(); };
    auto result = run_subprocess(so);
    if (result.cancelled) return fl::answer::fail("503", "server stopping");
    if (result.exit_status != 0) {
        const auto end = result.err.find('\n');
        return fl::answer::fail("500",
                                "command exited with status " + std::to_string(result.exit_status) +
                                    (result.err.empty() ? "" : ": " + result.err.substr(0, end)));
    }
    return fl::answer::reply(message{result.out});
}

std::vector<std::string> split_endpoints(const std::vector<std::string>& flags) {
    std::vector<std::string> out;
    for (const auto& flag : flags) {
        std::size_t start = 0;
        while (start <= flag.size()) {
            auto comma = flag.find(',', start);
            if (comma == std::string::npos) comma = flag.size();
            if (comma > start) out.push_back(flag.substr(start, comma - start));
            start = comma + 1;
        }
    }
    return out;
}

} // namespace

int run_serve(const std::vector<std::string>& args) {
    namespace po = boost::program_options;
    std::vector<std::string> binds;
    std::string exec, log_level = "info";
    po::options_description options("options");
    options.add_options()
        ("bind", po::value(&binds)->composing(),
         "endpoint to serve on (tcp://host:port, tcp://host:* for an ephemeral port, "
         "ipc://path); repeat it or separate endpoints with commas")
        ("echo", "reply with the request body")
        ("exec", po::value(&exec), "run CMD per request: body on stdin, reply = stdout; a "
                                   "non-zero exit is an error reply (500) with its first line "
                                   "of stderr")
        ("log-level", po::value(&log_level)->default_value(log_level),
         "error, warn, info or debug");
    server_security_flags security_flags;
    security_flags.add_peer_to(options, "clients");
    po::variables_map vm;
    if (!parse("serve", "--bind EP[,EP...] (--echo | --exec 'CMD')", options, args, vm)) return ok;
    const bool echo = vm.count("echo") > 0;
    if (echo == (vm.count("exec") > 0)) throw usage_error("give exactly one of --echo or --exec");
    const auto endpoints = split_endpoints(binds);
    if (endpoints.empty()) throw usage_error("--bind is required");
    for (const auto& ep : endpoints) {
        std::error_code ec;
        std::string why;
        if (!parse_endpoint(ep, ec, &why)) throw usage_error("invalid --bind '" + ep + "': " + why);
    }
    auto level = parse_log_level(log_level);
    if (!level) throw usage_error("invalid --log-level '" + log_level + "'");
    set_log_level(*level);

    auto curve_server = security_flags.peer_server(); // a bad key file or directory stops here

    peer_reloader reloader(security_flags, curve_server.has_value()); // before the context

    install_stop_signals();
    zmq::context_t ctx;
    fl::server::handler h;
    if (echo)
        h = [](message&& body) { return fl::answer::reply(std::move(body)); };
    else
        h = [exec](message&& body) { return run_command(exec, std::move(body)); };
    std::unique_ptr<fl::server> server;
    try {
        server = std::make_unique<fl::server>(
            ctx, endpoints, std::move(h), fl::server_options{.curve_server = std::move(curve_server)});
    } catch (const zmq::error_t& e) {
        std::string all;
        for (const auto& ep : endpoints) all += (all.empty() ? "" : ", ") + ep;
        throw std::runtime_error("cannot bind " + all + ": " + e.what());
    }
    const auto reloading = reloader.apply_to(*server);
    std::string bound;
    for (const auto& ep : server->endpoints()) {
        std::printf("%s\n", ep.c_str());
        bound += (bound.empty() ? "" : ", ") + ep;
    }
    std::fflush(stdout);
    log(log_level::info, "serve: serving freelance requests (ZMFL01) on %s%s: %s", bound.c_str(),
        reloader.on() ? " with CURVE" : "", echo ? "echo" : ("exec '" + exec + "'").c_str());
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
        "serve: stopped after %llu requests (%llu malformed messages dropped, %llu connections "
        "refused, %llu messages from removed keys dropped)",
        static_cast<unsigned long long>(st.requests),
        static_cast<unsigned long long>(st.malformed),
        static_cast<unsigned long long>(st.connections_refused),
        static_cast<unsigned long long>(st.forbidden));
    return ok;
}

} // namespace zmesh::cli
