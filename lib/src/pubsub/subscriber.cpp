// SPDX-License-Identifier: MPL-2.0
// pubsub/subscriber.cpp — the zmesh subscriber: probe, sequence checks, lag limit, LVC merge.
//
// Implements the subscriber side of docs/pubsub.md. Messages flow through two stages: reading
// (read_one) classifies what comes off the socket (control, malformed, data) and stamps the lag at
// the moment of receipt; admitting (admit) applies the per-(source, topic) sequence rules and the
// lag limit at the moment of delivery. The stages are apart because wait_ready() must keep data
// it reads while probing or fetching a snapshot, and the sequence rules may only run once the
// snapshot is in: a buffered live message is judged against the snapshot that precedes it.
#include "pubsub/common.hpp"
#include "pubsub/peer_security.hpp"

#include <zmesh/endpoint.hpp>
#include <zmesh/error.hpp>
#include <zmesh/mdp/client.hpp>
#include <zmesh/pubsub/subscriber.hpp>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <deque>
#include <iterator>
#include <limits>
#include <optional>
#include <set>
#include <unordered_map>
#include <utility>

namespace zmesh::pubsub {
namespace {

using clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

/// A probe may be answered and the answer lost (lossy publisher, full queue): ask again this
/// often. Repeats reach the publisher because zmesh XPUB sockets are verbose.
constexpr milliseconds probe_repeat{500};
/// What a Binary Star subscriber subscribes to, and cancels at once, to ask for service
/// (docs/patterns/binary_star.md).
constexpr std::string_view takeover_topic{"\0zmesh.ha.takeover", 18};
/// While a snapshot request is outstanding the SUB socket is drained at least this often, so
/// live messages are kept by us rather than dropped at the publisher's high-water mark.
constexpr milliseconds snapshot_drain_interval{5};
/// take_gaps() keeps at most this many gaps; stats() counts every one.
constexpr std::size_t max_kept_gaps = 1024;

constexpr std::string_view lvc_service = "zmesh.lvc";

/// receive time − publish time, saturated: "ts" comes from the network and may be anything.
std::chrono::nanoseconds lag_of(std::int64_t timestamp_ns, std::int64_t now_ns) noexcept {
    if (timestamp_ns == 0)
        return std::chrono::nanoseconds(0);
    std::int64_t lag = 0;
    if (__builtin_sub_overflow(now_ns, timestamp_ns, &lag))
        lag = timestamp_ns < 0 ? std::numeric_limits<std::int64_t>::max()
                               : std::numeric_limits<std::int64_t>::min();
    return std::chrono::nanoseconds(lag);
}

milliseconds left_until(clock::time_point deadline) {
    return std::max(std::chrono::ceil<milliseconds>(deadline - clock::now()), milliseconds(0));
}

/// (source, topic): the unit of sequence numbering. Looked up through stream_ref, so checking a
/// message against a known stream copies nothing.
struct stream_key {
    message_id source;
    std::string topic;
};
struct stream_ref {
    const message_id& source;
    std::string_view topic;
};

struct stream_hash {
    using is_transparent = void;
    static std::size_t hash(const message_id& source, std::string_view topic) noexcept {
        const std::size_t a = std::hash<message_id>{}(source);
        const std::size_t b = std::hash<std::string_view>{}(topic);
        return a ^ (b + 0x9e3779b97f4a7c15ULL + (a << 6) + (a >> 2));
    }
    std::size_t operator()(const stream_key& k) const noexcept { return hash(k.source, k.topic); }
    std::size_t operator()(const stream_ref& k) const noexcept { return hash(k.source, k.topic); }
};

struct stream_equal {
    using is_transparent = void;
    template <class A, class B> bool operator()(const A& a, const B& b) const noexcept {
        return a.source == b.source && std::string_view(a.topic) == std::string_view(b.topic);
    }
};

struct stream_state {
    std::uint64_t last = 0;          // highest sequence delivered
    std::uint64_t snapshot_seq = 0;  // sequence a snapshot delivered; live ones ≤ it are overlap
    std::uint64_t used = 0;          // tick of the last message, for eviction
};

/// Parses a snapshot group's payload count: decimal digits only, at most @p limit.
std::optional<std::size_t> parse_count(std::string_view text, std::size_t limit) noexcept {
    std::size_t n = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
    if (text.empty() || ec != std::errc() || end != text.data() + text.size() || n > limit)
        return std::nullopt;
    return n;
}

} // namespace

struct subscriber::impl {
    zmq::context_t* ctx_;
    subscriber_options opts_;
    // Declared before the socket, so that it outlives it: a CURVE server whose context has no
    // ZAP handler any more would admit every key it is shown.
    std::unique_ptr<security::zap_handler> zap_; // with curve_server only
    zmq::socket_t socket_;
    std::vector<std::string> endpoints_;
    std::vector<std::string> topics_;           // subscribed prefixes, repeats included
    std::vector<std::string> snapshot_pending_; // prefixes whose snapshot is still to fetch
    std::deque<delivery> pending_;              // read during wait_ready(), not yet admitted
    message incoming_;                          // reused for every read
    std::unordered_map<stream_key, stream_state, stream_hash, stream_equal> streams_;
    std::uint64_t tick_ = 0;
    gap_handler on_gap_;
    std::deque<gap> gaps_;
    subscriber_stats stats_;
    std::string probe_;       // topic of the probe in progress; empty outside wait_ready()
    bool probe_answered_ = false;
    bool ready_ = false;
    bool gave_up_ = false;
    // binary_star: the connection events of socket_, and the peers connected now (by the
    // address libzmq reports).
    std::optional<zmq::socket_t> monitor_;
    std::set<std::string> up_;
    clock::time_point next_takeover_{};

