// SPDX-License-Identifier: MPL-2.0
// broker.cpp — the broker node's sockets, loop, thread and shutdown around mdp_engine, the
// pub/sub forwarder and the directory.
//
// Everything runs on one reactor thread. The forwarder shares it with the MDP engine on purpose:
// a `zmesh.lvc` snapshot is then taken between two forwarded messages, never during one, which is
// what lets a subscriber merge it with the live stream without duplicates or gaps.
#include <zmesh/nodes/broker.hpp>

#include "client_handles.hpp"
#include "directory.hpp"
#include "forwarder.hpp"
#include "ha_pair.hpp"
#include "mdp_engine.hpp"
#include "socket_monitor.hpp"

#include <zmesh/endpoint.hpp>
#include <zmesh/error.hpp>
#include <zmesh/log.hpp>
#include <zmesh/mdp/protocol.hpp>
#include <zmesh/reactor.hpp>
#include <zmesh/socket_options.hpp>

#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstring>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

namespace zmesh::nodes {

class broker::impl {
  public:
    impl(zmq::context_t& ctx, broker_config config)
        : config_(std::move(config)), router_(zmesh::make_seeded_router(ctx)),
          monitor_(detail::watch_connections(ctx, router_, "broker")), router_out_(router_),
          engine_(config_, router_out_),
          directory_(config_.max_directory_entries) {
        if (config_.heartbeat_interval.count() <= 0)
            throw error(errc::invalid_argument, "heartbeat interval must be positive");
        if (config_.liveness < 1) throw error(errc::invalid_argument, "liveness must be at least 1");
        if (config_.max_queue == 0) throw error(errc::invalid_argument, "max queue must be positive");
        if (config_.max_memory == 0)
            throw error(errc::invalid_argument, "max memory must be positive");
        if (config_.max_client_memory == 0 || config_.max_client_memory > config_.max_memory)
            throw error(errc::invalid_argument,
                        "max client backlog must be positive and at most max memory");
        if (config_.max_clients == 0)
            throw error(errc::invalid_argument, "max clients must be positive");
        if (config_.max_key_requests == 0)
            throw error(errc::invalid_argument, "max key requests must be positive");
        if (config_.max_client_requests == 0)
            throw error(errc::invalid_argument, "max client requests must be positive");
        const bool pubsub = !config_.xsub_endpoint.empty() || !config_.xpub_endpoint.empty();
        if (pubsub && (config_.xsub_endpoint.empty() || config_.xpub_endpoint.empty()))
            throw error(errc::invalid_argument,
                        "the pub/sub forwarder needs both an XSUB and an XPUB endpoint");
        if (!pubsub && (config_.lvc || config_.lossless))
            throw error(errc::invalid_argument,
                        "lvc and lossless need the pub/sub forwarder (XSUB and XPUB endpoints)");
        if (config_.lvc_max_topics == 0)
            throw error(errc::invalid_argument, "lvc max topics must be positive");
        if (config_.max_subscriptions == 0)
            throw error(errc::invalid_argument, "max subscriptions must be positive");
        if (config_.max_directory_entries == 0)
            throw error(errc::invalid_argument, "max directory entries must be positive");
        if (config_.hwm < 0 || config_.recv_hwm < 0)
            throw error(errc::invalid_argument, "HWMs must not be negative");
        if (config_.pubsub_hwm < 0)
            throw error(errc::invalid_argument, "pub/sub HWM must not be negative");
        socket_options o;
        o.send_hwm = config_.hwm;
        o.recv_hwm = config_.recv_hwm;
        o.max_message_size = config_.max_frame_size;
        // No ZMTP heartbeats on this ROUTER: libzmq 4.3 cancels a timer by a linear scan of its
        // I/O thread's timers, and every PONG cancels one that sits behind each connection's
        // own, so each heartbeat interval cost O(connections^2): 10,000 idle clients kept the
        // I/O thread busy (docs/perf.md, "Cost as work grows"). TCP keepalive, on the kernel's
        // timers, closes a half-open connection in the same time: 5 s idle, then 3 probes 5 s
        // apart.
        o.heartbeat_interval = std::chrono::milliseconds(0);
        apply(router_, o);
        router_.set(zmq::sockopt::tcp_keepalive, 1);
        router_.set(zmq::sockopt::tcp_keepalive_idle, 5);
        router_.set(zmq::sockopt::tcp_keepalive_intvl, 5);
        router_.set(zmq::sockopt::tcp_keepalive_cnt, 3);
        // Security before any bind: a connection must never meet a socket without it, and the
        // ZAP handler must be there for the first handshake.
        const bool address_rules =
            !config_.access.allow_addresses.empty() || !config_.access.deny_addresses.empty();
        if (config_.acl && !config_.curve)
            throw error(errc::invalid_argument,
                        "an access list needs CURVE: without it no peer has a key name");
        engine_.set_access_list(config_.acl);
        if (config_.curve || address_rules) {
            zap_.emplace(ctx, config_.access);
            if (config_.curve) security::make_curve_server(router_, *config_.curve);
            else security::use_zap(router_);
            reload_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
            if (reload_fd_ < 0)
                throw std::system_error(errno, std::generic_category(), "broker: eventfd");
        }
        // Unroutable sends must fail loudly (EHOSTUNREACH) so a vanished worker is noticed at once
        // and its request kept, instead of being dropped silently by the ROUTER.
        router_.set(zmq::sockopt::router_mandatory, 1);
        endpoints_.push_back(zmesh::bind(router_, config_.mdp_endpoint));
        // Closed connections are reported at once by libzmq's monitor, matched to peers by the
        // descriptor their messages came on: a killed worker's requests move on within
        // milliseconds instead of after heartbeat × liveness.
        engine_.set_disconnect_sync([this] { drain_monitor(); });
        if (config_.ha_role) {
            ha_.emplace(ctx, config_, reactor::clock::now());
            // Workers send the replies they kept here after a failover (mdp::worker_options::
            // replay_window); retries of their requests get them instead of running again.
            engine_.add_internal_service(std::string(mdp::zmesh_replay),
                                         [this](message& request, message& reply) {
                const bool ok = ha_->on_replay(request, router_out_, reactor::clock::now());
                reply.push_back(std::string_view(ok ? "200" : "400"));
            });
        }
        if (pubsub) {
            forwarder_.emplace(ctx, config_);
            endpoints_.push_back(forwarder_->xsub_endpoint());
            endpoints_.push_back(forwarder_->xpub_endpoint());
        }
        // Registered whether or not the cache runs, so that asking a broker without one gets
        // "404" (no cache here) rather than "501" (unknown service).
        engine_.add_internal_service("zmesh.lvc", [this](message& request, message& reply) {
            auto* lvc = forwarder_ ? forwarder_->lvc() : nullptr;
            if (!lvc) {
                reply.push_back(std::string_view("404"));
                return;
            }
            const auto prefix = request.empty() ? std::string_view() : view(request[0]);
            // A snapshot of a prefix shows what a subscription to it would: the same rule.
            if (!engine_.caller_may(security::permission::subscribe, prefix)) {
                reply.push_back(std::string_view("403"));
                return;
            }
            reply.push_back(std::string_view("200"));
            lvc->snapshot(prefix, reply);
        });
        engine_.add_internal_service("zmesh.directory", [this](message& request, message& reply) {
            directory_.handle(request, reply, reactor::clock::now());
        });
        engine_.add_stats_source([this](broker_stats& s) {
            if (forwarder_) forwarder_->fill(s);
            if (ha_) ha_->fill(s);
            s.directory_entries = directory_.entries();
            if (zap_) {
                const auto z = zap_->stats();
                s.connections_admitted = z.admitted;
                s.connections_refused = z.refused;
                s.cut_off = cut_off_.load(std::memory_order_relaxed);
            }
        });
    }

