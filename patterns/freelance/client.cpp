// SPDX-License-Identifier: MPL-2.0
// client.cpp — the client side of Freelance (ZMFL01, docs/patterns/freelance.md): one ROUTER
// connected to every server, each connection named by its endpoint (ZMQ_CONNECT_ROUTING_ID), so
// that the client can address a server before it has heard from it and servers need no fixed
// identity. Per server it keeps an explicit state (unknown, alive, expired), when it last heard
// from it and when the next PING is due. A request goes to the first live server that has not
// already failed it; an attempt that stays unanswered past the timeout marks that server expired
// and the same request (same id) goes to the next one.
#include "wire.hpp"

#include <zmesh/endpoint.hpp>
#include <zmesh/error.hpp>
#include <zmesh/log.hpp>

#include <algorithm>
#include <optional>
#include <set>

namespace zmesh::patterns::freelance {

using clock_type = std::chrono::steady_clock;

class client::impl {
  public:
    impl(zmq::context_t& ctx, std::vector<std::string> endpoints, const client_options& options)
        : socket_(ctx, zmq::socket_type::router), options_(options) {
        if (endpoints.empty())
            throw error(errc::invalid_argument, "freelance::client: no server endpoint");
        if (options.retries < 1)
            throw error(errc::invalid_argument, "freelance::client: retries must be at least 1");
        if (options.timeout.count() <= 0 || options.ping_interval.count() <= 0 ||
            options.server_ttl.count() <= 0)
            throw error(
                errc::invalid_argument,
                "freelance::client: timeout, ping_interval and server_ttl must be positive");
        std::set<std::string> seen;
        for (const auto& ep : endpoints) {
            (void)parse_endpoint(ep); // throws, naming it, if malformed
            // Two connections with one routing id would make libzmq abort.
            if (!seen.insert(ep).second)
                throw error(errc::invalid_argument,
                            "freelance::client: endpoint " + ep + " is given twice");
        }
        if (options.curve)
            security::make_curve_client(socket_, options.curve->server_public,
                                        options.curve->client);
        socket_.set(zmq::sockopt::linger, 0);
        // A send to a server whose connection is gone fails (EHOSTUNREACH) instead of vanishing.
        socket_.set(zmq::sockopt::router_mandatory, 1);
        socket_.set(zmq::sockopt::maxmsgsize, options.max_message_size);
        for (auto& ep : endpoints) {
            socket_.set(zmq::sockopt::connect_routing_id, ep);
            zmesh::connect(socket_, ep);
            servers_.push_back(server_status{std::move(ep), server_state::unknown, {}, {}});
        }
    }

    /// Sends [endpoint][ZMFL01][c][extra...]; false if that server cannot take it now.
    bool send_to(std::size_t i, command c, message&& extra) {
        message m;
        m.push_back(servers_[i].endpoint);
        m.push_back(protocol_v1);
        m.push_back(detail::command_frame(c));
        extra.move_tail_to(0, m);
        return m.send(socket_, zmq::send_flags::dontwait) == send_status::sent;
    }

    /// PINGs the servers that are due, expires the silent ones.
    void tick(clock_type::time_point now) {
        for (std::size_t i = 0; i < servers_.size(); ++i) {
            auto& s = servers_[i];
            if (s.state == server_state::alive && now - s.last_seen > options_.server_ttl)
                s.state = server_state::expired;
            if (now >= s.ping_due) {
                if (send_to(i, command::ping, message{})) ++stats_.pings;
                s.ping_due = now + options_.ping_interval;
            }
        }
    }

    clock_type::time_point next_ping_due() const {
        auto t = clock_type::time_point::max();
        for (const auto& s : servers_) t = std::min(t, s.ping_due);
        return t;
    }

    /// Waits until @p until (or the next PING is due) for traffic, then reads all of it.
    /// @returns the reply to the current request, if it arrived.
    std::optional<message> wait(clock_type::time_point until) {
        auto now = clock_type::now();
        tick(now);
        const auto wake = std::min(until, next_ping_due());
        auto left = std::chrono::ceil<std::chrono::milliseconds>(wake - now);
        if (left.count() < 0) left = std::chrono::milliseconds(0);
        zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
        zmq::poll(&item, 1, left);
        return drain();
    }

    std::optional<message> drain() {
        std::optional<message> result;
        while (in_.recv(socket_, zmq::recv_flags::dontwait)) {
            auto r = handle();
            if (r) result = std::move(r);
        }
        return result;
    }

