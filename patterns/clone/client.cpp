// SPDX-License-Identifier: MPL-2.0
// client.cpp — the Clone client (ZMCL01, docs/patterns/clone.md). It subscribes to every update
// (not only its prefix: the sequence numbers of all of them are needed to see a gap), then asks
// for a snapshot on a DEALER and leaves the updates queued meanwhile. With the snapshot at
// sequence S in, an update at or below the sequence held is overlap and dropped, the next one is
// applied, and one further on is a gap: the updates in between were lost (a full queue, a slow
// joiner's subscription), so the copy is replaced by a fresh snapshot. A HUGZ that announces a
// sequence other than the one held (a lost last update, or a restarted server) and a server
// silent past server_ttl lead to the same re-sync.
#include "wire.hpp"

#include <zmesh/endpoint.hpp>
#include <zmesh/error.hpp>
#include <zmesh/log.hpp>

namespace zmesh::patterns::clone {

using clock_type = std::chrono::steady_clock;
using state_map = std::map<std::string, std::string, std::less<>>;

class client::impl {
  public:
    impl(zmq::context_t& ctx, client_options options)
        : dealer_(ctx, zmq::socket_type::dealer), sub_(ctx, zmq::socket_type::sub),
          options_(std::move(options)) {
        (void)parse_endpoint(options_.server);
        if (options_.updates.empty()) {
            auto derived = default_updates_endpoint(options_.server);
            if (!derived)
                throw error(errc::invalid_argument,
                            "clone::client: give the updates endpoint of " + options_.server);
            options_.updates = *derived;
        }
        if (options_.timeout.count() <= 0 || options_.server_ttl.count() <= 0)
            throw error(errc::invalid_argument,
                        "clone::client: timeout and server_ttl must be positive");
        if (options_.curve) {
            security::make_curve_client(dealer_, options_.curve->server_public,
                                        options_.curve->client);
            security::make_curve_client(sub_, options_.curve->server_public,
                                        options_.curve->client);
        }
        dealer_.set(zmq::sockopt::linger, 0);
        sub_.set(zmq::sockopt::linger, 0);
        sub_.set(zmq::sockopt::rcvhwm, options_.updates_hwm);
        sub_.set(zmq::sockopt::subscribe, "");
        zmesh::connect(sub_, options_.updates);
        zmesh::connect(dealer_, options_.server);
    }

    void emit(const std::string& key, std::optional<std::string> value) {
        if (callback_) callback_(change{key, std::move(value), sequence_});
    }

    /// The next message on the DEALER that is @p wanted (a snapshot, or an ack); acks and
    /// snapshots left over from an earlier call that gave up are skipped.
    std::optional<message> await_dealer(command wanted, clock_type::time_point deadline) {
        for (;;) {
            if (!in_.recv(dealer_, zmq::recv_flags::dontwait)) {
                const auto left =
                    std::chrono::ceil<std::chrono::milliseconds>(deadline - clock_type::now());
                if (left.count() <= 0) return std::nullopt;
                zmq::pollitem_t item{dealer_.handle(), 0, ZMQ_POLLIN, 0};
                zmq::poll(&item, 1, left);
                continue;
            }
            const auto c = detail::command_at(in_, 0);
            const bool snapshot = c == command::snapshot && in_.size() >= 4 &&
                                  in_.size() % 2 == 0 && detail::decode_sequence(in_[2]) &&
                                  detail::decode_sequence(in_[3]);
            const bool ack =
                c == command::ack && in_.size() == 3 && detail::decode_sequence(in_[2]);
            if ((snapshot && wanted == command::snapshot) || (ack && wanted == command::ack))
                return std::move(in_);
            if (!snapshot && !ack) count_malformed();
        }
    }

    void count_malformed() {
        ++stats_.malformed;
        if (limiter_.allow())
            log(log_level::warn, "clone client: dropped a malformed message from %s (%zu frames)",
                options_.server.c_str(), in_.size());
    }

    void sync() {
        message request;
        request.push_back(protocol_v1);
        request.push_back(detail::command_frame(command::snapshot_request));
        request.push_back(options_.prefix);
        if (request.send(dealer_, zmq::send_flags::dontwait) != send_status::sent)
            throw error(errc::timeout, "cannot send a snapshot request to the clone server at " +
                                           options_.server + " (queue full)");
        auto snap = await_dealer(command::snapshot, clock_type::now() + options_.timeout);
        if (!snap)
            throw error(errc::timeout, "no snapshot from the clone server at " + options_.server +
                                           " within " + std::to_string(options_.timeout.count()) +
                                           " ms");
        if (synced_) ++stats_.resyncs;
        ++stats_.snapshots;
        state_map fresh;
        for (std::size_t i = 4; i + 1 < snap->size(); i += 2)
            fresh.insert_or_assign(to_string((*snap)[i]), to_string((*snap)[i + 1]));
        epoch_ = *detail::decode_sequence((*snap)[2]);
        sequence_ = *detail::decode_sequence((*snap)[3]);
        // Report the differences, so that a watcher sees one coherent stream across re-syncs.
        for (const auto& [key, value] : state_)
            if (!fresh.contains(key)) emit(key, std::nullopt);
        for (const auto& [key, value] : fresh) {
            auto it = state_.find(key);
            if (it == state_.end() || it->second != value) emit(key, value);
        }
        state_ = std::move(fresh);
        synced_ = true;
        last_heard_ = clock_type::now();
    }

    bool keeps(std::string_view key) const {
        return key.substr(0, options_.prefix.size()) == options_.prefix;
    }

