// SPDX-License-Identifier: MPL-2.0
// mdp/client.cpp — the client side of zmesh request/reply: ZMCT03, MDP/0.1 and ZMCT01.
//
// Client side of 7/MDP, https://rfc.zeromq.org/spec/7/: request() is the Lazy Pirate client of
// the zguide (timeout, fresh socket, resend), send()/recv() the asynchronous windowed client.
// Replies from the network are untrusted: anything that is not a reply in the protocol spoken,
// to a request this client awaits, is counted and dropped, never thrown.
//
// Tagged mode (zmesh extension ZMCT01, mdp/protocol.hpp) adds an 8-byte tag after the service
// frame, both ways. The client keeps its outstanding tags in a small open-addressing table, so a
// request costs no allocation beyond its frames, and accepts only "" "ZMCT01" service <tag>
// body... whose tag is in flight.
//
// ZMCT03 (docs/protocol.md) puts a header frame after the service: "ZMCT03"+command service
// header body... (ZMCT02 with the command byte in the protocol frame, one frame fewer each way).
// A reply answers the request whose id is in its header's `co`; request() resends on the same
// socket with the same id (why: client.hpp), send()/recv() keep a map of the ids in flight.
#include <zmesh/detail/id_index.hpp>
#include <zmesh/error.hpp>
#include <zmesh/log.hpp>
#include <zmesh/mdp/client.hpp>
#include <zmesh/mdp/protocol.hpp>

