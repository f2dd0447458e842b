// SPDX-License-Identifier: MPL-2.0
// ha_pair.cpp — the HA link of a Binary Star pair and the screening of MDP traffic by its state.
//
// The link carries two kinds of message, both starting with the frame "ZMBS01":
//  - this broker's state, one byte (1 primary, 2 backup, 3 active, 4 passive), every heartbeat
//    and at once on a change. PUB/SUB, as in the guide: a state announced while the peer is not
//    connected is lost, and the next heartbeat's replaces it;
//  - while active, "R" and the message id of each ZMCT02/03 request it receives, as it receives
//    it: the ledger that lets the peer, once it takes over, hold a retry of such a request until
//    the worker that ran it replays the reply (zmesh.replay) instead of running it again.
// Anything else arriving on the SUB is counted (ha_malformed) and dropped.
#include "ha_pair.hpp"

#include "mdp_engine.hpp"

#include <zmesh/endpoint.hpp>
#include <zmesh/error.hpp>
#include <zmesh/log.hpp>
#include <zmesh/mdp/protocol.hpp>

#include <algorithm>
#include <cstring>
#include <string_view>

namespace zmesh::nodes::detail {

namespace bs = patterns::binary_star;

namespace {

constexpr std::string_view link_protocol = "ZMBS01";

/// What a ROUTER message is, by its protocol frame.
struct kind {
    bool client = false;
    bool worker = false;
    bool v1 = false;              // the …01 protocols: an empty delimiter before the protocol
    std::string_view protocol;
    std::string_view service;     // clients
    std::uint8_t command = 0;     // workers (and …02 clients)
};

kind classify(const message& m) noexcept {
    kind k;
    if (m.size() < 3) return k;
    std::size_t i = 1;
    if (m[1].size() == 0) {
        k.v1 = true;
        i = 2;
    }
    k.protocol = view(m[i]);
    const bool client_v1 = k.protocol == mdp::client_v1 || k.protocol == mdp::client_tagged_v1;
    const bool client_v2 = k.protocol == mdp::client_v2 || k.protocol == mdp::client_header_v2;
    const bool worker_any = k.protocol == mdp::worker_v1 || k.protocol == mdp::worker_credit_v1 ||
                            k.protocol == mdp::worker_v2 || k.protocol == mdp::worker_header_v2;
    if (client_v1 && k.v1 && m.size() > i + 1) {
        k.client = true;
        k.service = view(m[i + 1]);
    } else if (client_v2 && !k.v1 && m.size() > i + 2) {
        k.client = true;
        k.service = view(m[i + 2]);
    } else if (!k.v1 && mdp::client_command_v3(k.protocol) && m.size() > i + 1) {
        k.client = true; // ZMCT03: the command byte ends the protocol frame
        k.service = view(m[i + 1]);
    } else if (worker_any && m.size() > i + 1 && m[i + 1].size() == 1) {
        k.worker = true;
        k.command = static_cast<const std::uint8_t*>(m[i + 1].data())[0];
    }
    return k;
}

/// Where the service frame of a request with a message id is, as read from the ROUTER: 2 in
/// "ZMCT03"+REQUEST service header body..., 3 in "ZMCT02" REQUEST service header body...; the
/// header follows it. 0 for anything else (no message id to screen).
std::size_t service_frame_of(const message& m) noexcept {
    constexpr auto request = mdp::client_command_v2::request;
    if (m.size() >= 4 && mdp::client_command_v3(view(m[1])) == request) return 2;
    if (m.size() >= 5 && view(m[1]) == mdp::client_header_v2 && m[2].size() == 1 &&
        static_cast<const std::uint8_t*>(m[2].data())[0] == static_cast<std::uint8_t>(request))
        return 3;
    return 0;
}

} // namespace

ha_pair::ha_pair(zmq::context_t& ctx, const broker_config& config, reactor::clock::time_point now)
    : machine_(*config.ha_role, config.heartbeat_interval, now), pub_(ctx, zmq::socket_type::pub),
      sub_(ctx, zmq::socket_type::sub), heartbeat_(config.heartbeat_interval),
      // A retry comes within the client's wait; ten seconds, or more with slow heartbeats.
      keep_(std::max<std::chrono::milliseconds>(std::chrono::seconds(10),
                                                8 * config.heartbeat_interval * config.liveness)),
      // The worker that ran a request notices the dead broker after heartbeat x liveness (if it
      // uses the broker's settings), may first meet this broker still passive, and then replays
      // at once: four allowances cover that.
      hold_(4 * config.heartbeat_interval * config.liveness) {
    if (config.ha_bind.empty() || config.ha_peer.empty())
        throw error(errc::invalid_argument,
                    "a Binary Star broker needs both its HA endpoint and its peer's");
    pub_.set(zmq::sockopt::linger, 0);
    sub_.set(zmq::sockopt::linger, 0);
    // The ledger sends one small message per request: room for a burst of them.
    pub_.set(zmq::sockopt::sndhwm, 100000);
    sub_.set(zmq::sockopt::rcvhwm, 100000);
    // libzmq applies the limit to the handshake's commands too, and CURVE's WELCOME is 168
    // bytes: with CURVE the link's messages get the room of its handshake.
    sub_.set(zmq::sockopt::maxmsgsize, std::int64_t{config.curve ? 512 : 64});
    sub_.set(zmq::sockopt::subscribe, "");
    // Reconnect fast: the link is how the pair knows each other, and a peer that restarted
    // should be heard within a heartbeat.
    sub_.set(zmq::sockopt::reconnect_ivl, 100);
    sub_.set(zmq::sockopt::reconnect_ivl_max, 1000);
    // The link carries states and request ids, and whoever could join it could make a broker
    // take the other for dead, or alive: it is secured like the broker's other sockets, by the
    // broker's ZAP handler (which the broker starts before this).
    if (config.curve) {
        if (!config.ha_peer_key)
            throw error(errc::invalid_argument,
                        "a Binary Star broker with CURVE needs its peer's public key "
                        "(ha_peer_key; zmesh broker --ha-peer-key PEER.key)");
        if (!config.access.keys.contains(*config.ha_peer_key))
            throw error(errc::invalid_argument,
                        "a Binary Star broker with CURVE must admit its peer's key (ha_peer_key "
                        "in access.keys: put PEER.key in the --allow directory too)");
        security::make_curve_server(pub_, *config.curve);
        security::make_curve_client(sub_, *config.ha_peer_key, *config.curve);
    } else if (config.ha_peer_key) {
        throw error(errc::invalid_argument,
                    "ha_peer_key is for a broker with CURVE (curve unset)");
    } else if (!config.access.allow_addresses.empty() || !config.access.deny_addresses.empty()) {
        security::use_zap(pub_); // the address lists apply to the peer too
    }
    endpoint_ = zmesh::bind(pub_, config.ha_bind);
    sub_.connect(config.ha_peer);
    state_.store(bs::state_byte(machine_.current()), std::memory_order_relaxed);
}

void ha_pair::attach(reactor& r, std::function<void(std::string_view why)> on_fatal,
                     std::function<void(message&)> release) {
    reactor_ = &r;
    on_fatal_ = std::move(on_fatal);
    release_ = std::move(release);
    r.add(sub_, [this](zmq::socket_ref) { on_peer(reactor::clock::now()); });
    beat_ = r.add_repeating_timer(heartbeat_, [this] {
        announce();
        prune(reactor::clock::now());
    });
    log(log_level::info, "broker: Binary Star %s, HA link on %s, state %s",
        std::string(bs::to_string(machine_.configured_role())).c_str(), endpoint_.c_str(),
        std::string(bs::to_string(machine_.current())).c_str());
    announce();
    if (on_serving_) on_serving_(machine_.serving());
}

void ha_pair::detach() noexcept {
    if (!reactor_) return;
    if (beat_) reactor_->cancel(*beat_);
    beat_.reset();
    reactor_->remove(sub_);
    reactor_ = nullptr;
}

void ha_pair::announce() {
    message m;
    m.push_back(link_protocol);
    const std::uint8_t b = bs::state_byte(machine_.current());
    m.push_back(zmq::message_t(&b, 1));
    (void)m.send(pub_, zmq::send_flags::dontwait); // a full pipe: the next heartbeat will do
}

void ha_pair::on_peer(reactor::clock::time_point now) {
    for (int i = 0; i < 1000 && in_.recv(sub_, zmq::recv_flags::dontwait); ++i) {
        if (in_.size() == 3 && view(in_[0]) == link_protocol && view(in_[1]) == "R" &&
            in_[2].size() == message_id::size) {
            message_id::bytes_type b{};
            std::memcpy(b.data(), in_[2].data(), b.size());
            const message_id id(b);
            if (peer_seen_.insert(id).second) peer_seen_order_.emplace_back(now, id);
            ledger_.fetch_add(1, std::memory_order_relaxed);
            continue;
        }
        std::optional<bs::state> peer;
        if (in_.size() == 2 && view(in_[0]) == link_protocol && in_[1].size() == 1)
            peer = bs::byte_state(static_cast<const std::uint8_t*>(in_[1].data())[0]);
        if (!peer) {
            malformed_.fetch_add(1, std::memory_order_relaxed);
            log(log_level::warn, "broker: HA link: dropped a malformed state message");
            continue;
        }
        peer_updates_.fetch_add(1, std::memory_order_relaxed);
        const auto e = bs::peer_event(*peer);
        apply(machine_.on_event(e, now), e);
        if (!reactor_) return; // fatal: detached
    }
}

void ha_pair::apply(const bs::outcome& o, bs::event e) {
    if (o.fatal) {
        log(log_level::error, "broker: Binary Star fatal error in state %s on %s: %s",
            std::string(bs::to_string(o.from)).c_str(), std::string(bs::to_string(e)).c_str(),
            std::string(o.reason).c_str());
        if (on_fatal_) on_fatal_(o.reason);
        return;
    }
    if (!o.changed()) return;
    changes_.fetch_add(1, std::memory_order_relaxed);
    state_.store(bs::state_byte(o.to), std::memory_order_relaxed);
    log(log_level::info, "broker: Binary Star %s -> %s on %s: %s",
        std::string(bs::to_string(o.from)).c_str(), std::string(bs::to_string(o.to)).c_str(),
        std::string(bs::to_string(e)).c_str(), std::string(o.reason).c_str());
    announce(); // the peer should know at once, not at the next heartbeat
    if (on_serving_) on_serving_(machine_.serving());
}

void ha_pair::pubsub_request(reactor::clock::time_point now) {
    if (machine_.serving()) return;
    const auto o = machine_.on_event(bs::event::client_request, now);
    apply(o, bs::event::client_request);
    if (!o.accepted) clients_dropped_.fetch_add(1, std::memory_order_relaxed);
}

bool ha_pair::admit(message& m, outbox& out, reactor::clock::time_point now) {
    if (machine_.serving()) return screen_request(m, out, now);
    const kind k = classify(m);
    if (k.worker) {
        const std::uint8_t disconnect = k.protocol == mdp::worker_v2 || k.protocol == mdp::worker_header_v2
                                            ? std::uint8_t{0x06}
                                            : std::uint8_t{0x05};
        if (k.command == disconnect) return false; // it is leaving anyway
        // Not active: this broker has no workers. DISCONNECT sends the worker to the next broker.
        disconnect_.clear();
        disconnect_.push_back(zmq::message_t(m[0].data(), m[0].size()));
        if (k.v1) disconnect_.push_back(std::string_view());
        disconnect_.push_back(k.protocol);
        disconnect_.push_back(zmq::message_t(&disconnect, 1));
        (void)out.send(disconnect_);
        disconnect_.clear();
        workers_refused_.fetch_add(1, std::memory_order_relaxed);
        return false;
    }
    if (!k.client) return true; // malformed: the engine counts it
    // The broker's own statistics answer in any state, and asking for them is no request for
    // service: `zmesh stats` must be able to look at a passive broker without waking it.
    if (k.service == mdp::zmesh_stats) return true;
    if (k.service == mdp::zmesh_replay) return false; // for the active one only
    const auto o = machine_.on_event(bs::event::client_request, now);
    apply(o, bs::event::client_request);
    if (o.accepted) return screen_request(m, out, now);
    clients_dropped_.fetch_add(1, std::memory_order_relaxed);
    return false;
}

bool ha_pair::screen_request(message& m, outbox& out, reactor::clock::time_point now) {
    // Only ZMCT02 and ZMCT03 requests carry a message id.
    const std::size_t f_service = service_frame_of(m);
    if (f_service == 0 ||
        view(m[f_service]).substr(0, mdp::zmesh_prefix.size()) == mdp::zmesh_prefix)
        return true;
    std::error_code ec;
    const auto& head = m[f_service + 1];
    const auto h = decode_header(head.data(), head.size(), ec);
    if (!h) return true; // the engine answers 400
    // The ledger, as it happens: the peer must know this id before any worker can have run it.
    message r;
    r.push_back(link_protocol);
    r.push_back(std::string_view("R"));
    r.push_back(zmq::message_t(h->id.bytes().data(), h->id.bytes().size()));
    (void)r.send(pub_, zmq::send_flags::dontwait);
    if (replies_.count(h->id)) {
        answer(m, h->id, out);
        return false;
    }
    // A retry of a request the peer received: a worker may have run it, and its reply died
    // with the peer. Hold it until that worker replays the reply, or until hold_ has passed.
    if (peer_seen_.count(h->id) && held_count_ < 100000) {
        auto [it, fresh] = held_.try_emplace(h->id);
        if (fresh) it->second.until = now + hold_;
        // Moved, not copied: the engine reads the connection's descriptor from the frames.
        it->second.requests.push_back(std::move(m));
        ++held_count_;
        held_total_.fetch_add(1, std::memory_order_relaxed);
        return false;
    }
    return true;
}

void ha_pair::answer(message& request, const message_id& id, outbox& out) {
    const auto& r = replies_.at(id);
    message reply;
    const std::size_t f_service = service_frame_of(request); // 2 or 3: screened already
    reply.push_back(std::move(request[0])); // the client's routing id
    if (f_service == 2) {
        reply.push_back(mdp::client_frame_v3(mdp::client_command_v2::final));
    } else {
        reply.push_back(mdp::client_header_v2);
        reply.push_back(mdp::command_frame_v2(mdp::client_command_v2::final));
    }
    reply.push_back(std::move(request[f_service])); // the service, as asked
    reply.push_back(zmq::message_t(r.head.data(), r.head.size()));
    for (std::size_t i = 0; i < r.body.size(); ++i)
        reply.push_back(zmq::message_t(r.body[i].data(), r.body[i].size()));
    (void)out.send(reply); // a client gone or at its HWM retries again
    answered_.fetch_add(1, std::memory_order_relaxed);
}

bool ha_pair::on_replay(message& body, outbox& out, reactor::clock::time_point now) {
    // id (16 bytes), service, the FINAL's header, body...
    if (body.size() < 3 || body[0].size() != message_id::size) return false;
    message_id::bytes_type b{};
    std::memcpy(b.data(), body[0].data(), b.size());
    const message_id id(b);
    replays_.fetch_add(1, std::memory_order_relaxed);
    if (!replies_.count(id)) {
        replayed r{std::string(view(body[1])), zmq::message_t(body[2].data(), body[2].size()), {}, now};
        body.move_tail_to(3, r.body);
        replies_.emplace(id, std::move(r));
        replies_order_.emplace_back(now, id);
    }
    if (auto it = held_.find(id); it != held_.end()) {
        for (auto& request : it->second.requests) answer(request, id, out);
        held_count_ -= it->second.requests.size();
        held_.erase(it);
    }
    return true;
}

void ha_pair::prune(reactor::clock::time_point now) {
    while (!peer_seen_order_.empty() && now - peer_seen_order_.front().first > keep_) {
        peer_seen_.erase(peer_seen_order_.front().second);
        peer_seen_order_.pop_front();
    }
    while (!replies_order_.empty() && now - replies_order_.front().first > keep_) {
        replies_.erase(replies_order_.front().second);
        replies_order_.pop_front();
    }
    // Holds that ended without a replay: no worker kept a reply, so none ran the request (or
    // its worker died too). The engine takes them now; the ids leave the ledger so that the
    // next retry is not held again.
    std::vector<message> due;
    for (auto it = held_.begin(); it != held_.end();) {
        if (it->second.until > now) {
            ++it;
            continue;
        }
        // The engine joins them into one request; its reply goes to the latest connection, and
        // a retry from a newer one joins it or gets the kept reply.
        for (auto& request : it->second.requests) due.push_back(std::move(request));
        held_count_ -= it->second.requests.size();
        peer_seen_.erase(it->first);
        it = held_.erase(it);
    }
    for (auto& m : due) {
        released_.fetch_add(1, std::memory_order_relaxed);
        if (release_) release_(m);
    }
}

void ha_pair::fill(broker_stats& s) const noexcept {
    s.ha_state = state_.load(std::memory_order_relaxed);
    s.ha_changes = changes_.load(std::memory_order_relaxed);
    s.ha_clients_dropped = clients_dropped_.load(std::memory_order_relaxed);
    s.ha_workers_refused = workers_refused_.load(std::memory_order_relaxed);
    s.ha_peer_updates = peer_updates_.load(std::memory_order_relaxed);
    s.ha_malformed = malformed_.load(std::memory_order_relaxed);
    s.ha_ledger = ledger_.load(std::memory_order_relaxed);
    s.ha_held = held_total_.load(std::memory_order_relaxed);
    s.ha_released = released_.load(std::memory_order_relaxed);
    s.ha_replays = replays_.load(std::memory_order_relaxed);
    s.ha_replay_answers = answered_.load(std::memory_order_relaxed);
}

} // namespace zmesh::nodes::detail