    ~impl() {
        if (reload_fd_ >= 0) ::close(reload_fd_);
    }

    void run(bool handle_signals) {
        {
            std::lock_guard lock(mutex_);
            if (running_) throw error(errc::invalid_argument, "broker is already running");
            running_ = true;
            if (stop_requested_) {
                running_ = false;
                return;
            }
            reactor_.restart();
        }
        if (handle_signals) reactor_.stop_on_signals({SIGINT, SIGTERM});
        reactor_.add(router_, [this](zmq::socket_ref s) {
            // Drain what is ready, but bounded, so timers still run under a flood.
            for (int i = 0; i < 1000 && in_.recv(s, zmq::recv_flags::dontwait); ++i) {
                if (zap_) note_user();
                const auto now = reactor::clock::now();
                if (ha_ && !ha_->admit(in_, router_out_, now)) continue;
                engine_.on_message(in_, now);
            }
            arm_expiry();
        });
        if (reload_fd_ >= 0) {
            reactor_.add_fd(reload_fd_, [this](int fd) {
                std::uint64_t n = 0;
                while (::read(fd, &n, sizeof n) == static_cast<ssize_t>(sizeof n)) {}
                {
                    std::lock_guard lock(acl_mutex_);
                    if (next_acl_) {
                        if (forwarder_) forwarder_->set_access_list(*next_acl_);
                        engine_.set_access_list(std::move(*next_acl_));
                    }
                    next_acl_.reset();
                }
                cut_off_removed();
                arm_expiry();
            });
        }
        // By its descriptor, not as a socket: see monitor_descriptor().
        reactor_.add_fd(detail::monitor_descriptor(monitor_), [this](int) {
            drain_monitor();
            arm_expiry();
        });
        drain_monitor(); // events from before the descriptor was watched
        if (forwarder_) forwarder_->attach(reactor_);
        if (ha_ && forwarder_) {
            // Binary Star: only the active broker's forwarder takes publications (its
            // subscriptions alone go upstream), and a subscriber that lost the other broker asks
            // this one to take over (docs/patterns/binary_star.md).
            ha_->on_serving([this](bool serving) { forwarder_->set_upstream(serving); });
            forwarder_->on_takeover([this] { ha_->pubsub_request(reactor::clock::now()); });
        }
        if (ha_)
            ha_->attach(
                reactor_,
                [this](std::string_view why) {
                    // The guide's answer to dual actives or passives: stop, and let an operator
                    // look.
                    ha_fatal_ = std::string(why);
                    ha_->detach();
                    reactor_.stop();
                },
                [this](message& held) { engine_.on_message(held, reactor::clock::now()); });
        auto tick = reactor_.add_repeating_timer(config_.heartbeat_interval, [this] {
            const auto now = reactor::clock::now();
            engine_.on_tick(now);
            directory_.expire(now);
            arm_expiry();
        });
        if (config_.metrics_interval.count() > 0) {
            snapshot_services();
            metrics_timer_ = reactor_.add_repeating_timer(config_.metrics_interval,
                                                          [this] { snapshot_services(); });
        }
        std::optional<reactor::timer_id> expiry; // armed by arm_expiry()
        log(log_level::info, "broker: MDP on %s; memory bound %zu bytes, %zu per client",
            endpoints_.front().c_str(), config_.max_memory, config_.max_client_memory);
        if (forwarder_)
            log(log_level::info, "broker: pub/sub XSUB on %s, XPUB on %s (%s%s)",
                forwarder_->xsub_endpoint().c_str(), forwarder_->xpub_endpoint().c_str(),
                config_.lossless ? "lossless" : "lossy", config_.lvc ? ", last-value cache" : "");
        try {
            reactor_.run();
        } catch (...) {
            finish(tick, expiry);
            throw;
        }
        finish(tick, expiry);
        if (!ha_fatal_.empty())
            throw error(errc::protocol_violation, "Binary Star: " + ha_fatal_ + "; broker stopped");
    }

