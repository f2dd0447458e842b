// SPDX-License-Identifier: MPL-2.0
// mdp/worker.cpp — the worker side of the Majordomo Protocol 0.1, and of zmesh's ZMWC02 workers.
//
// Worker side of 7/MDP, https://rfc.zeromq.org/spec/7/, with the heartbeat rules of the spec:
// any valid broker command but DISCONNECT counts as life, HEARTBEAT is sent only when nothing
// else went out for an interval, heartbeat × liveness of silence means the broker is dead. Broker
// input is untrusted: anything that is not a well-formed broker-to-worker command of the
// worker's own protocol (MDPW01, or ZMWC02) is counted and dropped.
//
// ZMWC02 (docs/protocol.md) has 18/MDP's layout (no empty delimiter, the protocol frame first)
// and numbering (PARTIAL 0x03, FINAL 0x04, HEARTBEAT 0x05, DISCONNECT 0x06), an 8-byte tag
// before the client address, and a header frame after the empty frame that follows it. The
// broker matches a PARTIAL or FINAL to its request by the tag, so the worker only carries it
// from one to the other, untouched, inside the reply_token. The two protocols share one state
// machine; only the framing (frame_command(), parse()) differs.
//
// Departures from a bare reading of the spec, each so that the worker works behind any MDP/0.1
// broker: silence is not counted while a request is held (brokers need not heartbeat a busy
// worker); a DISCONNECT that answers READY before anything else is a refusal, not a reason to
// register again; a ZMWC02 READY nobody answers within a heartbeat means a broker without it,
// and the worker falls back to MDPW01.
#include <zmesh/error.hpp>
#include <zmesh/log.hpp>
#include <zmesh/mdp/protocol.hpp>
#include <zmesh/mdp/worker.hpp>

#include <zmesh/header.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <deque>
#include <unordered_map>
#include <string>
#include <thread>
#include <utility>

namespace zmesh::mdp {
namespace {

using clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

/// libzmq takes option and poll durations as int milliseconds.
constexpr milliseconds max_duration{INT_MAX};

/// Thrown inside the worker when libzmq reports the context terminated; caught at the API edge.
struct context_terminated {};

/// Connection epochs are unique in the process, not only per worker, so a token from another
/// worker (or from one since destroyed) can never pass for a request of the current connection.
std::atomic<std::uint64_t> last_epoch{0};

std::uint64_t next_epoch() noexcept {
    return last_epoch.fetch_add(1, std::memory_order_relaxed) + 1;
}

/// A worker command whatever its protocol; frame_command() and parse() give its byte in each.
enum class cmd { ready, request, partial, final, heartbeat, disconnect };

/// The command byte of @p c: 7/MDP numbering (REPLY for final) or 18/MDP's (ZMWC02).
std::uint8_t command_byte(cmd c, bool v2) noexcept {
    switch (c) {
    case cmd::ready: return 0x01;
    case cmd::request: return 0x02;
    case cmd::partial: return 0x03; // ZMWC02 only: MDPW01 has no PARTIAL
    case cmd::final: return v2 ? std::uint8_t{0x04} : std::uint8_t{0x03};
    case cmd::heartbeat: return v2 ? std::uint8_t{0x05} : std::uint8_t{0x04};
    case cmd::disconnect: return v2 ? std::uint8_t{0x06} : std::uint8_t{0x05};
    }
    return 0;
}

/// A broker-to-worker command, if @p frame is one byte naming a known command of the protocol.
std::optional<cmd> parse_command(const zmq::message_t& frame, bool v2) noexcept {
    if (frame.size() != 1) return std::nullopt;
    const auto b = *static_cast<const std::uint8_t*>(frame.data());
    for (cmd c : {cmd::ready, cmd::request, cmd::partial, cmd::final, cmd::heartbeat,
                  cmd::disconnect}) {
        if (c == cmd::partial && !v2) continue;
        if (command_byte(c, v2) == b) return c;
    }
    return std::nullopt;
}

/// A copy of @p frame's bytes: a token keeps its tag and client for the PARTIALs still to come.
zmq::message_t copy_of(const zmq::message_t& frame) { return {frame.data(), frame.size()}; }

bool reserved_type(std::string_view type) noexcept {
    return type == error_type || type == refused_type;
}

} // namespace

/// A first-in first-out queue over a vector that keeps its storage: a std::deque of requests
/// (each larger than a deque node) allocates a node per request, and the queue holds at most
/// the credit's worth, so a worker with credit would allocate on every request.
template <class T> class reusing_fifo {
  public:
    [[nodiscard]] bool empty() const noexcept { return head_ == items_.size(); }
    void clear() noexcept {
        items_.clear();
        head_ = 0;
    }
    void push_back(T&& item) { items_.push_back(std::move(item)); }
    T& front() noexcept { return items_[head_]; }
    /// Drops the front (normally moved from already). The storage is reused once the queue
    /// empties, or once half of it is dropped items, so it never grows past twice the most
    /// items it held at once.
    void pop_front() noexcept {
        ++head_;
        if (head_ == items_.size()) {
            clear();
        } else if (head_ >= 16 && head_ * 2 >= items_.size()) {
            std::move(items_.begin() + static_cast<std::ptrdiff_t>(head_), items_.end(),
                      items_.begin());
            items_.erase(items_.end() - static_cast<std::ptrdiff_t>(head_), items_.end());
            head_ = 0;
        }
    }

  private:
    std::vector<T> items_;
    std::size_t head_ = 0;
};

struct worker::impl {
    zmq::context_t* ctx_;
    std::vector<std::string> endpoints_; // the brokers to fail over across (one, usually)
    std::size_t current_ = 0;          // index of endpoint_ in endpoints_
    std::string endpoint_;
    std::string service_;
    worker_options opts_;
    milliseconds allowance_;           // heartbeat × liveness: broker silence taken for death
    bool v2_;                          // speaks ZMWC02 rather than MDPW01
    std::uint32_t credit_;             // in effect: opts_.credit, or 1 after the fallback
    std::string credit_text_;          // the READY credit frame (ZMWC02)
    zmq::socket_t socket_;             // empty while waiting to reconnect, and after close
    bool open_ = true;
    std::string refusal_;              // why the broker refused READY; non-empty = refused
    std::uint64_t epoch_ = 0;          // new per socket; requests belong to the one they came on
    std::shared_ptr<const void> hold_; // new per socket; each request handed out holds a copy
    bool ready_pending_ = false;       // READY not yet out: the connection is not up yet
    bool heard_ = false;               // a valid command came on this socket since READY
    bool spoke_ = false;               // something went out on this socket after READY
    clock::time_point ready_at_;       // when READY went out on this socket
    clock::time_point heartbeat_at_;   // next HEARTBEAT, unless something else is sent first
    clock::time_point expires_at_;     // broker declared dead if silent until then
    clock::time_point reconnect_at_;   // when to open the next socket (socket_ empty)
    milliseconds backoff_;             // wait before the next silent reconnect
    reusing_fifo<held_request> queue_; // requests read but not yet returned by recv()/take()
    message incoming_;                 // reused for every broker message: keeps its frame storage
    message outgoing_;                 // reused for every command sent, likewise
    reply_token last_;                 // the request recv() last returned, for reply(message&&)
    std::optional<header> last_header_; // ... and its header
    std::optional<clock::time_point> last_deadline_; // ... and its deadline
    worker_stats stats_;

