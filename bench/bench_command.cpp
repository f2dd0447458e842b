// SPDX-License-Identifier: MPL-2.0
// bench_command.cpp — `zmesh bench <name>`: runs a benchmark and prints one result line.
#include "command.hpp"
#include "mdp_bench.hpp"
#include "pubsub_bench.hpp"

#include <zmq.hpp>

#include <cstdio>
#include <ctime>
#include <fstream>
#include <thread>

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

int run_mdp(const std::vector<std::string>& args) {
    namespace po = boost::program_options;
    bench::mdp_bench_config cfg;
    double seconds = 5;
    po::options_description options("options");
    options.add_options()
        ("mode", po::value(&cfg.mode)->default_value(cfg.mode), "broker or direct (no broker: the floor)")
        ("workers", po::value(&cfg.workers)->default_value(cfg.workers), "echo workers (broker mode)")
        ("size", po::value(&cfg.size)->default_value(cfg.size), "request body bytes (>= 8)")
        ("window", po::value(&cfg.window)->default_value(cfg.window), "requests in flight")
        ("duration", po::value(&seconds)->default_value(seconds), "seconds to measure");
    po::variables_map vm;
    if (!parse("bench mdp", "[--mode broker|direct] [options]", options, args, vm)) return ok;
    if (cfg.mode != "broker" && cfg.mode != "direct") throw usage_error("--mode must be broker or direct");
    if (cfg.size < 8) throw usage_error("--size must be at least 8");
    if (cfg.window == 0) throw usage_error("--window must be positive");
    if (cfg.workers < 1) throw usage_error("--workers must be at least 1");
    if (seconds <= 0 || seconds > 3600) throw usage_error("--duration must be in (0, 3600]");
    cfg.duration = std::chrono::milliseconds(static_cast<long>(seconds * 1000));

    auto r = bench::run_mdp_bench(cfg);
    std::printf("%s\n", machine_line().c_str());
    std::printf("%-7s %-8s %-6s %-7s %12s %10s %10s %10s %8s\n", "mode", "workers", "size", "window",
                "req/s", "p50 us", "p99 us", "p99.9 us", "lost");
    std::printf("%-7s %-8d %-6zu %-7zu %12.0f %10.1f %10.1f %10.1f %8llu\n", cfg.mode.c_str(),
                cfg.mode == "broker" ? cfg.workers : 0, cfg.size, cfg.window, r.rate, r.p50_us,
                r.p99_us, r.p999_us, static_cast<unsigned long long>(r.sent - r.received));
    return r.sent == r.received ? ok : failure;
}

int run_pubsub(const std::vector<std::string>& args) {
    namespace po = boost::program_options;
    bench::pubsub_bench_config cfg;
    double seconds = 5;
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
        ("lossy", "broker mode: the forwarder's default lossy policy (losses are reported)");
    po::variables_map vm;
    if (!parse("bench pubsub", "[--mode raw|direct|broker|proxy] [options]", options, args, vm))
        return ok;
    if (cfg.mode != "raw" && cfg.mode != "direct" && cfg.mode != "broker" && cfg.mode != "proxy")
        throw usage_error("--mode must be raw, direct, broker or proxy");
    if (cfg.size < 8) throw usage_error("--size must be at least 8");
    if (cfg.subscribers < 1 || cfg.subscribers > 64) throw usage_error("--subs must be in [1, 64]");
    if (cfg.io_threads < 1 || cfg.io_threads > 16) throw usage_error("--io-threads must be in [1, 16]");
    if (seconds <= 0 || seconds > 3600) throw usage_error("--duration must be in (0, 3600]");
    cfg.duration = std::chrono::milliseconds(static_cast<long>(seconds * 1000));
    cfg.lossy = vm.count("lossy") > 0;
    if (cfg.lossy && cfg.mode != "broker") throw usage_error("--lossy applies to --mode broker");

    auto r = bench::run_pubsub_bench(cfg);
    std::printf("%s\n", machine_line().c_str());
    std::printf("%-7s %-5s %-6s %-9s %12s %10s %10s %10s %8s\n", "mode", "subs", "size", "rate",
                "msgs/s", "p50 us", "p99 us", "p99.9 us", "lost");
    const std::string mode = cfg.lossy ? "lossy" : cfg.mode;
    std::printf("%-7s %-5d %-6zu %-9s %12.0f %10.1f %10.1f %10.1f %8llu\n", mode.c_str(),
                cfg.subscribers, cfg.size, cfg.rate ? std::to_string(cfg.rate).c_str() : "max", r.rate,
                r.p50_us, r.p99_us, r.p999_us, static_cast<unsigned long long>(r.lost));
    return r.lost == 0 || cfg.lossy ? ok : failure;
}

} // namespace

int run_bench(const std::vector<std::string>& args) {
    if (args.empty() || args[0] == "--help" || args[0] == "-h") {
        std::printf("usage: zmesh bench (mdp | pubsub) [options]   ('zmesh bench mdp --help' for options)\n");
        return args.empty() ? usage : ok;
    }
    if (args[0] == "mdp") return run_mdp({args.begin() + 1, args.end()});
    if (args[0] == "pubsub") return run_pubsub({args.begin() + 1, args.end()});
    throw usage_error("unknown benchmark '" + args[0] + "' (available: mdp, pubsub)");
}

} // namespace zmesh::cli
