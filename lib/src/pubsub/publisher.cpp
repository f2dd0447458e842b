// SPDX-License-Identifier: MPL-2.0
// pubsub/publisher.cpp — the zmesh publisher: [topic][header][payload...] on an XPUB socket.
//
// Implements the publisher side of docs/pubsub.md. The hot path (publish on a topic already
// seen) allocates nothing of its own: the sequence map is searched by string_view, the header
// struct and its encoding buffer are reused, and payload frames are handed to libzmq without a
// copy. libzmq still allocates for frames larger than its 33-byte inline size.
#include "pubsub/common.hpp"
#include "pubsub/peer_security.hpp"

#include <zmesh/endpoint.hpp>
#include <zmesh/error.hpp>
#include <zmesh/pubsub/publisher.hpp>
#include <zmesh/reactor.hpp>

#include <functional>
#include <string>
#include <unordered_map>
#include <utility>

namespace zmesh::pubsub {
namespace {

using clock = std::chrono::steady_clock;

/// Lets the sequence map be searched with a string_view (C++20 heterogeneous lookup).
struct topic_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept {
        return std::hash<std::string_view>{}(s);
    }
};

[[noreturn]] void throw_terminated() {
    throw error(errc::not_running, "pubsub::publisher: the context was terminated");
}

} // namespace

struct publisher::impl {
    // Declared before the socket, so that it outlives it: a CURVE server whose context has no
    // ZAP handler any more would admit every key it is shown.
    std::unique_ptr<security::zap_handler> zap_; // with curve_server only
    zmq::socket_t socket_;
    publisher_options opts_;
    std::vector<std::string> endpoints_;
    message_id source_ = message_id::generate();
    std::unordered_map<std::string, std::uint64_t, topic_hash, std::equal_to<>> sequences_;
    header header_;           // reused for every data message: keeps its type's capacity
    std::string encoded_;     // reused encoding buffer of header_
    std::uint32_t sends_since_poll_ = 0; // subscriptions are read every 64 sends (see send())
    message incoming_;        // reused for subscription messages
    int send_timeout_ms_ = -1; // ZMQ_SNDTIMEO currently set (lossless mode only)
    publisher_stats stats_;

    impl(zmq::context_t& ctx, publisher_options opts)
        : socket_(ctx, zmq::socket_type::xpub), opts_(std::move(opts)) {
        if (opts_.bind.empty() && opts_.connect.empty())
            throw error(errc::invalid_argument,
                        "pubsub::publisher: give at least one endpoint to bind or connect");
        apply(socket_, opts_.socket);
        // Every subscribe message reaches the application, not only the first per topic: a
        // subscriber that repeats a probe (its first answer was lost) must be answered again.
        socket_.set(zmq::sockopt::xpub_verbose, 1);
        if (opts_.lossless)
            socket_.set(zmq::sockopt::xpub_nodrop, 1);
        socket_.set(zmq::sockopt::sndtimeo, send_timeout_ms_);
        header_.source = source_;
        zap_ = detail::apply_curve(ctx, socket_, "pubsub::publisher", opts_.curve,
                                   opts_.curve_server, opts_.bind, opts_.connect);
        for (const auto& ep : opts_.bind)
            endpoints_.push_back(zmesh::bind(socket_, ep));
        for (const auto& ep : opts_.connect)
            zmesh::connect(socket_, ep);
    }