    /// A reply kept for worker_options::replay_window (exactly once across a broker's death).
    struct kept_reply {
        zmq::message_t head; // the FINAL's header (co = the request's id)
        message body;
        clock::time_point at;
    };
    std::unordered_map<message_id, kept_reply> kept_;              // by request id
    std::deque<std::pair<clock::time_point, message_id>> kept_order_; // oldest first
    bool replay_due_ = false; // a new connection: send kept_ once the broker answers

    impl(zmq::context_t& ctx, std::vector<std::string> endpoints, std::string service,
         worker_options opts)
        : ctx_(&ctx), endpoints_(std::move(endpoints)),
          endpoint_(endpoints_.empty() ? std::string() : endpoints_.front()),
          service_(std::move(service)), opts_(opts),
          v2_(opts.protocol == worker_protocol::zmesh), credit_(opts.credit),
          credit_text_(std::to_string(opts.credit)), backoff_(opts.reconnect_initial) {
        auto positive = [](milliseconds d) { return d > milliseconds(0) && d <= max_duration; };
        if (endpoints_.empty())
            throw error(errc::invalid_argument, "mdp::worker: no broker endpoint given");
        if (opts_.replay_window < milliseconds(0) || opts_.replay_window > max_duration)
            throw error(errc::invalid_argument, "mdp::worker: replay_window out of range");
        // Checked here so that a bad name never reaches the wire, where a broker could only
        // refuse it (or, a lenient one, accept a name no zmesh tool can type or print).
        if (auto problem = worker_service_name_problem(service_); !problem.empty())
            throw error(errc::invalid_argument, "mdp::worker: service name '" +
                                                    printable_service_name(service_) + "' " +
                                                    std::string(problem));
        if (!positive(opts_.heartbeat) || opts_.liveness < 1 ||
            opts_.heartbeat * opts_.liveness > max_duration)
            throw error(errc::invalid_argument, "mdp::worker: heartbeat or liveness out of range");
        if (!positive(opts_.reconnect_initial) || !positive(opts_.reconnect_max) ||
            opts_.reconnect_max < opts_.reconnect_initial)
            throw error(errc::invalid_argument, "mdp::worker: reconnect interval out of range");
        if (opts_.disconnect_linger < milliseconds(0) || opts_.disconnect_linger > max_duration)
            throw error(errc::invalid_argument, "mdp::worker: disconnect_linger out of range");
        if (opts_.credit < 1 || opts_.credit > max_worker_credit)
            throw error(errc::invalid_argument,
                        "mdp::worker: credit " + credit_text_ + " out of range 1.." +
                            std::to_string(max_worker_credit));
        if (opts_.protocol != worker_protocol::zmesh && opts_.protocol != worker_protocol::mdp)
            throw error(errc::invalid_argument, "mdp::worker: unknown protocol");
        if (!v2_ && opts_.credit > 1)
            throw error(errc::invalid_argument,
                        "mdp::worker: credit " + credit_text_ +
                            " needs the zmesh protocol (ZMWC02); plain MDP/0.1 has credit 1");
        allowance_ = opts_.heartbeat * opts_.liveness;
        try {
            connect();
        } catch (const context_terminated&) {
            throw error(errc::not_running, "mdp::worker: context terminated");
        }
    }

    ~impl() { close(); }
    impl(const impl&) = delete;
    impl& operator=(const impl&) = delete;