    /// Publishes the engine's per-service state for metrics() (any thread). Built outside the
    /// lock, so a scrape never waits for a walk over the services.
    void snapshot_services() {
        engine_.fill_service_metrics(metrics_scratch_);
        const auto now = std::chrono::steady_clock::now();
        std::lock_guard lock(metrics_mutex_);
        metrics_services_.swap(metrics_scratch_);
        metrics_taken_ = now;
    }

    broker_metrics metrics() const {
        broker_metrics m;
        m.totals = engine_.stats();
        m.max_memory = config_.max_memory;
        m.running = running();
        std::lock_guard lock(metrics_mutex_);
        m.services = metrics_services_;
        m.taken = metrics_taken_;
        return m;
    }

    /// Hands every pending disconnect event to the engine.
    void drain_monitor() {
        detail::drain_events(monitor_, [this](int event, int fd) {
            if (event != ZMQ_EVENT_DISCONNECTED) return;
            user_by_fd_.erase(fd);
            engine_.on_disconnected(fd, reactor::clock::now());
        });
    }

    /// Security on: remembers which key (User-Id) each connection authenticated with, so that
    /// set_access() can find the connections of a removed key. Read from the first frame that
    /// came off the wire: the identity frame the ROUTER makes up carries no metadata.
    void note_user() {
        if (in_.size() < 2) return;
        const int fd = zmq_msg_get(in_[1].handle(), ZMQ_SRCFD);
        if (fd < 0) return; // inproc: no descriptor to close
        const auto user = security::user_id(in_[1]);
        if (auto it = user_by_fd_.find(fd); it != user_by_fd_.end() && it->second == user) return;
        // A new connection, perhaps on the descriptor of one that closed: that one's event is
        // handled first, or it would later erase this entry.
        drain_monitor();
        user_by_fd_.insert_or_assign(fd, std::string(user));
    }