    impl(zmq::context_t& ctx, subscriber_options opts)
        : ctx_(&ctx), opts_(std::move(opts)), socket_(ctx, zmq::socket_type::sub) {
        if (opts_.connect.empty() && opts_.bind.empty())
            throw error(errc::invalid_argument,
                        "pubsub::subscriber: give at least one endpoint to connect or bind");
        if (opts_.max_streams == 0)
            throw error(errc::invalid_argument, "pubsub::subscriber: max_streams must be positive");
        if (opts_.max_lag && *opts_.max_lag <= milliseconds(0))
            throw error(errc::invalid_argument, "pubsub::subscriber: max_lag must be positive");
        if (!opts_.snapshot_from.empty()) {
            static_cast<void>(parse_endpoint(opts_.snapshot_from));
            if (opts_.snapshot_timeout <= milliseconds(0))
                throw error(errc::invalid_argument,
                            "pubsub::subscriber: snapshot_timeout must be positive");
        }
        apply(socket_, opts_.socket);
        zap_ = detail::apply_curve(ctx, socket_, "pubsub::subscriber", opts_.curve,
                                   opts_.curve_server, opts_.bind, opts_.connect);
        // Subscribed before connecting, so the first handshake already carries them.
        for (const auto& t : opts_.topics)
            subscribe(t);
        for (const auto& ep : opts_.bind)
            endpoints_.push_back(zmesh::bind(socket_, ep));
        if (opts_.binary_star) watch_connections();
        for (const auto& ep : opts_.connect)
            zmesh::connect(socket_, ep);
    }

    /// binary_star: a monitor of socket_'s connections, before the first connect.
    void watch_connections() {
        if (opts_.connect.size() < 2)
            throw error(errc::invalid_argument,
                        "pubsub::subscriber: binary_star needs the XPUB endpoints of both brokers");
        if (opts_.takeover_interval <= milliseconds(0))
            throw error(errc::invalid_argument,
                        "pubsub::subscriber: takeover_interval must be positive");
        const std::string address =
            "inproc://zmesh.subscriber.monitor." + message_id::generate().to_hex();
        if (zmq_socket_monitor(socket_.handle(), address.c_str(),
                               ZMQ_EVENT_CONNECTED | ZMQ_EVENT_DISCONNECTED) != 0)
            throw zmq::error_t();
        monitor_.emplace(*ctx_, zmq::socket_type::pair);
        monitor_->set(zmq::sockopt::linger, 0);
        monitor_->connect(address);
    }