    void check_open() const {
        // A refusal is reported by every call, not once, so that no caller can miss it.
        if (!refusal_.empty()) throw error(errc::invalid_argument, refusal_);
        if (!open_) throw error(errc::not_running, "mdp::worker: closed");
    }

    /// Starts outgoing_ as every worker command starts: "" "MDPW01" command, or "ZMWC02"
    /// command (18/MDP's layout has no empty delimiter).
    message& command(cmd c) {
        outgoing_.clear();
        if (!v2_) outgoing_.push_back(zmq::message_t());
        outgoing_.push_back(v2_ ? worker_header_v2 : worker_v1);
        const auto b = command_byte(c, v2_);
        outgoing_.push_back(zmq::message_t(&b, 1));
        return outgoing_;
    }

    /// New socket, new identity: the broker sees a new worker, which is what re-registering is.
    void connect() {
        zmq::socket_t s(*ctx_, zmq::socket_type::dealer);
        // A socket being replaced holds nothing worth delivering (a dead broker's session);
        // restart() raises the linger just before close to flush its DISCONNECT.
        s.set(zmq::sockopt::linger, 0);
        // A ZMWC02 worker must know when its READY reached a broker: one heartbeat of
        // silence after that means a broker without ZMWC02, while silence before it (a worker
        // started before its broker) means nothing. With ZMQ_IMMEDIATE the socket takes a
        // message only once a connection is up (ZMTP handshake done), so READY waits in
        // send_ready() until then. Over inproc the pipe exists from connect() on. A plain worker
        // queues READY at once (ZMQ_IMMEDIATE 0), so that it goes out the moment the connection
        // comes up, whether or not the caller is inside recv() then.
        if (v2_) s.set(zmq::sockopt::immediate, 1);
        if (opts_.curve) security::make_curve_client(s, opts_.curve->server_public, opts_.curve->client);
        s.connect(endpoint_);
        socket_ = std::move(s);
        epoch_ = next_epoch();
        hold_ = std::make_shared<char>(0);
        queue_.clear();
        ready_pending_ = true;
        heard_ = false;
        spoke_ = false;
        replay_due_ = !kept_.empty();
        const auto now = clock::now();
        // A fresh registration gets the full liveness allowance to hear from the broker.
        expires_at_ = now + allowance_;
        heartbeat_at_ = now + opts_.heartbeat;
        send_ready(now);
    }

    /// Sends READY if the connection is up; otherwise it stays pending, for tick() to retry.
    void send_ready(clock::time_point now) {
        // The credit is granted anew with each registration: the broker forgot the old socket's
        // requests, so none of them still holds a unit.
        message& ready = command(cmd::ready);
        ready.push_back(service_);
        if (v2_) ready.push_back(credit_text_);
        if (!send(now)) return;
        ready_pending_ = false;
        ready_at_ = now;
        // From here the broker has the full allowance to speak (the time before the connection
        // came up was not the broker's silence).
        expires_at_ = now + allowance_;
    }

    /// Sends outgoing_ without blocking; anything sent postpones the next HEARTBEAT (spec: no
    /// heartbeats while other traffic flows). outgoing_ is left empty either way.
    bool send(clock::time_point now) {
        const auto st = outgoing_.send(socket_, zmq::send_flags::dontwait);
        if (st != send_status::sent) outgoing_.clear(); // refused: nothing of it is kept
        if (st == send_status::terminated) throw context_terminated{};
        if (st != send_status::sent) return false;
        sent(now);
        return true;
    }

    void sent(clock::time_point now) noexcept {
        heartbeat_at_ = now + opts_.heartbeat;
        if (!ready_pending_) spoke_ = true;
    }

    /// Whether a request of the current connection is held: handed out by recv() or take()
    /// and neither answered nor abandoned. The worker owns one reference to hold_, each such
    /// request's token another. A token destroyed on another thread at this very moment may
    /// still be counted; that only moves the end of its hold to the next tick.
    [[nodiscard]] bool holding() const noexcept { return hold_ && hold_.use_count() > 1; }

    /// A hold has just ended or been seen (a reply, an abandoned request): the broker, which
    /// may not have spoken while the request was held, gets the full allowance from now.
    void held_until(clock::time_point now) noexcept {
        expires_at_ = std::max(expires_at_, now + allowance_);
    }

    /// Closes the socket, after DISCONNECT if @p say_disconnect (the broker then forgets this
    /// worker at once instead of after its own expiry). DISCONNECT is best effort: at the
    /// high-water mark it cannot be queued, and closing the connection is the only signal left.
    void drop_socket(bool say_disconnect) noexcept {
        if (!socket_) return;
        if (say_disconnect && !ready_pending_) {
            try {
                socket_.set(zmq::sockopt::linger,
                            static_cast<int>(opts_.disconnect_linger.count()));
                (void)command(cmd::disconnect)
                    .send(socket_, zmq::send_flags::dontwait);
            } catch (const zmq::error_t&) {
                // Best effort: a broker that is gone does not need to be told.
            }
            outgoing_.clear();
        }
        socket_.close();
    }

    /// Drops the socket and everything received on it. After DISCONNECT the spec says to
    /// re-register at once; after silence we back off exponentially so that a broker that is
    /// down is not hammered, and so that many workers do not reconnect in lockstep.
    void restart(clock::time_point now, bool immediately, bool say_disconnect) {
        drop_socket(say_disconnect);
        queue_.clear();
        ++stats_.reconnects;
        next_broker();
        if (immediately) {
            connect();
            return;
        }
        reconnect_at_ = now + backoff_;
        backoff_ = std::min(backoff_ * 2, opts_.reconnect_max);
    }

