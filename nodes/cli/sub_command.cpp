// SPDX-License-Identifier: MPL-2.0
// sub_command.cpp — `zmesh sub`: prints the messages published on topic prefixes, one per line,
// with pubsub::subscriber (readiness probe, gap reports, lag limit, optional LVC snapshot).
//
// Output is line-oriented so scripts can consume it: text is "topic seq latency_us payload" with
// control bytes escaped as \xNN; json is one object per line. Gaps go to stderr. Exit status: 0
// after --count messages or on SIGINT/SIGTERM; 1 if the subscriber fell behind --max-lag-ms, or
// if --timeout-ms passed without a message before --count (or any message, without --count),
// or if --ready-ms was given and no publisher or broker confirmed the subscriptions in time (the
// line names the endpoints). Without --ready-ms, an unconfirmed wait is no error (a publisher may
// start later, or not speak zmesh): it says once which endpoints it is waiting for, and goes on.
//
// CURVE has two roles here (docs/security.md). --curve-secret and --allow make a subscriber that
// binds the CURVE server of the publishers that connect to it; the client flags make a
// subscriber that connects the CURVE client of what it connects to (a broker's XPUB or a
// publisher that binds), or, with --resolve, of the broker's directory only.
#include "broker_list.hpp"
#include "command.hpp"
#include "progress.hpp"
#include "config.hpp"
#include "security_flags.hpp"
#include "stop_signal.hpp"

#include <zmesh/endpoint.hpp>
#include <zmesh/pubsub/directory.hpp>
#include <zmesh/pubsub/subscriber.hpp>

#include <algorithm>
#include <cstdio>
#include <optional>

namespace zmesh::cli {
namespace {

using clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

void check_endpoint(const std::string& ep, const char* flag, bool connecting) {
    std::error_code ec;
    std::string why;
    const auto parts = parse_endpoint(ep, ec, &why);
    if (!parts) throw usage_error(std::string("invalid ") + flag + " '" + ep + "': " + why);
    if (connecting && parts->kind == transport::tcp && parts->port == "*")
        throw usage_error(std::string("invalid ") + flag + " '" + ep +
                          "': cannot connect to a wildcard port");
}

/// For text output: bytes as they are, except control bytes, which would break lines.
void append_text(std::string& out, std::string_view bytes) {
    static constexpr char hex[] = "0123456789abcdef";
    for (const char c : bytes) {
        const auto b = static_cast<unsigned char>(c);
        if (b < 0x20 || b == 0x7f) {
            out += "\\x";
            out += hex[b >> 4];
            out += hex[b & 0x0f];
        } else {
            out += c;
        }
    }
}

/// Length of the valid UTF-8 sequence at the start of @p s, or 0 if it is not one.
std::size_t utf8_length(std::string_view s) noexcept {
    const auto at = [&](std::size_t i) { return static_cast<unsigned char>(s[i]); };
    const unsigned char b = at(0);
    std::size_t n = 0;
    unsigned char lo = 0x80, hi = 0xbf; // allowed range of the second byte
    if (b >= 0xc2 && b <= 0xdf) {
        n = 2;
    } else if (b >= 0xe0 && b <= 0xef) {
        n = 3;
        if (b == 0xe0) lo = 0xa0; // overlong
        if (b == 0xed) hi = 0x9f; // surrogates
    } else if (b >= 0xf0 && b <= 0xf4) {
        n = 4;
        if (b == 0xf0) lo = 0x90; // overlong
        if (b == 0xf4) hi = 0x8f; // above U+10FFFF
    } else {
        return 0;
    }
    if (s.size() < n || at(1) < lo || at(1) > hi) return 0;
    for (std::size_t i = 2; i < n; ++i)
        if (at(i) < 0x80 || at(i) > 0xbf) return 0;
    return n;
}

/// Appends @p bytes as a JSON string. Valid UTF-8 is kept; a byte that is not part of valid
/// UTF-8 is written as the code point of the same value (\u00XX), so nothing is dropped.
void append_json(std::string& out, std::string_view bytes) {
    static constexpr char hex[] = "0123456789abcdef";
    out += '"';
    for (std::size_t i = 0; i < bytes.size();) {
        const auto b = static_cast<unsigned char>(bytes[i]);
        if (b >= 0x80) {
            if (const std::size_t n = utf8_length(bytes.substr(i))) {
                out.append(bytes.substr(i, n));
                i += n;
                continue;
            }
        }
        switch (b) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        default:
            if (b < 0x20 || b >= 0x80) {
                out += "\\u00";
                out += hex[b >> 4];
                out += hex[b & 0x0f];
            } else {
                out += static_cast<char>(b);
            }
        }
        ++i;
    }
    out += '"';
}

std::string format_text(const pubsub::delivery& d) {
    std::string line;
    append_text(line, d.topic);
    line += ' ' + std::to_string(d.header.sequence) + ' ' +
            std::to_string(std::chrono::duration_cast<std::chrono::microseconds>(d.lag).count());
    line += ' ';
    bool first = true;
    for (const auto& frame : d.payload) {
        if (!first) line += ' ';
        append_text(line, view(frame));
        first = false;
    }
    line += '\n';
    return line;
}

std::string format_json(const pubsub::delivery& d) {
    std::string line = "{\"topic\":";
    append_json(line, d.topic);
    line += ",\"seq\":" + std::to_string(d.header.sequence) + ",\"source\":\"" +
            (d.header.source ? d.header.source->to_hex() : std::string()) + "\",\"latency_us\":" +
            std::to_string(std::chrono::duration_cast<std::chrono::microseconds>(d.lag).count()) +
            ",\"payload\":";
    // One frame (the usual case) is a string; any other number of frames an array of strings.
    if (d.payload.size() == 1) {
        append_json(line, view(d.payload[0]));
    } else {
        line += '[';
        for (std::size_t i = 0; i < d.payload.size(); ++i) {
            if (i > 0) line += ',';
            append_json(line, view(d.payload[i]));
        }
        line += ']';
    }
    line += "}\n";
    return line;
}

} // namespace

