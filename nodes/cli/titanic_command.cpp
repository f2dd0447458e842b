// SPDX-License-Identifier: MPL-2.0
// titanic_command.cpp — `zmesh titanic`: maps flags to a titanic_config and runs the Titanic node
// (durable request/reply, rfc 9/TSP) until SIGINT or SIGTERM.
//
// The node runs on its own thread while this one waits for a stop signal: the node's loop has no
// signal handling of its own, and a flag polled here keeps the signal handler trivial.
#include "broker_list.hpp"
#include "command.hpp"
#include "config.hpp"
#include "security_flags.hpp"
#include "stop_signal.hpp"
#include "titanic_status.hpp"

#include <zmesh/endpoint.hpp>
#include <zmesh/log.hpp>
#include <zmesh/mdp/protocol.hpp>
#include <zmesh/nodes/titanic.hpp>

#include <chrono>
#include <cstdio>
#include <optional>
#include <string>
#include <thread>

namespace zmesh::cli {

int run_titanic_query(const std::vector<std::string>& args); // titanic_query.cpp

int run_titanic(const std::vector<std::string>& args) {
    // zmesh titanic status|reply ID: ask a running node, rather than run one.
    if (!args.empty() && (args.front() == "status" || args.front() == "reply"))
        return run_titanic_query(args);
    namespace po = boost::program_options;
    nodes::titanic_config cfg;
    std::string store = cfg.store_path.string(), sync = "full", log_level = "info";
    unsigned max_attempts = cfg.max_attempts;
    std::size_t connections = cfg.request_connections, concurrency = cfg.dispatch_concurrency;
    std::uint32_t credit = cfg.request_credit;
    long heartbeat_ms = static_cast<long>(cfg.heartbeat.count());
    long timeout_ms = static_cast<long>(cfg.request_timeout.count());
    long lease_ms = static_cast<long>(cfg.claim_lease.count());
    std::string http_address; // --http: off unless given
    po::options_description options("options");
    options.add_options()
        ("broker", po::value(&cfg.broker_endpoint)->default_value(default_broker_endpoint()),
         "broker endpoint, or a comma-separated list: a Binary Star pair, whose active broker the "
         "node follows (env ZMESH_BROKER)")
        ("store", po::value(&store)->default_value(store),
         "SQLite store file (created if missing), or a PostgreSQL connection string "
         "(postgresql://..., postgres://..., or libpq's 'host=... dbname=...'; tables created if "
         "missing; several nodes may share it)")
        ("node-id", po::value(&cfg.node_id),
         "name this node claims stored requests under; unique per node sharing a store "
         "(default: host:pid:random for PostgreSQL, 'local' for SQLite)")
        ("lease-ms", po::value(&lease_ms)->default_value(lease_ms),
         "how long a claim holds a request for this node; another node takes over a dead "
         "node's requests this long after its last renewal")
        ("sync", po::value(&sync)->default_value(sync),
         "full (fsync each commit) or normal (fsync at checkpoints)")
        ("max-attempts", po::value(&max_attempts)->default_value(max_attempts),
         "failed dispatches before a request is dead-lettered")
        ("connections", po::value(&connections)->default_value(connections),
         "worker connections for titanic.request")
        ("credit", po::value(&credit)->default_value(credit),
         "submissions the broker may queue at each connection (connections × credit = most "
         "requests one commit acknowledges); 1 = plain MDP/0.1, for a broker that is not zmesh's")
        ("concurrency", po::value(&concurrency)->default_value(concurrency),
         "requests dispatched to their services at once")
        ("timeout-ms", po::value(&timeout_ms)->default_value(timeout_ms),
         "wait for a service's reply before the attempt counts as failed")
        ("heartbeat-ms", po::value(&heartbeat_ms)->default_value(heartbeat_ms),
         "heartbeat interval; must match the broker's")
        ("log-level", po::value(&log_level)->default_value(log_level), "error, warn, info or debug")
        ("http", po::value(&http_address),
         "serve /metrics (Prometheus: stored, replied, pending, dead...), /healthz and "
         "/api/status (JSON) on HOST:PORT; port 0 picks one, printed on stdout (docs/metrics.md)");
    client_security_flags security_flags;
    security_flags.add_to(options);
    po::variables_map vm;
    if (!parse("titanic", "[--broker EP] [--store PATH|postgresql://...] [options]", options,
               args, vm))
        return ok;

    auto level = parse_log_level(log_level);
    if (!level) throw usage_error("invalid --log-level '" + log_level + "'");
    if (sync == "full")
        cfg.sync = nodes::titanic_sync::full;
    else if (sync == "normal")
        cfg.sync = nodes::titanic_sync::normal;
    else
        throw usage_error("invalid --sync '" + sync + "': expected full or normal");
    if (max_attempts == 0) throw usage_error("--max-attempts must be positive");
    if (connections == 0 || connections > 1024)
        throw usage_error("--connections must be in [1, 1024]");
    if (credit == 0 || credit > mdp::max_worker_credit)
        throw usage_error("--credit must be in [1, " + std::to_string(mdp::max_worker_credit) + "]");
    if (concurrency == 0 || concurrency > 1024)
        throw usage_error("--concurrency must be in [1, 1024]");
    if (heartbeat_ms <= 0) throw usage_error("--heartbeat-ms must be positive");
    if (timeout_ms <= 0) throw usage_error("--timeout-ms must be positive");
    if (lease_ms <= 0) throw usage_error("--lease-ms must be positive");
    if (store.empty()) throw usage_error("--store must not be empty");
    // A list (a Binary Star pair): the node's workers and its dispatch follow the active broker.
    cfg.broker_endpoints = broker_list({cfg.broker_endpoint});
    if (cfg.broker_endpoints.size() > 64) throw usage_error("--broker: at most 64 endpoints");
    set_log_level(*level);
    cfg.curve = security_flags.load();
    cfg.store_path = store;
    cfg.max_attempts = max_attempts;
    cfg.request_connections = connections;
    cfg.request_credit = credit;
    cfg.dispatch_concurrency = concurrency;
    cfg.heartbeat = std::chrono::milliseconds(heartbeat_ms);
    cfg.request_timeout = std::chrono::milliseconds(timeout_ms);
    cfg.claim_lease = std::chrono::milliseconds(lease_ms);

    install_stop_signals();
    zmq::context_t ctx;
    nodes::titanic_node node(ctx, cfg); // a store that is not ours throws here: exit 1
    node.start();
    std::optional<http_status_server> http; // stopped before the node
    if (!http_address.empty()) {
        http.emplace(http_address, titanic_status_sources(node, store));
        std::printf("%s\n", http->url().c_str());
        std::fflush(stdout);
        log(log_level::info, "titanic: HTTP status on %s (/metrics, /healthz, /api/status)",
            http->url().c_str());
    }
    // start() returns before the thread is in its loop; give it a moment to get there, so that
    // the wait below ends only on a signal or when the loop has really ended.
    for (int i = 0; i < 100 && !node.running() && !stop_requested(); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    while (!stop_requested() && node.running())
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    http.reset();
    node.stop();
    const auto s = node.stats();
    log(log_level::info,
        "titanic: stopped; stored %llu in %llu commits, replied %llu, dead-lettered %llu",
        static_cast<unsigned long long>(s.stored), static_cast<unsigned long long>(s.batches),
        static_cast<unsigned long long>(s.replied),
        static_cast<unsigned long long>(s.dead_lettered));
    return ok;
}

} // namespace zmesh::cli