    /// With several brokers: the next connection goes to the next one of the list.
    void next_broker() {
        if (endpoints_.size() < 2) return;
        current_ = (current_ + 1) % endpoints_.size();
        endpoint_ = endpoints_[current_];
        ++stats_.failovers;
        log(log_level::info, "mdp::worker: '%s' moves to broker %s", service_.c_str(),
            endpoint_.c_str());
    }

    /// The broker did not answer a ZMWC02 READY: it does not speak ZMWC02 (a plain MDP/0.1
    /// broker drops an unknown protocol frame without a word). Serve as a plain worker.
    void fall_back() {
        log(log_level::warn,
            "mdp::worker: the broker at %s did not answer READY for '%s' (zmesh ZMWC02) within "
            "%lld ms: it does not speak ZMWC02; serving as a plain MDP/0.1 worker (credit 1, "
            "no request headers, deadlines or streaming)",
            endpoint_.c_str(), service_.c_str(), static_cast<long long>(opts_.heartbeat.count()));
        // DISCONNECT under ZMWC02 first: a zmesh broker that was merely slow forgets the
        // registration; one without ZMWC02 drops it like the READY.
        drop_socket(true);
        v2_ = false;
        credit_ = 1;
        ++stats_.reconnects;
        connect();
    }

    /// The broker answered READY with DISCONNECT and nothing else: it will not have this
    /// service from this worker, and asking again would only be refused again.
    void refused() {
        refusal_ = "mdp::worker: the broker at " + endpoint_ + " refused to register service '" +
                   service_ +
                   "' (it answered READY with DISCONNECT); likely reasons: the name is reserved "
                   "there (mmi.*, zmesh.*), too long or not printable for that broker, the "
                   "broker is at its service limit (zmesh broker: --max-services), or its access "
                   "list does not let this worker's key serve it (zmesh broker --acl)";
        socket_.close(); // no DISCONNECT: the broker has already forgotten this worker
        terminate();
    }

    void heard(clock::time_point now) {
        heard_ = true;
        expires_at_ = now + allowance_;
        backoff_ = opts_.reconnect_initial;
        if (replay_due_) {
            replay_due_ = false;
            send_replays(now);
        }
    }

    /// Forgets kept replies older than the replay window.
    void prune_kept(clock::time_point now) {
        while (!kept_order_.empty() && now - kept_order_.front().first > opts_.replay_window) {
            auto it = kept_.find(kept_order_.front().second);
            if (it != kept_.end() && it->second.at == kept_order_.front().first) kept_.erase(it);
            kept_order_.pop_front();
        }
    }

    /// Keeps the reply to request @p id (replay_window > 0).
    void keep_reply(const message_id& id, const zmq::message_t& head, const message& body) {
        const auto now = clock::now();
        prune_kept(now);
        kept_.insert_or_assign(id, kept_reply{copy_of(head), body.clone(), now});
        kept_order_.emplace_back(now, id);
    }

    /// Sends every kept reply to the broker just registered with, as ZMCT02 requests to
    /// `zmesh.replay` (docs/patterns/binary_star.md) on a socket of their own: a broker without
    /// Binary Star answers them 501 (unknown service), which nobody reads. Body: the request id
    /// (16 bytes), the service, the FINAL's header, then its body frames.
    void send_replays(clock::time_point now) {
        prune_kept(now);
        if (kept_.empty()) return;
        zmq::socket_t s(*ctx_, zmq::socket_type::dealer);
        // The socket is closed at once, before its connection is even up: the replies leave
        // during the linger, which a broker that has just answered READY gets in full.
        s.set(zmq::sockopt::linger, static_cast<int>(allowance_.count()));
        if (opts_.curve) security::make_curve_client(s, opts_.curve->server_public, opts_.curve->client);
        s.connect(endpoint_);
        std::size_t sent_count = 0;
        for (const auto& [id, k] : kept_) {
            message m;
            m.push_back(client_header_v2);
            const auto request = static_cast<std::uint8_t>(client_command_v2::request);
            m.push_back(zmq::message_t(&request, 1));
            m.push_back(zmesh_replay);
            m.push_back(encode(make_header({})));
            m.push_back(zmq::message_t(id.bytes().data(), id.bytes().size()));
            m.push_back(std::string_view(service_));
            m.push_back(copy_of(k.head));
            for (std::size_t i = 0; i < k.body.size(); ++i) m.push_back(copy_of(k.body[i]));
            if (m.send(s, zmq::send_flags::dontwait) != send_status::sent) break;
            ++sent_count;
        }
        stats_.replays_sent += sent_count;
        log(log_level::info, "mdp::worker: '%s' sent %zu kept replies to broker %s",
            service_.c_str(), sent_count, endpoint_.c_str());
    }

    /// Whether @p m, whose arguments start at frame @p a, is a well-formed REQUEST: MDPW01
    /// client "" body..., or ZMWC02 tag client "" header body..., with the tag exactly
    /// request_tag_size bytes and the client address not empty.
    [[nodiscard]] bool valid_request(const message& m, std::size_t a) const noexcept {
        if (!v2_) return m.size() >= a + 2 && m[a].size() != 0 && m[a + 1].size() == 0;
        return m.size() >= a + 4 && m[a].size() == request_tag_size && m[a + 1].size() != 0 &&
               m[a + 2].size() == 0;
    }

