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

#include <random>
#include <thread>

namespace zmesh::patterns::clone {

using clock_type = std::chrono::steady_clock;
using state_map = std::map<std::string, std::string, std::less<>>;

class client::impl {
  public:
    impl(zmq::context_t& ctx, client_options options)
        : ctx_(&ctx), dealer_(ctx, zmq::socket_type::dealer), sub_(ctx, zmq::socket_type::sub),
          options_(std::move(options)) {
        if (!options_.server.empty())
            addresses_.push_back(server_address{options_.server, options_.updates});
        for (auto& a : options_.servers) addresses_.push_back(a);
        if (addresses_.empty())
            throw error(errc::invalid_argument, "clone::client: give the server's endpoint");
        for (auto& a : addresses_) {
            (void)parse_endpoint(a.server);
            if (a.updates.empty()) {
                auto derived = default_updates_endpoint(a.server);
                if (!derived)
                    throw error(errc::invalid_argument,
                                "clone::client: give the updates endpoint of " + a.server);
                a.updates = *derived;
            } else {
                (void)parse_endpoint(a.updates);
            }
        }
        if (options_.timeout.count() <= 0 || options_.server_ttl.count() <= 0)
            throw error(errc::invalid_argument,
                        "clone::client: timeout and server_ttl must be positive");
        std::random_device rd;
        client_id_ = (std::uint64_t{rd()} << 32) | rd();
        connect_current();
    }

    const std::string& server() const { return addresses_[current_].server; }

    /// (Re)creates both sockets for the server in use: whatever the old ones had queued (a
    /// late ack, updates of the old server) is dropped with them.
    void connect_current() {
        dealer_ = zmq::socket_t(*ctx_, zmq::socket_type::dealer);
        sub_ = zmq::socket_t(*ctx_, zmq::socket_type::sub);
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
        zmesh::connect(sub_, addresses_[current_].updates);
        zmesh::connect(dealer_, addresses_[current_].server);
    }

    /// Moves to the next server of the list; the copy is re-synced there before it is followed.
    void fail_over(const char* why) {
        const std::string from = server();
        current_ = (current_ + 1) % addresses_.size();
        ++stats_.failovers;
        log(log_level::info, "clone client: %s %s: moving to %s", from.c_str(), why,
            server().c_str());
        connect_current();
        must_sync_ = true;
    }

    void emit(const std::string& key, std::optional<std::string> value) {
        if (callback_) callback_(change{key, std::move(value), sequence_});
    }

