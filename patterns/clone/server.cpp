// SPDX-License-Identifier: MPL-2.0
// server.cpp — the Clone server (ZMCL01, docs/patterns/clone.md): owns the key-value state and
// its sequence number. Changes from clients (ROUTER) are applied in arrival order, each under the
// next sequence number, published (PUB, the key as topic) and acknowledged with that number.
// Snapshots are one multipart message, so a large state cannot be cut by a high-water mark.
#include "wire.hpp"

#include "../detail/curve_gate.hpp"

#include <zmesh/socket_options.hpp>
#include <zmesh/endpoint.hpp>
#include <zmesh/error.hpp>
#include <zmesh/log.hpp>
#include <zmesh/reactor.hpp>

#include <sys/random.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdlib>
#include <map>
#include <memory>
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
        : router_(zmesh::make_seeded_router(ctx)),
          // With CURVE the update socket is an XPUB, only so that each subscriber's
          // subscription arrives with its connection's descriptor and key: what set_access()
          // needs to close the update connections of a removed key. It publishes as a PUB does.
          pub_(ctx, options.curve_server ? zmq::socket_type::xpub : zmq::socket_type::pub),
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
        gate_.start(ctx, options_.curve_server, {&router_, &pub_});
        if (gate_.on()) pub_.set(zmq::sockopt::xpub_verbose, 1); // every subscription, repeats too
        router_.set(zmq::sockopt::linger, 0);
        router_.set(zmq::sockopt::maxmsgsize, options_.max_message_size);
        pub_.set(zmq::sockopt::linger, 0);
        pub_.set(zmq::sockopt::sndhwm, options_.publish_hwm);
        endpoint_ = zmesh::bind(router_, options_.bind);
        updates_ = zmesh::bind(pub_, publish);
        reactor_.add(router_, [this](zmq::socket_ref) { drain(); });
        if (gate_.on()) {
            reactor_.add(pub_, [this](zmq::socket_ref) { note_subscribers(); });
            reactor_.add_repeating_timer(std::chrono::milliseconds(100), [this] {
                if (reload_pending_.exchange(false, std::memory_order_acq_rel)) cut_off_removed();
            });
        }
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

    /// CURVE: remembers the key of each update connection, from its subscription. Bounded by
    /// the descriptors the process can have; an entry whose connection closed stays until its
    /// descriptor is reused, and is then overwritten by the next subscription on it.
    void note_subscribers() {
        for (int i = 0; i < 1000; ++i) {
            zmq::message_t m;
            if (!pub_.recv(m, zmq::recv_flags::dontwait)) return;
            const int fd = zmq_msg_get(m.handle(), ZMQ_SRCFD);
            if (fd >= 0) subscribers_.insert_or_assign(fd, std::string(security::user_id(m)));
        }
    }

    /// After set_access(), on the server's thread: closes the update connections of keys the
    /// policy no longer admits, under libzmq (it has no call to close one peer of a PUB), which
    /// then sees them end as if the peer had closed them. A descriptor reused by an admitted
    /// client whose subscription is not read yet may be closed too: that client reconnects and
    /// re-syncs from a snapshot, as after any lost update, so no state is lost.
    void cut_off_removed() {
        note_subscribers();
        for (auto it = subscribers_.begin(); it != subscribers_.end();) {
            if (gate_.admits_key(it->second)) {
                ++it;
                continue;
            }
            log(log_level::warn,
                "clone server: closed an update connection of '%s': its key is no longer allowed",
                it->second.c_str());
            (void)::shutdown(it->first, SHUT_RDWR);
            cut_off_.fetch_add(1, std::memory_order_relaxed);
            it = subscribers_.erase(it);
        }
    }

    void handle() {
        if (in_.size() >= 2 && !gate_.admits(in_[1])) return; // a key a reload removed
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

    // Declared before the sockets, so that they close first: the ZAP handler must outlive the
    // handshakes it answers.
    ::zmesh::patterns::detail::curve_gate gate_{"clone::server"};
    zmq::socket_t router_, pub_;
    server_options options_;
    std::map<int, std::string> subscribers_; ///< CURVE: update connection descriptor -> key
    std::atomic<bool> reload_pending_{false};
    std::string endpoint_, updates_;
    reactor reactor_;
    message in_;
    std::map<std::string, std::string, std::less<>> state_;
    std::uint64_t sequence_ = 0;
    // Random per run, in snapshots and HUGZ: sequences of two runs of a server are not comparable.
    std::uint64_t epoch_ = std::random_device{}() * 0x100000000ULL + std::random_device{}();
    log_limiter limiter_;
    std::atomic<std::uint64_t> seq_out_{0}, keys_{0}, snapshots_{0}, malformed_{0}, cut_off_{0};
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
    server_stats s;
    s.sequence = impl_->seq_out_.load(std::memory_order_relaxed);
    s.keys = impl_->keys_.load(std::memory_order_relaxed);
    s.snapshots = impl_->snapshots_.load(std::memory_order_relaxed);
    s.malformed = impl_->malformed_.load(std::memory_order_relaxed);
    s.cut_off = impl_->cut_off_.load(std::memory_order_relaxed);
    impl_->gate_.fill(s);
    return s;
}

void server::set_access(security::access_policy policy) {
    impl_->gate_.set_access(std::move(policy));
    impl_->reload_pending_.store(true, std::memory_order_release);
}

} // namespace zmesh::patterns::clone