    /// Queues the REQUEST @p m (valid_request()) for recv() and take().
    void queue_request(message& m, std::size_t a, clock::time_point now) {
        held_request r;
        if (!v2_) {
            r.token.client_ = std::move(m[a]);
            m.move_tail_to(a + 2, r.body);
        } else {
            r.token.tag_ = std::move(m[a]);
            r.token.client_ = std::move(m[a + 1]);
            if (m[a + 3].size() != 0) {
                std::error_code ec;
                std::string why;
                r.header = decode_header(m[a + 3], ec, &why);
                if (!r.header) {
                    // Dropping it would keep its unit of credit until the next reconnect;
                    // refusing it returns the unit and tells the client why.
                    ++stats_.malformed;
                    r.token.epoch_ = epoch_;
                    refuse_now(std::move(r.token), "the request's header does not decode: " + why);
                    return;
                }
                r.token.request_id_ = r.header->id;
                if (opts_.replay_window.count() > 0) {
                    prune_kept(now);
                    if (auto it = kept_.find(r.header->id); it != kept_.end()) {
                        // Executed already: the reply went to a broker that died with it.
                        message& out = command(cmd::final);
                        out.push_back(std::move(r.token.tag_));
                        out.push_back(std::move(r.token.client_));
                        out.push_back(zmq::message_t());
                        out.push_back(copy_of(it->second.head));
                        for (std::size_t i = 0; i < it->second.body.size(); ++i)
                            out.push_back(copy_of(it->second.body[i]));
                        if (send(now)) ++stats_.replayed;
                        return;
                    }
                }
                // Relative, as docs/protocol.md says: tl counts from when the broker sent it,
                // and this clock starts it at arrival (the network delay is not subtracted).
                if (r.header->ttl_ms > 0) r.deadline = now + milliseconds(r.header->ttl_ms);
            }
            m.move_tail_to(a + 4, r.body);
        }
        r.token.epoch_ = epoch_;
        queue_.push_back(std::move(r));
    }

    /// Refuses a request from inside handle(): never waits (it may run inside send_reply()'s
    /// own wait), so at the high-water mark the refusal is dropped and the unit of credit stays
    /// lost until the next reconnect.
    void refuse_now(reply_token&& token, std::string_view reason) {
        build_final(token, refusal_body(reason), refused_type);
        if (send(clock::now())) {
            ++stats_.replies;
            ++stats_.refusals;
        } else {
            ++stats_.replies_dropped;
        }
    }

    void handle(message& m, clock::time_point now) {
        // Only the worker's own protocol: a ZMWC02 worker's broker never speaks MDPW01 to it,
        // and an MDPW01 REQUEST has no tag to answer with.
        std::optional<cmd> c;
        std::size_t a = 0; // first frame after the command
        if (v2_ && m.size() >= 2 && view(m[0]) == worker_header_v2) {
            c = parse_command(m[1], true);
            a = 2;
        } else if (!v2_ && m.size() >= 3 && m[0].size() == 0 && view(m[1]) == worker_v1) {
            c = parse_command(m[2], false);
            a = 3;
        }
        if (c == cmd::request && valid_request(m, a)) {
            heard(now);
            queue_request(m, a, now);
        } else if (c == cmd::heartbeat && m.size() == a) {
            heard(now);
        } else if (c == cmd::disconnect && m.size() == a) {
            ++stats_.disconnects;
            // A refusal answers READY itself. A DISCONNECT after the broker has spoken, or
            // after the worker has (a HEARTBEAT reaching a broker that restarted and does not
            // know it), is the broker forgetting the worker: register again. (A plain worker
            // whose READY and first HEARTBEAT were both queued while its broker was still down
            // takes a refusal for such a DISCONNECT once: it registers again, and the refusal
            // of that READY, which now reaches a running broker at once, stops it.)
            if (!ready_pending_ && !heard_ && !spoke_) {
                // With several brokers a refusal is what a broker that does not serve now (a
                // passive Binary Star) says: try the next one, after the backoff.
                if (endpoints_.size() > 1) {
                    restart(now, false, false);
                    return;
                }
                refused();
                return;
            }
            backoff_ = opts_.reconnect_initial;
            restart(now, true, false);
        } else {
            // Another protocol, an unknown command, a worker-to-broker command or a wrong frame
            // count.
            ++stats_.malformed;
        }
    }

    /// Reads what is waiting, without blocking: everything, or (@p until_request) only up to
    /// the first request. The latter leaves the rest in the socket, so that with credit the
    /// socket stays readable for a caller polling socket() while requests are still there.
    void drain(bool until_request) {
        for (;;) {
            if (!socket_ || (until_request && !queue_.empty())) return;
            if (!incoming_.recv(socket_, zmq::recv_flags::dontwait)) return;
            handle(incoming_, clock::now());
        }
    }

