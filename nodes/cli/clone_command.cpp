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
    std::string server, updates, action;
    std::vector<std::string> words;
    int timeout_ms = 2000;
    po::options_description options("options");
    options.add_options()
        ("server", po::value(&server)->required(), "the clone-server's snapshot/change endpoint")
        ("updates", po::value(&updates),
         "its update endpoint (default: the --server port + 1, or PATH.updates for ipc)")
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
               "--server EP [--updates EP] (get KEY | set KEY VALUE | del KEY | watch [PREFIX])",
               options, args, vm, &positional))
        return ok;
    const std::size_t want = action == "set" ? 2 : action == "watch" ? words.size() : 1;
    if (action != "get" && action != "set" && action != "del" && action != "watch")
        throw usage_error(action.empty() ? "give get, set, del or watch"
                                         : "unknown action '" + printable(action) + "'");
    if (words.size() != want || (action == "watch" && words.size() > 1))
        throw usage_error("usage: clone get KEY | set KEY VALUE | del KEY | watch [PREFIX]");
    if (action != "watch" && words[0].empty()) throw usage_error("the key must not be empty");
    for (const auto* ep : {&server, &updates}) {
        if (ep->empty()) continue;
        std::error_code ec;
        std::string why;
        if (!parse_endpoint(*ep, ec, &why))
            throw usage_error("invalid endpoint '" + *ep + "': " + why);
    }
    if (updates.empty() && !patterns::clone::default_updates_endpoint(server))
        throw usage_error("give --updates for --server " + server);
    if (timeout_ms <= 0) throw usage_error("--timeout-ms must be positive");

    auto curve = security_flags.load(); // before anything connects: a bad key file stops here

    zmq::context_t ctx;
    patterns::clone::client_options o{.server = server,
                                      .updates = updates,
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
                         printable(words[0]).c_str(), server.c_str());
            return failure;
        }
        std::fwrite(value->data(), 1, value->size(), stdout);
        std::fputc('\n', stdout);
        return ok;
    }
    install_stop_signals();
    client.on_change(print_change);
    log(log_level::info, "clone: watching '%s' at %s: the state, then each change (Ctrl-C ends)",
        printable(words.empty() ? std::string() : words[0]).c_str(), server.c_str());
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
