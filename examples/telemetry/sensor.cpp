// SPDX-License-Identifier: MPL-2.0
// sensor.cpp — telemetry-sensor: publishes a fixed number of readings straight to the aggregator.
//
// The aggregator binds a SUB socket and lists it in the broker's directory; the sensor resolves
// that name and connects its publisher to every endpoint found. The broker only answers the
// lookup: the readings travel sensor -> aggregator directly, never through it.
//
// Nothing is lost on that path: the publisher is lossless (a full aggregator makes it wait, it
// never drops), and it publishes nothing before the aggregator's subscription has reached it
// (wait_for_subscribers), so the first readings cannot fall into the slow-joiner gap.
//
// A second publisher, the tap, binds a port of its own and is listed under another name (default
// "telemetry.tap") for anyone who wants to watch, e.g. `zmesh sub --resolve telemetry.tap`. It
// carries the same readings on the same topics as text ("21.4375 C"), for people to read. It is
// lossy on purpose: a watcher that cannot keep up loses readings, it never slows the sensor.
//
// At the end the sensor sends an end report (its count and sum per metric) to the aggregator,
// writes the same totals as JSON to --totals FILE, and prints them as its last line.
#include "telemetry.hpp"

#include <zmesh/zmesh.hpp>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr const char* program = "telemetry-sensor";

volatile std::sig_atomic_t stop_signal = 0;
extern "C" void on_stop(int sig) {
    stop_signal = sig;
}

void install_stop_handlers() {
    struct sigaction sa {};
    sa.sa_handler = on_stop;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; // no SA_RESTART: a blocking wait returns, and the loop sees the flag
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
}

struct options {
    std::string broker;
    std::string name;
    std::string aggregator = "telemetry.aggregator";
    std::string tap = "telemetry.tap";
    long long samples = 100;
    long long interval_ms = 50;
    long long wait_ms = 10000;
    std::string totals;
};

[[noreturn]] void usage(int status) {
    std::fprintf(status == 0 ? stdout : stderr,
                 "usage: %s --broker EP --name NAME [options]\n"
                 "  --broker EP          the broker whose directory lists the aggregator\n"
                 "  --name NAME          this sensor's name, e.g. sensor.3\n"
                 "  --aggregator NAME    directory name of the aggregator (telemetry.aggregator)\n"
                 "  --tap NAME           directory name of the lossy tap ('' = no tap; "
                 "telemetry.tap)\n"
                 "  --samples N          readings of each metric to send (100)\n"
                 "  --interval-ms N      pause between two rounds of readings (50)\n"
                 "  --wait-ms N          how long to wait for the aggregator (10000)\n"
                 "  --totals FILE        write what was sent as JSON to FILE\n",
                 program);
    std::exit(status);
}

options parse(int argc, char** argv) {
    options o;
    for (int i = 1; i < argc; ++i) {
        const std::string flag = argv[i];
        if (flag == "-h" || flag == "--help") usage(0);
        if (i + 1 >= argc) {
            std::fprintf(stderr, "%s: %s needs a value (see --help)\n", program, flag.c_str());
            std::exit(2);
        }
        const std::string value = argv[++i];
        if (flag == "--broker")
            o.broker = value;
        else if (flag == "--name")
            o.name = value;
        else if (flag == "--aggregator")
            o.aggregator = value;
        else if (flag == "--tap")
            o.tap = value;
        else if (flag == "--totals")
            o.totals = value;
        else if (flag == "--samples")
            o.samples = telemetry::parse_number(program, flag, value, 0, 100000000);
        else if (flag == "--interval-ms")
            o.interval_ms = telemetry::parse_number(program, flag, value, 0, 3600000);
        else if (flag == "--wait-ms")
            o.wait_ms = telemetry::parse_number(program, flag, value, 1, 3600000);
        else {
            std::fprintf(stderr, "%s: unknown flag '%s' (see --help)\n", program, flag.c_str());
            std::exit(2);
        }
    }
    if (o.broker.empty() || o.name.empty()) {
        std::fprintf(stderr, "%s: --broker and --name are required (see --help)\n", program);
        std::exit(2);
    }
    if (o.name.find_first_of(" \t\r\n") != std::string::npos) {
        std::fprintf(stderr, "%s: --name '%s' must not contain blanks\n", program, o.name.c_str());
        std::exit(2);
    }
    return o;
}