    /// Heartbeat, registration, expiry and reconnect duties that are due at @p now.
    void tick(clock::time_point now) {
        if (!socket_) {
            if (open_ && now >= reconnect_at_) connect();
            return;
        }
        if (ready_pending_) {
            send_ready(now);
            if (ready_pending_) {
                // Still no connection: the broker is unreachable, which is silence too.
                if (now >= expires_at_) restart(now, false, false);
                return;
            }
        }
        // One heartbeat interval is what a zmesh broker needs at most to answer READY (it
        // answers at once); a plain MDP/0.1 broker never answers a ZMWC02 READY.
        if (v2_ && !heard_ && now >= ready_at_ + opts_.heartbeat) {
            fall_back();
            return;
        }
        if (holding()) {
            // Silence while a request is held is normal: a broker need not heartbeat a busy
            // worker (the zguide's does not), and reconnecting would lose the reply.
            held_until(now);
        } else if (now >= expires_at_) {
            restart(now, false, true);
            return;
        }
        if (now >= heartbeat_at_) {
            command(cmd::heartbeat);
            if (send(now))
                ++stats_.heartbeats;
            else
                heartbeat_at_ = now + opts_.heartbeat; // at the high-water mark: skip this one
        }
    }

    /// When tick() next has something to do, if no message arrives first.
    [[nodiscard]] clock::time_point next_duty() const noexcept {
        if (!socket_) return reconnect_at_;
        if (ready_pending_) return expires_at_; // or earlier, when the socket becomes writable
        auto next = std::min(heartbeat_at_, expires_at_);
        if (v2_ && !heard_) next = std::min(next, ready_at_ + opts_.heartbeat);
        return next;
    }

    std::optional<message> recv(milliseconds timeout) {
        check_open();
        if (last_) {
            last_ = reply_token(); // abandoned: the hold ends now
            held_until(clock::now());
        }
        auto r = take(timeout);
        if (!r) return std::nullopt;
        last_ = std::move(r->token);
        last_header_ = std::move(r->header);
        last_deadline_ = r->deadline;
        return std::move(r->body);
    }

    std::optional<held_request> take(milliseconds timeout) {
        check_open();
        const auto deadline = clock::now() + std::min(timeout, max_duration);
        try {
            for (;;) {
                drain(true);
                if (!queue_.empty()) {
                    std::optional<held_request> r(std::move(queue_.front()));
                    queue_.pop_front();
                    r->token.hold_ = hold_;
                    held_until(clock::now());
                    ++stats_.requests;
                    return r;
                }
                auto now = clock::now();
                tick(now);
                check_open(); // a refusal read by drain() closed the worker
                now = clock::now();
                if (now >= deadline) return std::nullopt;
                // Sleep until the first of: the caller's deadline, the next duty (heartbeat,
                // expiry, ZMWC02 probe, end of the reconnect backoff) or a message; while READY
                // waits for the connection, until the socket can take it.
                const auto next = std::min(deadline, next_duty());
                const auto wait = std::chrono::ceil<milliseconds>(next - now);
                if (wait <= milliseconds(0)) continue;
                if (!socket_) {
                    std::this_thread::sleep_for(wait);
                    continue;
                }
                const short events = ready_pending_ ? ZMQ_POLLIN | ZMQ_POLLOUT : ZMQ_POLLIN;
                zmq::pollitem_t item{socket_.handle(), 0, events, 0};
                // Latency mode: a zero-timeout poll (it still sees ETERM), then look again.
                poll(item, opts_.spin ? milliseconds(0) : wait);
            }
        } catch (const context_terminated&) {
            terminate();
            return std::nullopt;
        }
    }

    static void poll(zmq::pollitem_t& item, milliseconds wait) {
        try {
            zmq::poll(&item, 1, wait);
        } catch (const zmq::error_t& e) {
            if (e.num() == ETERM) throw context_terminated{};
            if (e.num() != EINTR) throw;
        }
    }

    void reply(message&& body, std::string_view type) {
        check_open();
        if (!last_) throw error(errc::invalid_argument, "mdp::worker::reply: no pending request");
        reply(std::move(last_), std::move(body), type);
    }

    void reply(reply_token&& t, message&& body, std::string_view type) {
        check_open();
        if (reserved_type(type))
            throw error(errc::invalid_argument, "mdp::worker::reply: the reply type '" +
                                                    std::string(type) +
                                                    "' is reserved (refuse() refuses)");
        finish(std::move(t), std::move(body), type, ending::reply);
    }

    void refuse(std::string_view reason) {
        check_open();
        if (!last_) throw error(errc::invalid_argument, "mdp::worker::refuse: no pending request");
        refuse(std::move(last_), reason);
    }

    void refuse(reply_token&& t, std::string_view reason) {
        check_open();
        if (v2_) {
            finish(std::move(t), refusal_body(reason), refused_type, ending::refusal);
        } else {
            // MDP/0.1 has no reply type: the error convention of docs/protocol.md instead. The
            // parts kept by partial() are not sent: a refusal replaces the whole reply.
            t.parts_.clear();
            message body;
            body.push_back(error_type);
            body.push_back(std::string_view("422"));
            body.push_back(reason);
            finish(std::move(t), std::move(body), {}, ending::refusal);
        }
    }

    void fail(std::string_view status, std::string_view reason) {
        check_open();
        if (!last_) throw error(errc::invalid_argument, "mdp::worker::fail: no pending request");
        fail(std::move(last_), status, reason);
    }

    void fail(reply_token&& t, std::string_view status, std::string_view reason) {
        check_open();
        const bool digits = status.size() == 3 && std::all_of(status.begin(), status.end(), [](char c) {
                                return c >= '0' && c <= '9';
                            });
        if (!digits)
            throw error(errc::invalid_argument,
                        "mdp::worker::fail: the status must be 3 digits, not '" +
                            printable_service_name(status) + "'");
        // ZMWC02: the type says it is an error; MDPW01 has no type, so the body does.
        t.parts_.clear();
        message body;
        if (!v2_) body.push_back(error_type);
        body.push_back(status);
        body.push_back(reason);
        finish(std::move(t), std::move(body), v2_ ? error_type : std::string_view{}, ending::failure);
    }