    /// Applies one message of the SUB socket (in in_). Returns false if a re-sync is needed.
    bool apply() {
        const auto c = detail::command_at(in_, 1);
        std::optional<std::uint64_t> seq;
        if (c == command::hugz && in_.size() == 5 && !in_[0].size() &&
            detail::decode_sequence(in_[3]) && (seq = detail::decode_sequence(in_[4]))) {
            last_heard_ = clock_type::now();
            if (*detail::decode_sequence(in_[3]) != epoch_) return false; // a restarted server
            if (*seq <= sequence_) return true; // in step, or queued from before the snapshot
            ++stats_.gaps;                      // the last updates before it were lost
            return false;
        }
        if (in_.size() >= 4) seq = detail::decode_sequence(in_[3]);
        const bool valid = seq && ((c == command::update && in_.size() == 5 && in_[0].size()) ||
                                   (c == command::removal && in_.size() == 4 && in_[0].size()));
        if (!valid) {
            count_malformed();
            return true;
        }
        last_heard_ = clock_type::now();
        if (options_.drop_update && options_.drop_update(*seq)) {
            ++stats_.dropped_by_hook;
            return true;
        }
        if (*seq <= sequence_) {
            ++stats_.overlap;
            return true;
        }
        if (*seq != sequence_ + 1) {
            ++stats_.gaps;
            return false;
        }
        sequence_ = *seq;
        ++stats_.updates;
        std::string key = to_string(in_[0]);
        if (!keeps(key)) return true;
        if (c == command::update) {
            auto value = to_string(in_[4]);
            state_.insert_or_assign(key, value);
            emit(key, std::move(value));
        } else if (state_.erase(key)) {
            emit(key, std::nullopt);
        }
        return true;
    }

    void poll(std::chrono::milliseconds wait) {
        if (!synced_) sync();
        const auto until = clock_type::now() + wait;
        for (;;) {
            bool resync = false;
            for (int i = 0; i < 10000 && !resync; ++i) { // bounded; the rest next round
                if (!in_.recv(sub_, zmq::recv_flags::dontwait)) break;
                resync = !apply();
            }
            if (!resync && clock_type::now() - last_heard_ > options_.server_ttl) {
                log(log_level::info,
                    "clone client: %s silent for over %lld ms: asking for a snapshot",
                    options_.server.c_str(), static_cast<long long>(options_.server_ttl.count()));
                resync = true;
            }
            if (resync) {
                sync();
                continue;
            }
            const auto now = clock_type::now();
            if (now >= until) return;
            auto left = std::chrono::ceil<std::chrono::milliseconds>(until - now);
            zmq::pollitem_t item{sub_.handle(), 0, ZMQ_POLLIN, 0};
            zmq::poll(&item, 1, std::min(left, options_.server_ttl));
        }
    }

    std::uint64_t send_change(std::string_view key, std::optional<std::string_view> value) {
        if (key.empty()) throw error(errc::invalid_argument, "clone: the key must not be empty");
        message m;
        m.push_back(protocol_v1);
        m.push_back(detail::command_frame(value ? command::set : command::erase));
        m.push_back(key);
        if (value) m.push_back(*value);
        if (m.send(dealer_, zmq::send_flags::dontwait) != send_status::sent)
            throw error(errc::timeout,
                        "cannot send to the clone server at " + options_.server + " (queue full)");
        auto ack = await_dealer(command::ack, clock_type::now() + options_.timeout);
        if (!ack)
            throw error(errc::timeout, "no answer from the clone server at " + options_.server +
                                           " within " + std::to_string(options_.timeout.count()) +
                                           " ms");
        return *detail::decode_sequence((*ack)[2]);
    }

    zmq::socket_t dealer_, sub_;
    client_options options_;
    state_map state_;
    std::uint64_t sequence_ = 0;
    std::uint64_t epoch_ = 0; // the server run the copy comes from
    bool synced_ = false;
    clock_type::time_point last_heard_{};
    client_stats stats_;
    message in_;
    std::function<void(const change&)> callback_;
    log_limiter limiter_;
};

client::client(zmq::context_t& ctx, client_options options)
    : impl_(std::make_unique<impl>(ctx, std::move(options))) {}
client::~client() = default;
client::client(client&&) noexcept = default;
client& client::operator=(client&&) noexcept = default;

void client::sync() {
    impl_->sync();
}
void client::poll(std::chrono::milliseconds wait) {
    impl_->poll(wait);
}

bool client::wait_for(std::uint64_t sequence, std::chrono::milliseconds timeout) {
    const auto until = clock_type::now() + timeout;
    while (impl_->sequence_ < sequence) {
        const auto now = clock_type::now();
        if (now >= until) return false;
        impl_->poll(std::min(std::chrono::ceil<std::chrono::milliseconds>(until - now),
                             std::chrono::milliseconds(50)));
    }
    return true;
}

std::uint64_t client::set(std::string_view key, std::string_view value) {
    return impl_->send_change(key, value);
}
std::uint64_t client::erase(std::string_view key) {
    return impl_->send_change(key, std::nullopt);
}

std::optional<std::string> client::get(std::string_view key) const {
    auto it = impl_->state_.find(key);
    if (it == impl_->state_.end()) return std::nullopt;
    return it->second;
}
const std::map<std::string, std::string, std::less<>>& client::state() const noexcept {
    return impl_->state_;
}
std::uint64_t client::sequence() const noexcept {
    return impl_->sequence_;
}
client_stats client::stats() const noexcept {
    return impl_->stats_;
}
void client::on_change(std::function<void(const change&)> callback) {
    impl_->callback_ = std::move(callback);
}

} // namespace zmesh::patterns::clone
