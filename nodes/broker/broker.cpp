// SPDX-License-Identifier: MPL-2.0
// broker.cpp — the broker node's sockets, loop, thread and shutdown around mdp_engine, the
// pub/sub forwarder and the directory.
//
// Everything runs on one reactor thread. The forwarder shares it with the MDP engine on purpose:
// a `zmesh.lvc` snapshot is then taken between two forwarded messages, never during one, which is
// what lets a subscriber merge it with the live stream without duplicates or gaps.
#include <zmesh/nodes/broker.hpp>

#include "directory.hpp"
#include "forwarder.hpp"
#include "mdp_engine.hpp"

#include <zmesh/endpoint.hpp>
#include <zmesh/error.hpp>
#include <zmesh/log.hpp>
#include <zmesh/reactor.hpp>
#include <zmesh/socket_options.hpp>

#include <csignal>
#include <mutex>
#include <optional>
#include <thread>

namespace zmesh::nodes {

class broker::impl {
  public:
    impl(zmq::context_t& ctx, broker_config config)
        : config_(std::move(config)), router_(ctx, zmq::socket_type::router),
          engine_(config_, router_), directory_(config_.max_directory_entries) {
        if (config_.heartbeat_interval.count() <= 0)
            throw error(errc::invalid_argument, "heartbeat interval must be positive");
        if (config_.liveness < 1) throw error(errc::invalid_argument, "liveness must be at least 1");
        if (config_.max_queue == 0) throw error(errc::invalid_argument, "max queue must be positive");
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
        if (config_.pubsub_hwm < 0)
            throw error(errc::invalid_argument, "pub/sub HWM must not be negative");
        socket_options o;
        o.send_hwm = config_.hwm;
        o.recv_hwm = config_.hwm;
        o.max_message_size = config_.max_frame_size;
        apply(router_, o);
        // Unroutable sends must fail loudly (EHOSTUNREACH) so a vanished worker is noticed at once
        // and its request kept, instead of being dropped silently by the ROUTER.
        router_.set(zmq::sockopt::router_mandatory, 1);
        endpoints_.push_back(zmesh::bind(router_, config_.mdp_endpoint));
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
            reply.push_back(std::string_view("200"));
            lvc->snapshot(request.empty() ? std::string_view() : view(request[0]), reply);
        });
        engine_.add_internal_service("zmesh.directory", [this](message& request, message& reply) {
            directory_.handle(request, reply, reactor::clock::now());
        });
        engine_.add_stats_source([this](broker_stats& s) {
            if (forwarder_) forwarder_->fill(s);
            s.directory_entries = directory_.entries();
        });
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
            for (int i = 0; i < 1000 && in_.recv(s, zmq::recv_flags::dontwait); ++i)
                engine_.on_message(in_, reactor::clock::now());
        });
        if (forwarder_) forwarder_->attach(reactor_);
        auto tick = reactor_.add_repeating_timer(config_.heartbeat_interval, [this] {
            const auto now = reactor::clock::now();
            engine_.on_tick(now);
            directory_.expire(now);
        });
        log(log_level::info, "broker: MDP on %s", endpoints_.front().c_str());
        if (forwarder_)
            log(log_level::info, "broker: pub/sub XSUB on %s, XPUB on %s (%s%s)",
                forwarder_->xsub_endpoint().c_str(), forwarder_->xpub_endpoint().c_str(),
                config_.lossless ? "lossless" : "lossy", config_.lvc ? ", last-value cache" : "");
        try {
            reactor_.run();
        } catch (...) {
            finish(tick);
            throw;
        }
        finish(tick);
    }

    void finish(reactor::timer_id tick) {
        reactor_.cancel(tick);
        reactor_.remove(router_);
        if (forwarder_) forwarder_->detach();
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
    zmq::socket_t router_;
    detail::mdp_engine engine_;
    std::optional<detail::forwarder> forwarder_; // only if XSUB/XPUB endpoints are configured
    detail::directory directory_;
    reactor reactor_;
    message in_;                      // reused for every incoming message
    std::vector<std::string> endpoints_;
    mutable std::mutex mutex_;        // guards running_, stop_requested_ and thread_
    bool running_ = false;
    bool stop_requested_ = false;
    std::thread thread_;
};

broker::broker(zmq::context_t& ctx, broker_config config)
    : impl_(std::make_unique<impl>(ctx, std::move(config))) {}

broker::~broker() { stop(); }

std::vector<std::string> broker::endpoints() const { return impl_->endpoints_; }

void broker::run(bool handle_signals) { impl_->run(handle_signals); }

void broker::start() { impl_->start(); }

void broker::stop() noexcept { impl_->stop(); }

bool broker::running() const noexcept { return impl_->running(); }

broker_stats broker::stats() const noexcept { return impl_->engine_.stats(); }

} // namespace zmesh::nodes