    /// The next message on the DEALER that is @p wanted (a snapshot, or an ack) or a refusal
    /// (a passive server); acks and snapshots left over from an earlier call that gave up are
    /// skipped.
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
            const bool refused = c == command::refused && in_.size() == 3;
            if ((snapshot && wanted == command::snapshot) || (ack && wanted == command::ack) ||
                refused)
                return std::move(in_);
            if (!snapshot && !ack) count_malformed();
        }
    }

    void count_malformed() {
        ++stats_.malformed;
        if (limiter_.allow())
            log(log_level::warn, "clone client: dropped a malformed message from %s (%zu frames)",
                server().c_str(), in_.size());
    }

    /// Why the servers gave no answer, for the error: the list and the last refusal.
    std::string no_answer(const char* what) const {
        std::string names;
        for (const auto& a : addresses_) names += (names.empty() ? "" : ", ") + a.server;
        std::string text = std::string("no ") + what + " from the clone server" +
                           (addresses_.size() > 1 ? "s at " : " at ") + names + " within " +
                           std::to_string(options_.timeout.count()) + " ms" +
                           (addresses_.size() > 1 ? " each" : "");
        if (!last_refusal_.empty()) text += " (last refusal: " + last_refusal_ + ")";
        return text;
    }

    /// Sends @p request to the server in use and waits for @p wanted; on silence or a refusal
    /// moves to the next server and sends it again, up to timeout x servers in all (a single
    /// server: one wait of timeout, refusals waited out).
    std::optional<message> exchange(const message& request, command wanted) {
        const auto n = addresses_.size();
        const auto deadline = clock_type::now() + options_.timeout * static_cast<int>(n);
        last_refusal_.clear();
        for (bool first = true;; first = false) {
            const auto now = clock_type::now();
            if (now >= deadline) return std::nullopt;
            if (!first && wanted == command::ack) ++stats_.resent;
            message copy;
            for (std::size_t i = 0; i < request.size(); ++i)
                copy.push_back(zmq::message_t(request[i].data(), request[i].size()));
            if (copy.send(dealer_, zmq::send_flags::dontwait) != send_status::sent) {
                if (n == 1)
                    throw error(errc::timeout, "cannot send to the clone server at " + server() +
                                                   " (queue full)");
                fail_over("takes no request (queue full)");
                std::this_thread::sleep_for(std::chrono::milliseconds(10));
                continue;
            }
            auto reply = await_dealer(wanted, std::min(deadline, now + options_.timeout));
            if (reply && detail::command_at(*reply, 0) != command::refused) return reply;
            if (reply) {
                ++stats_.refused;
                last_refusal_ = to_string((*reply)[2]);
                if (n > 1) fail_over("refused");
                // Not too fast around a pair whose servers both refuse for now.
                std::this_thread::sleep_for(std::min<std::chrono::milliseconds>(
                    std::chrono::milliseconds(50),
                    std::chrono::ceil<std::chrono::milliseconds>(deadline - clock_type::now())));
                continue;
            }
            if (n == 1) return std::nullopt;
            fail_over("did not answer");
        }
    }

    void sync() {
        message request;
        request.push_back(protocol_v1);
        request.push_back(detail::command_frame(command::snapshot_request));
        request.push_back(options_.prefix);
        auto snap = exchange(request, command::snapshot);
        if (!snap) throw error(errc::timeout, no_answer("snapshot"));
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
        must_sync_ = false;
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
        const bool valid =
            seq && in_[0].size() &&
            ((c == command::update && (in_.size() == 5 || in_.size() == 6)) ||
             (c == command::removal && (in_.size() == 4 || in_.size() == 5)));
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
        if (!synced_ || must_sync_) sync();
        const auto until = clock_type::now() + wait;
        for (;;) {
            bool resync = false;
            for (int i = 0; i < 10000 && !resync; ++i) { // bounded; the rest next round
                if (!in_.recv(sub_, zmq::recv_flags::dontwait)) break;
                resync = !apply();
            }
            if (!resync && clock_type::now() - last_heard_ > options_.server_ttl) {
                if (addresses_.size() > 1) {
                    fail_over("is silent");
                } else {
                    log(log_level::info,
                        "clone client: %s silent for over %lld ms: asking for a snapshot",
                        server().c_str(), static_cast<long long>(options_.server_ttl.count()));
                }
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
        // The change id: the same for every re-send of this change, so that a server that has
        // it already (applied, or followed from the active) acknowledges it without applying
        // it again.
        const std::string id = detail::encode_sequence(client_id_) +
                               detail::encode_sequence(++change_counter_);
        message m;
        m.push_back(protocol_v1);
        m.push_back(detail::command_frame(value ? command::set : command::erase));
        m.push_back(key);
        if (value) m.push_back(*value);
        m.push_back(id);
        auto ack = exchange(m, command::ack);
        if (!ack) throw error(errc::timeout, no_answer("answer"));
        return *detail::decode_sequence((*ack)[2]);
    }

    zmq::context_t* ctx_;
    zmq::socket_t dealer_, sub_;
    client_options options_;
    std::vector<server_address> addresses_;
    std::size_t current_ = 0;
    bool must_sync_ = false; // moved to another server: sync there before following it
    std::string last_refusal_;
    std::uint64_t client_id_ = 0, change_counter_ = 0;
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
const std::string& client::current_server() const noexcept {
    return impl_->server();
}
client_stats client::stats() const noexcept {
    return impl_->stats_;
}
void client::on_change(std::function<void(const change&)> callback) {
    impl_->callback_ = std::move(callback);
}

} // namespace zmesh::patterns::clone