#include <algorithm>
#include <bit>
#include <cstdint>
#include <limits>
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
/// Fills @p m (emptied first; its frame storage is reused, so a client that keeps one message
/// for sending allocates nothing here).
void client_frames(message& m, std::string_view service, const std::optional<std::uint64_t>& tag,
                   message&& body) {
    m.clear();
    m.push_back(zmq::message_t());
    m.push_back(tag ? client_tagged_v1 : client_v1);
    m.push_back(service);
    if (tag) m.push_back(tag_frame(*tag));
    body.move_tail_to(0, m);
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

// ---- ZMCT03 --------------------------------------------------------------------------------

/// Where a ZMCT03 reply's service and body are: "ZMCT03"+command, service, header, body...
constexpr std::size_t v2_service_at = 1, v2_header_at = 2, v2_body_at = 3;

/// How long past a request's deadline its last attempt still waits. A zmesh broker answers 504
/// at the deadline, by its own clock, after the client's send; without this margin a client
/// whose wait ends exactly then would report a bare timeout a moment before the exact answer.
constexpr std::chrono::milliseconds deadline_answer_grace{200};

/// Untagged MDP/0.1 mode: services whose count of awaited replies is back at 0 stay in the
/// table (so the next request to them allocates nothing) while it holds at most this many.
constexpr std::size_t max_idle_services = 64;

/// The most a header's `tl` can say (uint32 ms, about 49 days).
constexpr std::chrono::milliseconds max_tl{std::numeric_limits<std::uint32_t>::max()};

/// "ZMCT03"+REQUEST service header body...
/// Fills @p m as client_frames() does.
void request_frames_v2(message& m, std::string_view service, const header& h, message&& body) {
    m.clear();
    m.push_back(client_frame_v3(client_command_v2::request));
    m.push_back(service);
    m.push_back(encode(h));
    body.move_tail_to(0, m);
}

/// A ZMCT03 reply, its header decoded; the body stays in the message (from v2_body_at).
struct reply_v2 {
    bool final = false;
    header head;
};

/// Decodes "ZMCT03"+(PARTIAL | FINAL) service header body...; std::nullopt if @p m is anything
/// else (another protocol, a REQUEST, a header that does not decode).
std::optional<reply_v2> parse_reply_v2(const message& m) noexcept {
    if (m.size() < v2_body_at) return std::nullopt;
    const auto command = client_command_v3(view(m[0]));
    if (command != client_command_v2::partial && command != client_command_v2::final)
        return std::nullopt;
    std::error_code ec;
    auto head = decode_header(m[v2_header_at], ec);
    if (!head) return std::nullopt;
    return reply_v2{command == client_command_v2::final, std::move(*head)};
}

/// The status and reason of an error FINAL's body (status, reason); tolerant of a short body.
std::pair<std::string, std::string> status_and_reason(const message& body) {
    std::pair<std::string, std::string> out;
    if (!body.empty()) out.first = zmesh::to_string(body[0]);
    for (std::size_t i = 1; i < body.size(); ++i) {
        if (i > 1) out.second += ' ';
        out.second += view(body[i]);
    }
    return out;
}

/// An error FINAL's body as a plain MDP client of a zmesh broker gets it: "zmesh.error" first.
/// Used where the API returns bare frames (request(service, body), recv()), so that code written
/// for MDP/0.1 reads a ZMCT03 error as it always did.
void prefix_error_frame(message& body) { body.push_front(error_type); }

/// Milliseconds from @p now to @p deadline, rounded up (never sends less time than there is),
/// at least 1 (0 would mean "no deadline"), at most max_tl.
std::uint32_t ms_left(clock::time_point deadline, clock::time_point now) noexcept {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - now);
    return static_cast<std::uint32_t>(
        std::clamp(left, std::chrono::milliseconds(1), max_tl).count());
}

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
    std::vector<std::string> endpoints_;       // the brokers to fail over across (one, usually)
    std::size_t current_ = 0;                  // index of endpoint_ in endpoints_
    std::string endpoint_;
    client_options opts_;
    zmq::socket_t socket_;                     // closed between a timed-out attempt and the next
    std::size_t in_flight_ = 0;                // sent, reply not yet received from the socket
    std::map<std::string, std::size_t, std::less<>> awaited_; // untagged: service -> in flight
    tag_table tags_;             // tagged: every outstanding tag, queued ones included
    std::uint64_t next_tag_ = 1; // tagged: where the search for a fresh tag starts
    std::deque<reply> ready_;                  // received while send() waited on a full window
    client_stats stats_;
    // Reused for every request sent and every message read: a request or reply whose body has
    // several frames has more than a message holds inline, and these keep their spilled storage.
    message out_;
    message in_;

    /// ZMCT03: a request of the asynchronous mode whose reply recv() has not returned yet.
    struct pending_v2 {
        message_id id;
        std::string service;
        message parts;       // the PARTIALs' frames so far, returned before the FINAL's
        bool queued = false; // its FINAL is in ready_
    };
    struct pending_id {
        const message_id& operator()(const pending_v2& p) const noexcept { return p.id; }
    };
    // Every outstanding id, in a flat index over entries that are recycled, never freed: at tens
    // of thousands of requests a second, a node allocated and freed for each one, and then the
    // node-based map's own lookups, showed in the profile. The entries (a deque, so that they
    // stay where they are) number at most the most requests ever outstanding at once.
    zmesh::detail::id_index<pending_v2, pending_id> pending_;
    std::deque<pending_v2> pending_entries_;
    std::vector<pending_v2*> free_pending_; // entries of pending_entries_ not in pending_

    /// Adds @p id to pending_, in a recycled entry where there is one. @throws std::bad_alloc
    pending_v2* add_pending(const message_id& id) {
        if (free_pending_.empty()) {
            // Room in the free list for every entry first (growing geometrically), so that
            // drop_pending() never allocates.
            if (free_pending_.capacity() < pending_entries_.size() + 1)
                free_pending_.reserve(std::max<std::size_t>(16, 2 * free_pending_.capacity()));
            pending_entries_.emplace_back();
            free_pending_.push_back(&pending_entries_.back());
        }
        pending_v2* p = free_pending_.back();
        p->id = id;
        p->parts.clear();
        p->queued = false;
        pending_.insert(p); // may throw: then p stays in the free list
        free_pending_.pop_back();
        return p;
    }

    /// Removes @p p from pending_, keeping its entry for add_pending().
    void drop_pending(pending_v2* p) noexcept {
        pending_.erase(p);
        p->parts.clear();
        free_pending_.push_back(p); // within the capacity add_pending() reserved
    }

    impl(zmq::context_t& ctx, std::vector<std::string> endpoints, client_options opts)
        : ctx_(&ctx), endpoints_(std::move(endpoints)), opts_(opts) {
        if (endpoints_.empty())
            throw error(errc::invalid_argument, "mdp::client: no broker endpoint given");
        endpoint_ = endpoints_.front();
        if (opts_.timeout <= std::chrono::milliseconds(0) || opts_.timeout > max_duration)
            throw error(errc::invalid_argument, "mdp::client: timeout must be positive");
        if (opts_.retries < 1)
            throw error(errc::invalid_argument, "mdp::client: retries must be at least 1");
        if (opts_.window < 1)
            throw error(errc::invalid_argument, "mdp::client: window must be at least 1");
        if (opts_.linger < std::chrono::milliseconds(0) || opts_.linger > max_duration)
            throw error(errc::invalid_argument, "mdp::client: linger out of range");
        // One source of truth for the protocol: `tagged` (kept for source compatibility) wins.
        if (opts_.tagged) opts_.protocol = client_protocol::tagged;
        opts_.tagged = opts_.protocol == client_protocol::tagged;
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
        if (opts_.curve) security::make_curve_client(s, opts_.curve->server_public, opts_.curve->client);
        s.connect(endpoint_);
        socket_ = std::move(s);
    }

    void ensure_open() {
        if (!socket_) open();
    }

    /// After a silent attempt: moves endpoint_ to the next broker of the list, if there is
    /// more than one. The caller replaces the socket. @returns whether it moved.
    bool next_broker() {
        if (endpoints_.size() < 2) return false;
        current_ = (current_ + 1) % endpoints_.size();
        endpoint_ = endpoints_[current_];
        ++stats_.failovers;
        log(log_level::debug, "mdp::client: no answer in time; failing over to broker %s",
            endpoint_.c_str());
        return true;
    }

    /// ZMCT03 after a silent attempt: on to the next broker with a new socket (the old one's
    /// queue and any late reply to it are dropped: the next broker is asked with the same id).
    void fail_over_v2() {
        if (!next_broker()) return;
        socket_.close();
        open();
    }

    [[nodiscard]] bool v2() const noexcept { return opts_.protocol == client_protocol::zmesh; }

    /// What a timeout message adds: the broker it waited on, and with CURVE the two usual
    /// causes, since a refused handshake looks exactly like silence from the client's side.
    [[nodiscard]] std::string silence_hint() const {
        std::string hint = endpoints_.size() > 1 ? " (brokers " : " (broker ";
        for (std::size_t i = 0; i < endpoints_.size(); ++i)
            hint += (i ? ", " : "") + endpoints_[i];
        if (opts_.curve)
            hint += "; with CURVE, a broker that does not allow this client's key, or a server "
                    "key that is not the broker's, also looks like this";
        return hint + ")";
    }

    /// The whole wait of request(): timeout × retries, as a header can carry it.
    [[nodiscard]] std::chrono::milliseconds whole_wait() const noexcept {
        // Both factors fit in 31 bits, so the product fits in 64 before the clamp.
        return std::min(max_tl, opts_.timeout * opts_.retries);
    }

    /// Checks @p ro and builds the header of a new ZMCT03 request from it in @p h, a default
    /// header; "" or why not.
    std::string make_request_header(const request_options& ro, header& h) const {
        if (ro.priority > max_priority) return "priority must be in 0..9";
        if (ro.ttl < std::chrono::milliseconds(0) || ro.ttl > max_tl)
            return "ttl must be in [0, 4294967295] ms";
        // A fresh id, and no `ts`: the id (UUIDv7) holds the creation time to the millisecond,
        // and without it the common header is 28 bytes or less, which libzmq sends without an
        // allocation (its messages of up to 33 bytes are kept inline).
        h.id = ro.id ? *ro.id : message_id::generate();
        if (!ro.type.empty()) h.type = ro.type;
        h.priority = ro.priority;
        if (ro.fail_fast) set_fail_fast(h);
        return {};
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

    /// The next message from the socket before @p deadline, if any: in_, valid until the next
    /// call (take its frames with move_tail_to), or null.
    message* read_until(clock::time_point deadline) {
        for (;;) {
            if (in_.recv(socket_, zmq::recv_flags::dontwait)) return &in_;
            if (clock::now() >= deadline) return nullptr;
            // poll throws ETERM once the context is terminating; recv only returns false.
            try {
                // Latency mode: a zero-timeout poll, then read again at once.
                (void)wait_readable(socket_, opts_.spin ? clock::now() : deadline);
            } catch (const zmq::error_t& e) {
                if (e.num() == ETERM) throw context_terminated{};
                throw;
            }
        }
    }

    /// The next reply to an asynchronous request before @p deadline; other messages are dropped.
    /// In tagged mode the reply's tag is left outstanding (queued) until delivered().
    std::optional<reply> read_reply_until(clock::time_point deadline) {
        if (v2()) return read_reply_v2_until(deadline);
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
                if (it == awaited_.end() || it->second == 0) {
                    ++stats_.unexpected;
                    continue;
                }
                r.service = it->first;
                // An entry at 0 is kept for the service's next request (no node allocated per
                // request); only a client of many services sheds them.
                if (--it->second == 0 && awaited_.size() > max_idle_services) awaited_.erase(it);
            }
            --in_flight_;
            m->move_tail_to(body_at(opts_.tagged), r.body);
            return r;
        }
        return std::nullopt;
    }

    /// ZMCT03: read_reply_until(). PARTIALs are kept with their request; the FINAL completes
    /// it. The id stays outstanding (queued) until delivered().
    std::optional<reply> read_reply_v2_until(clock::time_point deadline) {
        while (auto m = read_until(deadline)) {
            auto r = parse_reply_v2(*m);
            if (!r) {
                ++stats_.malformed;
                continue;
            }
            // An id not in flight: never sent by this client, abandoned, or answered already
            // (a broker replaying a kept reply to a retry that crossed the FINAL).
            pending_v2* const p =
                r->head.correlation_id ? pending_.find(*r->head.correlation_id) : nullptr;
            if (!p || p->queued || view((*m)[v2_service_at]) != p->service) {
                ++stats_.unexpected;
                continue;
            }
            if (!r->final) {
                ++stats_.parts;
                m->move_tail_to(v2_body_at, p->parts);
                continue;
            }
            reply out;
            out.service = p->service;
            out.id = p->id;
            if (r->head.type == error_type)
                prefix_error_frame(out.body); // the error replaces whatever came before it
            else
                out.body = std::move(p->parts);
            m->move_tail_to(v2_body_at, out.body);
            out.head = std::move(r->head);
            p->queued = true;
            --in_flight_;
            return out;
        }
        return std::nullopt;
    }

    /// Bookkeeping of a reply that recv() hands to the application.
    reply delivered(reply&& r) noexcept {
        if (v2()) {
            if (pending_v2* const p = pending_.find(r.id)) drop_pending(p);
        }
        if (opts_.tagged) tags_.erase(r.tag);
        ++stats_.replies;
        return std::move(r);
    }

    /// ZMCT03 request(): see client.hpp. A zmesh.error FINAL is returned with @p ec set.
    std::optional<response> request_v2(std::string_view service, message&& body,
                                       const request_options& ro, const part_handler& on_part,
                                       std::error_code& ec, std::string& why) {
        ec.clear();
        if (!v2()) {
            ec = errc::invalid_argument;
            why = "mdp::client::request: request options need the ZMCT03 protocol";
            return std::nullopt;
        }
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
        header h;
        if (auto problem = make_request_header(ro, h); !problem.empty()) {
            ec = errc::invalid_argument;
            why = "mdp::client::request: " + problem;
            return std::nullopt;
        }
        ++stats_.requests;
        // The deadline runs from the first send; every attempt tells the broker what is left.
        const auto start = clock::now();
        const auto deadline = start + (ro.ttl.count() > 0 ? ro.ttl : whole_wait());
        // The broker answers by the deadline if it falls within the client's own wait.
        const bool answer_due = deadline <= start + whole_wait();
        int attempts = 0; // made: fewer than retries if the deadline passed first
        try {
            ensure_open();
            for (int attempt = 0; attempt < opts_.retries; ++attempt, ++attempts) {
                const auto now = clock::now();
                if (attempt > 0) {
                    // No time left: the broker has expired the request (and answered 504, if it
                    // got it), and tl cannot say "none left" (0 means no deadline).
                    if (now >= deadline) break;
                    ++stats_.resends;
                }
                h.attempt = static_cast<std::uint32_t>(attempt);
                h.ttl_ms = ms_left(deadline, now);
                const bool last = attempt + 1 == opts_.retries;
                // Every attempt but the last sends a shared copy (no bytes copied above 33 per
                // frame): a resend needs the original frames.
                message& out = out_;
                request_frames_v2(out, service, h, last ? std::move(body) : body.share());
                // The attempt's wait covers the send too (bounded by ZMQ_SNDTIMEO).
                auto attempt_deadline = clock::now() + opts_.timeout;
                const auto st = out.send(socket_);
                if (st == send_status::terminated) throw context_terminated{};
                if (st != send_status::sent) {
                    fail_over_v2();
                    continue;
                }
                bool extended = false;
                for (;;) {
                    auto m = read_until(attempt_deadline);
                    if (!m) {
                        // The last attempt waits for the broker's 504 a little past the
                        // deadline (deadline_answer_grace), rather than give up just before it.
                        const auto t = clock::now();
                        const bool last_try = attempt + 1 == opts_.retries || t >= deadline;
                        if (last_try && answer_due && !extended &&
                            t < deadline + deadline_answer_grace) {
                            attempt_deadline = deadline + deadline_answer_grace;
                            extended = true;
                            continue;
                        }
                        break;
                    }
                    auto r = parse_reply_v2(*m);
                    if (!r) {
                        ++stats_.malformed;
                        continue;
                    }
                    if (view((*m)[v2_service_at]) != service || !answers(*r, h.id)) {
                        ++stats_.unexpected; // a late reply to an earlier request, or a stranger
                        continue;
                    }
                    message part_or_final;
                    m->move_tail_to(v2_body_at, part_or_final);
                    if (!r->final) {
                        ++stats_.parts;
                        // Progress: the reply is streaming, so the attempt is alive.
                        attempt_deadline = clock::now() + opts_.timeout;
                        if (on_part) on_part(r->head, part_or_final);
                        continue;
                    }
                    ++stats_.replies;
                    if (r->head.type == error_type) {
                        auto [status, reason] = status_and_reason(part_or_final);
                        ec = status_to_errc(status);
                        why = "service '" + std::string(service) + "' failed: " + status + " " +
                              reason;
                    }
                    return response{std::move(r->head), std::move(part_or_final)};
                }
                // The attempt timed out. The socket stays (client.hpp): a late reply to it
                // names our id, and the resend joins the request at the broker. With several
                // brokers the resend goes to the next one instead, with the same id.
                fail_over_v2();
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
              std::to_string(attempts) + (attempts == 1 ? " attempt" : " attempts") +
              silence_hint();
        return std::nullopt;
    }

    /// Whether @p r answers the request with id @p id. A FINAL error without `co` answers it
    /// too: the broker sends one for a header it cannot decode (docs/protocol.md), and in the
    /// synchronous mode nothing else of ours is in flight that it could be for.
    static bool answers(const reply_v2& r, const message_id& id) noexcept {
        if (r.head.correlation_id) return *r.head.correlation_id == id;
        return r.final && r.head.type == error_type;
    }

    /// request(service, body) in ZMCT03 mode: the reply as an MDP/0.1 client sees it.
    std::optional<message> request_v2_compat(std::string_view service, message&& body,
                                             std::error_code& ec, std::string& why) {
        message parts;
        auto r = request_v2(
            service, std::move(body), {},
            [&parts](const header&, message& part) { part.move_tail_to(0, parts); }, ec, why);
        if (!r) return std::nullopt;
        if (r->head.type == error_type) {
            ec.clear();
            message out;
            prefix_error_frame(out);
            r->body.move_tail_to(0, out);
            return out;
        }
        r->body.move_tail_to(0, parts);
        return parts;
    }

    std::optional<message> request(std::string_view service, message&& body, std::error_code& ec,
                                   std::string& why) {
        if (v2()) return request_v2_compat(service, std::move(body), ec, why);
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
                // Every attempt but the last sends a shared copy (no bytes copied above 33 per
                // frame): a resend needs the original frames.
                message& out = out_;
                client_frames(out, service, tag, last ? std::move(body) : body.share());
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
                next_broker(); // with several brokers, the next attempt asks the next one
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
              std::to_string(opts_.retries) + " attempts" + silence_hint();
        return std::nullopt;
    }

    /// Waits until fewer than `window` requests are in flight; false with @p ec set if not in
    /// time. Throws context_terminated.
    bool wait_for_room(std::error_code& ec, std::string& why) {
        if (in_flight_ < opts_.window) return true;
        // Window full: the broker owes us `window` replies. Wait at most one timeout for room,
        // queueing what arrives for recv(); a broker that stays silent that long is reported
        // rather than waited on forever (no retries in this mode).
        const auto deadline = clock::now() + opts_.timeout;
        while (in_flight_ >= opts_.window) {
            auto r = read_reply_until(deadline);
            if (!r) {
                ec = errc::timeout;
                why = "mdp::client::send: window of " + std::to_string(opts_.window) +
                      " requests still full after " + std::to_string(opts_.timeout.count()) +
                      " ms";
                return false;
            }
            ready_.push_back(std::move(*r));
        }
        return true;
    }

    /// ZMCT03 send(): see client.hpp.
    std::optional<message_id> send_v2(std::string_view service, message&& body,
                                      const request_options& ro, std::error_code& ec,
                                      std::string& why) {
        ec.clear();
        if (!v2()) {
            ec = errc::invalid_argument;
            why = "mdp::client::send: request options need the ZMCT03 protocol";
            return std::nullopt;
        }
        if (service.empty()) {
            ec = errc::invalid_argument;
            why = "mdp::client::send: empty service name";
            return std::nullopt;
        }
        header h;
        if (auto problem = make_request_header(ro, h); !problem.empty()) {
            ec = errc::invalid_argument;
            why = "mdp::client::send: " + problem;
            return std::nullopt;
        }
        if (pending_.find(h.id)) {
            ec = errc::invalid_argument;
            why = "mdp::client::send: id " + h.id.to_hex() + " is outstanding";
            return std::nullopt;
        }
        h.ttl_ms = static_cast<std::uint32_t>((ro.ttl.count() > 0 ? ro.ttl : whole_wait()).count());
        try {
            ensure_open();
            if (!wait_for_room(ec, why)) return std::nullopt;
            // Room in the map first, so that a request that went out is always awaited.
            pending_v2* const p = add_pending(h.id);
            message& out = out_;
            request_frames_v2(out, service, h, std::move(body));
            const auto st = out.send(socket_);
            if (st == send_status::sent) {
                p->service = service;
                ++in_flight_;
                ++stats_.requests;
                return h.id;
            }
            drop_pending(p);
            out.move_tail_to(v2_body_at, body); // refused: give the caller its frames back
            if (st == send_status::terminated) throw context_terminated{};
            ec = errc::timeout;
            why = "mdp::client::send: socket would not take the request within " +
                  std::to_string(opts_.timeout.count()) + " ms";
            return std::nullopt;
        } catch (const context_terminated&) {
            ec = errc::not_running;
            why = "mdp::client::send: context terminated";
            return std::nullopt;
        }
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
        if (v2() && !tag) return send_v2(service, std::move(body), {}, ec, why).has_value();
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
            if (!wait_for_room(ec, why)) return false;
            if (opts_.tagged && !tag) tag = fresh_tag();
            if (tag) tags_.make_room(); // allocate, if at all, before the request is out
            message& out = out_;
            client_frames(out, service, tag, std::move(body));
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

    bool abandon(const message_id& id) {
        pending_v2* const p = pending_.find(id);
        if (!p) return false; // also every id outside ZMCT03 mode
        if (p->queued) {
            // Already received: dropped now, counted as the late reply would have been.
            const auto r = std::find_if(ready_.begin(), ready_.end(),
                                        [&id](const reply& q) { return q.id == id; });
            if (r != ready_.end()) ready_.erase(r);
            ++stats_.unexpected;
        } else {
            --in_flight_; // the reply, if it ever comes, finds the id gone
        }
        drop_pending(p);
        return true;
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

service_error::service_error(std::string service, std::string status, std::string reason)
    : error(status_to_errc(status),
            "service '" + service + "' failed: " + status + (reason.empty() ? "" : " ") + reason),
      service_(std::move(service)), status_(std::move(status)), reason_(std::move(reason)) {}

errc status_to_errc(std::string_view status) noexcept {
    if (status == "400") return errc::bad_request;
    if (status == "404") return errc::not_found;
    if (status == "422") return errc::refused;
    if (status == "403") return errc::forbidden;
    if (status == "500") return errc::exhausted;
    if (status == "503") return errc::unavailable;
    if (status == "504") return errc::timeout;
    return errc::remote_error;
}

client::client(zmq::context_t& ctx, std::string broker_endpoint, client_options options)
    : impl_(std::make_unique<impl>(ctx, std::vector<std::string>{std::move(broker_endpoint)},
                                   options)) {}

client::client(zmq::context_t& ctx, std::vector<std::string> broker_endpoints,
               client_options options)
    : impl_(std::make_unique<impl>(ctx, std::move(broker_endpoints), options)) {}

client::~client() = default;
client::client(client&&) noexcept = default;
client& client::operator=(client&&) noexcept = default;

response client::request(std::string_view service, message&& body, const request_options& options,
                         const part_handler& on_part) {
    std::error_code ec;
    std::string why;
    auto r = checked(impl_).request_v2(service, std::move(body), options, on_part, ec, why);
    if (r && ec) {
        // The FINAL is a zmesh.error: raise it with its exact status and reason.
        auto [status, reason] = status_and_reason(r->body);
        throw service_error(std::string(service), std::move(status), std::move(reason));
    }
    if (!r) throw error(ec, why);
    return std::move(*r);
}

std::optional<response> client::request(std::string_view service, message&& body,
                                        const request_options& options, std::error_code& ec,
                                        const part_handler& on_part) {
    if (!impl_) {
        ec = errc::not_running;
        return std::nullopt;
    }
    std::string why;
    return impl_->request_v2(service, std::move(body), options, on_part, ec, why);
}

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

message_id client::send(std::string_view service, message&& body, const request_options& options) {
    std::error_code ec;
    std::string why;
    auto id = checked(impl_).send_v2(service, std::move(body), options, ec, why);
    if (!id) throw error(ec, why);
    return *id;
}

std::optional<message_id> client::send(std::string_view service, message&& body,
                                       const request_options& options, std::error_code& ec) {
    if (!impl_) {
        ec = errc::not_running;
        return std::nullopt;
    }
    std::string why;
    return impl_->send_v2(service, std::move(body), options, ec, why);
}

bool client::abandon(std::uint64_t tag) { return checked(impl_).abandon(tag); }

bool client::abandon(const message_id& id) { return checked(impl_).abandon(id); }

std::optional<reply> client::recv(std::chrono::milliseconds timeout) {
    return checked(impl_).recv(timeout);
}

std::size_t client::outstanding() const noexcept { return impl_ ? impl_->outstanding() : 0; }

client_stats client::stats() const noexcept { return impl_ ? impl_->stats_ : client_stats{}; }

client_protocol client::protocol() const noexcept {
    return impl_ ? impl_->opts_.protocol : client_protocol::zmesh;
}

const std::string& client::endpoint() const noexcept {
    static const std::string none;
    return impl_ ? impl_->endpoint_ : none;
}

zmq::socket_ref client::socket() const noexcept {
    return impl_ ? zmq::socket_ref(impl_->socket_) : zmq::socket_ref();
}

} // namespace zmesh::mdp
