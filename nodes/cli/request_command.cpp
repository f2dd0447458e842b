// SPDX-License-Identifier: MPL-2.0
// request_command.cpp — `zmesh request`: one synchronous MDP request, reply on stdout.
#include "command.hpp"

#include <zmesh/endpoint.hpp>
#include <zmesh/error.hpp>
#include <zmesh/mdp/client.hpp>

#include <cstdio>
#include <iostream>
#include <iterator>

namespace zmesh::cli {

int run_request(const std::vector<std::string>& args) {
    namespace po = boost::program_options;
    std::string broker, service, body;
    int timeout_ms = 2500, retries = 3;
    po::options_description options("options");
    options.add_options()
        ("broker", po::value(&broker)->required(), "broker endpoint, e.g. tcp://127.0.0.1:5555")
        ("service", po::value(&service)->required(), "service to call")
        ("timeout-ms", po::value(&timeout_ms)->default_value(timeout_ms), "wait per attempt, in ms")
        ("retries", po::value(&retries)->default_value(retries),
         "attempts in all, the first included; each retry uses a fresh connection")
        ("body", po::value(&body), "request body, or - to read it from stdin");
    po::positional_options_description positional;
    positional.add("body", 1);
    po::variables_map vm;
    if (!parse("request", "--broker EP --service NAME [options] [BODY | -]", options, args, vm,
               &positional))
        return ok;
    if (timeout_ms <= 0) throw usage_error("--timeout-ms must be positive");
    if (retries < 1) throw usage_error("--retries must be at least 1");
    std::error_code ec;
    std::string why;
    if (!parse_endpoint(broker, ec, &why)) throw usage_error("invalid --broker '" + broker + "': " + why);
    if (body == "-") body.assign(std::istreambuf_iterator<char>(std::cin), {});

    zmq::context_t ctx;
    mdp::client client(ctx, broker, {.timeout = std::chrono::milliseconds(timeout_ms), .retries = retries});
    message request;
    request.push_back(body);
    message reply = client.request(service, std::move(request));
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

} // namespace zmesh::cli
