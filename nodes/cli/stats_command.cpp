// SPDX-License-Identifier: MPL-2.0
// stats_command.cpp — `zmesh stats`: asks the broker's zmesh.stats and prints each counter, once
// or, with --watch, as a live view refreshed every --interval-ms with the rate of each counter.
#include "broker_query.hpp"
#include "command.hpp"
#include "stop_signal.hpp"

#include <zmesh/mdp/protocol.hpp>

#include <nlohmann/json.hpp>

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <optional>
#include <stdexcept>
#include <thread>

namespace zmesh::cli {

namespace {

void print_table(const counter_table& counters) {
    for (const auto& [name, value] : counters)
        std::printf("%-22s %llu\n", name.c_str(), static_cast<unsigned long long>(value));
}

/// One frame of the live view: each counter, and its change per second since @p before.
void print_frame(const std::string& broker, const counter_table& now, const counter_table* before,
                 double seconds, long interval_ms, bool terminal) {
    if (terminal) std::fputs("\x1b[H\x1b[2J", stdout); // home, clear: redraw in place
    const std::time_t t = std::time(nullptr);
    char clock[16];
    std::strftime(clock, sizeof clock, "%H:%M:%S", std::localtime(&t));
    std::printf("zmesh stats  %s  %s  (every %ld ms, Ctrl-C to stop)\n\n", broker.c_str(), clock,
                interval_ms);
    std::printf("%-26s %16s %12s\n", "COUNTER", "VALUE", "PER SECOND");
    for (const auto& [name, value] : now) {
        std::printf("%-26s %16llu", name.c_str(), static_cast<unsigned long long>(value));
        const auto was = before ? before->find(name) : now.end();
        if (before && was != before->end() && seconds > 0 && value >= was->second)
            std::printf(" %12.1f", static_cast<double>(value - was->second) / seconds);
        std::printf("\n");
    }
    if (!terminal) std::printf("\n");
    std::fflush(stdout);
}

} // namespace

int run_stats(const std::vector<std::string>& args) {
    namespace po = boost::program_options;
    broker_query_flags flags;
    po::options_description options("options");
    add_broker_query_options(options, flags);
    bool json = false, watch = false;
    long interval_ms = 1000;
    long count = 0;
    options.add_options()
        ("json", po::bool_switch(&json),
         "print one JSON object, counter name to value (with --watch: one per line), for scripts "
         "and jq")
        ("watch", po::bool_switch(&watch),
         "a live view: refresh every --interval-ms, with each counter's rate, until Ctrl-C")
        ("interval-ms", po::value(&interval_ms)->default_value(interval_ms),
         "--watch: time between refreshes")
        ("count", po::value(&count)->default_value(count),
         "--watch: stop after N refreshes (0: until Ctrl-C)");
    po::variables_map vm;
    if (!parse("stats", "[--broker EP] [--json] [--watch [--interval-ms N] [--count N]]",
               options, args, vm))
        return ok;
    if (!watch && (!vm["interval-ms"].defaulted() || !vm["count"].defaulted()))
        throw usage_error("--interval-ms and --count go with --watch");
    if (interval_ms <= 0) throw usage_error("--interval-ms must be positive");
    if (count < 0) throw usage_error("--count must not be negative");

    if (!watch) {
        const auto counters = query_broker<counter_table>(flags, mdp::zmesh_stats);
        if (json)
            std::printf("%s\n", nlohmann::ordered_json(counters).dump().c_str());
        else
            print_table(counters);
        return ok;
    }

    install_stop_signals();
    const bool terminal = !json && ::isatty(STDOUT_FILENO);
    std::optional<counter_table> before;
    auto before_at = std::chrono::steady_clock::now();
    for (long frame = 0; (count == 0 || frame < count) && !stop_requested(); ++frame) {
        if (frame > 0) {
            // Sleep in small steps, so that Ctrl-C ends the view at once.
            const auto until = before_at + std::chrono::milliseconds(interval_ms);
            while (std::chrono::steady_clock::now() < until && !stop_requested())
                std::this_thread::sleep_for(std::chrono::milliseconds(20));
            if (stop_requested()) break;
        }
        counter_table now;
        try {
            now = query_broker<counter_table>(flags, mdp::zmesh_stats);
        } catch (const std::runtime_error& e) {
            // Waiting is the point of a watch: say what failed, and try again next time.
            std::fprintf(stderr, "zmesh: stats: %s (retrying every %ld ms)\n", e.what(),
                         interval_ms);
            before_at = std::chrono::steady_clock::now();
            continue;
        }
        const auto at = std::chrono::steady_clock::now();
        if (json) {
            std::printf("%s\n", nlohmann::ordered_json(now).dump().c_str());
            std::fflush(stdout);
        } else {
            print_frame(flags.broker, now, before ? &*before : nullptr,
                        std::chrono::duration<double>(at - before_at).count(), interval_ms,
                        terminal);
        }
        before = std::move(now);
        before_at = at;
    }
    return ok;
}

} // namespace zmesh::cli
