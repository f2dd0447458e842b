// SPDX-License-Identifier: MPL-2.0
// mdp/worker.cpp — the worker side of the Majordomo Protocol 0.1, and of zmesh's workers with
// credit.
//
// Worker side of 7/MDP, https://rfc.zeromq.org/spec/7/, with the heartbeat rules of the spec:
// any valid broker command but DISCONNECT counts as life, HEARTBEAT is sent only when nothing
// else went out for an interval, heartbeat × liveness of silence means the broker is dead. Broker
// input is untrusted: anything that is not a well-formed broker-to-worker command under the
// worker's own header (MDPW01, or ZMWC01 with credit > 1) is counted and dropped.
//
// With credit (mdp/protocol.hpp) the commands are MDP/0.1's plus an 8-byte tag before the client
// address of REQUEST and REPLY; the broker matches a REPLY to its request by that tag, so the
// worker only carries it from one to the other, untouched, inside the reply_token.
#include <zmesh/error.hpp>
#include <zmesh/mdp/protocol.hpp>
#include <zmesh/mdp/worker.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <deque>
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

} // namespace

struct worker::impl {
    zmq::context_t* ctx_;
    std::string endpoint_;
    std::string service_;
    worker_options opts_;
    bool with_credit_;                 // speaks ZMWC01 (credit > 1) rather than MDPW01
    std::string_view header_;          // mdp::worker_v1 or mdp::worker_credit_v1
    std::string credit_text_;          // the READY credit frame (ZMWC01)
    zmq::socket_t socket_;             // empty while waiting to reconnect, and after close
    bool open_ = true;
    std::uint64_t epoch_ = 0;          // new per socket; requests belong to the one they came on
    clock::time_point heartbeat_at_;   // next HEARTBEAT, unless something else is sent first
    clock::time_point expires_at_;     // broker declared dead if silent until then
    clock::time_point reconnect_at_;   // when to open the next socket (socket_ empty)
    milliseconds backoff_;             // wait before the next silent reconnect
    std::deque<held_request> queue_;   // requests read but not yet returned by recv()/take()
    message incoming_;                 // reused for every broker message: keeps its frame storage
    message outgoing_;                 // reused for every command sent, likewise
    reply_token last_;                 // the request recv() last returned, for reply(message&&)
    worker_stats stats_;

    impl(zmq::context_t& ctx, std::string endpoint, std::string service, worker_options opts)
        : ctx_(&ctx), endpoint_(std::move(endpoint)), service_(std::move(service)), opts_(opts),
          with_credit_(opts.credit > 1), header_(with_credit_ ? worker_credit_v1 : worker_v1),
          credit_text_(std::to_string(opts.credit)), backoff_(opts.reconnect_initial) {
        auto positive = [](milliseconds d) { return d > milliseconds(0) && d <= max_duration; };
        if (service_.empty())
            throw error(errc::invalid_argument, "mdp::worker: empty service name");
        if (is_broker_service(service_))
            throw error(errc::invalid_argument,
                        "mdp::worker: service '" + service_ + "' is answered by the broker itself");
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
        if (!open_) throw error(errc::not_running, "mdp::worker: closed");
    }

    /// Starts outgoing_ as "" header command: the start of every worker command.
    message& command(worker_command c) {
        outgoing_.clear();
        outgoing_.push_back(zmq::message_t());
        outgoing_.push_back(header_);
        outgoing_.push_back(command_frame(c));
        return outgoing_;
    }

