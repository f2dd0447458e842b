// SPDX-License-Identifier: MPL-2.0
// main.cpp — the zmesh CLI: finds the subcommand and reports errors on one line.
#include "command.hpp"
#include "config.hpp"

#include <zmesh/log.hpp>
#include <zmesh/version.hpp>

#include <zmq.hpp>

#include <cstdio>
#include <exception>
#include <iostream>

namespace zmesh::cli {

const std::vector<command>& commands() {
    static const std::vector<command> all = {
        {"broker", "run a Majordomo (MDP/0.1) broker node", run_broker},
        {"worker", "serve an MDP service (echo, or a command per request)", run_worker},
        {"request", "send one request to a service and print the reply", run_request},
        {"serve", "serve requests without a broker (Freelance, for request --freelance)",
         run_serve},
        {"clone-server", "hold a replicated key-value state (Clone) for zmesh clone",
         run_clone_server},
        {"clone", "get, set or watch the keys of a clone-server", run_clone},
        {"services", "list the services a broker knows", run_services},
        {"stats", "print a broker's counters (requests, malformed, requeued...)", run_stats},
        {"directory", "list, look up, register and withdraw names in a broker's directory",
         run_directory},
        {"pub", "publish messages on a topic (peer to peer or via a broker)", run_pub},
        {"sub", "print the messages published on topic prefixes", run_sub},
        {"titanic", "durable request/reply node (rfc 9/TSP) on SQLite", run_titanic},
        {"dlq", "list, show, replay or purge dead-lettered requests", run_dlq},
        {"keygen", "make a CURVE key pair (certificate files), or show one", run_keygen},
        {"up", "start a topology file's nodes in order and supervise them (docs/up.md)", run_up},
        {"config", "show the effective settings and where each one comes from", run_config},
        {"version", "print the zmesh and libzmq versions", run_version},
#ifdef ZMESH_HAVE_BENCH
        {"bench", "measure throughput and latency (zmesh bench mdp)", run_bench},
#endif
    };
    return all;
}

bool parse(const std::string& name, const std::string& synopsis,
           boost::program_options::options_description& options,
           const std::vector<std::string>& args, boost::program_options::variables_map& vm,
           const boost::program_options::positional_options_description* positional) {
    namespace po = boost::program_options;
    options.add_options()("help,h", "show this help");
    add_config_option(options);
    // Every command that logs (it has --log-level) can log JSON lines instead, for a log
    // pipeline; set here once rather than in each command.
    const bool logs = options.find_nothrow("log-level", false) != nullptr;
    if (logs)
        options.add_options()("log-format", po::value<std::string>()->default_value("text"),
                              "text (for people) or json (one JSON object a line: time, level, "
                              "msg)");
    try {
        po::command_line_parser parser(args);
        parser.options(options);
        if (positional) parser.positional(*positional);
        po::store(parser.run(), vm);
        if (vm.count("help")) {
            std::cout << "usage: zmesh " << name << " " << synopsis << "\n\n" << options;
            return false;
        }
        // Under the flags: the environment, then the configuration file (config.hpp).
        apply_configuration(name, options, vm);
        po::notify(vm);
    } catch (const po::error& e) {
        throw usage_error(e.what());
    }
    if (logs) {
        const auto& text = vm["log-format"].as<std::string>();
        const auto format = parse_log_format(text);
        if (!format) throw usage_error("invalid --log-format '" + text + "': give text or json");
        set_log_format(*format);
    }
    return true;
}

int run_version(const std::vector<std::string>& args) {
    boost::program_options::options_description options("options");
    boost::program_options::variables_map vm;
    if (!parse("version", "", options, args, vm)) return ok;
    int major = 0, minor = 0, patch = 0;
    zmq_version(&major, &minor, &patch);
    std::printf("zmesh %s (libzmq %d.%d.%d)\n", version_string, major, minor, patch);
    return ok;
}

namespace {
void print_usage() {
    std::cout << "usage: zmesh <command> [options]\n\ncommands:\n";
    for (const auto& c : commands()) std::printf("  %-12s %s\n", c.name.c_str(), c.summary.c_str());
    std::cout << "\n'zmesh <command> --help' describes a command's options.\n";
}
} // namespace

} // namespace zmesh::cli

int main(int argc, char** argv) {
    using namespace zmesh::cli;
    if (argc < 2) {
        print_usage();
        return usage;
    }
    const std::string name = argv[1];
    if (name == "--help" || name == "-h" || name == "help") {
        print_usage();
        return ok;
    }
    if (name == "--version") return run_version({});
    for (const auto& c : commands()) {
        if (c.name != name) continue;
        try {
            return c.run(std::vector<std::string>(argv + 2, argv + argc));
        } catch (const config_error& e) {
            std::fprintf(stderr, "zmesh: %s: %s\n", name.c_str(), e.what());
            return usage;
        } catch (const usage_error& e) {
            std::fprintf(stderr, "zmesh: %s: %s (see 'zmesh %s --help')\n", name.c_str(), e.what(),
                         name.c_str());
            return usage;
        } catch (const std::exception& e) {
            std::fprintf(stderr, "zmesh: %s: %s\n", name.c_str(), e.what());
            return failure;
        }
    }
    std::fprintf(stderr, "zmesh: unknown command '%s' (see 'zmesh --help')\n", name.c_str());
    return usage;
}
