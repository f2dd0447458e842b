// SPDX-License-Identifier: MPL-2.0
// broker_command.cpp — `zmesh broker`: maps flags to a broker_config and runs the broker node.
//
// The pub/sub forwarder is opt-in: it opens two more ports, so it runs only when --xsub, --xpub or
// --pubsub is given; an endpoint not given takes its default (5556 XSUB, 5557 XPUB).
#include "broker_status.hpp"
#include "command.hpp"
#include "http_status.hpp"
#include "security_flags.hpp"

#include <zmesh/endpoint.hpp>
#include <zmesh/log.hpp>
#include <zmesh/nodes/broker.hpp>
#include <zmesh/nodes/metrics_text.hpp>

#include <cstdio>
#include <optional>
#include <string>
#include <utility>

namespace zmesh::cli {

int run_broker(const std::vector<std::string>& args) {
    namespace po = boost::program_options;
    nodes::broker_config cfg;
    int heartbeat_ms = static_cast<int>(cfg.heartbeat_interval.count());
    std::string log_level = "info";
    std::string http_address; // --http: off unless given
    std::size_t max_queue = cfg.max_queue;
    unsigned max_attempts = cfg.max_attempts;
    long request_ttl_ms = static_cast<long>(cfg.request_ttl.count());
    long dedupe_window_ms = static_cast<long>(cfg.dedupe_window.count());
    std::size_t dlq_max = cfg.dlq_max;
    std::string max_memory = std::to_string(cfg.max_memory >> 20) + "M";
    std::string max_client_memory = std::to_string(cfg.max_client_memory >> 20) + "M";
    const std::string default_xsub = "tcp://127.0.0.1:5556";
    const std::string default_xpub = "tcp://127.0.0.1:5557";
    bool pubsub = false;
    std::size_t lvc_max_topics = cfg.lvc_max_topics;
    std::string ha_role, ha_peer_key;
    po::options_description options("options");
    options.add_options()
        ("mdp", po::value(&cfg.mdp_endpoint)->default_value(cfg.mdp_endpoint),
         "MDP endpoint to bind (tcp://127.0.0.1:* picks a free port)")
        ("http", po::value(&http_address),
         "serve /metrics (Prometheus), /healthz, /api/status (JSON) and a status page at / on "
         "HOST:PORT (port 0 picks a free one; off by default; docs/metrics.md)")
        ("heartbeat-ms", po::value(&heartbeat_ms)->default_value(heartbeat_ms),
         "heartbeat interval towards workers, in ms")
        ("liveness", po::value(&cfg.liveness)->default_value(cfg.liveness),
         "missed heartbeats before a worker is declared dead")
        ("max-queue", po::value(&max_queue)->default_value(max_queue),
         "requests a service may queue before new ones are rejected")
        ("max-attempts", po::value(&max_attempts)->default_value(max_attempts),
         "deliveries of a request to dying workers before it is rejected")
        ("dedupe-window-ms", po::value(&dedupe_window_ms)->default_value(dedupe_window_ms),
         "keep the reply to a request with a message id this long, so that a retry gets it "
         "instead of running the request again (within --max-memory); 0 = off")
        ("dlq-max", po::value(&dlq_max)->default_value(dlq_max),
         "dead-lettered requests kept (zmesh dlq --broker), oldest dropped first; 0 = none")
        ("request-ttl-ms", po::value(&request_ttl_ms)->default_value(request_ttl_ms),
         "reject a request no worker took within this many ms (0 = never)")
        ("max-memory", po::value(&max_memory)->default_value(max_memory),
         "bytes the broker may hold for its peers: queued and in-flight requests, replies not "
         "yet written (suffix k, M or G)")
        ("max-client-memory", po::value(&max_client_memory)->default_value(max_client_memory),
         "bytes one client may hold: its requests and unread replies (suffix k, M or G)")
        ("max-clients", po::value(&cfg.max_clients)->default_value(cfg.max_clients),
         "clients the broker tracks at most")
        ("max-client-requests",
         po::value(&cfg.max_client_requests)->default_value(cfg.max_client_requests),
         "requests one client may have queued or in flight")
        ("max-key-requests",
         po::value(&cfg.max_key_requests)->default_value(cfg.max_key_requests),
         "with CURVE: requests one client key may have outstanding over all its connections")
        ("max-key-publish-rate",
         po::value(&cfg.max_key_publish_rate)->default_value(cfg.max_key_publish_rate),
         "with CURVE: messages per second one client key may publish through the forwarder, "
         "over all its connections (bursts of one second's worth); 0: no limit")
        ("max-services", po::value(&cfg.max_services)->default_value(cfg.max_services),
         "services the broker tracks at most")
        ("xsub", po::value(&cfg.xsub_endpoint),
         ("run the pub/sub forwarder; XSUB endpoint publishers connect to (default " +
          default_xsub + ")").c_str())
        ("xpub", po::value(&cfg.xpub_endpoint),
         ("run the pub/sub forwarder; XPUB endpoint subscribers connect to (default " +
          default_xpub + ")").c_str())
        ("pubsub", po::bool_switch(&pubsub), "run the pub/sub forwarder on the default endpoints")
        ("lossless", po::bool_switch(&cfg.lossless),
         "forwarder: hold publishers back instead of dropping for a full subscriber")
        ("lvc", po::bool_switch(&cfg.lvc),
         "forwarder: keep the last value of every topic (zmesh.lvc)")
        ("lvc-max-topics", po::value(&lvc_max_topics)->default_value(lvc_max_topics),
         "topics the last-value cache holds before evicting the least recently updated")
        ("pubsub-hwm", po::value(&cfg.pubsub_hwm)->default_value(cfg.pubsub_hwm),
         "messages queued per publisher and per subscriber by the forwarder (0 = no limit)")
        ("max-subscriptions",
         po::value(&cfg.max_subscriptions)->default_value(cfg.max_subscriptions),
         "forwarder: distinct subscriptions tracked before new ones are refused")
        ("max-directory-entries",
         po::value(&cfg.max_directory_entries)->default_value(cfg.max_directory_entries),
         "registrations the zmesh.directory service holds at most")
        ("ha", po::value(&ha_role),
         "Binary Star: primary or backup of a high-availability pair (needs --ha-bind and "
         "--ha-peer; docs/patterns/binary_star.md)")
        ("ha-bind", po::value(&cfg.ha_bind), "Binary Star: endpoint where this broker announces its state")
        ("ha-peer", po::value(&cfg.ha_peer), "Binary Star: the peer's --ha-bind endpoint")
        ("ha-peer-key", po::value(&ha_peer_key),
         "Binary Star with --curve-secret: the peer broker's public key (PEER.key), which the "
         "HA link trusts; PEER.key must be in --allow too")
        ("log-level", po::value(&log_level)->default_value(log_level), "error, warn, info or debug");
    server_security_flags security_flags;
    security_flags.add_to(options);
    po::variables_map vm;
    if (!parse("broker", "[options]", options, args, vm)) return ok;

    auto level = parse_log_level(log_level);
    if (!level) throw usage_error("invalid --log-level '" + log_level + "'");
    if (heartbeat_ms <= 0) throw usage_error("--heartbeat-ms must be positive");
    if (cfg.liveness < 1) throw usage_error("--liveness must be at least 1");
    if (max_queue == 0) throw usage_error("--max-queue must be positive");
    if (max_attempts == 0) throw usage_error("--max-attempts must be positive");
    if (request_ttl_ms < 0) throw usage_error("--request-ttl-ms must not be negative");
    if (dedupe_window_ms < 0) throw usage_error("--dedupe-window-ms must not be negative");
    const auto memory = parse_byte_size(max_memory);
    if (!memory || *memory == 0)
        throw usage_error("invalid --max-memory '" + max_memory +
                          "': give a positive byte count, optionally with k, M or G");
    const auto backlog = parse_byte_size(max_client_memory);
    if (!backlog || *backlog == 0 || *backlog > *memory)
        throw usage_error("invalid --max-client-memory '" + max_client_memory +
                          "': give a positive byte count (k, M or G) no larger than --max-memory");
    if (cfg.max_clients == 0) throw usage_error("--max-clients must be positive");
    if (cfg.max_client_requests == 0) throw usage_error("--max-client-requests must be positive");
    if (cfg.max_key_requests == 0) throw usage_error("--max-key-requests must be positive");
    if (cfg.max_services == 0) throw usage_error("--max-services must be positive");
    if (cfg.max_key_publish_rate != 0 && security_flags.curve_secret.empty())
        throw usage_error("--max-key-publish-rate needs --curve-secret: without CURVE no "
                          "publisher has a key");
    std::error_code ec;
    std::string why;
    if (!parse_endpoint(cfg.mdp_endpoint, ec, &why))
        throw usage_error("invalid --mdp '" + cfg.mdp_endpoint + "': " + why);
    pubsub = pubsub || vm.count("xsub") || vm.count("xpub");
    if (pubsub) {
        if (cfg.xsub_endpoint.empty()) cfg.xsub_endpoint = default_xsub;
        if (cfg.xpub_endpoint.empty()) cfg.xpub_endpoint = default_xpub;
        for (const auto& [flag, ep] : {std::pair{"--xsub", &cfg.xsub_endpoint},
                                       std::pair{"--xpub", &cfg.xpub_endpoint}})
            if (!parse_endpoint(*ep, ec, &why))
                throw usage_error(std::string("invalid ") + flag + " '" + *ep + "': " + why);
    } else if (cfg.lvc || cfg.lossless || !vm["lvc-max-topics"].defaulted() ||
               !vm["pubsub-hwm"].defaulted() || !vm["max-subscriptions"].defaulted()) {
        throw usage_error("--lossless, --lvc, --lvc-max-topics, --pubsub-hwm and "
                          "--max-subscriptions need the forwarder: add --pubsub, --xsub or --xpub");
    }
    if (lvc_max_topics == 0) throw usage_error("--lvc-max-topics must be positive");
    if (cfg.pubsub_hwm < 0) throw usage_error("--pubsub-hwm must not be negative");
    if (cfg.max_subscriptions == 0) throw usage_error("--max-subscriptions must be positive");
    if (cfg.max_directory_entries == 0)
        throw usage_error("--max-directory-entries must be positive");
    if (vm.count("ha") || vm.count("ha-bind") || vm.count("ha-peer")) {
        cfg.ha_role = patterns::binary_star::parse_role(ha_role);
        if (!cfg.ha_role) throw usage_error("invalid --ha '" + ha_role + "': give primary or backup");
        if (cfg.ha_bind.empty() || cfg.ha_peer.empty())
            throw usage_error("--ha needs --ha-bind and --ha-peer");
        for (const auto& [flag, ep] : {std::pair{"--ha-bind", &cfg.ha_bind},
                                       std::pair{"--ha-peer", &cfg.ha_peer}})
            if (!parse_endpoint(*ep, ec, &why))
                throw usage_error(std::string("invalid ") + flag + " '" + *ep + "': " + why);
        if (!security_flags.curve_secret.empty() && ha_peer_key.empty())
            throw usage_error("--ha with --curve-secret needs --ha-peer-key PEER.key: the peer "
                              "broker's public key, for the encrypted HA link");
        if (security_flags.curve_secret.empty() && !ha_peer_key.empty())
            throw usage_error("--ha-peer-key is for a broker with --curve-secret");
        if (!ha_peer_key.empty()) cfg.ha_peer_key = security::load_public(ha_peer_key).public_key;
    } else if (!ha_peer_key.empty()) {
        throw usage_error("--ha-peer-key needs --ha");
    }
    cfg.lvc_max_topics = lvc_max_topics;
    set_log_level(*level);
    cfg.heartbeat_interval = std::chrono::milliseconds(heartbeat_ms);
    cfg.max_queue = max_queue;
    cfg.max_attempts = max_attempts;
    cfg.request_ttl = std::chrono::milliseconds(request_ttl_ms);
    cfg.dedupe_window = std::chrono::milliseconds(dedupe_window_ms);
    cfg.dlq_max = dlq_max;
    cfg.max_memory = *memory;
    cfg.max_client_memory = *backlog;

    // Security: the files are read now, so that a bad key or a secret file others can read
    // stops the broker before it binds anything.
    cfg.curve = security_flags.certificate();
    if (security_flags.on()) cfg.access = security_flags.policy();
    cfg.acl = security_flags.acl();
    nodes::broker* running = nullptr;
    sighup_reloader reloader(
        security_flags,
        [&running](security::access_policy p, std::shared_ptr<const security::access_list> acl) {
            if (acl) running->set_acl(std::move(acl));
            running->set_access(std::move(p));
        }); // before the context: its threads inherit SIGHUP blocked

    zmq::context_t ctx;
    nodes::broker broker(ctx, cfg);
    running = &broker;
    reloader.start();
    // The HTTP endpoint reads the broker through metrics(), which is thread-safe; its server
    // stops (and joins its threads) before the broker is destroyed.
    std::optional<http_status_server> http;
    if (!http_address.empty()) {
        http.emplace(http_address,
                     http_status_sources{
                         .metrics = [&broker] { return nodes::prometheus_text(broker.metrics()); },
                         .status_json =
                             [&broker] {
                                 return broker_status_json(broker.metrics(), broker.endpoints());
                             },
                         .unhealthy =
                             [&broker] {
                                 return broker.running() ? std::string()
                                                         : std::string("broker loop not running");
                             },
                         .page = broker_status_page()});
        log(log_level::info, "broker: HTTP status on %s (/metrics, /healthz, /api/status)",
            http->url().c_str());
    }
    if (cfg.curve)
        log(log_level::info, "broker: CURVE on, %zu client keys allowed from %s%s%s",
            cfg.access.keys.size(), security_flags.allow_dir.c_str(),
            cfg.acl ? ", access list " : "", security_flags.acl_file.c_str());
    // One line per bound endpoint, so a script can read ephemeral ports: MDP, then XSUB and
    // XPUB if the forwarder runs, then the HA endpoint of a Binary Star broker.
    for (const auto& ep : broker.endpoints()) std::printf("%s\n", ep.c_str());
    if (cfg.ha_role) std::printf("%s\n", broker.ha_endpoint().c_str());
    if (http) std::printf("%s\n", http->url().c_str()); // the last line, with --http only
    std::fflush(stdout);
    broker.run(true);
    return ok;
}

} // namespace zmesh::cli