    /// New socket, new identity: the broker sees a new worker, which is what re-registering is.
    void connect() {
        zmq::socket_t s(*ctx_, zmq::socket_type::dealer);
        // A socket being replaced holds nothing worth delivering (a dead broker's session).
        s.set(zmq::sockopt::linger, 0);
        // ZMQ_IMMEDIATE stays 0 so READY is queued until the connection is up; with 1 a READY
        // sent before the broker accepts would fail instead of waiting for it.
        s.connect(endpoint_);
        socket_ = std::move(s);
        epoch_ = next_epoch();
        queue_.clear();
        const auto now = clock::now();
        // A fresh registration gets the full liveness allowance to hear from the broker.
        expires_at_ = now + opts_.heartbeat * opts_.liveness;
        heartbeat_at_ = now + opts_.heartbeat;
        // The credit is granted anew with each registration: the broker forgot the old socket's
        // requests, so none of them still holds a unit.
        message& ready = command(worker_command::ready);
        ready.push_back(service_);
        if (with_credit_) ready.push_back(credit_text_);
        send(now);
    }

    /// Sends outgoing_ without blocking; anything sent postpones the next HEARTBEAT (spec: no
    /// heartbeats while other traffic flows). outgoing_ is left empty either way.
    bool send(clock::time_point now) {
        const auto st = outgoing_.send(socket_, zmq::send_flags::dontwait);
        if (st != send_status::sent) outgoing_.clear(); // refused: nothing of it is kept
        if (st == send_status::terminated) throw context_terminated{};
        if (st != send_status::sent) return false;
        heartbeat_at_ = now + opts_.heartbeat;
        return true;
    }

    /// Drops the socket and everything received on it. After DISCONNECT the spec says to
    /// re-register at once; after silence we back off exponentially so that a broker that is
    /// down is not hammered, and so that many workers do not reconnect in lockstep.
    void restart(clock::time_point now, bool immediately) {
        socket_.close();
        queue_.clear();
        ++stats_.reconnects;
        if (immediately) {
            connect();
            return;
        }
        reconnect_at_ = now + backoff_;
        backoff_ = std::min(backoff_ * 2, opts_.reconnect_max);
    }

    void heard(clock::time_point now) {
        expires_at_ = now + opts_.heartbeat * opts_.liveness;
        backoff_ = opts_.reconnect_initial;
    }

    /// Whether @p m is a well-formed REQUEST: "" header 0x02 [tag] client "" body..., with the
    /// tag (ZMWC01 only) exactly request_tag_size bytes and the client address not empty.
    [[nodiscard]] bool valid_request(const message& m) const noexcept {
        const std::size_t client = with_credit_ ? 4 : 3;
        return m.size() >= client + 2 && (!with_credit_ || m[3].size() == request_tag_size) &&
               m[client].size() != 0 && m[client + 1].size() == 0;
    }

