// SPDX-License-Identifier: MPL-2.0
// pub_command.cpp — `zmesh pub`: publishes messages on one topic with pubsub::publisher.
//
// MESSAGE is published --count times, or each line of stdin with `-`. Pub/sub has no delivery
// guarantee towards subscribers that are not subscribed yet (the slow-joiner problem): a message
// published before a subscriber's subscription has reached us is lost for it. So before the first
// message the command waits: for --wait-subscribers subscriptions if given, and for --settle-ms
// (200 ms by default with --connect, the time for the connection to form and the broker's
// subscriptions to arrive). Subscribers that call wait_ready() are answered meanwhile.
//
// CURVE has two roles here (docs/security.md). --curve-secret and --allow make a publisher that
// binds the CURVE server of the subscribers that connect to it; the client flags make a
// publisher that connects the CURVE client of what it connects to (a broker's XSUB or a
// subscriber that binds), or, with --bind --register, of the broker's directory only.
#include "broker_list.hpp"
#include "command.hpp"
#include "progress.hpp"
#include "config.hpp"
#include "security_flags.hpp"
#include "stop_signal.hpp"

#include <zmesh/endpoint.hpp>
#include <zmesh/pubsub/directory.hpp>
#include <zmesh/pubsub/publisher.hpp>

#include <cerrno>
#include <optional>
#include <cstdio>
#include <iostream>