/// A metric this sensor measures, and how its simulated value moves.
struct metric {
    const char* name;
    const char* unit;
    double base;  ///< middle value
    double swing; ///< amplitude of the slow wave
    double noise; ///< amplitude of the noise
    telemetry::metric_total total{};
};

/// A small deterministic noise source (xorshift64), seeded from the sensor's name, so that each
/// sensor's readings differ and a run can be reproduced.
struct noise_source {
    std::uint64_t state;
    explicit noise_source(const std::string& seed) : state(std::hash<std::string>{}(seed) | 1u) {}
    /// Uniform in [-1, 1).
    double next() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        return static_cast<double>(state >> 11) / static_cast<double>(1ull << 52) - 1.0;
    }
};

/// "21.4375": four decimals print a multiple of 1/16 exactly.
std::string number(double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.4f", v);
    return buf;
}

/// The JSON the test reads: {"sensor": ..., "complete": ..., "metrics": {name: {count, sum}}}.
std::string totals_json(const std::string& sensor, bool complete, const std::vector<metric>& ms) {
    std::string j = "{\"sensor\": \"" + sensor +
                    "\", \"complete\": " + (complete ? "true" : "false") + ", \"metrics\": {";
    for (std::size_t i = 0; i < ms.size(); ++i) {
        if (i > 0) j += ", ";
        j += "\"" + std::string(ms[i].name) +
             "\": {\"count\": " + std::to_string(ms[i].total.count) +
             ", \"sum\": " + number(ms[i].total.sum) + "}";
    }
    return j + "}}\n";
}

/// Writes @p text to @p path through a temporary file and a rename, so a reader never sees half.
void write_file(const std::string& path, const std::string& text) {
    const std::string tmp = path + ".tmp";
    std::FILE* f = std::fopen(tmp.c_str(), "w");
    if (f == nullptr) throw std::runtime_error("cannot write " + tmp + ": " + std::strerror(errno));
    const bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
    if (std::fclose(f) != 0 || !ok)
        throw std::runtime_error("cannot write " + tmp + ": " + std::strerror(errno));
    if (std::rename(tmp.c_str(), path.c_str()) != 0)
        throw std::runtime_error("cannot rename " + tmp + " to " + path + ": " +
                                 std::strerror(errno));
}

/// Resolves @p name in the directory until at least one endpoint is listed, or @p wait passes.
std::vector<std::string> find(zmq::context_t& ctx, const options& o, milliseconds wait) {
    zmesh::pubsub::directory_client dir(ctx, o.broker, milliseconds(1000));
    const auto deadline = clock_type::now() + wait;
    bool said = false;
    while (stop_signal == 0) {
        try {
            auto found = dir.resolve(o.aggregator);
            if (!found.empty()) return found;
        } catch (const zmesh::error& e) {
            if (e.code() != zmesh::errc::timeout) throw; // a refusal will not go away
        }
        if (clock_type::now() >= deadline) break;
        if (!said) {
            std::printf("%s: waiting for '%s' in the directory of %s\n", o.name.c_str(),
                        o.aggregator.c_str(), o.broker.c_str());
            std::fflush(stdout);
            said = true;
        }
        std::this_thread::sleep_for(milliseconds(100));
    }
    if (stop_signal != 0) return {};
    throw std::runtime_error("no aggregator is listed under '" + o.aggregator +
                             "' in the directory of " + o.broker + " after " +
                             std::to_string(wait.count()) + " ms");
}

