// SPDX-License-Identifier: MPL-2.0
// titanic_query.cpp — `zmesh titanic status ID` and `zmesh titanic reply ID`: one durable
// request's state, or its reply, asked of a running Titanic node through the broker
// (titanic.reply, rfc 9/TSP), with the library's durable client.
#include "broker_list.hpp"
#include "command.hpp"
#include "config.hpp"
#include "security_flags.hpp"

#include <zmesh/endpoint.hpp>
#include <zmesh/error.hpp>
#include <zmesh/mdp/durable_client.hpp>

#include <nlohmann/json.hpp>

#include <cctype>
#include <chrono>
#include <cstdio>

namespace zmesh::cli {

int run_titanic_query(const std::vector<std::string>& args) {
    namespace po = boost::program_options;
    const std::string action = args.front();
    std::string broker = default_broker_endpoint(), id;
    int timeout_ms = 2500;
    long wait_ms = 0;
    bool close = false, json = false;
    po::options_description options("options");
    options.add_options()
        ("broker", po::value(&broker)->default_value(broker),
         "broker endpoint, or a comma-separated list (a Binary Star pair) (env ZMESH_BROKER)")
        ("timeout-ms", po::value(&timeout_ms)->default_value(timeout_ms),
         "wait for each answer of the Titanic node, in ms")
        ("wait-ms", po::value(&wait_ms)->default_value(wait_ms),
         "reply: wait up to this long for a pending reply (0: ask once)")
        ("close", po::bool_switch(&close), "reply: once printed, tell the node to forget it")
        ("json", po::bool_switch(&json),
         "print one JSON object: status: {\"id\", \"state\"}; reply: {\"id\", \"reply\": [frames]}");
    client_security_flags security;
    security.add_to(options);
    po::options_description hidden;
    hidden.add_options()("id", po::value(&id));
    po::options_description all;
    all.add(options).add(hidden);
    po::positional_options_description positional;
    positional.add("id", 1);
    const std::vector<std::string> rest(args.begin() + 1, args.end());
    po::variables_map vm;
    const std::string name = "titanic " + action;
    for (const auto& a : rest)
        if (a == "--help" || a == "-h") {
            po::variables_map help_vm;
            parse(name, "ID [--broker EP] [--json]" +
                            std::string(action == "reply" ? " [--wait-ms N] [--close]" : ""),
                  options, {"--help"}, help_vm);
            return ok;
        }
    parse(name, "", all, rest, vm, &positional);
    if (id.size() != 32 || id.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos)
        throw usage_error(name + " needs the request's ID, 32 hex digits" +
                          (id.empty() ? std::string() : ", not '" + printable(id) + "'"));
    for (auto& c : id) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (action == "status" && (close || !vm["wait-ms"].defaulted()))
        throw usage_error("--wait-ms and --close go with reply");
    if (timeout_ms <= 0) throw usage_error("--timeout-ms must be positive");
    if (wait_ms < 0) throw usage_error("--wait-ms must not be negative");
    // A list (a Binary Star pair): one attempt at each broker in turn; the active one answers.
    auto brokers = broker_list({broker});
    if (brokers.size() > 64) throw usage_error("--broker: at most 64 endpoints");
    const int attempts = static_cast<int>(brokers.size());

    zmq::context_t ctx;
    mdp::durable_client client(ctx, std::move(brokers),
                               {.mdp = {.timeout = std::chrono::milliseconds(timeout_ms),
                                        .retries = attempts,
                                        .curve = security.load()}});
    std::optional<message> reply;
    try {
        reply = wait_ms > 0 ? std::optional<message>(
                                  client.wait(id, std::chrono::milliseconds(wait_ms)))
                            : client.poll(id);
    } catch (const error& e) {
        // The id is well formed (checked above): invalid_argument is TSP's 400, an id the node
        // never stored or has closed. For reply, the library's message says so and names it.
        if (e.code() != errc::invalid_argument || action != "status") throw;
        if (json)
            std::printf("%s\n",
                        nlohmann::ordered_json{{"id", id}, {"state", "unknown"}}.dump().c_str());
        else
            std::printf("unknown\n");
        return failure;
    }
    if (action == "status") {
        const char* state = reply ? "replied" : "pending";
        if (json)
            std::printf("%s\n",
                        nlohmann::ordered_json{{"id", id}, {"state", state}}.dump().c_str());
        else
            std::printf("%s\n", state);
        return ok;
    }
    if (!reply) {
        std::fprintf(stderr, "zmesh: titanic reply: %s is still pending at %s%s\n", id.c_str(),
                     broker.c_str(), wait_ms > 0 ? "" : " (--wait-ms to wait for it)");
        return failure;
    }
    if (json) {
        nlohmann::ordered_json j{{"id", id}};
        auto& frames = j["reply"] = nlohmann::ordered_json::array();
        for (const auto& f : *reply) frames.push_back(std::string(view(f)));
        std::printf("%s\n",
                    j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace)
                        .c_str());
    } else {
        for (const auto& f : *reply) {
            const auto text = view(f);
            std::fwrite(text.data(), 1, text.size(), stdout);
            if (text.empty() || text.back() != '\n') std::fputc('\n', stdout);
        }
    }
    std::fflush(stdout);
    if (close) client.close(id);
    return ok;
}

} // namespace zmesh::cli
