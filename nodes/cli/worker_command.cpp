// SPDX-License-Identifier: MPL-2.0
// worker_command.cpp — `zmesh worker`: serves one MDP service with the library's mdp::worker,
// echoing each request or running a shell command per request (body on stdin, reply = stdout).
//
// It speaks ZMWC02 (docs/protocol.md) unless --plain, falling back to MDP/0.1 behind a broker
// that does not answer it. Under ZMWC02 each request comes with a header: its type, priority and
// time left are logged (debug) and given to the command as ZMESH_TYPE, ZMESH_PRIORITY,
// ZMESH_MESSAGE_ID and ZMESH_DEADLINE_MS. At the request's deadline the client has given up and
// the broker discards any reply, so --exec kills the command then (SIGTERM to its process group,
// SIGKILL 200 ms later) and answers a 504 error. --stream sends each line of the command's
// stdout as a PARTIAL as soon as it is read.
//
// A service name the worker may not register is a usage error (exit 2) found before connecting;
// a broker that refuses the registration ends the command with mdp::worker's error (exit 1),
// which names the broker, the service and the likely reasons. Waiting for a broker is a
// worker's job, so one that does not answer is no error: the worker says which endpoint it waits
// for, warns every --connect-timeout-ms that nothing answered, and says "serving" only once the
// broker has answered its READY (mdp::worker::broker_answered()).
#include "broker_list.hpp"
#include "command.hpp"
#include "config.hpp"
#include "security_flags.hpp"
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

using std::chrono::milliseconds;

std::string first_line(const std::string& text) {
    auto end = text.find('\n');
    return text.substr(0, end == std::string::npos ? text.size() : end);
}

/// What serving a request needs beside the worker.
struct exec_settings {
    std::string service;
    std::string command;
    bool stream = false;
    milliseconds tick_interval;
};

std::string time_left_text(const mdp::held_request& r) {
    const auto left = r.time_left();
    return left ? std::to_string(left->count()) + "ms" : std::string("none");
}

void log_request(const std::string& service, const mdp::held_request& r) {
    if (!r.header) {
        log(log_level::debug, "worker: '%s': request (no header: plain MDP/0.1)", service.c_str());
        return;
    }
    // The type is the client's bytes: escaped, so that it cannot forge log lines.
    log(log_level::debug, "worker: '%s': request type=%s priority=%u time left=%s",
        service.c_str(), mdp::printable_service_name(r.header->type).c_str(),
        static_cast<unsigned>(r.header->priority), time_left_text(r).c_str());
}

/// The request's header and deadline for the command. Variables that do not apply are removed,
/// so that none leaks in from the worker's own environment.
std::vector<std::pair<std::string, std::optional<std::string>>>
request_environment(const mdp::held_request& r) {
    const auto& h = r.header;
    const auto left = r.time_left();
    return {
        {"ZMESH_TYPE", h ? std::optional<std::string>(h->type) : std::nullopt},
        {"ZMESH_PRIORITY",
         std::to_string(static_cast<unsigned>(h ? h->priority : default_priority))},
        {"ZMESH_MESSAGE_ID", h ? std::optional<std::string>(h->id.to_hex()) : std::nullopt},
        {"ZMESH_DEADLINE_MS",
         left ? std::optional<std::string>(std::to_string(left->count())) : std::nullopt},
    };
}