    /// binary_star: reads the connection events, and while a broker's connection is down asks
    /// the connected ones to take over (every takeover_interval).
    void check_connections() {
        if (!monitor_) return;
        zmq::message_t event, where;
        while (monitor_->recv(event, zmq::recv_flags::dontwait)) {
            if (!event.more() || !monitor_->recv(where, zmq::recv_flags::dontwait)) continue;
            if (event.size() < 2) continue;
            std::uint16_t id = 0;
            std::memcpy(&id, event.data(), sizeof id);
            std::string address(static_cast<const char*>(where.data()), where.size());
            if (id == ZMQ_EVENT_CONNECTED) up_.insert(std::move(address));
            else if (id == ZMQ_EVENT_DISCONNECTED) up_.erase(address);
        }
        const auto now = clock::now();
        if (up_.size() >= opts_.connect.size() || now < next_takeover_) return;
        next_takeover_ = now + opts_.takeover_interval;
        const std::string_view topic = takeover_topic;
        socket_.set(zmq::sockopt::subscribe, topic);
        socket_.set(zmq::sockopt::unsubscribe, topic);
        ++stats_.takeover_requests;
    }

    void check_usable() const {
        if (gave_up_)
            throw error(errc::not_running,
                        "pubsub::subscriber: gave up after falling behind (max_lag)");
    }

    void subscribe(std::string_view prefix) {
        socket_.set(zmq::sockopt::subscribe, prefix);
        topics_.emplace_back(prefix);
        if (!opts_.snapshot_from.empty() &&
            std::find(snapshot_pending_.begin(), snapshot_pending_.end(), prefix) ==
                snapshot_pending_.end())
            snapshot_pending_.emplace_back(prefix);
    }

    bool unsubscribe(std::string_view prefix) {
        const auto it = std::find(topics_.begin(), topics_.end(), prefix);
        if (it == topics_.end())
            return false;
        socket_.set(zmq::sockopt::unsubscribe, prefix);
        topics_.erase(it);
        if (std::find(topics_.begin(), topics_.end(), prefix) == topics_.end())
            std::erase(snapshot_pending_, prefix);
        return true;
    }

    /// Reads one message if one is queued, into @p out if it is data; control and malformed
    /// messages are consumed and counted here.
    /// @returns false if nothing was queued (or the context is terminating).
    bool read_one(std::optional<delivery>& out) {
        if (!incoming_.recv(socket_, zmq::recv_flags::dontwait))
            return false;
        const std::string_view topic = view(incoming_[0]);
        if (detail::is_control(topic)) {
            ++stats_.control;
            if (!probe_.empty() && topic == probe_)
                probe_answered_ = true;
            return true;
        }
        std::error_code ec;
        std::optional<header> h;
        if (incoming_.size() >= 2)
            h = decode_header(incoming_[1], ec);
        if (!h) {
            ++stats_.malformed;
            return true;
        }
        delivery& d = out.emplace();
        d.topic.assign(topic);
        d.header = std::move(*h);
        d.lag = lag_of(d.header.timestamp_ns, detail::now_ns());
        incoming_.move_tail_to(2, d.payload);
        return true;
    }

    /// Moves everything queued on the socket to pending_, stopping early at the probe's answer.
    void drain_to_pending() {
        std::optional<delivery> d;
        while (read_one(d)) {
            if (d) {
                pending_.push_back(std::move(*d));
                d.reset();
            }
            if (probe_answered_)
                return;
        }
    }