namespace zmesh::cli {
namespace {

using clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

void check_endpoints(const std::vector<std::string>& endpoints, const char* flag, bool connecting) {
    for (const auto& ep : endpoints) {
        std::error_code ec;
        std::string why;
        const auto parts = parse_endpoint(ep, ec, &why);
        if (!parts)
            throw usage_error(std::string("invalid ") + flag + " '" + ep + "': " + why);
        if (connecting && parts->kind == transport::tcp && parts->port == "*")
            throw usage_error(std::string("invalid ") + flag + " '" + ep +
                              "': cannot connect to a wildcard port");
    }
}

/// Answers probes and counts subscriptions until @p until, or a stop signal.
void idle_until(pubsub::publisher& pub, clock::time_point until) {
    while (!stop_requested()) {
        const auto left = std::chrono::ceil<milliseconds>(until - clock::now());
        if (left <= milliseconds(0))
            return;
        pub.poll_subscriptions(left);
    }
}

} // namespace

int run_pub(const std::vector<std::string>& args) {
    namespace po = boost::program_options;
    std::vector<std::string> connect, bind;
    std::string topic, type, text, register_name, broker = default_broker_endpoint();
    double rate = 0;
    long long count = 1, wait_subscribers = 0, size = -1, settle_ms = -1;
    int hwm = 1000, wait_ms = 5000, linger_ms = 2000;
    po::options_description options("options");
    options.add_options()
        ("connect", po::value(&connect)->composing(),
         "endpoint to connect to, e.g. a broker's XSUB side (repeatable, or a comma-separated "
         "list: both brokers of a Binary Star pair)")
        ("bind", po::value(&bind)->composing(), "endpoint to bind (repeatable)")
        ("topic", po::value(&topic)->required(), "topic of every message")
        ("rate", po::value(&rate)->default_value(rate),
         "messages per second; 0 = as fast as possible")
        ("count", po::value(&count)->default_value(count), "how many times to publish MESSAGE")
        ("size", po::value(&size), "payload size in bytes: pads MESSAGE (or each line) with '.', "
                                   "or generates B bytes of 'x' if there is no MESSAGE")
        ("type", po::value(&type), "header type of every message")
        ("lossless", "wait for slow subscribers instead of dropping (ZMQ_XPUB_NODROP)")
        ("hwm", po::value(&hwm)->default_value(hwm), "messages queued per subscriber")
        ("wait-subscribers", po::value(&wait_subscribers)->default_value(wait_subscribers),
         "before publishing, wait for N subscriptions (one per subscriber and topic prefix; "
         "with --connect, a subscription to everything is a forwarder's last-value cache and "
         "does not count)")
        ("wait-ms", po::value(&wait_ms)->default_value(wait_ms),
         "how long --wait-subscribers may wait, in ms")
        ("settle-ms", po::value(&settle_ms),
         "pause before publishing so connections and subscriptions can form "
         "(default: 200 with --connect, else 0); messages sent earlier may be lost")
        ("linger-ms", po::value(&linger_ms)->default_value(linger_ms),
         "at exit, how long to keep delivering queued messages, in ms")
        ("register", po::value(&register_name),
         "list the bound endpoint under NAME in the broker's directory while publishing")
        ("broker", po::value(&broker)->default_value(broker),
         "broker MDP endpoint for --register, or a comma-separated list (a Binary Star pair: "
         "the registration follows the active one)")
        ("message", po::value(&text), "payload, or - to publish each line of stdin");
    client_security_flags security_flags;
    security_flags.add_to(options);
    server_security_flags server_flags;
    server_flags.add_peer_to(options, "subscribers");
    po::positional_options_description positional;
    positional.add("message", 1);
    po::variables_map vm;
    if (!parse("pub",
               "(--connect EP [--curve-server-key F --curve-key F] | --bind EP [--curve-secret F "
               "--allow DIR]) --topic T [options] [MESSAGE | -]",
               options, args, vm, &positional))
        return ok;

    if (connect.empty() && bind.empty()) throw usage_error("give --connect or --bind");
    // A comma-separated --connect is the same as --connect repeated (a Binary Star pair's
    // two brokers, say).
    connect = comma_list(connect);
    if (vm.count("register") && bind.empty()) throw usage_error("--register needs --bind");
    // A list (a Binary Star pair): the registration follows the active broker.
    std::vector<std::string> brokers;
    if (vm.count("register")) brokers = broker_list({broker});
    check_endpoints(connect, "--connect", true);
    check_endpoints(bind, "--bind", false);
    if (topic.rfind(std::string_view("\0zmesh.", 7), 0) == 0)
        throw usage_error("topics starting with \\0zmesh. are reserved");
    if (!(rate >= 0)) throw usage_error("--rate must not be negative");
    if (count < 1) throw usage_error("--count must be at least 1");
    if (vm.count("size") && size < 0) throw usage_error("--size must not be negative");
    if (hwm < 0) throw usage_error("--hwm must not be negative");
    if (wait_subscribers < 0) throw usage_error("--wait-subscribers must not be negative");
    if (wait_ms <= 0) throw usage_error("--wait-ms must be positive");
    if (vm.count("settle-ms") && settle_ms < 0)
        throw usage_error("--settle-ms must not be negative");
    if (linger_ms < 0) throw usage_error("--linger-ms must not be negative");
    const bool from_stdin = text == "-";
    if (from_stdin && !vm["count"].defaulted()) throw usage_error("--count does not apply to -");
    if (!vm.count("settle-ms")) settle_ms = connect.empty() ? 0 : 200;

    auto payload_of = [&](std::string body) {
        if (size >= 0 && body.size() < static_cast<std::size_t>(size))
            body.resize(static_cast<std::size_t>(size), vm.count("message") ? '.' : 'x');
        return body;
    };

    // The client keys are for --connect (a broker's XSUB or a binding subscriber) or, with
    // --bind, for --register (the broker's directory); the server flags for --bind. libzmq makes
    // one socket either a CURVE client or a CURVE server, hence one role per publisher.
    const bool serving = server_flags.on();
    if (serving && bind.empty())
        throw usage_error("--curve-secret and --allow are for --bind: they make this publisher the "
                          "CURVE server of the subscribers that connect to it");
    if (serving && !connect.empty())
        throw usage_error("--curve-secret and --allow (for --bind) cannot go with --connect: a "
                          "socket is either a CURVE server or a CURVE client; run one zmesh pub "
                          "per side");
    auto server = server_flags.peer_server();
    // Keys from the environment or the configuration file are for what this command connects
    // to: a publisher that only binds connects to nothing, and leaves them unused.
    auto curve = connect.empty() && register_name.empty() && !security_flags.given_as_flags()
                     ? std::nullopt
                     : security_flags.load();
    if (curve && !bind.empty() && !connect.empty())
        throw usage_error("with --bind and --connect together, CURVE keys cannot say which they "
                          "are for: give the broker's XSUB with --connect only");
    if (curve && !bind.empty() && register_name.empty())
        throw usage_error("--curve-server-key and --curve-key (or ZMESH_CURVE_SERVER_KEY and "
                          "ZMESH_CURVE_KEY) are for --connect, or for the broker's directory with "
                          "--register; a publisher that binds takes --curve-secret and --allow");

    // SIGHUP re-reads --allow, only when serving: elsewhere it keeps its default meaning.
    peer_reloader reloader(server_flags, server.has_value()); // before the context

    install_stop_signals();
    zmq::context_t ctx;
    pubsub::publisher_options popts;
    if (bind.empty()) popts.curve = curve;
    popts.curve_server = std::move(server);
    popts.connect = connect;
    popts.bind = bind;
    popts.lossless = vm.count("lossless") > 0;
    popts.socket.send_hwm = hwm;
    popts.socket.linger = milliseconds(linger_ms);
    // Several brokers (a Binary Star pair): a connection that dies takes its queue and its
    // subscriptions with it, so a dead broker's full queue cannot hold a lossless publisher.
    if (connect.size() > 1) popts.socket.immediate = true;
    pubsub::publisher pub(ctx, popts);
    const auto reloading = reloader.apply_to(pub);
    // One line per bound endpoint, so a script can read ephemeral ports.
    for (const auto& ep : pub.endpoints()) std::printf("%s\n", ep.c_str());
    std::fflush(stdout);
    // Subscribers find us by name; the registration lapses by itself if we die (its ttl).
    std::optional<pubsub::directory_registration> registration;
    if (!register_name.empty())
        registration.emplace(ctx, brokers, register_name, pub.endpoints().front(),
                             std::chrono::milliseconds(10000), std::chrono::milliseconds(2500),
                             curve);

    // In slices, so that a stop signal ends the wait.
    const auto subscriptions = static_cast<std::size_t>(wait_subscribers);
    const auto wait_end = clock::now() + milliseconds(wait_ms);
    // Through a forwarder (--connect) with a last-value cache, the forwarder's own subscription
    // to everything (the empty prefix) arrives whether or not anyone listens: it does not count
    // as a subscriber there. A subscriber bound with --bind counts whatever its prefix.
    const auto wanted = [&] {
        return subscriptions + (connect.empty() ? 0 : pub.stats().catch_all_subscribes);
    };
    // wanted() grows when the catch-all arrives inside a wait: a wait that ends is checked
    // against it again.
    const auto enough = [&] { return pub.stats().subscribes >= wanted(); };
    while (!stop_requested() &&
           !(pub.wait_for_subscribers(wanted(), milliseconds(100)) && enough()))
        if (clock::now() >= wait_end) {
            std::string where; // the endpoints the subscriptions would have come through
            for (const auto& ep : connect) where += (where.empty() ? "" : ", ") + ep;
            for (const auto& ep : pub.endpoints()) where += (where.empty() ? "" : ", ") + ep;
            throw std::runtime_error("fewer than " + std::to_string(wait_subscribers) +
                                     " subscriptions within " + std::to_string(wait_ms) +
                                     " ms (--wait-subscribers) at " + where);
        }
    idle_until(pub, clock::now() + milliseconds(settle_ms));

    const auto period = rate > 0 ? std::chrono::duration<double>(1.0 / rate)
                                 : std::chrono::duration<double>(0);
    const auto start = clock::now();
    std::uint64_t sent = 0;
    progress_line progress("pub", "published");
    auto publish_one = [&](std::string body) {
        if (rate > 0)
            idle_until(pub, start + std::chrono::duration_cast<clock::duration>(
                                         period * static_cast<double>(sent)));
        if (stop_requested()) return false;
        try {
            pub.publish(topic, payload_of(std::move(body)), type);
        } catch (const zmq::error_t& e) {
            if (e.num() == EINTR) return false; // a stop signal interrupted a lossless wait
            throw;
        }
        ++sent;
        progress.tick(sent);
        return true;
    };

    if (from_stdin) {
        std::string line;
        while (std::getline(std::cin, line))
            if (!publish_one(line)) break;
    } else {
        for (long long i = 0; i < count; ++i)
            if (!publish_one(text)) break;
    }
    const auto st = pub.stats();
    progress.finish(sent, st.refused ? ", " + std::to_string(st.refused) +
                                           " times the lossless queue was full"
                                     : std::string());
    // ~publisher closes the socket and ~context keeps delivering what is queued for --linger-ms.
    return ok;
}

} // namespace zmesh::cli
