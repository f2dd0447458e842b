// SPDX-License-Identifier: MPL-2.0
// request_command.cpp — `zmesh request`: one synchronous MDP request, reply on stdout.
//
// With --durable the request goes through a Titanic server (rfc 9/TSP) instead: it is stored
// first (its id is printed on stderr), the reply is awaited by polling, then the server is told
// to forget it.
#include "command.hpp"

#include <zmesh/endpoint.hpp>
#include <zmesh/error.hpp>
#include <zmesh/mdp/client.hpp>
#include <zmesh/mdp/durable_client.hpp>
#include <zmesh/mdp/protocol.hpp>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <iterator>

namespace zmesh::cli {

namespace {

/// Prints @p reply one frame per line; a zmesh.error reply goes to stderr instead.
int print_reply(const std::string& service, const message& reply) {
    if (reply.size() >= 2 && view(reply[0]) == "zmesh.error") {
        std::fprintf(stderr, "zmesh: request: service '%s' failed: %s %s\n", service.c_str(),
                     to_string(reply[1]).c_str(), reply.size() > 2 ? to_string(reply[2]).c_str() : "");
        return failure;
    }
    for (const auto& frame : reply) {
        auto text = view(frame);
        std::fwrite(text.data(), 1, text.size(), stdout);
        if (text.empty() || text.back() != '\n') std::fputc('\n', stdout);
    }
    return ok;
}

/// 7/MDP reference wait per attempt: one durable call (submit, poll, close) waits no longer.
constexpr std::chrono::milliseconds durable_call_timeout{2500};
/// Default of --timeout-ms with --durable: the whole wait for the reply.
constexpr int durable_default_timeout_ms = 30000;

int run_durable(zmq::context_t& ctx, const std::string& broker, const std::string& service,
                message&& request, std::chrono::milliseconds timeout, int retries,
                std::chrono::milliseconds ttl) {
    mdp::durable_client client(
        ctx, broker,
        {.mdp = {.timeout = std::min(timeout, durable_call_timeout), .retries = retries}});
    const std::string id = ttl.count() > 0 ? client.submit(service, std::move(request), ttl)
                                           : client.submit(service, std::move(request));
    std::fprintf(stderr, "durable request %s stored\n", id.c_str());
    message reply = client.wait(id, timeout);
    const int code = print_reply(service, reply);
    std::fflush(stdout);
    try {
        client.close(id);
    } catch (const error& e) {
        // The reply is delivered; a server that keeps it a while longer harms nobody.
        std::fprintf(stderr, "zmesh: request: warning: could not close %s: %s\n", id.c_str(),
                     e.what());
    }
    return code;
}

} // namespace

int run_request(const std::vector<std::string>& args) {
    namespace po = boost::program_options;
    std::string broker, service, body;
    int timeout_ms = 2500, retries = 3;
    bool durable = false;
    long ttl_ms = 0;
    po::options_description options("options");
    options.add_options()
        ("broker", po::value(&broker)->required(), "broker endpoint, e.g. tcp://127.0.0.1:5555")
        ("service", po::value(&service)->required(), "service to call")
        ("timeout-ms", po::value(&timeout_ms)->default_value(timeout_ms),
         "wait per attempt, in ms; with --durable, the whole wait for the reply (default 30000)")
        ("retries", po::value(&retries)->default_value(retries),
         "attempts in all, the first included; each retry uses a fresh connection")
        ("body", po::value(&body), "request body, or - to read it from stdin")
        ("durable", po::bool_switch(&durable),
         "store the request with a Titanic server (titanic.request) first, print its id on "
         "stderr, wait for the reply, then close it")
        ("ttl-ms", po::value(&ttl_ms),
         "with --durable: the server gives up (dead-letters the request) if the service has not "
         "answered within this many ms");
    po::positional_options_description positional;
    positional.add("body", 1);
    po::variables_map vm;
    if (!parse("request", "--broker EP --service NAME [options] [BODY | -]", options, args, vm,
               &positional))
        return ok;
    if (durable && vm["timeout-ms"].defaulted()) timeout_ms = durable_default_timeout_ms;
    // Reserved names are fine here (mmi.service, zmesh.services... are real services); a name
    // no broker can route is refused before anything is sent.
    if (auto problem = mdp::service_name_problem(service); !problem.empty())
        throw usage_error("invalid --service '" + mdp::printable_service_name(service) +
                          "': the name " + std::string(problem));
    if (timeout_ms <= 0) throw usage_error("--timeout-ms must be positive");
    if (retries < 1) throw usage_error("--retries must be at least 1");
    if (vm.count("ttl-ms") && !durable) throw usage_error("--ttl-ms needs --durable");
    if (vm.count("ttl-ms") && (ttl_ms <= 0 || ttl_ms > 4294967295L))
        throw usage_error("--ttl-ms must be in [1, 4294967295]");
    std::error_code ec;
    std::string why;
    if (!parse_endpoint(broker, ec, &why)) throw usage_error("invalid --broker '" + broker + "': " + why);
    if (body == "-") body.assign(std::istreambuf_iterator<char>(std::cin), {});

    zmq::context_t ctx;
    if (durable) {
        message request;
        request.push_back(body);
        return run_durable(ctx, broker, service, std::move(request),
                           std::chrono::milliseconds(timeout_ms), retries,
                           std::chrono::milliseconds(ttl_ms));
    }
    mdp::client client(ctx, broker, {.timeout = std::chrono::milliseconds(timeout_ms), .retries = retries});
    message request;
    request.push_back(body);
    message reply = client.request(service, std::move(request));
    return print_reply(service, reply);
}

} // namespace zmesh::cli