int run(const options& o) {
    install_stop_handlers();
    zmq::context_t ctx;

    std::vector<metric> metrics = {
        {"temperature", "C", 21.0, 3.0, 0.5},
        {"humidity", "%", 45.0, 10.0, 2.0},
        {"pressure", "hPa", 1013.0, 4.0, 0.75},
    };

    // The tap first, so that watchers can find this sensor while it waits for the aggregator.
    std::optional<zmesh::pubsub::publisher> tap;
    std::optional<zmesh::pubsub::directory_registration> tap_listing;
    if (!o.tap.empty()) {
        tap.emplace(ctx, zmesh::pubsub::publisher_options{.bind = {"tcp://127.0.0.1:*"}});
        tap_listing.emplace(ctx, o.broker, o.tap, tap->endpoints().front(), milliseconds(10000));
        std::printf("%s: tap at %s, listed as '%s'\n", o.name.c_str(),
                    tap->endpoints().front().c_str(), o.tap.c_str());
        std::fflush(stdout);
    }

    const auto deadline = clock_type::now() + milliseconds(o.wait_ms);
    const auto aggregators = find(ctx, o, milliseconds(o.wait_ms));
    if (aggregators.empty()) return 0; // stopped by a signal while waiting

    zmesh::pubsub::publisher_options po;
    po.connect = aggregators;
    po.lossless = true;                     // a full aggregator makes us wait, never drop
    po.send_timeout = milliseconds(30000);  // ... but not for ever: then it is an error
    po.socket.linger = milliseconds(10000); // at exit, deliver what is still queued
    zmesh::pubsub::publisher out(ctx, po);

    // One subscription per aggregator: until each has arrived, a reading could be lost.
    const auto wanted = aggregators.size();
    const auto left = std::max(
        milliseconds(1), std::chrono::duration_cast<milliseconds>(deadline - clock_type::now()));
    if (!out.wait_for_subscribers(wanted, left)) {
        if (stop_signal != 0) return 0;
        std::string where;
        for (const auto& ep : aggregators) where += (where.empty() ? "" : ", ") + ep;
        throw std::runtime_error("the aggregator at " + where + " did not subscribe within " +
                                 std::to_string(o.wait_ms) + " ms");
    }
    std::printf("%s: sending %lld readings of %zu metrics every %lld ms to %s\n", o.name.c_str(),
                o.samples, metrics.size(), o.interval_ms, aggregators.front().c_str());
    std::fflush(stdout);

    noise_source noise(o.name);
    const double phase = noise.next() * 3.14159;
    long long sent = 0;
    auto next = clock_type::now();
    bool interrupted = false;
    while (sent < o.samples && stop_signal == 0 && !interrupted) {
        const double t = static_cast<double>(sent) / 20.0 + phase;
        for (auto& m : metrics) {
            telemetry::sample s;
            s.sensor = o.name;
            s.metric = m.name;
            s.unit = m.unit;
            s.value = telemetry::quantise(m.base + m.swing * std::sin(t) + m.noise * noise.next());
            s.n = m.total.count + 1;
            const std::string topic = std::string(telemetry::topic_prefix) + m.name + "." + o.name;
            zmesh::message payload;
            payload.push_back(zmesh::pack(s));
            if (tap) tap->publish(topic, number(s.value) + " " + s.unit, telemetry::text_type);
            try {
                out.publish(topic, std::move(payload), telemetry::sample_type);
            } catch (const zmq::error_t& e) {
                if (e.num() != EINTR || stop_signal == 0) throw;
                interrupted = true; // a stop signal interrupted the wait for room: not sent
                break;
            }
            m.total.count += 1;
            m.total.sum += s.value;
        }
        if (interrupted) break;
        ++sent;
        // Wait for the next round, answering watchers' readiness probes meanwhile.
        next += milliseconds(o.interval_ms);
        while (stop_signal == 0) {
            const auto now = clock_type::now();
            if (now >= next) break;
            const auto pause = std::chrono::ceil<milliseconds>(next - now);
            if (tap)
                tap->poll_subscriptions(pause);
            else
                std::this_thread::sleep_for(pause);
        }
    }

    const bool complete = sent == o.samples && !interrupted;
    telemetry::end_report report;
    report.sensor = o.name;
    report.complete = complete;
    for (const auto& m : metrics) report.totals.push_back({m.name, m.total.count, m.total.sum});
    zmesh::message end;
    end.push_back(zmesh::pack(report));
    const std::string end_topic = std::string(telemetry::end_topic_prefix) + o.name;
    if (complete) {
        out.publish(end_topic, std::move(end), telemetry::end_type);
    } else if (!out.try_publish(end_topic, end, milliseconds(1000), telemetry::end_type)) {
        std::fprintf(stderr, "%s: %s: stopping: the aggregator had no room for the end report\n",
                     program, o.name.c_str());
    }

    if (!o.totals.empty()) write_file(o.totals, totals_json(o.name, complete, metrics));
    std::string line =
        o.name + ": done: " + (complete ? std::string("sent all ") : "stopped by a signal after ") +
        std::to_string(sent) + " readings of each metric;";
    for (const auto& m : metrics)
        line += std::string(" ") + m.name + " count=" + std::to_string(m.total.count) +
                " sum=" + number(m.total.sum);
    std::printf("%s\n", line.c_str());
    std::fflush(stdout);
    return 0; // the publisher's linger delivers what is still queued as it closes
}

} // namespace

int main(int argc, char** argv) {
    const options o = parse(argc, argv);
    try {
        return run(o);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s: %s: %s\n", program, o.name.c_str(), e.what());
        return 1;
    }
}