    static message refusal_body(std::string_view reason) {
        message body;
        body.push_back(reason);
        return body;
    }

    /// Sends the FINAL (ZMWC02) or REPLY (MDPW01) that ends @p t's request, and ends its hold.
    enum class ending { reply, refusal, failure };

    void finish(reply_token&& t, message&& body, std::string_view type, ending how) {
        reply_token token(std::move(t)); // consumed whatever happens next
        if (!token)
            throw error(errc::invalid_argument,
                        how == ending::refusal   ? "mdp::worker::refuse: empty reply_token"
                        : how == ending::failure ? "mdp::worker::fail: empty reply_token"
                                                 : "mdp::worker::reply: empty reply_token");
        if (opts_.replay_window.count() > 0 && v2_ && token.request_id_ && how != ending::refusal)
            keep_reply(*token.request_id_, reply_header(token, type), body);
        if (token.epoch_ != epoch_ || !socket_) {
            ++stats_.replies_dropped;
            return;
        }
        build_final(token, std::move(body), type);
        try {
            if (send_reply(token)) {
                ++stats_.replies;
                if (how == ending::refusal) ++stats_.refusals;
                if (how == ending::failure) ++stats_.failures;
            } else {
                ++stats_.replies_dropped;
            }
        } catch (const context_terminated&) {
            terminate();
            return;
        }
        token = reply_token(); // the hold ends with the reply
        held_until(clock::now());
    }

    /// Puts the FINAL or REPLY for @p token's request in outgoing_. Takes the token's client,
    /// tag and kept parts: the token is spent.
    void build_final(reply_token& token, message&& body, std::string_view type) {
        zmq::message_t head = v2_ ? reply_header(token, type) : zmq::message_t();
        message& out = command(cmd::final);
        if (v2_) out.push_back(std::move(token.tag_));
        out.push_back(std::move(token.client_));
        out.push_back(zmq::message_t());
        if (v2_) out.push_back(std::move(head));
        token.parts_.move_tail_to(0, out); // MDPW01: what partial() kept comes first
        body.move_tail_to(0, out);
    }

    /// The header of a PARTIAL or FINAL: a fresh id, `co` = the request's (the broker sets it
    /// too; a relay or a log reading the worker's frames sees it without the broker), and the
    /// reply type. No `ts`, as in zmesh's requests: the id (UUIDv7) holds the creation time, and
    /// the broker keeps every reply for its de-duplication window, so each byte is kept too.
    static zmq::message_t reply_header(const reply_token& token, std::string_view type) {
        header h;
        h.id = message_id::generate();
        h.type = type;
        h.correlation_id = token.request_id_;
        return encode(h);
    }

    void partial(message&& body) {
        check_open();
        if (!last_)
            throw error(errc::invalid_argument, "mdp::worker::partial: no pending request");
        partial(last_, std::move(body));
    }

    void partial(reply_token& token, message&& body) {
        check_open();
        if (!token) throw error(errc::invalid_argument, "mdp::worker::partial: empty reply_token");
        if (token.epoch_ != epoch_ || !socket_) {
            ++stats_.replies_dropped;
            return;
        }
        if (!v2_) {
            // MDPW01 has no PARTIAL: the REPLY will carry these frames first.
            body.move_tail_to(0, token.parts_);
            ++stats_.partials;
            return;
        }
        zmq::message_t head = reply_header(token, {});
        message& out = command(cmd::partial);
        out.push_back(copy_of(token.tag_));
        out.push_back(copy_of(token.client_));
        out.push_back(zmq::message_t());
        out.push_back(std::move(head));
        body.move_tail_to(0, out);
        try {
            if (send_reply(token))
                ++stats_.partials;
            else
                ++stats_.replies_dropped;
        } catch (const context_terminated&) {
            terminate();
        }
    }

    [[nodiscard]] bool pending() const noexcept { return static_cast<bool>(last_); }

    /// Sends the FINAL, REPLY or PARTIAL in outgoing_. At the high-water mark it waits for room, reading broker
    /// traffic meanwhile so that heartbeats and DISCONNECT are still seen. @p token is the
    /// request's, still holding it, so that its wait counts as holding a request.
    /// @returns whether it was sent; false if the connection changed or was stuck.
    bool send_reply(const reply_token& token) {
        auto now = clock::now();
        auto st = outgoing_.send(socket_, zmq::send_flags::dontwait);
        if (st == send_status::sent) {
            sent(now);
            return true;
        }
        if (st == send_status::terminated) throw context_terminated{};
        ++stats_.reply_waits;
        // handle() may reuse outgoing_ (a DISCONNECT makes it register again), so the reply
        // waits in a message of its own.
        message pending(std::move(outgoing_));
        outgoing_.clear();
        // heartbeat × liveness: a broker that has taken nothing from us for that long would
        // have expired us by its own rule had it been reading our heartbeats, so it is not
        // merely slow. Waiting longer would only keep its unit of credit, and the request,
        // stuck at a broker that will never see the reply.
        const auto give_up = now + allowance_;
        for (;;) {
            const auto wait = std::chrono::ceil<milliseconds>(
                std::min(give_up, now + opts_.heartbeat) - now);
            zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN | ZMQ_POLLOUT, 0};
            if (wait > milliseconds(0)) poll(item, wait);
            drain(false);
            if (!socket_ || token.epoch_ != epoch_) return false; // DISCONNECT: started over
            now = clock::now();
            st = pending.send(socket_, zmq::send_flags::dontwait);
            if (st == send_status::sent) {
                sent(now);
                return true;
            }
            if (st == send_status::terminated) throw context_terminated{};
            if (now >= give_up) break;
        }
        log(log_level::warn,
            "mdp::worker: the connection to the broker at %s took no message for %lld ms (a "
            "reply for '%s' waited for room): dropping the reply and starting over on a new "
            "connection",
            endpoint_.c_str(), static_cast<long long>(allowance_.count()), service_.c_str());
        restart(now, false, true);
        return false;
    }