/// Runs the command for @p r and answers it (or, if the worker is stopping, abandons it so that
/// the broker can give it to another worker).
void serve_exec(mdp::worker& worker, mdp::held_request& r, const exec_settings& settings) {
    const auto started = std::chrono::steady_clock::now();
    if (r.deadline && *r.deadline <= started) {
        // Waited at this worker (credit > 1) past its deadline: nobody wants the result.
        log(log_level::warn, "worker: '%s': request past its deadline before the command started",
            settings.service.c_str());
        worker.fail(std::move(r.token), "504", "deadline passed before the command started");
        return;
    }
    subprocess_options so;
    so.command = settings.command;
    for (const auto& f : r.body) so.input.append(view(f));
    so.environment = request_environment(r);
    so.tick = [&] { worker.keepalive(); };
    so.tick_interval = settings.tick_interval;
    so.deadline = r.deadline;
    so.cancelled = [] { return stop_requested(); };
    if (settings.stream)
        so.on_line = [&](std::string&& line) { worker.partial(r.token, message{line}); };
    auto result = run_subprocess(so);

    if (result.cancelled) {
        log(log_level::info, "worker: '%s': stopping: killed the command of a request left "
                             "unanswered",
            settings.service.c_str());
        return; // the token's destruction abandons the request
    }
    if (result.timed_out) {
        const auto ran = std::chrono::duration_cast<milliseconds>(
            std::chrono::steady_clock::now() - started);
        log(log_level::warn, "worker: '%s': killed the command at the request's deadline, "
                             "after %lld ms",
            settings.service.c_str(), static_cast<long long>(ran.count()));
        worker.fail(std::move(r.token), "504",
                    "command killed at the request's deadline after " +
                        std::to_string(ran.count()) + " ms");
        return;
    }
    if (result.exit_status != 0) {
        // A failing command is an error reply, not a dead worker: the request was handled.
        worker.fail(std::move(r.token), "500",
                    "command exited with status " + std::to_string(result.exit_status) +
                        (result.err.empty() ? "" : ": " + first_line(result.err)));
        return;
    }
    // Streamed, the FINAL carries only what followed the last line, and no frame at all if
    // nothing did: the client's frames are then exactly the lines.
    message reply;
    if (!settings.stream || !result.out.empty()) reply.push_back(result.out);
    worker.reply(std::move(r.token), std::move(reply));
}

} // namespace