    void handle(message& m, clock::time_point now) {
        // Only the worker's own header: a ZMWC01 worker's broker never speaks MDPW01 to it, and
        // an MDPW01 REQUEST has no tag to answer with.
        if (m.size() < 3 || m[0].size() != 0 || view(m[1]) != header_) {
            ++stats_.malformed;
            return;
        }
        const auto cmd = parse_worker_command(m[2]);
        if (cmd == worker_command::request && valid_request(m)) {
            heard(now);
            held_request r;
            if (with_credit_) {
                r.token.tag_ = std::move(m[3]);
                r.token.client_ = std::move(m[4]);
                m.move_tail_to(6, r.body);
            } else {
                r.token.client_ = std::move(m[3]);
                m.move_tail_to(5, r.body);
            }
            r.token.epoch_ = epoch_;
            queue_.push_back(std::move(r));
        } else if (cmd == worker_command::heartbeat && m.size() == 3) {
            heard(now);
        } else if (cmd == worker_command::disconnect && m.size() == 3) {
            ++stats_.disconnects;
            backoff_ = opts_.reconnect_initial;
            restart(now, true);
        } else {
            // Unknown command, READY/REPLY (worker-to-broker only) or wrong frame count.
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

    /// Heartbeat, expiry and reconnect duties that are due at @p now.
    void tick(clock::time_point now) {
        if (!socket_) {
            if (now >= reconnect_at_) connect();
            return;
        }
        if (now >= expires_at_) {
            restart(now, false);
            return;
        }
        if (now >= heartbeat_at_) {
            command(worker_command::heartbeat);
            if (send(now))
                ++stats_.heartbeats;
            else
                heartbeat_at_ = now + opts_.heartbeat; // at the high-water mark: skip this one
        }
    }

    std::optional<message> recv(milliseconds timeout) {
        check_open();
        last_ = reply_token();
        auto r = take(timeout);
        if (!r) return std::nullopt;
        last_ = std::move(r->token);
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
                    ++stats_.requests;
                    return r;
                }
                auto now = clock::now();
                tick(now);
                now = clock::now();
                if (now >= deadline) return std::nullopt;
                // Sleep until the first of: the caller's deadline, the next heartbeat, the
                // broker's expiry, or (socket closed) the end of the reconnect backoff.
                const auto next =
                    socket_ ? std::min({deadline, heartbeat_at_, expires_at_})
                            : std::min(deadline, reconnect_at_);
                const auto wait = std::chrono::ceil<milliseconds>(next - now);
                if (wait <= milliseconds(0)) continue;
                if (!socket_) {
                    std::this_thread::sleep_for(wait);
                    continue;
                }
                zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
                try {
                    zmq::poll(&item, 1, wait);
                } catch (const zmq::error_t& e) {
                    if (e.num() == ETERM) throw context_terminated{};
                    if (e.num() != EINTR) throw;
                }
            }
        } catch (const context_terminated&) {
            terminate();
            return std::nullopt;
        }
    }

    void reply(message&& body) {
        check_open();
        if (!last_) throw error(errc::invalid_argument, "mdp::worker::reply: no pending request");
        reply(std::move(last_), std::move(body));
    }

    void reply(reply_token&& t, message&& body) {
        check_open();
        reply_token token(std::move(t)); // consumed whatever happens next
        if (!token) throw error(errc::invalid_argument, "mdp::worker::reply: empty reply_token");
        if (token.epoch_ != epoch_ || !socket_) {
            ++stats_.replies_dropped;
            return;
        }
        message& out = command(worker_command::reply);
        if (with_credit_) out.push_back(std::move(token.tag_));
        out.push_back(std::move(token.client_));
        out.push_back(zmq::message_t());
        body.move_tail_to(0, out);
        try {
            if (send(clock::now()))
                ++stats_.replies;
            else
                ++stats_.replies_dropped;
        } catch (const context_terminated&) {
            terminate();
        }
    }

    void keepalive() {
        check_open();
        try {
            drain(false);
            tick(clock::now());
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
    }

    void close() noexcept {
        if (!open_) return;
        if (socket_) {
            try {
                socket_.set(zmq::sockopt::linger, static_cast<int>(opts_.disconnect_linger.count()));
                (void)command(worker_command::disconnect).send(socket_, zmq::send_flags::dontwait);
            } catch (const zmq::error_t&) {
                // Best effort: the broker will expire us after heartbeat × liveness anyway.
            }
        }
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
    : impl_(std::make_unique<impl>(ctx, std::move(broker_endpoint), std::move(service), options)) {}

worker::~worker() = default; // impl's destructor sends DISCONNECT
worker::worker(worker&&) noexcept = default;
worker& worker::operator=(worker&&) noexcept = default;

std::optional<message> worker::recv(std::chrono::milliseconds timeout) {
    return checked(impl_).recv(timeout);
}

std::optional<held_request> worker::take(std::chrono::milliseconds timeout) {
    return checked(impl_).take(timeout);
}

void worker::reply(message&& body) { checked(impl_).reply(std::move(body)); }

void worker::reply(reply_token&& token, message&& body) {
    checked(impl_).reply(std::move(token), std::move(body));
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

std::uint32_t worker::credit() const noexcept { return impl_ ? impl_->opts_.credit : 0; }

worker_stats worker::stats() const noexcept { return impl_ ? impl_->stats_ : worker_stats{}; }

zmq::socket_ref worker::socket() const noexcept {
    return impl_ ? zmq::socket_ref(impl_->socket_) : zmq::socket_ref();
}

} // namespace zmesh::mdp