    void report(gap g) {
        ++stats_.gaps;
        stats_.missed += g.missed();
        if (on_gap_) {
            on_gap_(g);
            return;
        }
        if (gaps_.size() == max_kept_gaps)
            gaps_.pop_front();
        gaps_.push_back(std::move(g));
    }

    /// Forgets the least recently used tenth of the streams. O(n), once per n/10 new streams.
    void evict_streams() {
        std::vector<std::uint64_t> ticks;
        ticks.reserve(streams_.size());
        for (const auto& s : streams_)
            ticks.push_back(s.second.used);
        const auto cut = ticks.begin() + static_cast<std::ptrdiff_t>(ticks.size() / 10);
        std::nth_element(ticks.begin(), cut, ticks.end());
        const std::uint64_t cutoff = *cut;
        stats_.streams_evicted += std::erase_if(
            streams_, [cutoff](const auto& s) { return s.second.used <= cutoff; });
    }

    /// Applies the sequence rules and the lag limit to @p d.
    /// @returns whether @p d is to be delivered.
    bool admit(delivery& d) {
        const std::uint64_t seq = d.header.sequence;
        if (seq != 0) {
            static const message_id no_source;
            const message_id& source = d.header.source ? *d.header.source : no_source;
            auto it = streams_.find(stream_ref{source, d.topic});
            if (it == streams_.end()) {
                if (streams_.size() >= opts_.max_streams)
                    evict_streams();
                // A first message starts its stream whatever its number: we may have joined late.
                streams_.emplace(stream_key{source, d.topic},
                                 stream_state{seq, d.from_snapshot ? seq : 0, ++tick_});
            } else {
                stream_state& s = it->second;
                s.used = ++tick_;
                if (seq <= s.last) {
                    // Not newer than what was delivered: the seam between a snapshot and the
                    // live stream, or a real duplicate (a replaying relay, a buggy publisher).
                    if (d.from_snapshot || seq <= s.snapshot_seq)
                        ++stats_.snapshot_overlap;
                    else
                        ++stats_.duplicates;
                    return false;
                }
                // A snapshot holds only the newest message per topic: its jump is no loss.
                if (!d.from_snapshot && seq != s.last + 1)
                    report(gap{source, d.topic, s.last + 1, seq});
                s.last = seq;
                if (d.from_snapshot)
                    s.snapshot_seq = seq;
            }
        }
        // A snapshot message is old by nature; only live traffic measures how far behind we are.
        if (!d.from_snapshot && opts_.max_lag) {
            const auto behind = std::chrono::floor<milliseconds>(d.lag);
            if (behind > *opts_.max_lag)
                give_up(behind);
        }
        ++stats_.received;
        if (d.from_snapshot)
            ++stats_.snapshot;
        return true;
    }

    [[noreturn]] void give_up(milliseconds behind) {
        ++stats_.lagged_out;
        gave_up_ = true;
        pending_.clear();
        // Closing frees the publisher from queueing for a subscriber that will never read.
        socket_.close();
        throw error(errc::timeout, "subscriber fell " + std::to_string(behind.count()) +
                                       " ms behind (limit " +
                                       std::to_string(opts_.max_lag->count()) + " ms)");
    }

    /// Runs one readiness probe until @p deadline. See docs/pubsub.md.
    bool probe(clock::time_point deadline) {
        probe_ = std::string(detail::probe_prefix) + message_id::generate().to_hex();
        probe_answered_ = false;
        int subscribed = 0; // the SUB socket counts repeats: each needs its unsubscribe
        auto next_probe = clock::now();
        for (;;) {
            const auto now = clock::now();
            if (now >= next_probe) {
                socket_.set(zmq::sockopt::subscribe, probe_);
                ++subscribed;
                next_probe = now + probe_repeat;
            }
            drain_to_pending();
            if (probe_answered_ || now >= deadline)
                break;
            if (detail::wait_readable(socket_, left_until(std::min(deadline, next_probe))) ==
                detail::wait_result::interrupted)
                break;
        }
        for (int i = 0; i < subscribed; ++i)
            socket_.set(zmq::sockopt::unsubscribe, probe_);
        probe_.clear();
        return probe_answered_;
    }

