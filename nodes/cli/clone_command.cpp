// SPDX-License-Identifier: MPL-2.0
// clone_command.cpp — `zmesh clone get|set|del|watch`: a Clone client (patterns/clone,
// docs/patterns/clone.md) of a `zmesh clone-server`.
//
//   get KEY          the value (snapshot of that key); exit 1 if the key is not set
//   set KEY VALUE    through the server; returns once the server has applied it
//   del KEY          removes it, likewise
//   watch [PREFIX]   the state under PREFIX, then each change, one line each: KEY=VALUE, or
//                    KEY (removed); until Ctrl-C. Keys and values are printed with any
//                    unprintable byte as \xNN.
#include "broker_list.hpp"
#include "command.hpp"
#include "security_flags.hpp"
#include "stop_signal.hpp"

#include <zmesh/endpoint.hpp>
#include <zmesh/log.hpp>
#include <zmesh/patterns/clone.hpp>

#include <cerrno>
#include <cstdio>

namespace zmesh::cli {

namespace {

void print_change(const patterns::clone::change& c) {
    if (c.value)
        std::printf("%s=%s\n", printable(c.key).c_str(), printable(*c.value).c_str());
    else
        std::printf("%s (removed)\n", printable(c.key).c_str());
    std::fflush(stdout);
}

} // namespace

int run_clone(const std::vector<std::string>& args) {
    namespace po = boost::program_options;
    std::vector<std::string> server_flags, updates_flags;
    std::string action;
    std::vector<std::string> words;
    int timeout_ms = 2000;
    po::options_description options("options");
    options.add_options()
        ("server", po::value(&server_flags)->required(),
         "the clone-server's snapshot/change endpoint; for a Binary Star pair both, "
         "comma-separated (EP,EP), in the order to try them")
        ("updates", po::value(&updates_flags),
         "its update endpoint (default: the --server port + 1, or PATH.updates for ipc); for a "
         "pair, one per --server endpoint, comma-separated")
        ("timeout-ms", po::value(&timeout_ms)->default_value(timeout_ms),
         "wait for a snapshot or for a change to be applied, in ms")
        ("action", po::value(&action), "get, set, del or watch")
        ("args", po::value(&words)->multitoken(), "KEY [VALUE] or [PREFIX]");
    client_security_flags security_flags;
    security_flags.add_to(options);
    po::positional_options_description positional;
    positional.add("action", 1).add("args", -1);
    po::variables_map vm;
    if (!parse("clone",
               "--server EP[,EP] [--updates EP[,EP]] "
               "(get KEY | set KEY VALUE | del KEY | watch [PREFIX])",
               options, args, vm, &positional))
        return ok;
    const std::size_t want = action == "set" ? 2 : action == "watch" ? words.size() : 1;
    if (action != "get" && action != "set" && action != "del" && action != "watch")
        throw usage_error(action.empty() ? "give get, set, del or watch"
                                         : "unknown action '" + printable(action) + "'");
    if (words.size() != want || (action == "watch" && words.size() > 1))
        throw usage_error("usage: clone get KEY | set KEY VALUE | del KEY | watch [PREFIX]");
    if (action != "watch" && words[0].empty()) throw usage_error("the key must not be empty");
    const auto servers = comma_list(server_flags);
    const auto updates = comma_list(updates_flags);
    if (!updates.empty() && updates.size() != servers.size())
        throw usage_error("give one --updates endpoint per --server endpoint (" +
                          std::to_string(servers.size()) + ")");
    std::vector<patterns::clone::server_address> addresses;
    for (std::size_t i = 0; i < servers.size(); ++i) {
        patterns::clone::server_address a{servers[i], updates.empty() ? "" : updates[i]};
        for (const auto* ep : {&a.server, &a.updates}) {
            if (ep->empty() && ep == &a.updates) continue;
            std::error_code ec;
            std::string why;
            if (!parse_endpoint(*ep, ec, &why))
                throw usage_error("invalid endpoint '" + *ep + "': " + why);
        }
        if (a.updates.empty() && !patterns::clone::default_updates_endpoint(a.server))
            throw usage_error("give --updates for --server " + a.server);
        addresses.push_back(std::move(a));
    }
    if (timeout_ms <= 0) throw usage_error("--timeout-ms must be positive");

    auto curve = security_flags.load(); // before anything connects: a bad key file stops here

    zmq::context_t ctx;
    patterns::clone::client_options o{.servers = std::move(addresses),
                                      .prefix = action == "watch" && !words.empty() ? words[0]
                                                : action == "get" ? words[0]
                                                                  : std::string(),
                                      .timeout = std::chrono::milliseconds(timeout_ms),
                                      .curve = std::move(curve)};
    patterns::clone::client client(ctx, std::move(o));
    if (action == "set") {
        (void)client.set(words[0], words[1]);
        return ok;
    }
    if (action == "del") {
        (void)client.erase(words[0]);
        return ok;
    }
    if (action == "get") {
        client.sync();
        auto value = client.get(words[0]);
        if (!value) {
            std::fprintf(stderr, "zmesh: clone: key '%s' is not set at %s\n",
                         printable(words[0]).c_str(), client.current_server().c_str());
            return failure;
        }
        std::fwrite(value->data(), 1, value->size(), stdout);
        std::fputc('\n', stdout);
        return ok;
    }
    install_stop_signals();
    client.on_change(print_change);
    log(log_level::info, "clone: watching '%s' at %s: the state, then each change (Ctrl-C ends)",
        printable(words.empty() ? std::string() : words[0]).c_str(),
        client.current_server().c_str());
    while (!stop_requested()) {
        try {
            client.poll(std::chrono::milliseconds(200));
        } catch (const zmq::error_t& e) {
            if (e.num() == EINTR) continue; // a stop signal interrupted the wait
            throw;
        }
    }
    return ok;
}

} // namespace zmesh::cli
