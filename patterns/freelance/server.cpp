// SPDX-License-Identifier: MPL-2.0
// server.cpp — the server side of Freelance (ZMFL01, docs/patterns/freelance.md): a ROUTER that
// answers PING with PONG and each REQUEST with the handler's REPLY or ERROR, echoing the request
// id so that the client can tell a late reply from the one it waits for. Anything else is
// counted as malformed and dropped.
#include "wire.hpp"

#include "../detail/curve_gate.hpp"

#include <zmesh/socket_options.hpp>
#include <zmesh/endpoint.hpp>
#include <zmesh/error.hpp>
#include <zmesh/log.hpp>
#include <zmesh/reactor.hpp>

#include <sys/random.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <exception>

namespace zmesh::patterns::freelance {


class server::impl {
  public:
    impl(zmq::context_t& ctx, const std::vector<std::string>& endpoints, handler h,
         const server_options& options)
        : socket_(zmesh::make_seeded_router(ctx)), handler_(std::move(h)) {
        if (endpoints.empty())
            throw error(errc::invalid_argument, "freelance::server: no endpoint to bind");
        if (!handler_) throw error(errc::invalid_argument, "freelance::server: empty handler");
        gate_.start(ctx, options.curve_server, {&socket_});
        socket_.set(zmq::sockopt::linger, 0);
        socket_.set(zmq::sockopt::maxmsgsize, options.max_message_size);
        for (const auto& ep : endpoints) bound_.push_back(zmesh::bind(socket_, ep));
        reactor_.add(socket_, [this](zmq::socket_ref) { drain(); });
    }

    void drain() {
        // Bounded per round, so that a flood of one socket cannot starve the reactor's stop.
        for (int i = 0; i < 1000; ++i) {
            if (!in_.recv(socket_, zmq::recv_flags::dontwait)) return;
            handle();
        }
    }

    void handle() {
        if (in_.size() >= 2 && !gate_.admits(in_[1])) return; // a key a reload removed
        const auto c = detail::command_of(in_);
        if (c == command::ping && in_.size() == 3) {
            message pong;
            pong.push_back(std::move(in_[0]));
            pong.push_back(protocol_v1);
            pong.push_back(detail::command_frame(command::pong));
            (void)pong.send(socket_, zmq::send_flags::dontwait);
            pings_.fetch_add(1, std::memory_order_relaxed);
            return;
        }
        if (c == command::request && in_.size() >= 4 && detail::decode_id(in_[3])) {
            message out;
            out.push_back(std::move(in_[0]));
            out.push_back(protocol_v1);
            zmq::message_t id = std::move(in_[3]);
            message body;
            in_.move_tail_to(4, body);
            answer a;
            try {
                a = handler_(std::move(body));
            } catch (const std::exception& e) {
                a = answer::fail("500", e.what());
            }
            out.push_back(detail::command_frame(a.ok ? command::reply : command::error));
            out.push_back(std::move(id));
            if (a.ok) {
                a.body.move_tail_to(0, out);
            } else {
                out.push_back(a.status);
                out.push_back(a.reason);
            }
            // Counted before the reply leaves, so that a client holding the reply sees it in
            // stats() (the message hand-off orders the two).
            requests_.fetch_add(1, std::memory_order_relaxed);
            // A ROUTER drops a reply to a client that has gone: nothing to do about it.
            (void)out.send(socket_, zmq::send_flags::dontwait);
            return;
        }
        malformed_.fetch_add(1, std::memory_order_relaxed);
        if (limiter_.allow())
            log(log_level::warn, "freelance server: dropped a malformed message (%zu frames)",
                in_.size());
    }

    // Declared before the socket, so that the socket is closed first: the ZAP handler must
    // outlive the handshakes it answers.
    ::zmesh::patterns::detail::curve_gate gate_{"freelance::server"};
    zmq::socket_t socket_;
    handler handler_;
    std::vector<std::string> bound_;
    reactor reactor_;
    message in_;
    log_limiter limiter_;
    std::atomic<std::uint64_t> requests_{0}, pings_{0}, malformed_{0};
};

server::server(zmq::context_t& ctx, const std::vector<std::string>& endpoints, handler h,
               server_options options)
    : impl_(std::make_unique<impl>(ctx, endpoints, std::move(h), options)) {}

server::~server() = default;

const std::vector<std::string>& server::endpoints() const noexcept {
    return impl_->bound_;
}

void server::run() {
    (void)impl_->reactor_.run();
}

void server::run_for(std::chrono::milliseconds duration) {
    (void)impl_->reactor_.run_for(duration);
}

void server::run_once(std::chrono::milliseconds wait) {
    (void)impl_->reactor_.run_once(wait);
}

void server::stop() noexcept {
    impl_->reactor_.stop();
}

server_stats server::stats() const noexcept {
    server_stats s;
    s.requests = impl_->requests_.load(std::memory_order_relaxed);
    s.pings = impl_->pings_.load(std::memory_order_relaxed);
    s.malformed = impl_->malformed_.load(std::memory_order_relaxed);
    impl_->gate_.fill(s);
    return s;
}

void server::set_access(security::access_policy policy) {
    impl_->gate_.set_access(std::move(policy));
}

request_failed::request_failed(std::string endpoint, std::string status, std::string reason)
    : std::runtime_error("server " + endpoint + " answered " + status +
                         (reason.empty() ? "" : ": " + reason)),
      endpoint_(std::move(endpoint)), status_(std::move(status)), reason_(std::move(reason)) {}

} // namespace zmesh::patterns::freelance
