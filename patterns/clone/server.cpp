// SPDX-License-Identifier: MPL-2.0
// server.cpp — the Clone server (ZMCL01, docs/patterns/clone.md): owns the key-value state and
// its sequence number. Changes from clients (ROUTER) are applied in arrival order, each under the
// next sequence number, published (PUB, the key as topic) and acknowledged with that number.
// Snapshots are one multipart message, so a large state cannot be cut by a high-water mark.
#include "wire.hpp"

#include <zmesh/socket_options.hpp>
#include <zmesh/endpoint.hpp>
#include <zmesh/error.hpp>
#include <zmesh/log.hpp>
#include <zmesh/reactor.hpp>

#include <sys/random.h>

#include <cerrno>
#include <cstdlib>
#include <map>
#include <random>
#include <system_error>

namespace zmesh::patterns::clone {


std::optional<std::string> default_updates_endpoint(std::string_view bind) {
    std::error_code ec;
    auto parts = parse_endpoint(bind, ec);
    if (!parts) return std::nullopt;
    if (parts->kind == transport::ipc) return std::string(bind) + ".updates";
    if (parts->kind != transport::tcp || parts->port == "*") return std::nullopt;
    const auto port = std::stoul(parts->port);
    if (port >= 65535) return std::nullopt;
    const auto colon = bind.rfind(':');
    return std::string(bind.substr(0, colon + 1)) + std::to_string(port + 1);
}

class server::impl {
  public:
    impl(zmq::context_t& ctx, server_options options)
        : router_(zmesh::make_seeded_router(ctx)), pub_(ctx, zmq::socket_type::pub),
          options_(std::move(options)) {
        if (options_.hugz_interval.count() <= 0)
            throw error(errc::invalid_argument, "clone::server: hugz_interval must be positive");
        std::string publish = options_.publish;
        if (publish.empty()) {
            (void)parse_endpoint(options_.bind); // names a malformed endpoint
            auto derived = default_updates_endpoint(options_.bind);
            if (!derived) {
                // A wildcard port: the updates get an ephemeral port of their own.
                auto parts = parse_endpoint(options_.bind);
                if (parts.kind != transport::tcp)
                    throw error(errc::invalid_argument,
                                "clone::server: give a publish endpoint for " + options_.bind);
                derived = options_.bind;
            }
            publish = *derived;
        }
        router_.set(zmq::sockopt::linger, 0);
        router_.set(zmq::sockopt::maxmsgsize, options_.max_message_size);
        pub_.set(zmq::sockopt::linger, 0);
        pub_.set(zmq::sockopt::sndhwm, options_.publish_hwm);
        endpoint_ = zmesh::bind(router_, options_.bind);
        updates_ = zmesh::bind(pub_, publish);
        reactor_.add(router_, [this](zmq::socket_ref) { drain(); });
        // Every interval, busy or not: a HUGZ is how a client learns of a lost last update and
        // of a restarted server (another epoch), which updates alone would not tell it.
        reactor_.add_repeating_timer(options_.hugz_interval, [this] { publish_hugz(); });
    }

    void drain() {
        for (int i = 0; i < 1000; ++i) { // bounded, so that a flood cannot starve the timers
            if (!in_.recv(router_, zmq::recv_flags::dontwait)) return;
            handle();
        }
    }

    void handle() {
        const auto c = detail::command_at(in_, 1);
        if (c == command::snapshot_request && in_.size() == 4) return snapshot();
        if (c == command::set && in_.size() == 5 && in_[3].size() > 0)
            return change(to_string(in_[3]), std::string(view(in_[4])));
        if (c == command::erase && in_.size() == 4 && in_[3].size() > 0)
            return change(to_string(in_[3]), std::nullopt);
        malformed_.fetch_add(1, std::memory_order_relaxed);
        if (limiter_.allow())
            log(log_level::warn, "clone server: dropped a malformed message (%zu frames)",
                in_.size());
    }

    void snapshot() {
        const std::string prefix = to_string(in_[3]);
        message out;
        out.push_back(std::move(in_[0]));
        out.push_back(protocol_v1);
        out.push_back(detail::command_frame(command::snapshot));
        out.push_back(detail::encode_sequence(epoch_));
        out.push_back(detail::encode_sequence(sequence_));
        for (auto it = state_.lower_bound(prefix);
             it != state_.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it) {
            out.push_back(it->first);
            out.push_back(it->second);
        }
        (void)out.send(router_, zmq::send_flags::dontwait); // a gone client's snapshot is dropped
        snapshots_.fetch_add(1, std::memory_order_relaxed);
    }

    void change(std::string key, std::optional<std::string> value) {
        const auto seq = ++sequence_;
        message update;
        update.push_back(key);
        update.push_back(protocol_v1);
        update.push_back(detail::command_frame(value ? command::update : command::removal));
        update.push_back(detail::encode_sequence(seq));
        if (value) {
            update.push_back(*value);
            state_.insert_or_assign(std::move(key), std::move(*value));
        } else {
            state_.erase(key);
        }
        (void)update.send(pub_, zmq::send_flags::dontwait); // PUB drops for a full subscriber
        message ack;
        ack.push_back(std::move(in_[0]));
        ack.push_back(protocol_v1);
        ack.push_back(detail::command_frame(command::ack));
        ack.push_back(detail::encode_sequence(seq));
        (void)ack.send(router_, zmq::send_flags::dontwait);
        seq_out_.store(seq, std::memory_order_relaxed);
        keys_.store(state_.size(), std::memory_order_relaxed);
    }

    void publish_hugz() {
        message hugz;
        hugz.push_back(std::string_view());
        hugz.push_back(protocol_v1);
        hugz.push_back(detail::command_frame(command::hugz));
        hugz.push_back(detail::encode_sequence(epoch_));
        hugz.push_back(detail::encode_sequence(sequence_));
        (void)hugz.send(pub_, zmq::send_flags::dontwait);
    }

    zmq::socket_t router_, pub_;
    server_options options_;
    std::string endpoint_, updates_;
    reactor reactor_;
    message in_;
    std::map<std::string, std::string, std::less<>> state_;
    std::uint64_t sequence_ = 0;
    // Random per run, in snapshots and HUGZ: sequences of two runs of a server are not comparable.
    std::uint64_t epoch_ = std::random_device{}() * 0x100000000ULL + std::random_device{}();
    log_limiter limiter_;
    std::atomic<std::uint64_t> seq_out_{0}, keys_{0}, snapshots_{0}, malformed_{0};
};

server::server(zmq::context_t& ctx, server_options options)
    : impl_(std::make_unique<impl>(ctx, std::move(options))) {}
server::~server() = default;

const std::string& server::endpoint() const noexcept {
    return impl_->endpoint_;
}
const std::string& server::updates_endpoint() const noexcept {
    return impl_->updates_;
}

void server::run() {
    (void)impl_->reactor_.run();
}
void server::run_for(std::chrono::milliseconds d) {
    (void)impl_->reactor_.run_for(d);
}
void server::run_once(std::chrono::milliseconds wait) {
    (void)impl_->reactor_.run_once(wait);
}
void server::stop() noexcept {
    impl_->reactor_.stop();
}

server_stats server::stats() const noexcept {
    return {impl_->seq_out_.load(std::memory_order_relaxed),
            impl_->keys_.load(std::memory_order_relaxed),
            impl_->snapshots_.load(std::memory_order_relaxed),
            impl_->malformed_.load(std::memory_order_relaxed)};
}

} // namespace zmesh::patterns::clone