int run_worker(const std::vector<std::string>& args) {
    namespace po = boost::program_options;
    std::string broker = default_broker_endpoint(), service, exec, log_level = "info";
    std::vector<std::string> broker_flags{broker}; // --broker EP[,EP...], repeatable
    long replay_window_ms = -1;                     // default: 10000 with several brokers, else 0
    int heartbeat_ms = 2500, liveness = 3, connect_timeout_ms = 5000;
    std::uint32_t credit = 1;
    po::options_description options("options");
    options.add_options()
        ("broker", po::value(&broker_flags)->composing()->default_value(broker_flags, broker),
         "broker endpoint (env ZMESH_BROKER); EP,EP,... or repeated: move to the next one when "
         "the broker falls silent or sends DISCONNECT (a Binary Star pair)")
        ("service", po::value(&service)->required(), "service name to serve")
        ("replay-window-ms", po::value(&replay_window_ms),
         "keep each reply this long and send the kept ones to a new broker after a failover, so "
         "that a Binary Star pair runs a request once across the death of its active broker "
         "(default 10000 with more than one --broker and ZMWC02, else 0 = off)")
        ("echo", "reply with the request body")
        ("exec", po::value(&exec),
         "run CMD per request: body on stdin, reply = stdout; the request's header is in "
         "ZMESH_TYPE, ZMESH_PRIORITY, ZMESH_MESSAGE_ID and ZMESH_DEADLINE_MS (ms left, unset "
         "without a deadline); at the deadline CMD's process group gets SIGTERM, then SIGKILL "
         "200 ms later, and the reply is a 504 error")
        ("stream", "with --exec: send each line of stdout as a PARTIAL as soon as it is read "
                   "(behind a plain MDP/0.1 broker, all of it in the one reply)")
        ("heartbeat-ms", po::value(&heartbeat_ms)->default_value(heartbeat_ms),
         "heartbeat interval; must match the broker's")
        ("connect-timeout-ms", po::value(&connect_timeout_ms)->default_value(connect_timeout_ms),
         "warn every N ms while no broker answers at --broker (env ZMESH_CONNECT_TIMEOUT_MS)")
        ("liveness", po::value(&liveness)->default_value(liveness),
         "missed heartbeats before the broker is taken for dead")
        ("credit", po::value(&credit)->default_value(credit),
         "requests the broker may queue at this worker; the next request waits here")
        ("plain", "speak plain MDP/0.1 (any broker; credit 1, no headers, no streaming) instead "
                  "of zmesh ZMWC02, whose READY a plain broker leaves unanswered for one "
                  "heartbeat before the worker falls back")
        ("log-level", po::value(&log_level)->default_value(log_level), "error, warn, info or debug");
    client_security_flags security_flags;
    security_flags.add_to(options);
    po::variables_map vm;
    if (!parse("worker", "[--broker EP] --service NAME (--echo | --exec 'CMD' [--stream])", options,
               args, vm))
        return ok;
    const bool echo = vm.count("echo") > 0;
    const bool stream = vm.count("stream") > 0;
    const bool plain = vm.count("plain") > 0;
    if (echo == (vm.count("exec") > 0)) throw usage_error("give exactly one of --echo or --exec");
    if (stream && echo) throw usage_error("--stream needs --exec");
    if (auto problem = mdp::worker_service_name_problem(service); !problem.empty())
        throw usage_error("invalid --service '" + mdp::printable_service_name(service) +
                          "': the name " + std::string(problem));
    if (heartbeat_ms <= 0) throw usage_error("--heartbeat-ms must be positive");
    if (liveness < 1) throw usage_error("--liveness must be at least 1");
    if (connect_timeout_ms <= 0) throw usage_error("--connect-timeout-ms must be positive");
    if (credit < 1 || credit > mdp::max_worker_credit)
        throw usage_error("--credit must be in 1.." + std::to_string(mdp::max_worker_credit));
    if (plain && credit > 1) throw usage_error("--plain has no credit: give --credit 1 or leave it out");
    auto level = parse_log_level(log_level);
    if (!level) throw usage_error("invalid --log-level '" + log_level + "'");
    const auto brokers = broker_list(broker_flags);
    broker = brokers.front();
    if (replay_window_ms < -1 || (vm.count("replay-window-ms") && replay_window_ms < 0))
        throw usage_error("--replay-window-ms must not be negative");
    if (replay_window_ms < 0) replay_window_ms = brokers.size() > 1 && !plain ? 10000 : 0;
    if (replay_window_ms > 0 && plain)
        throw usage_error("--replay-window-ms needs the zmesh protocol, not --plain");
    set_log_level(*level);

    auto curve = security_flags.load(); // before anything connects: a bad key file stops here

    install_stop_signals();
    zmq::context_t ctx;
    mdp::worker_options wo;
    wo.curve = std::move(curve);
    wo.heartbeat = milliseconds(heartbeat_ms);
    wo.liveness = liveness;
    wo.credit = credit;
    wo.protocol = plain ? mdp::worker_protocol::mdp : mdp::worker_protocol::zmesh;
    wo.replay_window = milliseconds(replay_window_ms);
    mdp::worker worker(ctx, brokers, service, wo);
    log(log_level::info, "worker: '%s': waiting for the broker at %s (%s)", service.c_str(),
        broker.c_str(), plain ? "MDP/0.1" : "ZMWC02, or MDP/0.1 if the broker does not answer it");
    const exec_settings settings{service, exec, stream, milliseconds(heartbeat_ms / 2 + 1)};
    std::uint64_t served = 0;
    // Whether the broker answers: "serving" once it does, a warning every connect_timeout while
    // it does not (at start, or after it fell silent and the worker started over).
    const milliseconds connect_timeout(connect_timeout_ms);
    bool answered = false;
    auto waiting_since = std::chrono::steady_clock::now();
    auto next_warning = waiting_since + connect_timeout;
    while (!stop_requested()) {
        const auto now = std::chrono::steady_clock::now();
        if (worker.broker_answered() != answered) {
            answered = !answered;
            if (answered) {
                broker = worker.endpoint();
                log(log_level::info, "worker: serving '%s' via %s (%s)", service.c_str(),
                    broker.c_str(),
                    worker.protocol() == mdp::worker_protocol::zmesh ? "ZMWC02" : "MDP/0.1");
            } else {
                log(log_level::warn, "worker: '%s': the broker at %s fell silent; waiting for it",
                    service.c_str(), broker.c_str());
                waiting_since = now;
                next_warning = now + connect_timeout;
            }
        } else if (!answered && now >= next_warning) {
            const auto waited =
                std::chrono::duration_cast<milliseconds>(now - waiting_since).count();
            log(log_level::warn,
                "worker: '%s': no answer from the broker at %s after %lld ms (is a broker "
                "running there? still trying)",
                service.c_str(), broker.c_str(), static_cast<long long>(waited));
            next_warning = now + connect_timeout;
        }
        std::optional<mdp::held_request> request;
        try {
            request = worker.take(milliseconds(200));
        } catch (const zmq::error_t& e) {
            if (e.num() == EINTR) continue; // a stop signal interrupted the wait
            throw;
        }
        if (!request) {
            if (!worker.is_open()) break;
            continue;
        }
        log_request(service, *request);
        if (echo)
            worker.reply(std::move(request->token), std::move(request->body));
        else
            serve_exec(worker, *request, settings);
        ++served;
    }
    worker.close();
    log(log_level::info, "worker: stopped after %llu requests", static_cast<unsigned long long>(served));
    return ok;
}

} // namespace zmesh::cli