    /// After set_access(): closes every connection whose key the policy no longer admits. The
    /// descriptor is shut down under libzmq, which then sees the connection end as if the peer
    /// had closed it: the monitor reports it and the engine forgets the peer's worker or client
    /// (its requests move on), and the peer's reconnections meet the new policy in the
    /// handshake. libzmq 4.3 has no call to close one peer of a ROUTER, hence the descriptor.
    void cut_off_removed() {
        drain_monitor(); // descriptors closed meanwhile must not be mistaken for live ones
        for (auto it = user_by_fd_.begin(); it != user_by_fd_.end();) {
            if (zap_->admits(it->second)) {
                ++it;
                continue;
            }
            log(log_level::warn, "broker: cut off a connection of '%s': its key is no longer allowed",
                it->second.c_str());
            (void)::shutdown(it->first, SHUT_RDWR);
            cut_off_.fetch_add(1, std::memory_order_relaxed);
            it = user_by_fd_.erase(it);
        }
        if (forwarder_)
            cut_off_.fetch_add(
                forwarder_->cut_off_removed([this](std::string_view key) { return zap_->admits(key); }),
                std::memory_order_relaxed);
    }

    void set_acl(std::shared_ptr<const security::access_list> acl) {
        if (!config_.curve)
            throw error(errc::invalid_argument, "broker: set_acl needs a broker started with CURVE");
        {
            std::lock_guard lock(acl_mutex_);
            next_acl_ = std::move(acl); // handed to the engine on the loop thread
        }
        const std::uint64_t one = 1;
        (void)!::write(reload_fd_, &one, sizeof one);
    }

    void set_access(security::access_policy access) {
        if (!zap_)
            throw error(errc::invalid_argument,
                        "broker: set_access needs a broker started with security (curve or "
                        "address lists)");
        zap_->set_policy(std::move(access));
        const std::uint64_t one = 1;
        (void)!::write(reload_fd_, &one, sizeof one);
    }

    /// Keeps a one-shot timer at the engine's next deadline, so that a request leaves the queue
    /// the millisecond its deadline passes (the reactor rounds its wait up, never down). Only an
    /// earlier deadline re-arms it: deadlines made from one TTL only grow, so the timer is not
    /// re-armed per request; a timer that fires early just re-arms for the next one.
    void arm_expiry() {
        const auto next = engine_.next_deadline();
        if (!next || (expiry_timer_ && expiry_at_ <= *next)) return;
        if (expiry_timer_) reactor_.cancel(*expiry_timer_);
        expiry_at_ = *next;
        const auto delay = std::max(*next - reactor::clock::now(), reactor::clock::duration::zero());
        expiry_timer_ = reactor_.add_timer(delay, [this] {
            expiry_timer_.reset();
            engine_.expire_requests(reactor::clock::now());
            arm_expiry();
        });
    }

