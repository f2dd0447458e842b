// SPDX-License-Identifier: MPL-2.0
// directory_command.cpp — `zmesh directory list | lookup NAME | register NAME ENDPOINT |
// unregister NAME ENDPOINT`: the broker's directory (zmesh.directory, docs/pubsub.md) from the
// shell, through the library's directory_client. `register --keep` holds the registration,
// refreshed before its TTL, until Ctrl-C; without it one registration is made and lives its TTL.
#include "broker_query.hpp"
#include "command.hpp"
#include "stop_signal.hpp"

#include <zmesh/endpoint.hpp>
#include <zmesh/pubsub/directory.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>

namespace zmesh::cli {

int run_directory(const std::vector<std::string>& args) {
    namespace po = boost::program_options;
    broker_query_flags flags;
    po::options_description options("options");
    add_broker_query_options(options, flags);
    bool json = false, keep = false;
    long ttl_ms = 30000;
    std::string action;
    std::vector<std::string> operands;
    options.add_options()
        ("json", po::bool_switch(&json),
         "list, lookup: print one JSON document (list: array of {name, endpoint}; lookup: array "
         "of endpoints)")
        ("ttl-ms", po::value(&ttl_ms)->default_value(ttl_ms),
         "register: how long the registration lives unless refreshed")
        ("keep", po::bool_switch(&keep),
         "register: stay, refresh the registration before its TTL, and withdraw it on Ctrl-C");
    po::options_description hidden;
    hidden.add_options()("action", po::value(&action))("operands", po::value(&operands));
    po::options_description all;
    all.add(options).add(hidden);
    po::positional_options_description positional;
    positional.add("action", 1).add("operands", -1);
    po::variables_map vm;
    // parse() prints the help of what it is given: the visible options only.
    if (std::find(args.begin(), args.end(), "--help") != args.end() ||
        std::find(args.begin(), args.end(), "-h") != args.end()) {
        po::variables_map help_vm;
        parse("directory",
              "(list | lookup NAME | register NAME ENDPOINT [--ttl-ms N] [--keep] | unregister "
              "NAME ENDPOINT) [--broker EP[,EP...]] [--json]",
              options, {"--help"}, help_vm);
        return ok;
    }
    parse("directory", "", all, args, vm, &positional);

    const auto want = [&](std::size_t n, const char* usage) {
        if (operands.size() != n) throw usage_error(std::string("usage: zmesh directory ") + usage);
    };
    if (action.empty())
        throw usage_error("give an action: list, lookup NAME, register NAME ENDPOINT or "
                          "unregister NAME ENDPOINT");
    if (ttl_ms <= 0) throw usage_error("--ttl-ms must be positive");
    if (keep && action != "register") throw usage_error("--keep goes with register");
    if (json && action != "list" && action != "lookup")
        throw usage_error("--json goes with list and lookup");
    std::error_code ec;
    std::string why;
    // A list (a Binary Star pair): each request goes to the broker that answers, the active one.
    const auto brokers = query_brokers(flags);
    const auto timeout = std::chrono::milliseconds(flags.timeout_ms);

    zmq::context_t ctx;
    if (action == "list") {
        want(0, "list");
        pubsub::directory_client dir(ctx, brokers, timeout, flags.security.load());
        const auto entries = dir.list();
        if (json) {
            auto doc = nlohmann::ordered_json::array();
            for (const auto& [name, endpoint] : entries)
                doc.push_back({{"name", name}, {"endpoint", endpoint}});
            std::printf("%s\n", doc.dump(-1, ' ', false,
                                         nlohmann::ordered_json::error_handler_t::replace)
                                    .c_str());
        } else {
            for (const auto& [name, endpoint] : entries)
                std::printf("%-32s %s\n", printable(name).c_str(), printable(endpoint).c_str());
        }
        return ok;
    }
    if (action == "lookup") {
        want(1, "lookup NAME");
        pubsub::directory_client dir(ctx, brokers, timeout, flags.security.load());
        const auto endpoints = dir.resolve(operands[0]);
        if (json) {
            std::printf("%s\n", nlohmann::ordered_json(endpoints)
                                    .dump(-1, ' ', false,
                                          nlohmann::ordered_json::error_handler_t::replace)
                                    .c_str());
            return ok;
        }
        if (endpoints.empty()) {
            std::fprintf(stderr, "zmesh: directory: no endpoint registered under '%s' at %s\n",
                         printable(operands[0]).c_str(), flags.broker.c_str());
            return failure;
        }
        for (const auto& e : endpoints) std::printf("%s\n", printable(e).c_str());
        return ok;
    }
    if (action == "register" || action == "unregister") {
        want(2, action == "register" ? "register NAME ENDPOINT [--ttl-ms N] [--keep]"
                                     : "unregister NAME ENDPOINT");
        if (!parse_endpoint(operands[1], ec, &why))
            throw usage_error("invalid ENDPOINT '" + operands[1] + "': " + why);
        if (action == "unregister") {
            pubsub::directory_client dir(ctx, brokers, timeout, flags.security.load());
            dir.unregister_endpoint(operands[0], operands[1]);
            return ok;
        }
        if (!keep) {
            pubsub::directory_client dir(ctx, brokers, timeout, flags.security.load());
            dir.register_endpoint(operands[0], operands[1], std::chrono::milliseconds(ttl_ms));
            return ok;
        }
        install_stop_signals();
        pubsub::directory_registration reg(ctx, brokers, operands[0], operands[1],
                                           std::chrono::milliseconds(ttl_ms), timeout,
                                           flags.security.load());
        std::fprintf(stderr,
                     "zmesh: directory: '%s' -> %s registered at %s, refreshed every %ld ms "
                     "until Ctrl-C\n",
                     printable(operands[0]).c_str(), operands[1].c_str(), flags.broker.c_str(),
                     ttl_ms / 3);
        while (!stop_requested()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
        reg.stop();
        return ok;
    }
    throw usage_error("unknown action '" + printable(action) +
                      "': give list, lookup, register or unregister");
}

} // namespace zmesh::cli
