// SPDX-License-Identifier: MPL-2.0
// mdp/client.cpp — the client side of the Majordomo Protocol 0.1.
//
// Client side of 7/MDP, https://rfc.zeromq.org/spec/7/: request() is the Lazy Pirate client of
// the zguide (timeout, fresh socket, resend), send()/recv() the asynchronous windowed client.
// Replies from the network are untrusted: anything that is not "" "MDPC01" <awaited service>
// body... is counted and dropped, never thrown.
#include <zmesh/error.hpp>
#include <zmesh/mdp/client.hpp>
#include <zmesh/mdp/protocol.hpp>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <deque>
#include <map>
#include <utility>

namespace zmesh::mdp {
namespace {

using clock = std::chrono::steady_clock;

/// libzmq takes option and poll durations as int milliseconds.
constexpr std::chrono::milliseconds max_duration{INT_MAX};

/// Waits until @p s is readable or @p deadline passes. A signal (EINTR) only ends the wait early.
bool wait_readable(zmq::socket_t& s, clock::time_point deadline) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - clock::now());
    zmq::pollitem_t item{s.handle(), 0, ZMQ_POLLIN, 0};
    try {
        zmq::poll(&item, 1, std::max(left, std::chrono::milliseconds(0)));
    } catch (const zmq::error_t& e) {
        if (e.num() != EINTR) throw;
        return false;
    }
    return (item.revents & ZMQ_POLLIN) != 0;
}

/// "" "MDPC01" service body...: the same frames both ways.
message client_frames(std::string_view service, message&& body) {
    message m;
    m.push_back(zmq::message_t());
    m.push_back(client_v1);
    m.push_back(service);
    body.move_tail_to(0, m);
    return m;
}

/// True if @p m has the form of an MDP/0.1 client reply: "" "MDPC01" service [body...].
bool is_client_reply(const message& m) noexcept {
    return m.size() >= 3 && m[0].size() == 0 && view(m[1]) == client_v1;
}

/// Thrown inside the client when libzmq reports the context terminated; caught at the API edge.
struct context_terminated {};

} // namespace

struct client::impl {
    zmq::context_t* ctx_;
    std::string endpoint_;
    client_options opts_;
    zmq::socket_t socket_;                     // closed between a timed-out attempt and the next
    std::size_t in_flight_ = 0;                // sent, reply not yet received from the socket
    std::map<std::string, std::size_t, std::less<>> awaited_; // service -> replies in flight
    std::deque<reply> ready_;                  // received while send() waited on a full window
    client_stats stats_;

    impl(zmq::context_t& ctx, std::string endpoint, client_options opts)
        : ctx_(&ctx), endpoint_(std::move(endpoint)), opts_(opts) {
        if (opts_.timeout <= std::chrono::milliseconds(0) || opts_.timeout > max_duration)
            throw error(errc::invalid_argument, "mdp::client: timeout must be positive");
        if (opts_.retries < 1)
            throw error(errc::invalid_argument, "mdp::client: retries must be at least 1");
        if (opts_.window < 1)
            throw error(errc::invalid_argument, "mdp::client: window must be at least 1");
        if (opts_.linger < std::chrono::milliseconds(0) || opts_.linger > max_duration)
            throw error(errc::invalid_argument, "mdp::client: linger out of range");
        open();
    }

    void open() {
        zmq::socket_t s(*ctx_, zmq::socket_type::dealer);
        s.set(zmq::sockopt::linger, static_cast<int>(opts_.linger.count()));
        // A send may block only while the pipe is at its high-water mark; bound that by the
        // request timeout so a stuck broker surfaces as a timeout rather than a hang.
        s.set(zmq::sockopt::sndtimeo, static_cast<int>(opts_.timeout.count()));
        // ZMQ_IMMEDIATE stays 0: a request sent before the TCP connection is up is queued and
        // goes out once it is, which is what a client started before its broker wants. A request
        // queued on a connection that then dies is lost (PROTOCOLS.md §2 item 10); request()'s
        // resend covers that, the asynchronous mode does not.
        s.connect(endpoint_);
        socket_ = std::move(s);
    }