    void finish(reactor::timer_id tick, std::optional<reactor::timer_id> expiry) {
        reactor_.cancel(tick);
        if (metrics_timer_) reactor_.cancel(*metrics_timer_);
        metrics_timer_.reset();
        if (expiry) reactor_.cancel(*expiry);
        if (expiry_timer_) reactor_.cancel(*expiry_timer_);
        expiry_timer_.reset();
        reactor_.remove_fd(detail::monitor_descriptor(monitor_));
        reactor_.remove(router_);
        if (forwarder_) forwarder_->detach();
        if (ha_) ha_->detach();
        engine_.disconnect_all();
        // Give the DISCONNECTs a moment to leave when the socket closes; linger 0 would drop them.
        router_.set(zmq::sockopt::linger, 500);
        std::lock_guard lock(mutex_);
        running_ = false;
    }

    void start() {
        std::lock_guard lock(mutex_);
        if (thread_.joinable() || running_)
            throw error(errc::invalid_argument, "broker is already running");
        stop_requested_ = false;
        thread_ = std::thread([this] {
            try {
                run(false);
            } catch (const std::exception& e) {
                log(log_level::error, "broker: loop ended: %s", e.what());
            }
        });
    }

    void stop() noexcept {
        {
            std::lock_guard lock(mutex_);
            stop_requested_ = true;
            reactor_.stop();
        }
        if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
    }

    bool running() const noexcept {
        std::lock_guard lock(mutex_);
        return running_;
    }

    broker_config config_;
    std::optional<security::zap_handler> zap_; // before the sockets: they use it
    int reload_fd_ = -1;                         // eventfd: set_access() wakes the loop
    std::unordered_map<int, std::string> user_by_fd_; // security on: User-Id per connection
    std::atomic<std::uint64_t> cut_off_{0};
    std::mutex acl_mutex_;                       // guards next_acl_
    std::optional<std::shared_ptr<const security::access_list>> next_acl_; // set_acl() -> loop
    zmq::socket_t router_;
    zmq::socket_t monitor_;           // PAIR: the ROUTER's disconnect events
    detail::socket_outbox router_out_; // what the engine sends goes to the ROUTER
    detail::mdp_engine engine_;
    std::optional<detail::forwarder> forwarder_; // only if XSUB/XPUB endpoints are configured
    detail::directory directory_;
    std::optional<detail::ha_pair> ha_; // only in a Binary Star pair
    std::string ha_fatal_;              // why the pair stopped this broker
    reactor reactor_;
    message in_;                      // reused for every incoming message
    std::optional<reactor::timer_id> expiry_timer_; // at the engine's next deadline
    reactor::clock::time_point expiry_at_{};
    std::vector<std::string> endpoints_;
    std::optional<reactor::timer_id> metrics_timer_;  // snapshot_services() every metrics_interval
    std::vector<service_metrics> metrics_scratch_;    // loop thread: the next snapshot
    mutable std::mutex metrics_mutex_;                // guards the two below
    std::vector<service_metrics> metrics_services_;   // the last snapshot, for metrics()
    std::chrono::steady_clock::time_point metrics_taken_{};
    mutable std::mutex mutex_;        // guards running_, stop_requested_ and thread_
    bool running_ = false;
    bool stop_requested_ = false;
    std::thread thread_;
};

broker::broker(zmq::context_t& ctx, broker_config config)
    : impl_(std::make_unique<impl>(ctx, std::move(config))) {}

broker::~broker() { stop(); }

std::vector<std::string> broker::endpoints() const { return impl_->endpoints_; }

std::string broker::ha_endpoint() const { return impl_->ha_ ? impl_->ha_->endpoint() : std::string(); }

void broker::run(bool handle_signals) { impl_->run(handle_signals); }

void broker::start() { impl_->start(); }

void broker::stop() noexcept { impl_->stop(); }

bool broker::running() const noexcept { return impl_->running(); }

broker_stats broker::stats() const noexcept { return impl_->engine_.stats(); }

broker_metrics broker::metrics() const { return impl_->metrics(); }

void broker::set_access(security::access_policy access) { impl_->set_access(std::move(access)); }

void broker::set_acl(std::shared_ptr<const security::access_list> acl) {
    impl_->set_acl(std::move(acl));
}

} // namespace zmesh::nodes
