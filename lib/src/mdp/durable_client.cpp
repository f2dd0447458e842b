// SPDX-License-Identifier: MPL-2.0
// mdp/durable_client.cpp — TSP (rfc 9) client calls over a synchronous MDP client.
//
// Every call is one mdp::client::request() to a titanic.* service; the answer's first frame is
// the TSP status, checked here before anything else of the answer is trusted.
#include <zmesh/error.hpp>
#include <zmesh/header.hpp>
#include <zmesh/mdp/durable_client.hpp>

#include <algorithm>
#include <limits>
#include <thread>
#include <utility>

namespace zmesh::mdp {

namespace {

constexpr std::string_view status_ok = "200";
constexpr std::string_view status_pending = "300";
constexpr std::string_view status_unknown = "400";
constexpr std::string_view status_error = "500";

/// Frames of untrusted server text are quoted in one-line exception messages: bounded, with
/// control characters replaced.
std::string quote(std::string_view text) {
    constexpr std::size_t max_chars = 200;
    std::string out;
    for (char c : text.substr(0, max_chars)) out += (c >= 0x20 && c != 0x7f) ? c : '?';
    if (text.size() > max_chars) out += "...";
    return out;
}

/// The frames of @p answer from @p first on, joined by spaces, for an error message.
std::string reason_of(const message& answer, std::size_t first) {
    std::string out;
    for (std::size_t i = first; i < answer.size(); ++i) {
        if (!out.empty()) out += ' ';
        out += quote(view(answer[i]));
    }
    return out.empty() ? std::string("no reason given") : out;
}

std::string id_text(std::string_view id) {
    return "'" + quote(id) + "'";
}

void check_id(std::string_view id) {
    if (!is_tsp_id(id))
        throw error(errc::invalid_argument,
                    "invalid request id " + id_text(id) + ": expected 32 hex digits");
}

/// Throws for an answer of @p service whose status is not one the caller handles.
[[noreturn]] void fail(std::string_view service, const message& answer) {
    const std::string where = std::string(service) + ": ";
    if (answer.empty()) throw error(errc::protocol_violation, where + "empty answer from server");
    const auto status = view(answer[0]);
    if (status == status_error)
        throw error(errc::storage, where + "server error 500: " + reason_of(answer, 1));
    throw error(errc::protocol_violation,
                where + "unexpected status '" + quote(status) + "': " + reason_of(answer, 1));
}

} // namespace

struct durable_client::impl {
    client mdp_;
    durable_client_options options_;

    impl(zmq::context_t& ctx, std::string endpoint, durable_client_options options)
        : mdp_(ctx, std::move(endpoint), options.mdp), options_(options) {}
    impl(zmq::context_t& ctx, std::vector<std::string> endpoints, durable_client_options options)
        : mdp_(ctx, std::move(endpoints), options.mdp), options_(options) {}

    message call(std::string_view service, message&& body) {
        return mdp_.request(service, std::move(body));
    }
};

durable_client::durable_client(zmq::context_t& ctx, std::string broker_endpoint,
                               durable_client_options options) {
    if (options.poll_initial.count() <= 0)
        throw error(errc::invalid_argument, "durable_client: poll_initial must be positive");
    if (options.poll_max < options.poll_initial)
        throw error(errc::invalid_argument, "durable_client: poll_max must be >= poll_initial");
    impl_ = std::make_unique<impl>(ctx, std::move(broker_endpoint), options);
}

durable_client::durable_client(zmq::context_t& ctx, std::vector<std::string> broker_endpoints,
                               durable_client_options options) {
    if (options.poll_initial.count() <= 0)
        throw error(errc::invalid_argument, "durable_client: poll_initial must be positive");
    if (options.poll_max < options.poll_initial)
        throw error(errc::invalid_argument, "durable_client: poll_max must be >= poll_initial");
    impl_ = std::make_unique<impl>(ctx, std::move(broker_endpoints), options);
}

durable_client::~durable_client() = default;
durable_client::durable_client(durable_client&&) noexcept = default;
durable_client& durable_client::operator=(durable_client&&) noexcept = default;

std::string durable_client::submit(std::string_view service, message&& body) {
    if (!impl_) throw error(errc::not_running, "durable_client: used after move");
    if (service.empty()) throw error(errc::invalid_argument, "durable_client: empty service name");
    body.push_front(service);
    message answer = impl_->call(titanic_request, std::move(body));
    if (answer.empty() || view(answer[0]) != status_ok) fail(titanic_request, answer);
    // rfc 9: exactly [200][uuid]; an id we cannot use later is as bad as no id at all.
    if (answer.size() != 2 || !is_tsp_id(view(answer[1])))
        throw error(errc::protocol_violation,
                    std::string(titanic_request) +
                        ": malformed id in answer: " + reason_of(answer, 1));
    return to_string(answer[1]);
}

std::string durable_client::submit(std::string_view service, message&& body,
                                   std::chrono::milliseconds ttl) {
    if (ttl.count() <= 0 || ttl.count() > std::numeric_limits<std::uint32_t>::max())
        throw error(errc::invalid_argument, "durable_client: ttl must be in [1 ms, 2^32 ms)");
    header h;
    h.ttl_ms = static_cast<std::uint32_t>(ttl.count());
    body.push_front(encode(h));
    body.push_front(titanic_header_marker);
    return submit(service, std::move(body));
}

std::optional<message> durable_client::poll(std::string_view id) {
    if (!impl_) throw error(errc::not_running, "durable_client: used after move");
    check_id(id);
    message answer = impl_->call(titanic_reply, message{id});
    if (!answer.empty()) {
        const auto status = view(answer[0]);
        if (status == status_ok) {
            answer.pop_front();
            return answer;
        }
        if (status == status_pending) return std::nullopt;
        if (status == status_unknown)
            throw error(errc::invalid_argument,
                        "unknown request id " + id_text(id) + " (never stored, or closed)");
    }
    fail(titanic_reply, answer);
}

message durable_client::wait(std::string_view id, std::chrono::milliseconds timeout) {
    if (!impl_) throw error(errc::not_running, "durable_client: used after move");
    check_id(id);
    using clock = std::chrono::steady_clock;
    const auto deadline = clock::now() + timeout;
    auto interval = impl_->options_.poll_initial;
    std::string last_error;
    for (;;) {
        try {
            if (auto reply = poll(id)) return std::move(*reply);
        } catch (const error& e) {
            // Titanic or the broker restarting (no answer) and "500" are both "retry later" in
            // rfc 9; anything else (unknown id, a broken server) will not get better.
            if (e.code() != errc::timeout && e.code() != errc::storage) throw;
            last_error = e.what();
        }
        const auto now = clock::now();
        if (now >= deadline) break;
        std::this_thread::sleep_for(std::min<clock::duration>(interval, deadline - now));
        interval = std::min(interval * 2, impl_->options_.poll_max);
    }
    std::string what = "no reply to durable request " + id_text(id) + " within " +
                       std::to_string(timeout.count()) + " ms";
    if (!last_error.empty()) what += " (last error: " + last_error + ")";
    throw error(errc::timeout, what);
}

void durable_client::close(std::string_view id) {
    if (!impl_) throw error(errc::not_running, "durable_client: used after move");
    check_id(id);
    message answer = impl_->call(titanic_close, message{id});
    if (answer.empty() || view(answer[0]) != status_ok) fail(titanic_close, answer);
}

client_stats durable_client::stats() const noexcept {
    return impl_ ? impl_->mdp_.stats() : client_stats{};
}

} // namespace zmesh::mdp