    /// Checks one "zmesh.lvc" reply and appends its messages to @p out, skipping topics already
    /// in @p seen (prefixes may overlap). A defective reply is counted and ignored whole.
    void take_snapshot(message& body, std::vector<delivery>& out, std::set<std::string>& seen) {
        if (body.empty()) {
            ++stats_.malformed;
            return;
        }
        const std::string_view status = view(body[0]);
        // 404: the broker runs without a cache; 501: it predates zmesh.lvc. Either way: go live.
        if (status == "404" || status == "501")
            return;
        if (status != "200") {
            ++stats_.malformed;
            return;
        }
        std::vector<delivery> parsed;
        for (std::size_t i = 1; i < body.size();) {
            const std::size_t left = body.size() - i;
            const auto n = left >= 3 ? parse_count(view(body[i]), left - 3) : std::nullopt;
            std::error_code ec;
            const auto h = n ? decode_header(body[i + 2], ec) : std::nullopt;
            if (!h) {
                ++stats_.malformed;
                return;
            }
            delivery& d = parsed.emplace_back();
            d.topic = to_string(body[i + 1]);
            d.header = *h;
            d.lag = lag_of(d.header.timestamp_ns, detail::now_ns());
            d.from_snapshot = true;
            for (std::size_t k = 0; k < *n; ++k)
                d.payload.push_back(std::move(body[i + 3 + k]));
            i += 3 + *n;
        }
        for (auto& d : parsed)
            if (!detail::is_control(d.topic) && seen.insert(d.topic).second)
                out.push_back(std::move(d));
    }

    /// Fetches the snapshot of every pending prefix and queues it ahead of the buffered live
    /// messages (docs/pubsub.md, merge steps 2 and 3).
    void fetch_snapshots() {
        const auto deadline = clock::now() + detail::clamp_wait(opts_.snapshot_timeout);
        // Plain MDP/0.1: one idempotent attempt per prefix gains nothing from a message id, and
        // any broker that serves zmesh.lvc (or a stand-in for it) speaks 7/MDP.
        mdp::client client(*ctx_, opts_.snapshot_from,
                           {.timeout = opts_.snapshot_timeout,
                            .retries = 1,
                            .window = snapshot_pending_.size(),
                            .protocol = mdp::client_protocol::mdp,
                            .curve = opts_.curve});
        for (const auto& prefix : snapshot_pending_) {
            message body;
            body.push_back(std::string_view(prefix));
            client.send(lvc_service, std::move(body));
        }
        std::vector<delivery> snapshot;
        std::set<std::string> seen;
        while (client.outstanding() > 0) {
            if (clock::now() >= deadline)
                throw error(errc::timeout,
                            "pubsub::subscriber: no snapshot from '" + opts_.snapshot_from +
                                "' (service zmesh.lvc) within " +
                                std::to_string(opts_.snapshot_timeout.count()) + " ms");
            // mdp::client does not expose its socket, so the two sockets are served in turns.
            if (auto r = client.recv(std::min(left_until(deadline), snapshot_drain_interval)))
                take_snapshot(r->body, snapshot, seen);
            drain_to_pending();
        }
        pending_.insert(pending_.begin(), std::make_move_iterator(snapshot.begin()),
                        std::make_move_iterator(snapshot.end()));
        snapshot_pending_.clear();
    }

    bool wait_ready(clock::time_point deadline) {
        check_usable();
        if (!probe(deadline))
            return false;
        ready_ = true;
        if (!snapshot_pending_.empty())
            fetch_snapshots();
        return true;
    }

