// SPDX-License-Identifier: MPL-2.0
// detail/curve_gate.hpp — internal to zmesh::patterns, not installed: the CURVE side of a server
// that is not a broker (Freelance, Clone; docs/security.md, "Pattern servers").
//
// With CURVE the server owns the ZAP handler of its context, which admits the client keys of a
// policy in the handshake. After set_access() replaces the policy, a connection made before may
// carry a key no longer admitted: from then on admits() looks up each message's key and the
// server drops what it refuses. Until a first reload nothing is looked up per message.
#pragma once

#include <zmesh/error.hpp>
#include <zmesh/log.hpp>
#include <zmesh/security/zap.hpp>

#include <zmq.hpp>

#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>

namespace zmesh::patterns::detail {

class curve_gate {
  public:
    /// @param who names the server in messages ("freelance::server").
    explicit curve_gate(const char* who) : who_(who) {}

    /// With @p settings: starts the ZAP handler in @p ctx and makes each socket of @p sockets a
    /// CURVE server. Before any bind. Without: the server stays plain.
    /// @throws zmesh::error errc::invalid_argument (security::start_curve_server).
    void start(zmq::context_t& ctx, const std::optional<security::curve_server_settings>& settings,
               std::initializer_list<zmq::socket_t*> sockets) {
        if (!settings) return;
        zap_ = security::start_curve_server(ctx, who_, *settings);
        for (auto* s : sockets) security::make_curve_server(*s, settings->server);
    }

    [[nodiscard]] bool on() const noexcept { return zap_ != nullptr; }

    /// Whether the key of @p frame's connection is still admitted; a refusal is counted and
    /// logged (rate-limited). @p frame must be one that came off the wire (it carries the
    /// User-Id), not a routing id a ROUTER made up.
    [[nodiscard]] bool admits(const zmq::message_t& frame) {
        if (!screening_.load(std::memory_order_acquire)) return true;
        const auto key = security::user_id(frame);
        if (zap_->admits(key)) return true;
        forbidden_.fetch_add(1, std::memory_order_relaxed);
        if (limiter_.allow())
            log(log_level::warn, "%s: dropped a message from key '%s', no longer admitted", who_,
                std::string(key).c_str());
        return false;
    }

    /// Whether @p key is admitted by the current policy (for connections the server tracks).
    [[nodiscard]] bool admits_key(std::string_view key) const { return zap_->admits(key); }

    /// Replaces the policy. Thread-safe.
    /// @throws zmesh::error errc::invalid_argument on a plain server, or for a bad address rule.
    void set_access(security::access_policy policy) {
        if (!zap_)
            throw error(errc::invalid_argument,
                        std::string(who_) + ": set_access needs curve_server (this server is plain)");
        zap_->set_policy(std::move(policy));
        screening_.store(true, std::memory_order_release);
    }

    /// The handshakes admitted and refused, and the messages dropped by admits().
    template <typename Stats>
    void fill(Stats& s) const noexcept {
        s.forbidden = forbidden_.load(std::memory_order_relaxed);
        if (!zap_) return;
        const auto z = zap_->stats();
        s.connections_admitted = z.admitted;
        s.connections_refused = z.refused;
    }

  private:
    const char* who_;
    std::unique_ptr<security::zap_handler> zap_;
    std::atomic<bool> screening_{false};
    std::atomic<std::uint64_t> forbidden_{0};
    log_limiter limiter_;
};

} // namespace zmesh::patterns::detail