    std::optional<message> handle() {
        const auto c = detail::command_of(in_);
        const auto who = c ? find(view(in_[0])) : std::nullopt;
        std::optional<std::uint64_t> id;
        if (in_.size() >= 4) id = detail::decode_id(in_[3]);
        const bool valid =
            who && ((c == command::pong && in_.size() == 3) || (c == command::reply && id) ||
                    (c == command::error && id && in_.size() == 6));
        if (!valid) {
            ++stats_.malformed;
            if (limiter_.allow())
                log(log_level::warn, "freelance client: dropped a malformed message (%zu frames)",
                    in_.size());
            return std::nullopt;
        }
        auto& s = servers_[*who];
        const auto now = clock_type::now();
        s.state = server_state::alive;
        s.last_seen = now;
        s.ping_due = now + options_.ping_interval; // traffic is proof of life enough
        if (c == command::pong) return std::nullopt;
        if (*id != current_ || current_ == 0) {
            ++stats_.late_replies;
            return std::nullopt;
        }
        current_ = 0; // answered: a second answer to it is late
        ++stats_.replies;
        if (c == command::error)
            throw request_failed(s.endpoint, to_string(in_[4]), to_string(in_[5]));
        message body;
        in_.move_tail_to(4, body);
        return body;
    }

    std::optional<std::size_t> find(std::string_view endpoint) const {
        for (std::size_t i = 0; i < servers_.size(); ++i)
            if (servers_[i].endpoint == endpoint) return i;
        return std::nullopt;
    }

    /// The first live server that has not failed this request; else the first live one.
    std::optional<std::size_t> pick(const std::vector<bool>& failed) const {
        std::optional<std::size_t> fallback;
        for (std::size_t i = 0; i < servers_.size(); ++i) {
            if (servers_[i].state != server_state::alive) continue;
            if (!failed[i]) return i;
            if (!fallback) fallback = i;
        }
        return fallback;
    }

    message request(message body) {
        ++stats_.requests;
        current_ = ++next_id_;
        const std::string id = detail::encode_id(current_);
        std::vector<bool> failed(servers_.size(), false);
        std::vector<std::string> sent_to;
        for (int attempt = 0; attempt < options_.retries; ++attempt) {
            if (attempt > 0) ++stats_.retries;
            const auto deadline = clock_type::now() + options_.timeout;
            if (auto r = drain()) return std::move(*r); // an earlier attempt's answer
            // An index, not an optional: GCC 12 at -O2 under the sanitizers warns that an
            // optional read after this loop may be uninitialized (an error with -Werror).
            constexpr auto none = static_cast<std::size_t>(-1);
            std::size_t target = none;
            while (target == none && clock_type::now() < deadline) {
                tick(clock_type::now());
                if (const auto picked = pick(failed)) {
                    target = *picked;
                    message m;
                    m.push_back(id);
                    for (const auto& f : body) m.push_back(view(f)); // kept for the retries
                    if (send_to(target, command::request, std::move(m))) break;
                    servers_[target].state = server_state::expired; // its connection is gone
                    target = none;
                    continue;
                }
                if (auto r = wait(deadline)) return std::move(*r); // waiting for a PONG
            }
            if (target == none) continue; // no server answered a ping within this attempt
            const auto& ep = servers_[target].endpoint;
            if (std::find(sent_to.begin(), sent_to.end(), ep) == sent_to.end())
                sent_to.push_back(ep);
            while (clock_type::now() < deadline)
                if (auto r = wait(deadline)) return std::move(*r);
            // Silent past the timeout: take it for expired until it answers again.
            failed[target] = true;
            servers_[target].state = server_state::expired;
        }
        current_ = 0;
        std::string all;
        for (const auto& s : servers_) all += (all.empty() ? "" : ", ") + s.endpoint;
        std::string tried;
        for (const auto& ep : sent_to) tried += (tried.empty() ? "" : ", ") + ep;
        throw error(errc::timeout, "no reply from any server (" + all + ") within " +
                                       std::to_string(options_.retries) + " attempts of " +
                                       std::to_string(options_.timeout.count()) + " ms; " +
                                       (tried.empty() ? std::string("none answered a ping")
                                                      : "the request went to " + tried));
    }

    zmq::socket_t socket_;
    client_options options_;
    std::vector<server_status> servers_;
    client_stats stats_;
    message in_;
    std::uint64_t next_id_ = 0;
    std::uint64_t current_ = 0; // id of the request awaiting its answer; 0 = none
    log_limiter limiter_;
};

client::client(zmq::context_t& ctx, std::vector<std::string> endpoints, client_options options)
    : impl_(std::make_unique<impl>(ctx, std::move(endpoints), options)) {}

client::~client() = default;
client::client(client&&) noexcept = default;
client& client::operator=(client&&) noexcept = default;

message client::request(message body) {
    if (!impl_) throw error(errc::not_running, "freelance::client: moved from");
    return impl_->request(std::move(body));
}

void client::poll(std::chrono::milliseconds wait) {
    if (!impl_) throw error(errc::not_running, "freelance::client: moved from");
    const auto until = clock_type::now() + wait;
    do {
        (void)impl_->wait(until);
    } while (clock_type::now() < until);
}

std::vector<server_status> client::servers() const {
    return impl_ ? impl_->servers_ : std::vector<server_status>{};
}

client_stats client::stats() const noexcept {
    return impl_ ? impl_->stats_ : client_stats{};
}

} // namespace zmesh::patterns::freelance