    /// Sends [topic][header][payload...]. The first frame decides: libzmq accepts or refuses a
    /// multipart message as a whole (an XPUB checks its subscribers' high-water marks on the
    /// first frame only), so the later frames cannot be refused and @p payload is untouched on
    /// refusal.
    bool send(std::string_view topic, message& payload, std::string_view type, bool wait,
              std::chrono::milliseconds timeout) {
        if (detail::is_control(topic))
            throw error(errc::invalid_argument,
                        "pubsub::publisher: topics starting with \"\\0zmesh.\" are reserved");
        // Reading the XPUB for subscriptions costs a poll() system call when nothing is queued,
        // more than the rest of a publish. libzmq applies subscriptions to its filter without us
        // (we only see them to answer probes and count), so looking every 64 messages delays
        // nothing but a probe answer, by a few microseconds of a busy stream.
        if ((sends_since_poll_++ & 63U) == 0)
            poll(std::chrono::milliseconds(0));

        auto flags = zmq::send_flags::dontwait;
        if (opts_.lossless && wait && timeout != std::chrono::milliseconds(0)) {
            const int ms = timeout < std::chrono::milliseconds(0)
                               ? -1
                               : static_cast<int>(detail::clamp_wait(timeout).count());
            if (ms != send_timeout_ms_) {
                socket_.set(zmq::sockopt::sndtimeo, ms);
                send_timeout_ms_ = ms;
            }
            flags = zmq::send_flags::none;
        }

        const auto found = sequences_.find(topic);
        const std::uint64_t sequence = (found == sequences_.end() ? 0 : found->second) + 1;
        header_.id = message_id::generate();
        header_.type.assign(type);
        header_.sequence = sequence;
        header_.timestamp_ns = detail::now_ns();
        encode(header_, encoded_);

        try {
            zmq::message_t topic_frame(topic.data(), topic.size());
            if (!socket_.send(topic_frame, flags | zmq::send_flags::sndmore)) {
                ++stats_.refused;
                return false;
            }
            zmq::message_t header_frame(encoded_.data(), encoded_.size());
            static_cast<void>(socket_.send(header_frame, payload.empty()
                                                             ? zmq::send_flags::none
                                                             : zmq::send_flags::sndmore));
            const std::size_t n = payload.size();
            for (std::size_t i = 0; i < n; ++i)
                static_cast<void>(socket_.send(
                    payload[i], i + 1 < n ? zmq::send_flags::sndmore : zmq::send_flags::none));
        } catch (const zmq::error_t& e) {
            if (e.num() == ETERM)
                throw_terminated();
            throw;
        }
        payload.clear();

        if (found == sequences_.end())
            sequences_.emplace(std::string(topic), sequence);
        else
            found->second = sequence;
        ++stats_.published;
        return true;
    }

    std::size_t poll(std::chrono::milliseconds timeout) {
        std::size_t processed = 0;
        bool waited = false;
        for (;;) {
            // recv returns false both when nothing is queued and when the context is terminating.
            if (!incoming_.recv(socket_, zmq::recv_flags::dontwait)) {
                if (processed > 0 || waited || timeout <= std::chrono::milliseconds(0))
                    return processed;
                if (detail::wait_readable(socket_, timeout) != detail::wait_result::readable)
                    return processed;
                waited = true;
                continue;
            }
            if (handle_subscription())
                ++processed;
        }
    }

    /// Handles one message read from the XPUB socket. @returns whether it was a subscription.
    bool handle_subscription() {
        // Subscriptions are single frames; anything else is data sent upstream by an XSUB peer,
        // which a publisher has no use for.
        if (incoming_.size() != 1 || incoming_[0].size() == 0)
            return false;
        const std::string_view frame = view(incoming_[0]);
        const auto kind = static_cast<std::uint8_t>(frame[0]);
        const std::string_view topic = frame.substr(1);
        if (kind == detail::subscribe_byte) {
            if (detail::is_probe(topic)) {
                answer_probe(topic);
            } else {
                ++stats_.subscribes;
                if (topic.empty()) ++stats_.catch_all_subscribes;
            }
            return true;
        }
        if (kind == detail::unsubscribe_byte) {
            if (!detail::is_probe(topic))
                ++stats_.unsubscribes;
            return true;
        }
        return false;
    }

