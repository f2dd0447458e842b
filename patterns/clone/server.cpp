// SPDX-License-Identifier: MPL-2.0
// server.cpp — the Clone server (ZMCL01, docs/patterns/clone.md): owns the key-value state and
// its sequence number. Changes from clients (ROUTER) are applied in arrival order, each under the
// next sequence number, published (PUB, the key as topic) and acknowledged with that number.
// Snapshots are one multipart message, so a large state cannot be cut by a high-water mark.
//
// As one server of a Binary Star pair (server_options::ha_role), it also runs the pair's state
// machine over an HA link of its own (PUB bound at ha_bind, SUB connected to the peer's), on which
// it announces its state and its two endpoints every heartbeat and at once on a change. While
// not active it serves no client (it answers REFUSED, and each such request is the machine's
// client_request event) and follows the active one: a DEALER and a SUB to the endpoints the
// active announced, FOLLOW(epoch 0) for a snapshot, then the updates in sequence, each batch
// confirmed with FOLLOW(epoch, sequence). The active holds the ack of a change until its follower
// confirmed it (or has been silent for two heartbeats), so that an acknowledged change survives
// the active. On takeover it keeps the state and the sequence and draws a new epoch: every
// client re-syncs once, and a change the old active published but the follower never got cannot
// survive in a client's copy.
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
#include <deque>
#include <map>
#include <unordered_map>
#include <memory>
#include <random>
#include <system_error>

