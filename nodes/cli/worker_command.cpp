// SPDX-License-Identifier: MPL-2.0
// worker_command.cpp — `zmesh worker`: serves one MDP service with the library's mdp::worker,
// echoing each request or running a shell command per request (body on stdin, reply = stdout).
//
// A service name the worker may not register is a usage error (exit 2) found before connecting;
// a broker that refuses the registration ends the command with mdp::worker's error (exit 1),
// which names the broker, the service and the likely reasons.
#include "command.hpp"
#include "stop_signal.hpp"
#include "subprocess.hpp"

#include <zmesh/endpoint.hpp>
#include <zmesh/log.hpp>
#include <zmesh/mdp/protocol.hpp>
#include <zmesh/mdp/worker.hpp>

#include <cerrno>
#include <cstdio>

namespace zmesh::cli {
namespace {

std::string first_line(const std::string& text) {
    auto end = text.find('\n');
    return text.substr(0, end == std::string::npos ? text.size() : end);
}

} // namespace

int run_worker(const std::vector<std::string>& args) {
    namespace po = boost::program_options;
    std::string broker, service, exec, log_level = "info";
    int heartbeat_ms = 2500, liveness = 3;
    std::uint32_t credit = 1;
    po::options_description options("options");
    options.add_options()
        ("broker", po::value(&broker)->required(), "broker endpoint, e.g. tcp://127.0.0.1:5555")
        ("service", po::value(&service)->required(), "service name to serve")
        ("echo", "reply with the request body")
        ("exec", po::value(&exec), "run CMD per request: body on stdin, reply = stdout")
        ("heartbeat-ms", po::value(&heartbeat_ms)->default_value(heartbeat_ms),
         "heartbeat interval; must match the broker's")
        ("liveness", po::value(&liveness)->default_value(liveness),
         "missed heartbeats before the broker is taken for dead")
        ("credit", po::value(&credit)->default_value(credit),
         "requests the broker may queue at this worker: 1 = plain MDP/0.1 (any broker); more "
         "= zmesh worker with credit, the next request waits here (a broker without the "
         "extension makes it fall back to 1, with a warning)")
        ("log-level", po::value(&log_level)->default_value(log_level), "error, warn, info or debug");
    po::variables_map vm;
    if (!parse("worker", "--broker EP --service NAME (--echo | --exec 'CMD')", options, args, vm))
        return ok;
    const bool echo = vm.count("echo") > 0;
    if (echo == (vm.count("exec") > 0)) throw usage_error("give exactly one of --echo or --exec");
    if (auto problem = mdp::worker_service_name_problem(service); !problem.empty())
        throw usage_error("invalid --service '" + mdp::printable_service_name(service) +
                          "': the name " + std::string(problem));
    if (heartbeat_ms <= 0) throw usage_error("--heartbeat-ms must be positive");
    if (liveness < 1) throw usage_error("--liveness must be at least 1");
    if (credit < 1 || credit > mdp::max_worker_credit)
        throw usage_error("--credit must be in 1.." + std::to_string(mdp::max_worker_credit));
    auto level = parse_log_level(log_level);
    if (!level) throw usage_error("invalid --log-level '" + log_level + "'");
    std::error_code ec;
    std::string why;
    if (!parse_endpoint(broker, ec, &why)) throw usage_error("invalid --broker '" + broker + "': " + why);
    set_log_level(*level);

    install_stop_signals();
    zmq::context_t ctx;
    mdp::worker_options wo;
    wo.heartbeat = std::chrono::milliseconds(heartbeat_ms);
    wo.liveness = liveness;
    wo.credit = credit;
    mdp::worker worker(ctx, broker, service, wo);
    log(log_level::info, "worker: serving '%s' via %s", service.c_str(), broker.c_str());
    std::uint64_t served = 0;
    while (!stop_requested()) {
        std::optional<message> request;
        try {
            request = worker.recv(std::chrono::milliseconds(200));
        } catch (const zmq::error_t& e) {
            if (e.num() == EINTR) continue; // a stop signal interrupted the wait
            throw;
        }
        if (!request) {
            if (!worker.is_open()) break;
            continue;
        }
        if (echo) {
            worker.reply(std::move(*request));
        } else {
            std::string input;
            for (const auto& f : *request) input.append(view(f));
            auto result = run_subprocess(exec, input, [&] { worker.keepalive(); },
                                         std::chrono::milliseconds(heartbeat_ms / 2 + 1));
            message reply;
            if (result.exit_status == 0) {
                reply.push_back(result.out);
            } else {
                // A failing command is an error reply, not a dead worker: the request was handled.
                reply.push_back(std::string_view("zmesh.error"));
                reply.push_back(std::string_view("500"));
                reply.push_back("command exited with status " + std::to_string(result.exit_status) +
                                (result.err.empty() ? "" : ": " + first_line(result.err)));
            }
            worker.reply(std::move(reply));
        }
        ++served;
    }
    worker.close();
    log(log_level::info, "worker: stopped after %llu requests", static_cast<unsigned long long>(served));
    return ok;
}

} // namespace zmesh::cli
