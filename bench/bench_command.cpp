// SPDX-License-Identifier: MPL-2.0
// bench_command.cpp — `zmesh bench <name>`: runs a benchmark and prints one result line.
#include "command.hpp"
#include "mdp_bench.hpp"
#include "peer_bench.hpp"
#include "pubsub_bench.hpp"
#include "scale_bench.hpp"
#include "titanic_bench.hpp"

#include <zmesh/mdp/protocol.hpp>

#include <zmq.hpp>

#include <cstdio>
#include <ctime>
#include <fstream>
#include <thread>
#include <vector>

namespace zmesh::cli {
namespace {

std::string cpu_model() {
    std::ifstream f("/proc/cpuinfo");
    std::string line;
    while (std::getline(f, line))
        if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
    return "unknown cpu";
}

std::string machine_line() {
    int major = 0, minor = 0, patch = 0;
    zmq_version(&major, &minor, &patch);
    char date[32];
    std::time_t now = std::time(nullptr);
    std::strftime(date, sizeof date, "%Y-%m-%d", std::gmtime(&now));
    char line[256];
    std::snprintf(line, sizeof line, "# %s, %u cores, %s, libzmq %d.%d.%d, tcp loopback",
                  cpu_model().c_str(), std::thread::hardware_concurrency(), date, major, minor, patch);
    return line;
}

/// Validates --duration (seconds) and converts it.
std::chrono::milliseconds duration_flag(double seconds) {
    if (!(seconds > 0) || seconds > 3600) throw usage_error("--duration must be in (0, 3600]");
    return std::chrono::milliseconds(static_cast<long>(seconds * 1000));
}

int run_mdp(const std::vector<std::string>& args) {
    namespace po = boost::program_options;
    bench::mdp_bench_config cfg;
    double seconds = 5;
    std::string dedupe = "both";
    std::string curve = "off";
    std::string spin = "off";
    long window_ms = static_cast<long>(cfg.dedupe_window.count());
    po::options_description options("options");
    options.add_options()
        ("mode", po::value(&cfg.mode)->default_value(cfg.mode), "broker or direct (no broker: the floor)")
        ("workers", po::value(&cfg.workers)->default_value(cfg.workers), "echo workers (broker mode)")
        ("size", po::value(&cfg.size)->default_value(cfg.size), "request body bytes (>= 8)")
        ("window", po::value(&cfg.window)->default_value(cfg.window), "requests in flight")
        ("credit", po::value(&cfg.credit)->default_value(cfg.credit),
         "requests each worker may hold (1 = plain MDP/0.1; more = zmesh workers with credit)")
        ("duration", po::value(&seconds)->default_value(seconds), "seconds to measure")
        ("dedupe", po::value(&dedupe)->default_value(dedupe),
         "broker mode: on = ZMCT03 client (a header and message id per request, kept by the "
         "broker for de-duplication), off = MDP/0.1 client, both = one row each (direct mode: "
         "off only)")
        ("dedupe-window-ms", po::value(&window_ms)->default_value(window_ms),
         "the broker's --dedupe-window-ms: how long it keeps each reply for retries (0: "
         "retries still join pending requests, no reply is kept)")
        ("curve", po::value(&curve)->default_value(curve),
         "broker mode: on = every connection encrypted with CURVE and admitted by the broker's "
         "ZAP handler, off = plain, both = one row each (the cost of encryption in one run)")
        ("spin", po::value(&spin)->default_value(spin),
         "latency mode: on = the client and the workers busy-poll instead of blocking, off = blocking, both = "
         "one row each (p50, p99, p99.9 of the two side by side)");
    po::variables_map vm;
    if (!parse("bench mdp", "[--mode broker|direct] [--dedupe on|off|both] [--curve on|off|both] [--spin on|off|both] [options]", options,
               args, vm))
        return ok;
    if (spin != "on" && spin != "off" && spin != "both")
        throw usage_error("--spin must be on, off or both");
    if (dedupe != "on" && dedupe != "off" && dedupe != "both")
        throw usage_error("--dedupe must be on, off or both");
    if (curve != "on" && curve != "off" && curve != "both")
        throw usage_error("--curve must be on, off or both");
    if (cfg.mode == "direct" && curve != "off")
        throw usage_error("--curve needs --mode broker");
    if (cfg.mode == "direct" && dedupe == "on")
        throw usage_error("--dedupe on needs --mode broker (the direct echo speaks no protocol)");
    if (cfg.mode != "broker" && cfg.mode != "direct") throw usage_error("--mode must be broker or direct");
    if (cfg.size < 8) throw usage_error("--size must be at least 8");
    if (cfg.window == 0) throw usage_error("--window must be positive");
    if (cfg.workers < 1) throw usage_error("--workers must be at least 1");
    if (cfg.credit < 1 || cfg.credit > zmesh::mdp::max_worker_credit)
        throw usage_error("--credit must be in 1.." + std::to_string(zmesh::mdp::max_worker_credit));
    cfg.duration = duration_flag(seconds);
    if (window_ms < 0) throw usage_error("--dedupe-window-ms must not be negative");
    cfg.dedupe_window = std::chrono::milliseconds(window_ms);

    std::vector<bool> dedupe_rows, curve_rows;
    if (dedupe != "on") dedupe_rows.push_back(false);
    if (dedupe != "off" && cfg.mode == "broker") dedupe_rows.push_back(true);
    if (curve != "on") curve_rows.push_back(false);
    if (curve != "off") curve_rows.push_back(true);
    std::vector<bool> spin_rows;
    if (spin != "on") spin_rows.push_back(false);
    if (spin != "off") spin_rows.push_back(true);
    std::printf("%s\n", machine_line().c_str());
    std::printf("%-7s %-8s %-6s %-7s %-7s %-7s %-6s %12s %10s %10s %10s %8s %5s\n", "mode",
                "workers", "size", "window", "credit", "dedupe", "curve", "req/s", "p50 us",
                "p99 us", "p99.9 us", "lost", "spin");
    bool all_answered = true;
    // One run after the other, each with its own broker and workers: they never share the CPU.
    for (const bool encrypted : curve_rows) for (const bool on : dedupe_rows) for (const bool spinning : spin_rows) {
        cfg.dedupe = on;
        cfg.curve = encrypted;
        cfg.spin = spinning;
        auto r = bench::run_mdp_bench(cfg);
        std::printf("%-7s %-8d %-6zu %-7zu %-7u %-7s %-6s %12.0f %10.1f %10.1f %10.1f %8llu %5s\n",
                    cfg.mode.c_str(), cfg.mode == "broker" ? cfg.workers : 0, cfg.size,
                    cfg.window, cfg.mode == "broker" ? cfg.credit : 0u, on ? "on" : "off",
                    encrypted ? "on" : "off", r.rate, r.p50_us, r.p99_us, r.p999_us,
                    static_cast<unsigned long long>(r.sent - r.received), spinning ? "on" : "off");
        std::fflush(stdout);
        all_answered = all_answered && r.sent == r.received;
    }
    return all_answered ? ok : failure;
}

int run_pubsub(const std::vector<std::string>& args) {
    namespace po = boost::program_options;
    bench::pubsub_bench_config cfg;
    double seconds = 5;
    std::string curve = "off";
    std::string spin = "off";
    po::options_description options("options");
    options.add_options()
        ("mode", po::value(&cfg.mode)->default_value(cfg.mode),
         "raw (PUB→SUB), direct (zmesh publisher→subscriber), broker (zmesh forwarder) or "
         "proxy (zmq_proxy)")
        ("subs", po::value(&cfg.subscribers)->default_value(cfg.subscribers), "subscribers")
        ("size", po::value(&cfg.size)->default_value(cfg.size), "payload bytes (>= 8)")
        ("duration", po::value(&seconds)->default_value(seconds), "seconds to publish")
        ("rate", po::value(&cfg.rate)->default_value(cfg.rate), "messages/s to aim for; 0 = flat out")
        ("io-threads", po::value(&cfg.io_threads)->default_value(cfg.io_threads),
         "I/O threads of the forwarder's or proxy's context")
        ("lossy", "broker mode: the forwarder's default lossy policy (losses are reported)")
        ("curve", po::value(&curve)->default_value(curve),
         "broker mode: on = publisher and subscribers encrypted with CURVE and admitted by the "
         "broker's ZAP handler, off = plain, both = one row each")
        ("spin", po::value(&spin)->default_value(spin),
         "latency mode: on = the subscribers busy-poll instead of blocking, off = blocking, both = "
         "one row each (p50, p99, p99.9 of the two side by side)");
    po::variables_map vm;
    if (!parse("bench pubsub", "[--mode raw|direct|broker|proxy] [--curve on|off|both] [--spin on|off|both] [options]",
               options, args, vm))
        return ok;
    if (spin != "on" && spin != "off" && spin != "both")
        throw usage_error("--spin must be on, off or both");
    if (curve != "on" && curve != "off" && curve != "both")
        throw usage_error("--curve must be on, off or both");
    if (curve != "off" && cfg.mode != "broker") throw usage_error("--curve needs --mode broker");
    if (cfg.mode != "raw" && cfg.mode != "direct" && cfg.mode != "broker" && cfg.mode != "proxy")
        throw usage_error("--mode must be raw, direct, broker or proxy");
    if (cfg.size < 8) throw usage_error("--size must be at least 8");
    if (cfg.subscribers < 1 || cfg.subscribers > 64) throw usage_error("--subs must be in [1, 64]");
    if (cfg.io_threads < 1 || cfg.io_threads > 16) throw usage_error("--io-threads must be in [1, 16]");
    cfg.duration = duration_flag(seconds);
    cfg.lossy = vm.count("lossy") > 0;
    if (cfg.lossy && cfg.mode != "broker") throw usage_error("--lossy applies to --mode broker");

    std::vector<bool> curve_rows;
    if (curve != "on") curve_rows.push_back(false);
    if (curve != "off") curve_rows.push_back(true);
    std::vector<bool> spin_rows;
    if (spin != "on") spin_rows.push_back(false);
    if (spin != "off") spin_rows.push_back(true);
    std::printf("%s\n", machine_line().c_str());
    std::printf("%-7s %-5s %-6s %-9s %-6s %12s %10s %10s %10s %8s %5s\n", "mode", "subs", "size",
                "rate", "curve", "msgs/s", "p50 us", "p99 us", "p99.9 us", "lost", "spin");
    bool complete = true;
    for (const bool encrypted : curve_rows) for (const bool spinning : spin_rows) {
        cfg.curve = encrypted;
        cfg.spin = spinning;
        auto r = bench::run_pubsub_bench(cfg);
        const std::string mode = cfg.lossy ? "lossy" : cfg.mode;
        std::printf("%-7s %-5d %-6zu %-9s %-6s %12.0f %10.1f %10.1f %10.1f %8llu %5s\n", mode.c_str(),
                    cfg.subscribers, cfg.size, cfg.rate ? std::to_string(cfg.rate).c_str() : "max",
                    encrypted ? "on" : "off", r.rate, r.p50_us, r.p99_us, r.p999_us,
                    static_cast<unsigned long long>(r.lost), spinning ? "on" : "off");
        std::fflush(stdout);
        complete = complete && (r.lost == 0 || cfg.lossy);
    }
    return complete ? ok : failure;
}

int run_titanic_bench(const std::vector<std::string>& args) {
    namespace po = boost::program_options;
    bench::titanic_bench_config cfg;
    double seconds = 5;
    std::string sync = "full";
    po::options_description options("options");
    options.add_options()
        ("sync", po::value(&sync)->default_value(sync), "the store's durability: full or normal")
        ("size", po::value(&cfg.size)->default_value(cfg.size), "request body bytes (>= 8)")
        ("clients", po::value(&cfg.clients)->default_value(cfg.clients), "submitter threads")
        ("window", po::value(&cfg.window)->default_value(cfg.window),
         "submissions each submitter keeps in flight (above 1: asynchronous, ack latency from the "
         "probe only)")
        ("workers", po::value(&cfg.workers)->default_value(cfg.workers), "echo workers of the target service")
        ("connections", po::value(&cfg.connections)->default_value(cfg.connections),
         "the node's titanic.request connections; 0 = node default")
        ("credit", po::value(&cfg.credit)->default_value(cfg.credit),
         "the node's credit per connection (1 = plain MDP/0.1); 0 = node default")
        ("concurrency", po::value(&cfg.concurrency)->default_value(cfg.concurrency),
         "the node's dispatches in flight; 0 = node default")
        ("rate", po::value(&cfg.rate)->default_value(cfg.rate),
         "submissions/s shared by the submitters (latency at a fixed load); 0 = flat out")
        ("duration", po::value(&seconds)->default_value(seconds), "seconds to measure");
    po::variables_map vm;
    if (!parse("bench titanic", "[--sync full|normal] [options]", options, args, vm)) return ok;
    if (sync == "full") cfg.sync = nodes::titanic_sync::full;
    else if (sync == "normal") cfg.sync = nodes::titanic_sync::normal;
    else throw usage_error("--sync must be full or normal");
    if (cfg.size < 8) throw usage_error("--size must be at least 8");
    if (cfg.clients < 1 || cfg.clients > 1024) throw usage_error("--clients must be in [1, 1024]");
    if (cfg.concurrency > 1024) throw usage_error("--concurrency must be in [0, 1024]");
    if (cfg.window < 1 || cfg.window > 4096) throw usage_error("--window must be in [1, 4096]");
    if (cfg.window > 1 && cfg.rate > 0) throw usage_error("--rate needs --window 1");
    if (cfg.workers < 1 || cfg.workers > 256) throw usage_error("--workers must be in [1, 256]");
    if (cfg.connections > 1024) throw usage_error("--connections must be in [0, 1024]");
    if (cfg.credit > zmesh::mdp::max_worker_credit)
        throw usage_error("--credit must be in [0, " + std::to_string(zmesh::mdp::max_worker_credit) + "]");
    cfg.duration = duration_flag(seconds);

    auto r = bench::run_titanic_bench(cfg);
    std::printf("%s\n", machine_line().c_str());
    std::printf("# acked/s: \"200\"+id answers (request committed) received within the interval, "
                "%d submitters with %zu submission(s) each in flight; ack = submit -> 200 (%s); "
                "e2e = submit -> reply fetched via titanic.reply (a probe polling every 0.5 ms, "
                "%llu samples); unreplied = acked requests without their echo reply after a drain "
                "of %.1f s; node = the node's request connections x credit; %d echo workers, store "
                "in a temp dir; %llu acked in total, %llu submit errors; replies stored: %.0f/s\n",
                cfg.clients, cfg.window,
                cfg.window > 1 ? "the probe's submissions only" : "every submission",
                static_cast<unsigned long long>(r.e2e_samples), r.drain_seconds, cfg.workers,
                static_cast<unsigned long long>(r.acked_total),
                static_cast<unsigned long long>(r.submit_errors), r.replied_rate);
    std::printf("%-6s %-6s %-7s %-6s %-7s %-6s %10s %8s %6s %6s %8s %8s %8s %8s %8s %9s\n",
                "sync", "size", "clients", "window", "node", "rate", "acked/s", "commits", "batch",
                "max", "ack p50", "ack p99", "e2e p50", "e2e p99", "p99.9", "unreplied");
    const std::string node = std::to_string(r.connections) + "x" + std::to_string(r.credit);
    std::printf("%-6s %-6zu %-7d %-6zu %-7s %-6s %10.0f %8llu %6.1f %6llu %8.2f %8.2f %8.2f %8.2f "
                "%8.2f %9llu\n",
                sync.c_str(), cfg.size, cfg.clients, cfg.window, node.c_str(),
                cfg.rate ? std::to_string(cfg.rate).c_str() : "max", r.rate,
                static_cast<unsigned long long>(r.commits), r.avg_batch,
                static_cast<unsigned long long>(r.largest_batch), r.ack_p50_ms, r.ack_p99_ms,
                r.e2e_p50_ms, r.e2e_p99_ms, r.e2e_p999_ms, static_cast<unsigned long long>(r.unreplied));
    return r.unreplied == 0 ? ok : failure;
}

} // namespace

int run_bench(const std::vector<std::string>& args) {
    if (args.empty() || args[0] == "--help" || args[0] == "-h") {
        std::printf("usage: zmesh bench (mdp | pubsub | titanic | mdp-peer | freelance | scale) [options]   ('zmesh bench mdp --help' for options)\n");
        return args.empty() ? usage : ok;
    }
    if (args[0] == "mdp") return run_mdp({args.begin() + 1, args.end()});
    if (args[0] == "pubsub") return run_pubsub({args.begin() + 1, args.end()});
    if (args[0] == "titanic") return run_titanic_bench({args.begin() + 1, args.end()});
    if (args[0] == "scale") return bench::run_scale_command({args.begin() + 1, args.end()}, machine_line());
    if (args[0] == "mdp-peer") return run_mdp_peer_bench({args.begin() + 1, args.end()});
    if (args[0] == "freelance") return run_freelance_bench({args.begin() + 1, args.end()});
    throw usage_error("unknown benchmark '" + args[0] + "' (available: mdp, pubsub, titanic, mdp-peer, freelance, scale)");
}

} // namespace zmesh::cli