int run_sub(const std::vector<std::string>& args) {
    namespace po = boost::program_options;
    std::vector<std::string> connect, bind, topics;
    bool binary_star = false, spin = false;
    std::string resolve, broker = default_broker_endpoint(), format = "text", snapshot_from;
    long long count = 0, max_lag_ms = 0, timeout_ms = 0;
    int hwm = 1000, ready_ms = 2000;
    po::options_description options("options");
    options.add_options()
        ("connect", po::value(&connect)->composing(),
         "publisher or broker XPUB endpoint to connect to (repeatable, or a comma-separated "
         "list)")
        ("binary-star", po::bool_switch(&binary_star),
         "the --connect endpoints are the XPUBs of a Binary Star pair: while one broker is "
         "unreachable, ask the other to take over")
        ("bind", po::value(&bind)->composing(), "endpoint to bind, for publishers that connect")
        ("resolve", po::value(&resolve),
         "connect to every endpoint registered under NAME in the broker's directory")
        ("broker", po::value(&broker)->default_value(broker),
         "broker MDP endpoint for --resolve, or a comma-separated list (a Binary Star pair)")
        ("topic", po::value(&topics)->composing()->required(),
         "topic prefix to subscribe to (repeatable; '' = everything)")
        ("count", po::value(&count)->default_value(count), "exit after N messages (0 = never)")
        ("format", po::value(&format)->default_value(format),
         "text: 'topic seq latency_us payload'; json: one object per line")
        ("snapshot-from", po::value(&snapshot_from),
         "broker MDP endpoint: first print the last cached message of each matching topic")
        ("max-lag-ms", po::value(&max_lag_ms),
         "give up (exit 1) when a message arrives more than N ms after it was published")
        ("timeout-ms", po::value(&timeout_ms),
         "give up when no message arrives for N ms (exit 1 unless --count, or without --count "
         "any message, was received)")
        ("ready-ms", po::value(&ready_ms)->default_value(ready_ms),
         "wait up to N ms for a publisher or broker to confirm the subscriptions; given "
         "(flag, env or file), no confirmation in time is an error (exit 1) naming the endpoints")
        ("hwm", po::value(&hwm)->default_value(hwm), "messages queued per publisher")
        ("spin", po::bool_switch(&spin),
         "latency mode: busy-poll while waiting for a message instead of blocking (keeps one "
         "core busy)");
    client_security_flags security_flags;
    security_flags.add_to(options);
    server_security_flags server_flags;
    server_flags.add_peer_to(options, "publishers");
    po::variables_map vm;
    if (!parse("sub",
               "(--connect EP [--curve-server-key F --curve-key F] | --bind EP [--curve-secret F "
               "--allow DIR] | --resolve NAME [--broker EP]) --topic PREFIX [options]",
               options, args, vm))
        return ok;

    if (connect.empty() && bind.empty() && resolve.empty())
        throw usage_error("give --connect, --bind or --resolve");
    // A comma-separated --connect is the same as --connect repeated (a Binary Star pair's
    // two brokers, say).
    connect = comma_list(connect);
    if (binary_star && connect.size() < 2)
        throw usage_error("--binary-star needs the XPUB endpoints of both brokers: --connect EP,EP");
    for (const auto& ep : connect) check_endpoint(ep, "--connect", true);
    for (const auto& ep : bind) check_endpoint(ep, "--bind", false);
    // A list (a Binary Star pair): the directory of the one that answers, the active one.
    std::vector<std::string> brokers;
    if (!resolve.empty()) brokers = broker_list({broker});
    if (!snapshot_from.empty()) check_endpoint(snapshot_from, "--snapshot-from", true);
    if (format != "text" && format != "json")
        throw usage_error("invalid --format '" + format + "' (text or json)");
    if (count < 0) throw usage_error("--count must not be negative");
    if (vm.count("max-lag-ms") && max_lag_ms <= 0)
        throw usage_error("--max-lag-ms must be positive");
    if (vm.count("timeout-ms") && timeout_ms <= 0)
        throw usage_error("--timeout-ms must be positive");
    if (ready_ms < 0) throw usage_error("--ready-ms must not be negative");
    if (hwm < 0) throw usage_error("--hwm must not be negative");

    // The client keys are for --connect (a broker's XPUB or a binding publisher) or for
    // --resolve (the broker's directory: the peers it finds are connected to plain); the server
    // flags for --bind. libzmq makes one socket either a CURVE client or a CURVE server, hence
    // one role per subscriber.
    const bool serving = server_flags.on();
    if (serving && bind.empty())
        throw usage_error("--curve-secret and --allow are for --bind: they make this subscriber "
                          "the CURVE server of the publishers that connect to it");
    if (serving && (!connect.empty() || !resolve.empty()))
        throw usage_error("--curve-secret and --allow (for --bind) cannot go with --connect or "
                          "--resolve: a socket is either a CURVE server or a CURVE client; run "
                          "one zmesh sub per side");
    auto server = server_flags.peer_server();
    // Keys from the environment or the configuration file are for what this command connects
    // to: a subscriber that only binds connects to nothing, and leaves them unused.
    auto curve = connect.empty() && resolve.empty() && !security_flags.given_as_flags()
                     ? std::nullopt
                     : security_flags.load();
    if (curve && !bind.empty())
        throw usage_error("--curve-server-key and --curve-key (or ZMESH_CURVE_SERVER_KEY and "
                          "ZMESH_CURVE_KEY) are for --connect or --resolve; a subscriber that "
                          "binds takes --curve-secret and --allow");
    if (curve && !resolve.empty() && !connect.empty())
        throw usage_error("with --resolve and --connect together, CURVE keys cannot say which "
                          "they are for: use one of them");

    // SIGHUP re-reads --allow, only when serving: elsewhere it keeps its default meaning.
    peer_reloader reloader(server_flags, server.has_value()); // before the context

    install_stop_signals();
    zmq::context_t ctx;
    if (!resolve.empty()) {
        pubsub::directory_client directory(ctx, brokers, std::chrono::milliseconds(2500), curve);
        const auto found = directory.resolve(resolve);
        if (found.empty())
            throw std::runtime_error("no endpoint is registered under '" + resolve + "' at " +
                                     broker);
        connect.insert(connect.end(), found.begin(), found.end());
    }

    pubsub::subscriber_options so;
    if (resolve.empty()) so.curve = curve;
    so.curve_server = std::move(server);
    so.connect = connect;
    so.binary_star = binary_star;
    so.spin = spin;
    so.bind = bind;
    so.topics = topics;
    so.socket.recv_hwm = hwm;
    if (max_lag_ms > 0) so.max_lag = milliseconds(max_lag_ms);
    so.snapshot_from = snapshot_from;
    pubsub::subscriber sub(ctx, so);
    const auto reloading = reloader.apply_to(sub);
    sub.on_gap([](const pubsub::gap& g) {
        std::string topic;
        append_text(topic, g.topic);
        std::fprintf(stderr,
                     "gap on topic %s from source %s: expected %llu got %llu (%llu missed)\n",
                     topic.c_str(), g.source.to_hex().c_str(),
                     static_cast<unsigned long long>(g.expected),
                     static_cast<unsigned long long>(g.got),
                     static_cast<unsigned long long>(g.missed()));
    });
    // By default, not being confirmed is no error: the publisher may start later, or not speak
    // zmesh. The SUB socket subscribes on every connection anyway. With --snapshot-from, recv()
    // goes on trying (the snapshot needs a confirmed subscription first). An explicit --ready-ms
    // asks for the confirmation: without it the subscriber cannot do its job.
    if (!sub.wait_ready(milliseconds(ready_ms)) && ready_ms > 0 && !stop_requested()) {
        std::string where;
        for (const auto& ep : connect) where += (where.empty() ? "" : ", ") + ep;
        for (const auto& ep : bind)
            where += std::string(where.empty() ? "" : ", ") + "publishers connecting to " + ep;
        if (!vm["ready-ms"].defaulted()) {
            std::fprintf(stderr,
                         "zmesh: sub: no publisher or broker confirmed the subscriptions within "
                         "%d ms (--ready-ms); waited for %s\n",
                         ready_ms, where.c_str());
            return failure;
        }
        std::fprintf(stderr,
                     "zmesh: sub: waiting for %s: nothing confirmed the subscriptions within "
                     "%d ms (still listening)\n",
                     where.c_str(), ready_ms);
    }

    const milliseconds idle_limit(timeout_ms); // 0: wait for ever
    auto idle_deadline = clock::now() + idle_limit;
    std::uint64_t received = 0;
    const auto wanted = static_cast<std::uint64_t>(count);
    progress_line progress("sub", "received");
    // The summary: count and rate, and what the subscriber saw go wrong.
    const auto summary = [&] {
        const auto st = sub.stats();
        std::string tail = "; " + std::to_string(st.gaps) + " gaps (" +
                           std::to_string(st.missed) + " missed), " +
                           std::to_string(st.duplicates) + " duplicates, " +
                           std::to_string(st.malformed) + " malformed";
        progress.finish(received, tail);
    };
    while (!stop_requested() && (wanted == 0 || received < wanted)) {
        // Short slices, so a stop signal is seen even if it lands between two waits.
        milliseconds slice(200);
        if (idle_limit > milliseconds(0)) {
            const auto left = std::chrono::ceil<milliseconds>(idle_deadline - clock::now());
            if (left <= milliseconds(0)) {
                if (received > 0 && wanted == 0) {
                    summary();
                    return ok;
                }
                std::fprintf(stderr, "zmesh: sub: no message within %lld ms\n", timeout_ms);
                return failure;
            }
            slice = std::min(slice, left);
        }
        auto d = sub.recv(slice);
        if (!d) continue;
        const std::string line = format == "json" ? format_json(*d) : format_text(*d);
        std::fwrite(line.data(), 1, line.size(), stdout);
        std::fflush(stdout);
        ++received;
        progress.tick(received);
        idle_deadline = clock::now() + idle_limit;
    }
    summary();
    return ok;
}

} // namespace zmesh::cli