    void keepalive() {
        // A refusal seen here is reported by the next recv(), take() or reply(): a handler's
        // keepalive needs no error path.
        if (!refusal_.empty()) return;
        check_open();
        try {
            drain(false);
            if (refusal_.empty()) tick(clock::now());
        } catch (const context_terminated&) {
            terminate();
        }
    }

    /// The context is going away: the socket must be closed for zmq_ctx_term to return.
    void terminate() noexcept {
        socket_.close();
        open_ = false;
        queue_.clear();
        last_ = reply_token();
        last_header_.reset();
        last_deadline_.reset();
    }

    void close() noexcept {
        if (!open_) return;
        drop_socket(true);
        terminate();
    }
};

namespace {
// A template so that it can name the private impl through deduction.
template <class Impl> Impl& checked(const std::unique_ptr<Impl>& p) {
    if (!p) throw error(errc::not_running, "mdp::worker: used after move");
    return *p;
}
} // namespace

worker::worker(zmq::context_t& ctx, std::string broker_endpoint, std::string service,
               worker_options options)
    : impl_(std::make_unique<impl>(ctx, std::vector<std::string>{std::move(broker_endpoint)},
                                   std::move(service), options)) {}

worker::worker(zmq::context_t& ctx, std::vector<std::string> broker_endpoints, std::string service,
               worker_options options)
    : impl_(std::make_unique<impl>(ctx, std::move(broker_endpoints), std::move(service), options)) {}

worker::~worker() = default; // impl's destructor sends DISCONNECT
worker::worker(worker&&) noexcept = default;
worker& worker::operator=(worker&&) noexcept = default;

std::optional<message> worker::recv(std::chrono::milliseconds timeout) {
    return checked(impl_).recv(timeout);
}

std::optional<held_request> worker::take(std::chrono::milliseconds timeout) {
    return checked(impl_).take(timeout);
}

void worker::reply(message&& body, std::string_view type) {
    checked(impl_).reply(std::move(body), type);
}

void worker::reply(reply_token&& token, message&& body, std::string_view type) {
    checked(impl_).reply(std::move(token), std::move(body), type);
}

void worker::partial(message&& body) { checked(impl_).partial(std::move(body)); }

void worker::partial(reply_token& token, message&& body) {
    checked(impl_).partial(token, std::move(body));
}

void worker::refuse(std::string_view reason) { checked(impl_).refuse(reason); }

void worker::fail(std::string_view status, std::string_view reason) {
    checked(impl_).fail(status, reason);
}

void worker::fail(reply_token&& token, std::string_view status, std::string_view reason) {
    checked(impl_).fail(std::move(token), status, reason);
}

void worker::refuse(reply_token&& token, std::string_view reason) {
    checked(impl_).refuse(std::move(token), reason);
}

const header* worker::current_header() const noexcept {
    return impl_ && impl_->pending() && impl_->last_header_ ? &*impl_->last_header_ : nullptr;
}

std::optional<std::chrono::steady_clock::time_point> worker::deadline() const noexcept {
    return impl_ && impl_->pending() ? impl_->last_deadline_ : std::nullopt;
}

std::optional<std::chrono::milliseconds> worker::time_left() const {
    const auto d = deadline();
    if (!d) return std::nullopt;
    const auto now = clock::now();
    if (*d <= now) return milliseconds(0);
    return std::chrono::ceil<milliseconds>(*d - now);
}

void worker::keepalive() { checked(impl_).keepalive(); }

void worker::close() noexcept {
    if (impl_) impl_->close();
}

bool worker::is_open() const noexcept { return impl_ && impl_->open_; }

const std::string& worker::service() const noexcept {
    static const std::string none;
    return impl_ ? impl_->service_ : none;
}

bool worker::broker_answered() const noexcept { return impl_ && impl_->open_ && impl_->heard_; }

const std::string& worker::endpoint() const noexcept {
    static const std::string none;
    return impl_ ? impl_->endpoint_ : none;
}

std::uint32_t worker::credit() const noexcept { return impl_ ? impl_->credit_ : 0; }

worker_protocol worker::protocol() const noexcept {
    return impl_ && impl_->v2_ ? worker_protocol::zmesh : worker_protocol::mdp;
}

worker_stats worker::stats() const noexcept { return impl_ ? impl_->stats_ : worker_stats{}; }

zmq::socket_ref worker::socket() const noexcept {
    return impl_ ? zmq::socket_ref(impl_->socket_) : zmq::socket_ref();
}

} // namespace zmesh::mdp
