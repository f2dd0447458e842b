// SPDX-License-Identifier: MPL-2.0
// mdp/client.cpp — the client side of the Majordomo Protocol 0.1.
//
// Client side of 7/MDP, https://rfc.zeromq.org/spec/7/: request() is the Lazy Pirate client of
// the zguide (timeout, fresh socket, resend), send()/recv() the asynchronous windowed client.
// Replies from the network are untrusted: anything that is not "" "MDPC01" <awaited service>
// body... is counted and dropped, never thrown.
//
// Tagged mode (zmesh extension ZMCT01, mdp/protocol.hpp) adds an 8-byte tag after the service
// frame, both ways. The client keeps its outstanding tags in a small open-addressing table, so a
// request costs no allocation beyond its frames, and accepts only "" "ZMCT01" service <tag>
// body... whose tag is in flight.
#include <zmesh/error.hpp>
#include <zmesh/mdp/client.hpp>
#include <zmesh/mdp/protocol.hpp>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <climits>
#include <cstring>
#include <deque>
#include <map>
#include <utility>
#include <vector>

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

/// The tag frame: the 8 bytes of the tag in host byte order. Both ends of the tag are this
/// client, so the order only has to be consistent; the broker treats the frame as opaque.
/// 8 bytes fit in a zmq::message_t without an allocation.
zmq::message_t tag_frame(std::uint64_t tag) { return zmq::message_t(&tag, sizeof tag); }

/// The tag in a tag frame. Precondition: the frame is sizeof(std::uint64_t) bytes.
std::uint64_t tag_of(const zmq::message_t& frame) noexcept {
    std::uint64_t tag = 0;
    std::memcpy(&tag, frame.data(), sizeof tag);
    return tag;
}

/// "" "MDPC01" service body..., or "" "ZMCT01" service tag body... with a tag: the same frames
/// both ways.
message client_frames(std::string_view service, const std::optional<std::uint64_t>& tag,
                      message&& body) {
    message m;
    m.push_back(zmq::message_t());
    m.push_back(tag ? client_tagged_v1 : client_v1);
    m.push_back(service);
    if (tag) m.push_back(tag_frame(*tag));
    body.move_tail_to(0, m);
    return m;
}

/// True if @p m has the form of an MDP/0.1 client reply: "" "MDPC01" service [body...].
bool is_client_reply(const message& m) noexcept {
    return m.size() >= 3 && m[0].size() == 0 && view(m[1]) == client_v1;
}

/// True if @p m has the form of a reply to this tagged client: "" "ZMCT01" service tag
/// [body...], the tag 8 bytes as this client sends them. ZMCT01 allows 1..max_client_tag bytes,
/// but a broker that returns another size did not echo our tag.
bool is_tagged_reply(const message& m) noexcept {
    return m.size() >= 4 && m[0].size() == 0 && view(m[1]) == client_tagged_v1 &&
           m[3].size() == sizeof(std::uint64_t);
}

/// Where the request or reply body starts: after "" header service [tag].
constexpr std::size_t body_at(bool tagged) noexcept { return tagged ? 4 : 3; }

/// What a tagged client knows of a tag.
enum class tag_state : std::uint8_t {
    none,      // not outstanding
    in_flight, // sent, reply not received from the socket yet
    queued,    // reply received into the ready queue, not yet returned by recv()
};

/// The outstanding tags of a tagged client: a hash table with open addressing (linear probing,
/// backward-shift deletion, at most half full). Unlike a node-based set it allocates only when it
/// grows, which stops once it holds a window's worth of tags, so the per-request insert and erase
/// allocate nothing.
class tag_table {
  public:
    /// Sizes the table for @p expected tags (capped: a huge window grows the table on demand).
    void reserve(std::size_t expected) {
        std::size_t n = min_slots;
        while (n < 2 * expected && n < max_reserved_slots) n *= 2;
        if (n > slots_.size()) rehash(n);
    }

    [[nodiscard]] std::size_t size() const noexcept { return size_; }

    [[nodiscard]] tag_state find(std::uint64_t tag) const noexcept {
        const auto i = index_of(tag);
        return i == npos ? tag_state::none : slots_[i].state;
    }

    /// Grows the table if one more tag would make it more than half full, so that the next
    /// insert() cannot fail.
    void make_room() {
        if (2 * (size_ + 1) > slots_.size()) rehash(std::max(min_slots, 2 * slots_.size()));
    }

    /// Adds @p tag as in flight. Preconditions: find(tag) == tag_state::none, and make_room()
    /// called since the last insert().
    void insert(std::uint64_t tag) noexcept {
        place({tag, tag_state::in_flight});
        ++size_;
    }

    /// Precondition: find(tag) != tag_state::none and @p s is not tag_state::none.
    void set(std::uint64_t tag, tag_state s) noexcept { slots_[index_of(tag)].state = s; }

