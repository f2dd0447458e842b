// SPDX-License-Identifier: MPL-2.0
// broker.cpp — the broker node's sockets, loop, thread and shutdown around mdp_engine.
#include <zmesh/nodes/broker.hpp>

#include "mdp_engine.hpp"

#include <zmesh/endpoint.hpp>
#include <zmesh/error.hpp>
#include <zmesh/log.hpp>
#include <zmesh/reactor.hpp>
#include <zmesh/socket_options.hpp>

#include <csignal>
#include <mutex>
#include <thread>

namespace zmesh::nodes {

class broker::impl {
  public:
    impl(zmq::context_t& ctx, broker_config config)
        : config_(std::move(config)), router_(ctx, zmq::socket_type::router),
          engine_(config_, router_) {
        if (config_.heartbeat_interval.count() <= 0)
            throw error(errc::invalid_argument, "heartbeat interval must be positive");
        if (config_.liveness < 1) throw error(errc::invalid_argument, "liveness must be at least 1");
        if (config_.max_queue == 0) throw error(errc::invalid_argument, "max queue must be positive");
        socket_options o;
        o.send_hwm = config_.hwm;
        o.recv_hwm = config_.hwm;
        o.max_message_size = config_.max_frame_size;
        apply(router_, o);
        // Unroutable sends must fail loudly (EHOSTUNREACH) so a vanished worker is noticed at once
        // and its request kept, instead of being dropped silently by the ROUTER.
        router_.set(zmq::sockopt::router_mandatory, 1);
        endpoints_.push_back(zmesh::bind(router_, config_.mdp_endpoint));
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
        auto tick = reactor_.add_repeating_timer(config_.heartbeat_interval,
                                                 [this] { engine_.on_tick(reactor::clock::now()); });
        log(log_level::info, "broker: MDP on %s", endpoints_.front().c_str());
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