    void ensure_open() {
        if (!socket_) open();
    }

    std::size_t outstanding() const noexcept { return in_flight_ + ready_.size(); }

    /// The next message from the socket before @p deadline, if any.
    std::optional<message> read_until(clock::time_point deadline) {
        for (;;) {
            message m;
            if (m.recv(socket_, zmq::recv_flags::dontwait)) return m;
            if (clock::now() >= deadline) return std::nullopt;
            // poll throws ETERM once the context is terminating; recv only returns false.
            try {
                (void)wait_readable(socket_, deadline);
            } catch (const zmq::error_t& e) {
                if (e.num() == ETERM) throw context_terminated{};
                throw;
            }
        }
    }

    /// The next reply to an asynchronous request before @p deadline; other messages are dropped.
    std::optional<reply> read_reply_until(clock::time_point deadline) {
        while (auto m = read_until(deadline)) {
            if (!is_client_reply(*m)) {
                ++stats_.malformed;
                continue;
            }
            // With no request id, a reply is taken to answer the oldest request to its service;
            // one from a service nothing was sent to is foreign or stale.
            auto it = awaited_.find(view((*m)[2]));
            if (it == awaited_.end()) {
                ++stats_.unexpected;
                continue;
            }
            reply r{it->first, message{}};
            if (--it->second == 0) awaited_.erase(it);
            --in_flight_;
            m->move_tail_to(3, r.body);
            ++stats_.replies;
            return r;
        }
        return std::nullopt;
    }

    std::optional<message> request(std::string_view service, message&& body, std::error_code& ec,
                                   std::string& why) {
        ec.clear();
        if (service.empty()) {
            ec = errc::invalid_argument;
            why = "mdp::client::request: empty service name";
            return std::nullopt;
        }
        if (outstanding() > 0) {
            ec = errc::invalid_argument;
            why = "mdp::client::request: asynchronous requests are outstanding";
            return std::nullopt;
        }
        ++stats_.requests;
        try {
            for (int attempt = 1; attempt <= opts_.retries; ++attempt) {
                const bool last = attempt == opts_.retries;
                if (attempt > 1) ++stats_.resends;
                // Every attempt but the last sends a copy: a resend needs the original frames.
                message out = client_frames(service, last ? std::move(body) : body.clone());
                ensure_open();
                // The attempt's deadline covers the send too (bounded by ZMQ_SNDTIMEO).
                const auto deadline = clock::now() + opts_.timeout;
                const auto st = out.send(socket_);
                if (st == send_status::terminated) throw context_terminated{};
                if (st == send_status::sent) {
                    while (auto m = read_until(deadline)) {
                        if (!is_client_reply(*m)) {
                            ++stats_.malformed;
                            continue;
                        }
                        if (view((*m)[2]) != service) {
                            ++stats_.unexpected;
                            continue;
                        }
                        message result;
                        m->move_tail_to(3, result);
                        ++stats_.replies;
                        return result;
                    }
                }
                // Lazy Pirate: the attempt timed out. Close the socket (linger 0 by default) and
                // let the next attempt open a new one. A reply to this attempt may still arrive;
                // on a fresh socket it has nowhere to land, so a stale reply can never be taken
                // for the answer to a later attempt or a later request. This holds after the
                // last attempt too, so the next request() starts clean.
                socket_.close();
            }
        } catch (const context_terminated&) {
            socket_.close();
            ec = errc::not_running;
            why = "mdp::client::request: context terminated";
            return std::nullopt;
        }
        ++stats_.failures;
        ec = errc::timeout;
        why = "no reply from service '" + std::string(service) + "' after " +
              std::to_string(opts_.retries) + " attempts";
        return std::nullopt;
    }