    /// Removes @p tag if present.
    void erase(std::uint64_t tag) noexcept {
        auto hole = index_of(tag);
        if (hole == npos) return;
        const auto mask = slots_.size() - 1;
        // Backward-shift deletion: no tombstones. Every tag later in the probe run whose home
        // slot does not lie cyclically in (hole, j] moves into the hole, so that no lookup meets
        // an empty slot before its tag.
        for (auto j = (hole + 1) & mask; slots_[j].state != tag_state::none; j = (j + 1) & mask) {
            const auto home = home_of(slots_[j].tag);
            if (((j - home) & mask) >= ((j - hole) & mask)) {
                slots_[hole] = slots_[j];
                hole = j;
            }
        }
        slots_[hole].state = tag_state::none;
        --size_;
    }

  private:
    struct slot {
        std::uint64_t tag = 0;
        tag_state state = tag_state::none;
    };

    static constexpr std::size_t npos = static_cast<std::size_t>(-1);
    static constexpr std::size_t min_slots = 16;
    static constexpr std::size_t max_reserved_slots = 4096;

    /// Fibonacci hashing: callers' tags are often small consecutive numbers, and the multiply
    /// spreads them over the table (the top bits of the product pick the slot).
    [[nodiscard]] std::size_t home_of(std::uint64_t tag) const noexcept {
        return static_cast<std::size_t>((tag * 0x9e3779b97f4a7c15ULL) >> shift_);
    }

    [[nodiscard]] std::size_t index_of(std::uint64_t tag) const noexcept {
        if (size_ == 0) return npos; // also covers the table never allocated (untagged mode)
        const auto mask = slots_.size() - 1;
        for (auto i = home_of(tag);; i = (i + 1) & mask) {
            if (slots_[i].state == tag_state::none) return npos;
            if (slots_[i].tag == tag) return i;
        }
    }

    void place(slot s) noexcept {
        const auto mask = slots_.size() - 1;
        auto i = home_of(s.tag);
        while (slots_[i].state != tag_state::none) i = (i + 1) & mask;
        slots_[i] = s;
    }

    /// Moves every tag to a table of @p n slots, a power of two.
    void rehash(std::size_t n) {
        std::vector<slot> old(n);
        old.swap(slots_);
        shift_ = 64 - std::countr_zero(n);
        for (const auto& s : old)
            if (s.state != tag_state::none) place(s);
    }

    std::vector<slot> slots_; // empty until reserve(); then a power of two, at most half full
    std::size_t size_ = 0;
    int shift_ = 64; // 64 - log2(slots_.size())
};

/// Thrown inside the client when libzmq reports the context terminated; caught at the API edge.
struct context_terminated {};

} // namespace

struct client::impl {
    zmq::context_t* ctx_;
    std::string endpoint_;
    client_options opts_;
    zmq::socket_t socket_;                     // closed between a timed-out attempt and the next
    std::size_t in_flight_ = 0;                // sent, reply not yet received from the socket
    std::map<std::string, std::size_t, std::less<>> awaited_; // untagged: service -> in flight
    tag_table tags_;             // tagged: every outstanding tag, queued ones included
    std::uint64_t next_tag_ = 1; // tagged: where the search for a fresh tag starts
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
        if (opts_.tagged) tags_.reserve(opts_.window);
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

    /// In tagged mode equal to tags_.size(): in_flight_ counts the in-flight tags, ready_ the
    /// queued ones.
    std::size_t outstanding() const noexcept { return in_flight_ + ready_.size(); }

    /// A tag not outstanding. The counter makes consecutive requests' tags distinct; the skip
    /// keeps clear of tags the caller chose, and ends within tags_.size() steps.
    std::uint64_t fresh_tag() noexcept {
        while (tags_.find(next_tag_) != tag_state::none) ++next_tag_;
        return next_tag_++;
    }

    /// Whether @p m has the form of a reply in this client's protocol; counts it if not.
    bool well_formed(const message& m) noexcept {
        if (opts_.tagged ? is_tagged_reply(m) : is_client_reply(m)) return true;
        ++stats_.malformed;
        return false;
    }

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
    /// In tagged mode the reply's tag is left outstanding (queued) until delivered().
    std::optional<reply> read_reply_until(clock::time_point deadline) {
        while (auto m = read_until(deadline)) {
            if (!well_formed(*m)) continue;
            reply r;
            if (opts_.tagged) {
                // A tag not in flight: never sent, abandoned, or answered already.
                const auto tag = tag_of((*m)[3]);
                if (tags_.find(tag) != tag_state::in_flight) {
                    ++stats_.unexpected;
                    continue;
                }
                tags_.set(tag, tag_state::queued);
                r.service = view((*m)[2]);
                r.tag = tag;
            } else {
                // With no request id, a reply is taken to answer the oldest request to its
                // service; one from a service nothing was sent to is foreign or stale.
                auto it = awaited_.find(view((*m)[2]));
                if (it == awaited_.end()) {
                    ++stats_.unexpected;
                    continue;
                }
                r.service = it->first;
                if (--it->second == 0) awaited_.erase(it);
            }
            --in_flight_;
            m->move_tail_to(body_at(opts_.tagged), r.body);
            return r;
        }
        return std::nullopt;
    }