    std::optional<delivery> recv(clock::time_point deadline) {
        check_usable();
        if (!snapshot_pending_.empty() && !wait_ready(deadline))
            return std::nullopt;
        for (;;) {
            while (!pending_.empty()) {
                delivery d = std::move(pending_.front());
                pending_.pop_front();
                if (admit(d))
                    return d;
            }
            std::optional<delivery> d;
            while (read_one(d)) {
                if (d && admit(*d))
                    return d;
                d.reset();
            }
            check_connections();
            if (opts_.spin) {
                // Latency mode: look again at once. A zero-timeout poll rather than nothing,
                // so that a signal or the context's end still stops the wait.
                if (clock::now() >= deadline ||
                    detail::wait_readable(socket_, milliseconds(0)) ==
                        detail::wait_result::interrupted)
                    return std::nullopt;
                continue;
            }
            const milliseconds left = left_until(deadline);
            if (left <= milliseconds(0) ||
                detail::wait_readable(socket_, monitor_ ? std::min(left, opts_.takeover_interval)
                                                        : left) == detail::wait_result::interrupted)
                return std::nullopt;
        }
    }
};

namespace {
[[noreturn]] void throw_moved() {
    throw error(errc::not_running, "pubsub::subscriber: used after being moved from");
}
clock::time_point deadline_after(milliseconds timeout) {
    return clock::now() + detail::clamp_wait(timeout);
}
} // namespace

subscriber::subscriber(zmq::context_t& ctx, subscriber_options options)
    : impl_(std::make_unique<impl>(ctx, std::move(options))) {}

subscriber::~subscriber() = default;
subscriber::subscriber(subscriber&&) noexcept = default;
subscriber& subscriber::operator=(subscriber&&) noexcept = default;

void subscriber::subscribe(std::string_view prefix) {
    if (!impl_)
        throw_moved();
    impl_->check_usable();
    impl_->subscribe(prefix);
}

bool subscriber::unsubscribe(std::string_view prefix) {
    if (!impl_)
        throw_moved();
    impl_->check_usable();
    return impl_->unsubscribe(prefix);
}

bool subscriber::wait_ready(milliseconds timeout) {
    if (!impl_)
        throw_moved();
    return impl_->wait_ready(deadline_after(timeout));
}

bool subscriber::ready() const noexcept { return impl_ && impl_->ready_; }

std::optional<delivery> subscriber::recv(milliseconds timeout) {
    if (!impl_)
        throw_moved();
    return impl_->recv(deadline_after(timeout));
}

void subscriber::on_gap(gap_handler handler) {
    if (!impl_)
        throw_moved();
    impl_->on_gap_ = std::move(handler);
}

std::vector<gap> subscriber::take_gaps() {
    if (!impl_)
        return {};
    std::vector<gap> out(std::make_move_iterator(impl_->gaps_.begin()),
                         std::make_move_iterator(impl_->gaps_.end()));
    impl_->gaps_.clear();
    return out;
}

zmq::socket_ref subscriber::socket() noexcept {
    return impl_ ? zmq::socket_ref(impl_->socket_) : zmq::socket_ref();
}

std::size_t subscriber::buffered() const noexcept { return impl_ ? impl_->pending_.size() : 0; }

const std::vector<std::string>& subscriber::endpoints() const noexcept {
    static const std::vector<std::string> none;
    return impl_ ? impl_->endpoints_ : none;
}

void subscriber::set_access(security::access_policy policy) {
    if (!impl_)
        throw_moved();
    if (!impl_->zap_)
        throw error(errc::invalid_argument,
                    "pubsub::subscriber: set_access needs curve_server (nothing checks keys)");
    impl_->zap_->set_policy(std::move(policy));
}

subscriber_stats subscriber::stats() const noexcept {
    if (!impl_)
        return subscriber_stats{};
    subscriber_stats s = impl_->stats_;
    if (impl_->zap_) {
        const auto z = impl_->zap_->stats();
        s.connections_admitted = z.admitted;
        s.connections_refused = z.refused;
    }
    return s;
}

} // namespace zmesh::pubsub