namespace zmesh::patterns::clone {

namespace bs = binary_star;

namespace {

/// The protocol frame of the HA link: ZMCLHA, state byte, snapshot endpoint, update endpoint.
constexpr std::string_view ha_protocol = "ZMCLHA";

/// A random epoch, never 0 (FOLLOW with epoch 0 asks for a snapshot).
std::uint64_t draw_epoch() {
    std::random_device rd;
    std::uint64_t e = 0;
    while (e == 0) e = (std::uint64_t{rd()} << 32) | rd();
    return e;
}

/// @p ep as the peer can reach it: a wildcard host (tcp://*:5556 bound as tcp://0.0.0.0:5556)
/// becomes the host the peer's HA link is reached on.
std::string reachable(const std::string& ep, const std::string& peer_host) {
    std::error_code ec;
    auto parts = parse_endpoint(ep, ec);
    if (!parts || parts->kind != transport::tcp || peer_host.empty()) return ep;
    if (parts->host != "0.0.0.0" && parts->host != "*" && parts->host != "::") return ep;
    const bool v6 = peer_host.find(':') != std::string::npos;
    return "tcp://" + (v6 ? "[" + peer_host + "]" : peer_host) + ":" + parts->port;
}

} // namespace


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
        : ctx_(ctx), router_(zmesh::make_seeded_router(ctx)),
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
        // of a restarted server (another epoch), which updates alone would not tell it. Only
        // while serving: a client on a passive server hears nothing, and moves on.
        reactor_.add_repeating_timer(options_.hugz_interval, [this] {
            if (serving()) publish_hugz();
        });
        if (options_.ha_role) start_pair();
    }

    ~impl() { stop_following(); }

    [[nodiscard]] bool serving() const noexcept { return !machine_ || machine_->serving(); }

    void start_pair() {
        if (options_.curve_server)
            throw error(errc::invalid_argument,
                        "clone::server: a Binary Star pair with CURVE is not supported yet");
        if (options_.ha_bind.empty() || options_.ha_peer.empty())
            throw error(errc::invalid_argument,
                        "clone::server: a Binary Star server needs its HA endpoint and its peer's");
        if (options_.ha_heartbeat.count() <= 0)
            throw error(errc::invalid_argument, "clone::server: ha_heartbeat must be positive");
        const auto peer = parse_endpoint(options_.ha_peer); // names a malformed endpoint
        if (peer.kind == transport::tcp) peer_host_ = peer.host;
        machine_.emplace(*options_.ha_role, options_.ha_heartbeat, bs::machine::clock::now());
        ha_pub_.emplace(ctx_, zmq::socket_type::pub);
        ha_sub_.emplace(ctx_, zmq::socket_type::sub);
        ha_pub_->set(zmq::sockopt::linger, 0);
        ha_sub_->set(zmq::sockopt::linger, 0);
        ha_sub_->set(zmq::sockopt::maxmsgsize, std::int64_t{4096});
        ha_sub_->set(zmq::sockopt::subscribe, "");
        // A peer that restarted should be heard within a heartbeat.
        ha_sub_->set(zmq::sockopt::reconnect_ivl, 100);
        ha_sub_->set(zmq::sockopt::reconnect_ivl_max, 1000);
        ha_endpoint_ = zmesh::bind(*ha_pub_, options_.ha_bind);
        zmesh::connect(*ha_sub_, options_.ha_peer);
        reactor_.add(*ha_sub_, [this](zmq::socket_ref) { on_peer(); });
        reactor_.add_repeating_timer(options_.ha_heartbeat, [this] { beat(); });
        ha_state_.store(bs::state_byte(machine_->current()), std::memory_order_relaxed);
        log(log_level::info, "clone server: Binary Star %s, HA link on %s, peer %s, state %s",
            std::string(bs::to_string(*options_.ha_role)).c_str(), ha_endpoint_.c_str(),
            options_.ha_peer.c_str(), std::string(bs::to_string(machine_->current())).c_str());
        announce();
    }

    /// This server's state and endpoints on the HA link.
    void announce() {
        message m;
        m.push_back(ha_protocol);
        const std::uint8_t b = bs::state_byte(machine_->current());
        m.push_back(zmq::message_t(&b, 1));
        m.push_back(endpoint_);
        m.push_back(updates_);
        (void)m.send(*ha_pub_, zmq::send_flags::dontwait); // a full pipe: the next beat will do
    }

    /// Every heartbeat: announce; keep the follower going; release the acks of a gone follower.
    void beat() {
        announce();
        const auto now = bs::machine::clock::now();
        if (follow_dealer_) send_follow(follow_synced_);
        if (now >= follower_until_) release_acks(~std::uint64_t{0});
    }

    void on_peer() {
        for (int i = 0; i < 1000 && ha_in_.recv(*ha_sub_, zmq::recv_flags::dontwait); ++i) {
            std::optional<bs::state> peer;
            if (ha_in_.size() == 4 && view(ha_in_[0]) == ha_protocol && ha_in_[1].size() == 1)
                peer = bs::byte_state(static_cast<const std::uint8_t*>(ha_in_[1].data())[0]);
            if (!peer) {
                malformed_.fetch_add(1, std::memory_order_relaxed);
                if (limiter_.allow())
                    log(log_level::warn, "clone server: HA link: dropped a malformed message");
                continue;
            }
            peer_state_ = *peer;
            peer_server_ = reachable(to_string(ha_in_[2]), peer_host_);
            peer_updates_ = reachable(to_string(ha_in_[3]), peer_host_);
            const auto e = bs::peer_event(*peer);
            if (!apply(machine_->on_event(e, bs::machine::clock::now()), e)) return;
        }
        update_follower();
    }

    /// Acts on one outcome of the machine. @returns false after the fatal error (stopped).
    bool apply(const bs::outcome& o, bs::event e) {
        if (o.fatal) {
            log(log_level::error, "clone server: Binary Star fatal error in state %s on %s: %s",
                std::string(bs::to_string(o.from)).c_str(), std::string(bs::to_string(e)).c_str(),
                std::string(o.reason).c_str());
            fatal_.store(true, std::memory_order_relaxed);
            reactor_.stop();
            return false;
        }
        if (!o.changed()) return true;
        ha_state_.store(bs::state_byte(o.to), std::memory_order_relaxed);
        log(log_level::info, "clone server: Binary Star %s -> %s on %s: %s",
            std::string(bs::to_string(o.from)).c_str(), std::string(bs::to_string(o.to)).c_str(),
            std::string(bs::to_string(e)).c_str(), std::string(o.reason).c_str());
        if (o.to == bs::state::active) take_over(o.from);
        announce(); // the peer should know at once
        return true;
    }

    /// Becoming active: the state (as followed) stays, with its sequence; the epoch is new.
    void take_over(bs::state from) {
        stop_following();
        if (from == bs::state::passive) takeovers_.fetch_add(1, std::memory_order_relaxed);
        epoch_ = draw_epoch();
        log(log_level::info,
            "clone server: active at sequence %llu with %llu keys (new epoch: clients re-sync "
            "once)",
            static_cast<unsigned long long>(sequence_),
            static_cast<unsigned long long>(state_.size()));
        publish_hugz();
    }

    /// Follows the active peer while this server is not active and the peer announced itself
    /// active with its endpoints; connects again when they change (a restarted peer).
    void update_follower() {
        if (serving() || peer_state_ != bs::state::active || peer_server_.empty()) return;
        if (follow_dealer_ && following_ == peer_server_ + " " + peer_updates_) return;
        stop_following();
        following_ = peer_server_ + " " + peer_updates_;
        follow_dealer_.emplace(ctx_, zmq::socket_type::dealer);
        follow_sub_.emplace(ctx_, zmq::socket_type::sub);
        follow_dealer_->set(zmq::sockopt::linger, 0);
        follow_sub_->set(zmq::sockopt::linger, 0);
        follow_sub_->set(zmq::sockopt::rcvhwm, 0); // the follower must not lose updates to a HWM
        follow_sub_->set(zmq::sockopt::subscribe, "");
        try {
            zmesh::connect(*follow_sub_, peer_updates_);
            zmesh::connect(*follow_dealer_, peer_server_);
        } catch (const std::exception& e) {
            log(log_level::warn, "clone server: cannot follow the active peer: %s", e.what());
            stop_following();
            return;
        }
        reactor_.add(*follow_dealer_, [this](zmq::socket_ref) { on_follow_reply(); });
        reactor_.add(*follow_sub_, [this](zmq::socket_ref) { on_follow_update(); });
        follow_sub_polled_ = true;
        log(log_level::info, "clone server: following the active peer at %s (updates %s)",
            peer_server_.c_str(), peer_updates_.c_str());
        send_follow(false);
    }

    void stop_following() {
        if (follow_dealer_) reactor_.remove(*follow_dealer_);
        if (follow_sub_) reactor_.remove(*follow_sub_);
        follow_dealer_.reset();
        follow_sub_.reset();
        following_.clear();
        follow_synced_ = false;
        follow_sub_polled_ = false;
    }

    /// FOLLOW: with the epoch and sequence held once synced (a confirmation), else epoch 0
    /// (a request for a snapshot).
    void send_follow(bool synced) {
        follow_synced_ = synced;
        message m;
        m.push_back(protocol_v1);
        m.push_back(detail::command_frame(command::follow));
        m.push_back(detail::encode_sequence(synced ? epoch_ : 0));
        m.push_back(detail::encode_sequence(synced ? sequence_ : 0));
        (void)m.send(*follow_dealer_, zmq::send_flags::dontwait);
    }

    /// The active's snapshot: the state, its epoch and sequence become this server's.
    void on_follow_reply() {
        bool fresh = false;
        for (int i = 0; i < 100 && follow_dealer_; ++i) {
            if (!follow_in_.recv(*follow_dealer_, zmq::recv_flags::dontwait)) break;
            const auto c = detail::command_at(follow_in_, 0);
            if (c != command::snapshot || follow_in_.size() < 4 || follow_in_.size() % 2 != 0 ||
                !detail::decode_sequence(follow_in_[2]) || !detail::decode_sequence(follow_in_[3]))
                continue;
            std::map<std::string, std::string, std::less<>> fresh_state;
            for (std::size_t k = 4; k + 1 < follow_in_.size(); k += 2)
                fresh_state.insert_or_assign(to_string(follow_in_[k]),
                                             to_string(follow_in_[k + 1]));
            const auto e = *detail::decode_sequence(follow_in_[2]);
            const auto q = *detail::decode_sequence(follow_in_[3]);
            // A snapshot answering an earlier FOLLOW may come after updates past it.
            if (follow_synced_ && e == epoch_ && q < sequence_) continue;
            state_ = std::move(fresh_state);
            epoch_ = e;
            sequence_ = q;
            fresh = true;
        }
        if (!fresh) return;
        seq_out_.store(sequence_, std::memory_order_relaxed);
        keys_.store(state_.size(), std::memory_order_relaxed);
        log(log_level::info, "clone server: took the active's snapshot at sequence %llu",
            static_cast<unsigned long long>(sequence_));
        send_follow(true);
        if (!follow_sub_polled_) {
            reactor_.add(*follow_sub_, [this](zmq::socket_ref) { on_follow_update(); });
            follow_sub_polled_ = true;
        }
        on_follow_update(); // updates queued meanwhile
    }

    /// The active's updates, in sequence; a gap or another epoch asks for a snapshot again.
    void on_follow_update() {
        if (!follow_sub_) return;
        if (!follow_synced_) {
            // Left queued until the snapshot is in (unpolled meanwhile: level-triggered).
            if (follow_sub_polled_) reactor_.remove(*follow_sub_);
            follow_sub_polled_ = false;
            return;
        }
        bool applied = false;
        for (int i = 0; i < 10000; ++i) {
            if (!follow_in_.recv(*follow_sub_, zmq::recv_flags::dontwait)) break;
            const auto c = detail::command_at(follow_in_, 1);
            if (c == command::hugz && follow_in_.size() == 5) {
                const auto e = detail::decode_sequence(follow_in_[3]);
                const auto q = detail::decode_sequence(follow_in_[4]);
                if (e && q && (*e != epoch_ || *q > sequence_)) return send_follow(false);
                continue;
            }
            if (follow_in_.size() < 4 || !follow_in_[0].size() ||
                (c != command::update && c != command::removal))
                continue;
            const auto q = detail::decode_sequence(follow_in_[3]);
            const std::size_t base = c == command::update ? 5 : 4;
            if (!q || follow_in_.size() < base || follow_in_.size() > base + 1) continue;
            if (*q <= sequence_) continue;
            if (*q != sequence_ + 1) return send_follow(false);
            sequence_ = *q;
            std::string key = to_string(follow_in_[0]);
            if (c == command::update)
                state_.insert_or_assign(std::move(key), to_string(follow_in_[4]));
            else
                state_.erase(key);
            if (follow_in_.size() == base + 1 &&
                follow_in_[base].size() == detail::change_id_size)
                remember(to_string(follow_in_[base]), *q);
            followed_.fetch_add(1, std::memory_order_relaxed);
            applied = true;
        }
        if (!applied) return;
        seq_out_.store(sequence_, std::memory_order_relaxed);
        keys_.store(state_.size(), std::memory_order_relaxed);
        send_follow(true);
    }

    /// Remembers a change id and its sequence, for the re-sends of a client that failed over.
    void remember(std::string id, std::uint64_t seq) {
        if (ids_.insert_or_assign(id, seq).second) id_order_.push_back(std::move(id));
        while (id_order_.size() > 100000) {
            ids_.erase(id_order_.front());
            id_order_.pop_front();
        }
    }

    /// The ack of sequence @p seq to @p routing, now or once the follower has the change.
    void ack(std::string routing, std::uint64_t seq) {
        if (bs::machine::clock::now() < follower_until_ && seq > follower_has_) {
            held_.push_back({std::move(routing), seq});
            acks_held_.fetch_add(1, std::memory_order_relaxed);
            return;
        }
        send_ack(routing, seq);
    }

    void send_ack(const std::string& routing, std::uint64_t seq) {
        message m;
        m.push_back(routing);
        m.push_back(protocol_v1);
        m.push_back(detail::command_frame(command::ack));
        m.push_back(detail::encode_sequence(seq));
        (void)m.send(router_, zmq::send_flags::dontwait);
    }

    void release_acks(std::uint64_t upto) {
        while (!held_.empty() && held_.front().seq <= upto) {
            send_ack(held_.front().routing, held_.front().seq);
            held_.pop_front();
        }
    }

    /// FOLLOW from the passive peer (only an active server answers it).
    void on_follow() {
        const auto e = detail::decode_sequence(in_[3]);
        const auto q = detail::decode_sequence(in_[4]);
        if (!e || !q) return count_malformed();
        if (!serving()) return; // not (or no longer) the one to follow
        follower_until_ = bs::machine::clock::now() + 2 * options_.ha_heartbeat;
        if (*e != epoch_) {
            follower_has_ = 0;
            send_snapshot(std::string());
            return;
        }
        follower_has_ = std::max(follower_has_, std::min(*q, sequence_));
        release_acks(follower_has_);
    }

    /// A client request on a server that is not active: the machine's client_request event.
    /// @returns whether it may be served now.
    bool admit() {
        if (serving()) return true;
        const auto o = machine_->on_event(bs::event::client_request, bs::machine::clock::now());
        if (!apply(o, bs::event::client_request)) return false;
        if (o.accepted) return true;
        ha_refused_.fetch_add(1, std::memory_order_relaxed);
        message m;
        m.push_back(std::move(in_[0]));
        m.push_back(protocol_v1);
        m.push_back(detail::command_frame(command::refused));
        m.push_back(std::string(bs::to_string(machine_->current())) + ": " +
                    std::string(o.reason));
        (void)m.send(router_, zmq::send_flags::dontwait);
        return false;
    }

    void count_malformed() {
        malformed_.fetch_add(1, std::memory_order_relaxed);
        if (limiter_.allow())
            log(log_level::warn, "clone server: dropped a malformed message (%zu frames)",
                in_.size());
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
        if (c == command::follow && in_.size() == 5 && machine_) return on_follow();
        const bool id_ok =
            (c == command::set && (in_.size() == 5 || (in_.size() == 6 &&
                                                       in_[5].size() == detail::change_id_size))) ||
            (c == command::erase && (in_.size() == 4 || (in_.size() == 5 &&
                                                         in_[4].size() == detail::change_id_size)));
        const bool valid = (c == command::snapshot_request && in_.size() == 4) ||
                           (id_ok && in_[3].size() > 0);
        if (!valid) return count_malformed();
        if (!admit()) return;
        if (c == command::snapshot_request) return send_snapshot(to_string(in_[3]));
        std::string id;
        if (c == command::set && in_.size() == 6) id = to_string(in_[5]);
        if (c == command::erase && in_.size() == 5) id = to_string(in_[4]);
        if (!id.empty()) {
            if (auto it = ids_.find(id); it != ids_.end()) {
                // A re-send of a change applied already (here, or at the active this server
                // followed): its ack again, not the change again.
                duplicates_.fetch_add(1, std::memory_order_relaxed);
                return ack(to_string(in_[0]), it->second);
            }
        }
        if (c == command::set) return change(to_string(in_[3]), std::string(view(in_[4])), id);
        return change(to_string(in_[3]), std::nullopt, id);
    }

    void send_snapshot(const std::string& prefix) {
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

    void change(std::string key, std::optional<std::string> value, std::string id) {
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
        if (!id.empty()) {
            update.push_back(id);
            remember(std::move(id), seq);
        }
        (void)update.send(pub_, zmq::send_flags::dontwait); // PUB drops for a full subscriber
        ack(to_string(in_[0]), seq);
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
    zmq::context_t& ctx_;
    zmq::socket_t router_, pub_;
    server_options options_;
    std::map<int, std::string> subscribers_; ///< CURVE: update connection descriptor -> key
    std::atomic<bool> reload_pending_{false};
    std::string endpoint_, updates_;
    // Binary Star (ha_role set): the machine, the HA link, the peer as last announced.
    std::optional<bs::machine> machine_;
    std::optional<zmq::socket_t> ha_pub_, ha_sub_;
    std::string ha_endpoint_, peer_host_;
    std::optional<bs::state> peer_state_;
    std::string peer_server_, peer_updates_;
    // While not active: the follower of the active peer.
    std::optional<zmq::socket_t> follow_dealer_, follow_sub_;
    std::string following_;
    bool follow_synced_ = false;
    bool follow_sub_polled_ = false;
    // While active: the follower's liveness and what it confirmed; the acks held for it.
    bs::machine::clock::time_point follower_until_{};
    std::uint64_t follower_has_ = 0;
    struct held_ack {
        std::string routing;
        std::uint64_t seq;
    };
    std::deque<held_ack> held_;
    // Change ids applied (here, or followed), for the re-sends of clients that failed over.
    std::unordered_map<std::string, std::uint64_t> ids_;
    std::deque<std::string> id_order_;
    reactor reactor_;
    message in_, ha_in_, follow_in_;
    std::map<std::string, std::string, std::less<>> state_;
    std::uint64_t sequence_ = 0;
    // Random per run, in snapshots and HUGZ: sequences of two runs of a server are not comparable.
    std::uint64_t epoch_ = draw_epoch();
    log_limiter limiter_;
    std::atomic<std::uint64_t> seq_out_{0}, keys_{0}, snapshots_{0}, malformed_{0}, cut_off_{0};
    std::atomic<std::uint64_t> takeovers_{0}, ha_refused_{0}, duplicates_{0}, followed_{0},
        acks_held_{0};
    std::atomic<int> ha_state_{0};
    std::atomic<bool> fatal_{false};
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
const std::string& server::ha_endpoint() const noexcept {
    return impl_->ha_endpoint_;
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
    s.ha_state = impl_->ha_state_.load(std::memory_order_relaxed);
    s.ha_fatal = impl_->fatal_.load(std::memory_order_relaxed);
    s.ha_takeovers = impl_->takeovers_.load(std::memory_order_relaxed);
    s.ha_refused = impl_->ha_refused_.load(std::memory_order_relaxed);
    s.duplicates = impl_->duplicates_.load(std::memory_order_relaxed);
    s.followed = impl_->followed_.load(std::memory_order_relaxed);
    s.acks_held = impl_->acks_held_.load(std::memory_order_relaxed);
    impl_->gate_.fill(s);
    return s;
}

void server::set_access(security::access_policy policy) {
    impl_->gate_.set_access(std::move(policy));
    impl_->reload_pending_.store(true, std::memory_order_release);
}

} // namespace zmesh::patterns::clone