    /// Bookkeeping of a reply that recv() hands to the application.
    reply delivered(reply&& r) noexcept {
        if (opts_.tagged) tags_.erase(r.tag);
        ++stats_.replies;
        return std::move(r);
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
                // Tagged: a fresh tag per attempt, so that only this attempt's reply is taken
                // even if a broker delivered an earlier attempt's on this socket. Nothing is
                // outstanding here, so the tag need not enter tags_.
                std::optional<std::uint64_t> tag;
                if (opts_.tagged) tag = fresh_tag();
                // Every attempt but the last sends a copy: a resend needs the original frames.
                message out = client_frames(service, tag, last ? std::move(body) : body.clone());
                ensure_open();
                // The attempt's deadline covers the send too (bounded by ZMQ_SNDTIMEO).
                const auto deadline = clock::now() + opts_.timeout;
                const auto st = out.send(socket_);
                if (st == send_status::terminated) throw context_terminated{};
                if (st == send_status::sent) {
                    while (auto m = read_until(deadline)) {
                        if (!well_formed(*m)) continue;
                        if (view((*m)[2]) != service || (tag && tag_of((*m)[3]) != *tag)) {
                            ++stats_.unexpected;
                            continue;
                        }
                        message result;
                        m->move_tail_to(body_at(opts_.tagged), result);
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

    /// @p tag: the caller's tag, or none to pick a fresh one in tagged mode.
    bool send(std::string_view service, message&& body, std::optional<std::uint64_t> tag,
              std::error_code& ec, std::string& why) {
        ec.clear();
        if (service.empty()) {
            ec = errc::invalid_argument;
            why = "mdp::client::send: empty service name";
            return false;
        }
        if (tag && !opts_.tagged) {
            ec = errc::invalid_argument;
            why = "mdp::client::send: a tag needs a tagged client";
            return false;
        }
        if (tag && tags_.find(*tag) != tag_state::none) {
            ec = errc::invalid_argument;
            why = "mdp::client::send: tag " + std::to_string(*tag) + " is outstanding";
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
            if (opts_.tagged && !tag) tag = fresh_tag();
            if (tag) tags_.make_room(); // allocate, if at all, before the request is out
            message out = client_frames(service, tag, std::move(body));
            const auto st = out.send(socket_);
            if (st == send_status::sent) {
                ++in_flight_;
                if (tag) {
                    tags_.insert(*tag);
                } else {
                    auto it = awaited_.find(service);
                    if (it == awaited_.end()) it = awaited_.emplace(std::string(service), 0).first;
                    ++it->second;
                }
                ++stats_.requests;
                return true;
            }
            // Refused: give the caller its frames back.
            out.move_tail_to(body_at(opts_.tagged), body);
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
            return delivered(std::move(r));
        }
        if (in_flight_ == 0 || !socket_) return std::nullopt;
        try {
            auto r = read_reply_until(clock::now() + std::min(timeout, max_duration));
            if (!r) return std::nullopt;
            return delivered(std::move(*r));
        } catch (const context_terminated&) {
            return std::nullopt;
        }
    }

    bool abandon(std::uint64_t tag) {
        switch (tags_.find(tag)) {
        case tag_state::none: return false; // also every tag in untagged mode
        case tag_state::in_flight:
            // The reply, if it ever comes, finds the tag gone and counts as unexpected.
            --in_flight_;
            break;
        case tag_state::queued: {
            // Already received: dropped now, counted as the late reply would have been.
            const auto it = std::find_if(ready_.begin(), ready_.end(),
                                         [tag](const reply& r) { return r.tag == tag; });
            if (it != ready_.end()) ready_.erase(it);
            ++stats_.unexpected;
            break;
        }
        }
        tags_.erase(tag);
        return true;
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
    if (!checked(impl_).send(service, std::move(body), std::nullopt, ec, why))
        throw error(ec, why);
}

bool client::send(std::string_view service, message&& body, std::error_code& ec) {
    if (!impl_) {
        ec = errc::not_running;
        return false;
    }
    std::string why;
    return impl_->send(service, std::move(body), std::nullopt, ec, why);
}

void client::send(std::string_view service, message&& body, std::uint64_t tag) {
    std::error_code ec;
    std::string why;
    if (!checked(impl_).send(service, std::move(body), tag, ec, why)) throw error(ec, why);
}

bool client::send(std::string_view service, message&& body, std::uint64_t tag,
                  std::error_code& ec) {
    if (!impl_) {
        ec = errc::not_running;
        return false;
    }
    std::string why;
    return impl_->send(service, std::move(body), tag, ec, why);
}

bool client::abandon(std::uint64_t tag) { return checked(impl_).abandon(tag); }

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