    bool send(std::string_view service, message&& body, std::error_code& ec, std::string& why) {
        ec.clear();
        if (service.empty()) {
            ec = errc::invalid_argument;
            why = "mdp::client::send: empty service name";
            return false;
        }
        try {
            ensure_open();
            if (in_flight_ >= opts_.window) {
                // Window full: the broker owes us `window` replies. Wait at most one timeout
                // for room, queueing what arrives for recv(); a broker that stays silent that
                // long is reported rather than waited on forever (no retries in this mode).
                const auto deadline = clock::now() + opts_.timeout;
                while (in_flight_ >= opts_.window) {
                    auto r = read_reply_until(deadline);
                    if (!r) {
                        ec = errc::timeout;
                        why = "mdp::client::send: window of " + std::to_string(opts_.window) +
                              " requests still full after " +
                              std::to_string(opts_.timeout.count()) + " ms";
                        return false;
                    }
                    ready_.push_back(std::move(*r));
                }
            }
            message out = client_frames(service, std::move(body));
            const auto st = out.send(socket_);
            if (st == send_status::sent) {
                ++in_flight_;
                auto it = awaited_.find(service);
                if (it == awaited_.end()) it = awaited_.emplace(std::string(service), 0).first;
                ++it->second;
                ++stats_.requests;
                return true;
            }
            out.move_tail_to(3, body); // refused: give the caller its frames back
            if (st == send_status::terminated) throw context_terminated{};
            ec = errc::timeout;
            why = "mdp::client::send: socket would not take the request within " +
                  std::to_string(opts_.timeout.count()) + " ms";
            return false;
        } catch (const context_terminated&) {
            ec = errc::not_running;
            why = "mdp::client::send: context terminated";
            return false;
        }
    }

    std::optional<reply> recv(std::chrono::milliseconds timeout) {
        if (!ready_.empty()) {
            reply r = std::move(ready_.front());
            ready_.pop_front();
            return r;
        }
        if (in_flight_ == 0 || !socket_) return std::nullopt;
        try {
            return read_reply_until(clock::now() + std::min(timeout, max_duration));
        } catch (const context_terminated&) {
            return std::nullopt;
        }
    }
};

namespace {
// A template so that it can name the private impl through deduction.
template <class Impl> Impl& checked(const std::unique_ptr<Impl>& p) {
    if (!p) throw error(errc::not_running, "mdp::client: used after move");
    return *p;
}
} // namespace

client::client(zmq::context_t& ctx, std::string broker_endpoint, client_options options)
    : impl_(std::make_unique<impl>(ctx, std::move(broker_endpoint), options)) {}

client::~client() = default;
client::client(client&&) noexcept = default;
client& client::operator=(client&&) noexcept = default;

message client::request(std::string_view service, message&& body) {
    std::error_code ec;
    std::string why;
    auto r = checked(impl_).request(service, std::move(body), ec, why);
    if (!r) throw error(ec, why);
    return std::move(*r);
}

std::optional<message> client::request(std::string_view service, message&& body,
                                       std::error_code& ec) {
    if (!impl_) {
        ec = errc::not_running;
        return std::nullopt;
    }
    std::string why;
    return impl_->request(service, std::move(body), ec, why);
}

void client::send(std::string_view service, message&& body) {
    std::error_code ec;
    std::string why;
    if (!checked(impl_).send(service, std::move(body), ec, why)) throw error(ec, why);
}

bool client::send(std::string_view service, message&& body, std::error_code& ec) {
    if (!impl_) {
        ec = errc::not_running;
        return false;
    }
    std::string why;
    return impl_->send(service, std::move(body), ec, why);
}

std::optional<reply> client::recv(std::chrono::milliseconds timeout) {
    return checked(impl_).recv(timeout);
}

std::size_t client::outstanding() const noexcept { return impl_ ? impl_->outstanding() : 0; }

client_stats client::stats() const noexcept { return impl_ ? impl_->stats_ : client_stats{}; }

const std::string& client::endpoint() const noexcept {
    static const std::string none;
    return impl_ ? impl_->endpoint_ : none;
}

zmq::socket_ref client::socket() const noexcept {
    return impl_ ? zmq::socket_ref(impl_->socket_) : zmq::socket_ref();
}

} // namespace zmesh::mdp