    /// Publishes [probe topic][header ty="zmesh.probe"]. Only the prober is subscribed to that
    /// topic. Never waits: a prober whose queue is full repeats its probe later.
    void answer_probe(std::string_view topic) {
        header h;
        h.id = message_id::generate();
        h.type = detail::probe_type;
        h.source = source_;
        h.timestamp_ns = detail::now_ns();
        zmq::message_t topic_frame(topic.data(), topic.size());
        zmq::message_t header_frame = encode(h);
        try {
            if (!socket_.send(topic_frame, zmq::send_flags::dontwait | zmq::send_flags::sndmore)) {
                ++stats_.probes_dropped;
                return;
            }
            static_cast<void>(socket_.send(header_frame, zmq::send_flags::none));
        } catch (const zmq::error_t& e) {
            if (e.num() == ETERM)
                return; // the caller's next call reports it
            throw;
        }
        ++stats_.probes_answered;
    }
};

publisher::publisher(zmq::context_t& ctx, publisher_options options)
    : impl_(std::make_unique<impl>(ctx, std::move(options))) {}

publisher::~publisher() = default;
publisher::publisher(publisher&&) noexcept = default;
publisher& publisher::operator=(publisher&&) noexcept = default;

namespace {
[[noreturn]] void throw_moved() {
    throw error(errc::not_running, "pubsub::publisher: used after being moved from");
}
} // namespace

void publisher::publish(std::string_view topic, message&& payload, std::string_view type) {
    if (!impl_)
        throw_moved();
    if (!impl_->send(topic, payload, type, true, impl_->opts_.send_timeout))
        throw error(errc::timeout,
                    "pubsub::publisher: no room for a message on topic '" + std::string(topic) +
                        "' within " + std::to_string(impl_->opts_.send_timeout.count()) +
                        " ms (lossless mode, a subscriber is not reading)");
}

void publisher::publish(std::string_view topic, std::string_view payload, std::string_view type) {
    message m;
    m.push_back(payload);
    publish(topic, std::move(m), type);
}

bool publisher::try_publish(std::string_view topic, message& payload,
                            std::chrono::milliseconds timeout, std::string_view type) {
    if (!impl_)
        throw_moved();
    return impl_->send(topic, payload, type, true, detail::clamp_wait(timeout));
}

std::size_t publisher::poll_subscriptions(std::chrono::milliseconds timeout) {
    if (!impl_)
        throw_moved();
    return impl_->poll(timeout);
}

bool publisher::wait_for_subscribers(std::size_t count, std::chrono::milliseconds timeout) {
    if (!impl_)
        throw_moved();
    const auto deadline = clock::now() + detail::clamp_wait(timeout);
    while (impl_->stats_.subscribes < count) {
        const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - clock::now());
        if (left <= std::chrono::milliseconds(0))
            return false;
        impl_->poll(left);
    }
    return true;
}

void publisher::attach(reactor& r) {
    if (!impl_)
        throw_moved();
    // The impl does not move when the publisher does, so the handler may keep its address.
    r.add(impl_->socket_, [self = impl_.get()](zmq::socket_ref) {
        self->poll(std::chrono::milliseconds(0));
    });
}

bool publisher::detach(reactor& r) noexcept {
    return impl_ && r.remove(impl_->socket_);
}

zmq::socket_ref publisher::socket() noexcept {
    return impl_ ? zmq::socket_ref(impl_->socket_) : zmq::socket_ref();
}

const message_id& publisher::source() const noexcept {
    static const message_id nil;
    return impl_ ? impl_->source_ : nil;
}

const std::vector<std::string>& publisher::endpoints() const noexcept {
    static const std::vector<std::string> none;
    return impl_ ? impl_->endpoints_ : none;
}

void publisher::set_access(security::access_policy policy) {
    if (!impl_)
        throw_moved();
    if (!impl_->zap_)
        throw error(errc::invalid_argument,
                    "pubsub::publisher: set_access needs curve_server (nothing checks keys)");
    impl_->zap_->set_policy(std::move(policy));
}

publisher_stats publisher::stats() const noexcept {
    if (!impl_)
        return publisher_stats{};
    publisher_stats s = impl_->stats_;
    if (impl_->zap_) {
        const auto z = impl_->zap_->stats();
        s.connections_admitted = z.admitted;
        s.connections_refused = z.refused;
    }
    return s;
}

} // namespace zmesh::pubsub
