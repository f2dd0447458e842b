// SPDX-License-Identifier: MPL-2.0
// titanic.cpp — the Titanic node: TSP services, group commit of submissions, and the dispatcher.
//
// Everything runs on one thread, which is also the only user of the store (a store object is
// used by one thread at a time). The loop polls the sockets of all worker connections and of the
// busy dispatch clients together, then serves every submission that is readable at that moment
// across the request connections as one add_requests() batch: this is what turns concurrent
// submitters into one commit, and nothing is acknowledged before that commit returns.
//
// The dispatcher keeps up to dispatch_concurrency requests in flight. MDP/0.1 replies carry no
// request id, so with a plain MDP/0.1 broker (request_credit 1) each has its own client: one
// outstanding request per client is the only way to know which request a reply answers. With
// the zmesh broker all of them share one ZMCT03 client (docs/protocol.md), and each stored
// request is sent with its TSP id as its message id (after a failure, an id derived from it and
// the attempt: dispatch_id()), the same from every node. The broker executes a message id once
// ("Executed once"): a resend joins the request still queued or running, or gets the reply it
// kept. So when a node dies after dispatching a request, the node that takes the request over
// does not make the worker run it again (within the broker's dedupe window). Replies name their
// id, which names the slot.
//
// Work is taken from the store with claim() under the node's owner name and a lease, renewed
// while a request is in flight and released when the node stops: several nodes can share one
// store (PostgreSQL), and a dead node's requests go to another once its lease ends. Before
// sending to a service it asks the broker (8/MMI `mmi.service`) whether the service has workers,
// as rfc 9 suggests: a request for a service that is down then waits without burning its attempts
// and without sitting in the broker's queue, where it would expire or be executed after we have
// given up on it.
#include <zmesh/nodes/titanic.hpp>

#include "open_store.hpp"

#include <zmesh/error.hpp>
#include <zmesh/header.hpp>
#include <zmesh/log.hpp>
#include <zmesh/mdp/client.hpp>
#include <zmesh/mdp/durable_client.hpp>
#include <zmesh/mdp/protocol.hpp>
#include <zmesh/mdp/worker.hpp>
#include <zmesh/message.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <thread>

#include <unistd.h>
#include <utility>
#include <vector>

namespace zmesh::nodes {
namespace {

using steady = std::chrono::steady_clock;
using std::chrono::milliseconds;
namespace ts = titanic;

constexpr std::string_view service_request = "titanic.request";
constexpr std::string_view service_reply = "titanic.reply";
constexpr std::string_view service_close = "titanic.close";
/// First frame of a rejection by the zmesh broker or of a failing `zmesh worker --exec`.
constexpr std::string_view error_frame = "zmesh.error";
/// Longest wait in poll: bounds how late stop() and the worker heartbeats are seen.
constexpr milliseconds poll_cap{20};
/// How often the store is asked for due requests when nothing else prompts it.
constexpr milliseconds scan_interval{50};
/// Due requests looked at per scan beyond those that could be started: leaves room to skip
/// requests whose service is down without starving the others.
constexpr std::size_t scan_slack = 256;

ts::time_point wall_now() {
    return std::chrono::time_point_cast<milliseconds>(std::chrono::system_clock::now());
}

ts::frames to_frames(const message& m) {
    ts::frames out;
    out.reserve(m.size());
    for (const auto& f : m) out.push_back(to_string(f));
    return out;
}

message to_message(const ts::frames& f) {
    message out;
    for (const auto& s : f) out.push_back(std::string_view(s));
    return out;
}

message status(std::string_view code, std::string_view detail = {}) {
    message m;
    m.push_back(code);
    if (!detail.empty()) m.push_back(detail);
    return m;
}

void inc(std::atomic<std::uint64_t>& c, std::uint64_t n = 1) noexcept {
    c.fetch_add(n, std::memory_order_relaxed);
}

} // namespace

class titanic_node::impl {
  public:
    impl(zmq::context_t& ctx, titanic_config config) : ctx_(&ctx), config_(std::move(config)) {
        if (config_.broker_endpoints.empty()) config_.broker_endpoints.push_back(config_.broker_endpoint);
        for (const auto& b : config_.broker_endpoints)
            if (b.empty()) throw error(errc::invalid_argument, "titanic: empty broker endpoint");
        config_.broker_endpoint = config_.broker_endpoints.front();
        if (config_.request_connections == 0)
            throw error(errc::invalid_argument, "titanic: request connections must be positive");
        if (config_.request_credit == 0 || config_.request_credit > mdp::max_worker_credit)
            throw error(errc::invalid_argument, "titanic: request credit must be in 1..1024");
        if (config_.dispatch_concurrency == 0)
            throw error(errc::invalid_argument, "titanic: dispatch concurrency must be positive");
        if (config_.max_attempts == 0)
            throw error(errc::invalid_argument, "titanic: max attempts must be positive");
        if (config_.retry_initial <= milliseconds(0) || config_.retry_max < config_.retry_initial)
            throw error(errc::invalid_argument, "titanic: retry backoff out of range");
        if (config_.request_timeout <= milliseconds(0) || config_.service_poll <= milliseconds(0))
            throw error(errc::invalid_argument, "titanic: timeouts must be positive");
        if (config_.heartbeat <= milliseconds(0) || config_.liveness < 1)
            throw error(errc::invalid_argument, "titanic: heartbeat or liveness out of range");
        if (config_.claim_lease <= milliseconds(0))
            throw error(errc::invalid_argument, "titanic: claim lease must be positive");
        const std::string spec = config_.store_path.string();
        store_ = ts::open_store(spec, config_.sync == titanic_sync::full ? ts::sync_mode::full
                                                                          : ts::sync_mode::normal);
        store_name_ = ts::store_name(spec);
        std::random_device rd;
        rng_.seed((std::uint64_t{rd()} << 32) ^ rd());
        owner_ = config_.node_id;
        if (owner_.empty()) owner_ = ts::is_pg_target(spec) ? unique_owner() : "local";
    }

    void run() {
        {
            std::lock_guard lock(mutex_);
            if (running_) throw error(errc::invalid_argument, "titanic: already running");
            if (stop_requested_) return;
            running_ = true;
        }
        try {
            loop();
        } catch (...) {
            finish();
            throw;
        }
        finish();
    }

    void start() {
        std::lock_guard lock(mutex_);
        if (thread_.joinable() || running_)
            throw error(errc::invalid_argument, "titanic: already running");
        stop_requested_ = false;
        stop_.store(false);
        thread_ = std::thread([this] {
            try {
                run();
            } catch (const std::exception& e) {
                log(log_level::error, "titanic: loop ended: %s", e.what());
            }
        });
    }

    void stop() noexcept {
        {
            std::lock_guard lock(mutex_);
            stop_requested_ = true;
            stop_.store(true);
        }
        if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
    }

    bool running() const noexcept {
        std::lock_guard lock(mutex_);
        return running_;
    }

    titanic_stats stats() const noexcept {
        titanic_stats s;
        s.stored = stats_.stored.load();
        s.store_errors = stats_.store_errors.load();
        s.batches = stats_.batches.load();
        s.largest_batch = stats_.largest_batch.load();
        s.dispatched = stats_.dispatched.load();
        s.replied = stats_.replied.load();
        s.failures = stats_.failures.load();
        s.dead_lettered = stats_.dead_lettered.load();
        s.malformed = stats_.malformed.load();
        return s;
    }

  private:
    /// One request being dispatched. Plain MDP/0.1 (credit 1): each slot has its own client,
    /// since one outstanding request per client is what makes its reply unambiguous. With the
    /// zmesh extensions all slots share one ZMCT03 client and a slot is known by the message id
    /// of its current request.
    struct slot {
        enum class phase { idle, checking, busy };
        std::optional<mdp::client> client; // plain mode only
        message_id id;                     // ZMCT03: id of what it sent last
        std::size_t index = 0;             // its place in the slots
        phase state = phase::idle;
        ts::request_record request;
        steady::time_point deadline;
    };

    struct counters {
        std::atomic<std::uint64_t> stored{0}, store_errors{0}, batches{0}, largest_batch{0},
            dispatched{0}, replied{0}, failures{0}, dead_lettered{0}, malformed{0};
    };

    void finish() {
        shared_.reset(); // its socket must be closed for the context to terminate
        std::lock_guard lock(mutex_);
        running_ = false;
    }

    /// With credit, zmesh's ZMWC02; plain mode (credit 1) is for brokers that are not zmesh's,
    /// so it speaks MDP/0.1 from the start rather than after the fallback's one-heartbeat wait.
    mdp::worker make_worker(std::string_view service) {
        return mdp::worker(*ctx_, config_.broker_endpoints, std::string(service),
                           {.heartbeat = config_.heartbeat, .liveness = config_.liveness,
                            .credit = config_.request_credit,
                            .protocol = config_.request_credit > 1 ? mdp::worker_protocol::zmesh
                                                                   : mdp::worker_protocol::mdp,
                            .curve = config_.curve});
    }

    /// Plain mode is for brokers that are not zmesh's: MDP/0.1 clients, one per slot.
    mdp::client make_client() {
        return mdp::client(*ctx_, dispatch_broker(),
                           {.timeout = config_.request_timeout, .retries = 1, .window = 1,
                            .protocol = mdp::client_protocol::mdp, .curve = config_.curve});
    }

    /// A name no other node has: host, process and 32 random bits. A shared store needs one per
    /// node; a SQLite store's default is the fixed "local", so that a node restarted after a
    /// crash takes its predecessor's claims at once instead of after their lease.
    std::string unique_owner() {
        char host[256] = {};
        if (::gethostname(host, sizeof host - 1) != 0) host[0] = '\0';
        char rnd[9];
        std::snprintf(rnd, sizeof rnd, "%08x", static_cast<unsigned>(rng_() & 0xffffffffU));
        return std::string(host) + ":" + std::to_string(::getpid()) + ":" + rnd;
    }

    /// The zmesh extensions (workers with credit, a ZMCT03 client) are used unless the node is
    /// configured for a plain MDP/0.1 broker (request_credit 1).
    [[nodiscard]] bool zmesh_dispatch() const noexcept { return config_.request_credit > 1; }

    void loop() {
        std::vector<mdp::worker> submit;
        for (std::size_t i = 0; i < config_.request_connections; ++i)
            submit.push_back(make_worker(service_request));
        mdp::worker replies = make_worker(service_reply);
        mdp::worker closes = make_worker(service_close);
        std::vector<slot> slots(config_.dispatch_concurrency);
        for (std::size_t i = 0; i < slots.size(); ++i) slots[i].index = i;
        if (zmesh_dispatch())
            // A send never waits on the window: a slot only sends once its previous request was
            // answered or abandoned, so at most one request per slot is outstanding.
            open_shared(slots.size());
        else
            for (auto& s : slots) s.client.emplace(make_client());
        log(log_level::info, "titanic: serving TSP through %s, store %s, node %s",
            brokers_text().c_str(), store_name_.c_str(), owner_.c_str());

        std::vector<zmq::pollitem_t> items;
        std::vector<std::ptrdiff_t> submit_item(submit.size()); // its index in items, or -1
        std::vector<bool> readable(submit.size());
        auto next_sweep = steady::now();
        bool again = true; // something happened: look again at once instead of sleeping
        while (!stop_.load()) {
            items.clear();
            auto add = [&](zmq::socket_ref s) {
                if (s) items.push_back({s.handle(), 0, ZMQ_POLLIN, 0});
            };
            for (std::size_t i = 0; i < submit.size(); ++i) {
                submit_item[i] = submit[i].socket() ? static_cast<std::ptrdiff_t>(items.size()) : -1;
                add(submit[i].socket());
            }
            add(replies.socket());
            add(closes.socket());
            if (shared_)
                add(shared_->socket());
            else
                for (auto& s : slots)
                    if (s.state != slot::phase::idle) add(s.client->socket());
            try {
                zmq::poll(items.data(), items.size(), again ? milliseconds(0) : poll_cap);
            } catch (const zmq::error_t& e) {
                if (e.num() == ETERM) break;
                if (e.num() != EINTR) throw;
            }
            // Only connections with input are read, except in a periodic sweep over all of them:
            // an empty non-blocking read costs a system call, and with K connections that was
            // most of the loop. The sweep keeps every connection heartbeating and reconnecting.
            const auto now = steady::now();
            const bool sweep = now >= next_sweep;
            if (sweep) next_sweep = now + config_.heartbeat / 4;
            for (std::size_t i = 0; i < submit.size(); ++i)
                readable[i] = sweep || submit_item[i] < 0 ||
                              (items[static_cast<std::size_t>(submit_item[i])].revents & ZMQ_POLLIN);
            again = serve_submissions(submit, readable);
            again = serve(replies, [this](message& m) { return on_reply(m); }) || again;
            again = serve(closes, [this](message& m) { return on_close(m); }) || again;
            again = dispatch(slots) || again;
            if (now >= next_renewal_) {
                next_renewal_ = now + config_.claim_lease / 3;
                renew_claims();
            }
        }
        try {
            // Whatever it still holds goes to the other nodes now rather than after the lease.
            (void)store_->release(owner_);
        } catch (const std::exception& e) {
            log(log_level::warn, "titanic: releasing claims failed: %s", e.what());
        }
        for (auto& w : submit) w.close();
        replies.close();
        closes.close();
    }

    // ---- TSP services ------------------------------------------------------------------------

    /// Takes every submission waiting on the submission connections (one per connection with
    /// credit 1, up to the credit with more), stores them all in one transaction, and only then
    /// answers them.
    bool serve_submissions(std::vector<mdp::worker>& submit, const std::vector<bool>& readable) {
        batch_.clear();
        waiting_.clear();
        const auto now = wall_now();
        for (std::size_t i = 0; i < submit.size(); ++i) {
            if (!readable[i]) continue;
            auto& w = submit[i];
            for (std::uint32_t n = 0; n < config_.request_credit; ++n) {
                auto taken = w.take(milliseconds(0));
                if (!taken) break;
                take_submission(w, std::move(*taken), now);
            }
        }
        if (batch_.empty()) return false;
        try {
            store_->add_requests(batch_);
        } catch (const std::exception& e) {
            log(log_level::error, "titanic: storing %zu requests failed: %s", batch_.size(),
                e.what());
            inc(stats_.store_errors, batch_.size());
            for (auto& [w, token] : waiting_)
                w->reply(std::move(token), status("500", std::string("not stored: ") + e.what()));
            return true;
        }
        // Counted before the answers go out, so a submitter that has its "200" sees it counted.
        inc(stats_.stored, batch_.size());
        inc(stats_.batches);
        auto largest = stats_.largest_batch.load();
        while (largest < batch_.size() &&
               !stats_.largest_batch.compare_exchange_weak(largest, batch_.size())) {
        }
        for (std::size_t i = 0; i < batch_.size(); ++i)
            waiting_[i].first->reply(std::move(waiting_[i].second), status("200", batch_[i].id));
        dirty_ = true;
        return true;
    }

    /// Checks one titanic.request: a bad one is answered 400 at once, a good one joins batch_.
    void take_submission(mdp::worker& w, mdp::held_request&& taken, ts::time_point now) {
        message& m = taken.body;
        if (m.empty() || m.front().size() == 0) {
            inc(stats_.malformed);
            w.reply(std::move(taken.token),
                    status("400", "titanic.request expects [service][body...]"));
            return;
        }
        std::string service = to_string(m.front());
        if (service.starts_with("titanic.")) {
            inc(stats_.malformed);
            w.reply(std::move(taken.token),
                    status("400", "titanic.request cannot store a request for '" + service +
                                      "'"));
            return;
        }
        (void)m.pop_front();
        // zmesh extension (docs/titanic.md): a marker frame, then a zmesh header with the
        // request's time to live. Plain TSP clients never send the marker.
        std::optional<milliseconds> ttl;
        if (!m.empty() && view(m.front()) == mdp::titanic_header_marker) {
            std::error_code ec;
            std::optional<header> h;
            if (m.size() >= 2) h = decode_header(m[1], ec);
            if (!h) {
                inc(stats_.malformed);
                w.reply(std::move(taken.token),
                        status("400", "titanic.request: invalid zmesh header after the marker"));
                return;
            }
            if (h->ttl_ms > 0) ttl = milliseconds(h->ttl_ms);
            (void)m.pop_front();
            (void)m.pop_front();
        }
        batch_.push_back({.id = new_id(), .service = std::move(service),
                          .body = to_frames(m), .created = now, .ttl = ttl});
        waiting_.emplace_back(&w, std::move(taken.token));
    }

    template <class Handler> bool serve(mdp::worker& w, Handler handler) {
        bool any = false;
        for (int i = 0; i < 64; ++i) {
            auto m = w.recv(milliseconds(0));
            if (!m) break;
            any = true;
            message answer;
            try {
                answer = handler(*m);
            } catch (const std::exception& e) {
                answer = status("500", e.what());
            }
            w.reply(std::move(answer));
        }
        return any;
    }

    message on_reply(const message& m) {
        if (m.size() != 1) {
            inc(stats_.malformed);
            return status("400", "titanic.reply expects [id]");
        }
        const auto id = view(m[0]);
        auto r = store_->reply(id);
        switch (r.state) {
        case ts::reply_state::replied: {
            message out = to_message(r.body);
            out.push_front(std::string_view("200"));
            return out;
        }
        case ts::reply_state::pending:
            return status("300");
        case ts::reply_state::dead: {
            auto entry = store_->dlq_show(id);
            return status("500", "dead-lettered: " + (entry ? entry->reason : std::string()));
        }
        case ts::reply_state::unknown:
            break;
        }
        return status("400");
    }

    message on_close(const message& m) {
        if (m.size() != 1) {
            inc(stats_.malformed);
            return status("400", "titanic.close expects [id]");
        }
        (void)store_->close(view(m[0]));
        return status("200");
    }

    std::string new_id() {
        static constexpr char hex[] = "0123456789abcdef";
        std::string id(32, '0');
        for (std::size_t half = 0; half < 2; ++half) {
            auto bits = rng_();
            for (std::size_t i = 0; i < 16; ++i, bits >>= 4) id[half * 16 + i] = hex[bits & 0xF];
        }
        return id;
    }

    // ---- dispatcher --------------------------------------------------------------------------

    bool dispatch(std::vector<slot>& slots) {
        bool any = false;
        const auto now = steady::now();
        done_.clear();
        done_slots_.clear();
        if (shared_) {
            // One client for all slots: each reply names its slot by message id.
            for (;;) {
                std::optional<mdp::reply> r;
                try {
                    r = shared_->recv(milliseconds(0));
                } catch (const zmq::error_t& e) {
                    log(log_level::warn, "titanic: dispatch client failed: %s", e.what());
                }
                if (!r) break;
                any = true;
                // The client only returns ids it still awaits, and an id leaves by_id_ only once
                // its reply came or it was abandoned.
                auto it = by_id_.find(r->id);
                if (it == by_id_.end()) continue;
                slot& s = slots[it->second];
                by_id_.erase(it);
                if (s.state == slot::phase::idle || s.id != r->id) continue;
                on_dispatch_reply(s, *r, now);
            }
        }
        for (auto& s : slots) {
            if (s.state == slot::phase::idle) continue;
            if (!shared_) {
                std::optional<mdp::reply> r;
                try {
                    r = s.client->recv(milliseconds(0));
                } catch (const zmq::error_t& e) {
                    log(log_level::warn, "titanic: dispatch client failed: %s", e.what());
                }
                if (r) {
                    any = true;
                    on_dispatch_reply(s, *r, now);
                    continue;
                }
            }
            if (s.state != slot::phase::idle && now >= s.deadline) {
                any = true;
                timed_out(s);
            }
        }
        if (!done_.empty()) {
            try {
                inc(stats_.replied, store_->store_replies(done_, wall_now()));
            } catch (const std::exception& e) {
                // The requests stay pending and will be dispatched again: at least once.
                log(log_level::error, "titanic: storing %zu replies failed: %s", done_.size(),
                    e.what());
            }
            for (auto* s : done_slots_) release(*s);
        }
        return start_due(slots, now) || any;
    }

    /// A reply for slot @p s: the service check's answer, an error, or the service's reply
    /// (collected in done_, stored by dispatch() in one transaction).
    void on_dispatch_reply(slot& s, mdp::reply& r, steady::time_point now) {
        last_reply_ = now;
        if (s.state == slot::phase::checking) {
            const bool up = !r.body.empty() && view(r.body[0]) == "200";
            (up ? service_up_until_ : service_down_until_)[s.request.service] =
                now + config_.service_poll;
            if (up)
                send_request(s, now);
            else
                release(s);
        } else if (!r.body.empty() && view(r.body[0]) == error_frame) {
            std::string reason;
            for (std::size_t i = 1; i < r.body.size(); ++i) {
                if (i > 1) reason += ' ';
                reason += view(r.body[i]);
            }
            fail(s, reason.empty() ? std::string(error_frame) : reason);
        } else {
            done_.push_back({.id = s.request.id, .body = to_frames(r.body)});
            done_slots_.push_back(&s);
            s.state = slot::phase::idle; // not dispatched again before release() after the commit
        }
    }

    /// The message id a dispatch of @p r carries: its TSP id until its first failure, then the
    /// TSP id mixed with the time of the next attempt. Every node computes the same id for the
    /// same attempt (claim() does not change the time), so a node that takes over a dead node's
    /// request joins the execution the dead node started, or gets its kept reply, at the broker.
    /// A failure (error reply or timeout) or a replay from the dead-letter queue moves the time,
    /// hence the id: the broker keeps error replies too, and a retry under the old id would only
    /// get the old error back instead of running again.
    static message_id dispatch_id(const ts::request_record& r) {
        auto base = message_id::from_hex(r.id);
        if (!base) return message_id::generate();
        if (r.next_attempt == r.created) return *base;
        auto mix = [](std::uint64_t x) { // splitmix64's finaliser
            x += 0x9e3779b97f4a7c15ULL;
            x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
            x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
            return x ^ (x >> 31);
        };
        const auto t = static_cast<std::uint64_t>(r.next_attempt.time_since_epoch().count());
        const std::uint64_t lo = mix(t), hi = mix(lo ^ t);
        auto bytes = base->bytes();
        for (std::size_t i = 0; i < 8; ++i) {
            bytes[i] = static_cast<std::uint8_t>(bytes[i] ^ ((lo >> (8 * i)) & 0xffU));
            bytes[8 + i] = static_cast<std::uint8_t>(bytes[8 + i] ^ ((hi >> (8 * i)) & 0xffU));
        }
        return message_id(bytes);
    }

    /// Sends for slot @p s on its own client or on the shared ZMCT03 one: the request itself
    /// with dispatch_id() as message id, so the broker runs one attempt once whichever node
    /// sends it; anything else (the mmi.service check) with a fresh id.
    bool send_for(slot& s, std::string_view service, message&& body, bool the_request) {
        std::error_code ec;
        if (!shared_) return s.client->send(service, std::move(body), ec);
        const message_id id = the_request ? dispatch_id(s.request) : message_id::generate();
        auto sent = shared_->send(service, std::move(body), mdp::request_options{.id = id}, ec);
        if (!sent) return false;
        s.id = *sent;
        by_id_[s.id] = s.index;
        return true;
    }

    /// Hands due requests to idle clients.
    bool start_due(std::vector<slot>& slots, steady::time_point now) {
        const auto idle = static_cast<std::size_t>(std::count_if(
            slots.begin(), slots.end(), [](const slot& s) { return s.state == slot::phase::idle; }));
        if (idle == 0 || (!dirty_ && now < next_scan_)) return false;
        dirty_ = false;
        next_scan_ = now + scan_interval;
        const auto wall = wall_now();
        std::vector<ts::request_record> due;
        try {
            // Claimed, so that no other node takes them while this one works on them. Claims
            // this node holds already come back too: their lease is extended.
            due = store_->claim(owner_, wall, config_.claim_lease,
                                in_flight_.size() + idle + scan_slack);
        } catch (const std::exception& e) {
            log(log_level::error, "titanic: claiming due requests failed: %s", e.what());
            return false;
        }
        bool any = false;
        auto next = slots.begin();
        for (auto& r : due) {
            if (in_flight_.contains(r.id)) continue;
            if (r.ttl && r.created + *r.ttl <= wall) {
                dead_letter(r.id, "ttl of " + std::to_string(r.ttl->count()) + " ms expired");
                continue;
            }
            if (auto down = service_down_until_.find(r.service);
                down != service_down_until_.end() && now < down->second)
                continue;
            next = std::find_if(next, slots.end(),
                                [](const slot& s) { return s.state == slot::phase::idle; });
            if (next == slots.end()) break;
            any = true;
            begin(*next, std::move(r), now);
        }
        return any;
    }

    void begin(slot& s, ts::request_record r, steady::time_point now) {
        s.request = std::move(r);
        in_flight_.insert(s.request.id);
        auto up = service_up_until_.find(s.request.service);
        if (up != service_up_until_.end() && now < up->second) {
            send_request(s, now);
            return;
        }
        if (!send_for(s, "mmi.service", message{s.request.service}, false)) {
            renew(s);
            release(s);
            return;
        }
        s.state = slot::phase::checking;
        s.deadline = now + config_.request_timeout;
    }

    void send_request(slot& s, steady::time_point now) {
        if (!send_for(s, s.request.service, to_message(s.request.body), true)) {
            // Not sent at all (broker unreachable and the pipe full): no attempt was made.
            renew(s);
            release(s);
            return;
        }
        inc(stats_.dispatched);
        s.state = slot::phase::busy;
        s.deadline = now + config_.request_timeout;
    }

    void timed_out(slot& s) {
        // With several brokers, silence since this slot sent means its broker may be gone (or
        // has become passive): the dispatch moves to the next one. Once per silence: the other
        // slots that sent before the move do not move it again.
        const auto sent = s.deadline - config_.request_timeout;
        if (config_.broker_endpoints.size() > 1 && last_reply_ < sent && moved_at_ <= sent) {
            dispatch_index_ = (dispatch_index_ + 1) % config_.broker_endpoints.size();
            moved_at_ = steady::now();
            log(log_level::warn, "titanic: no reply from the broker within %lld ms; dispatching "
                "through %s now", static_cast<long long>(config_.request_timeout.count()),
                dispatch_broker().c_str());
            if (shared_) open_shared(shared_window_);
        }
        // A late reply would be taken for the answer to the next request: start afresh.
        renew(s);
        if (s.state == slot::phase::busy)
            fail(s, "no reply within " + std::to_string(config_.request_timeout.count()) + " ms");
        else
            release(s);
    }

    /// Counts a failed attempt; the request is retried after a backoff that doubles per failure,
    /// or dead-lettered after max_attempts or once its TTL would pass before the retry.
    void fail(slot& s, const std::string& reason) {
        inc(stats_.failures);
        const auto& r = s.request;
        const auto n = r.attempts + 1;
        auto delay = config_.retry_initial;
        for (std::uint32_t i = 1; i < n && delay < config_.retry_max; ++i) delay *= 2;
        delay = std::min(delay, config_.retry_max);
        const auto wall = wall_now();
        try {
            auto attempts = store_->record_failure(r.id, wall + delay);
            if (attempts && *attempts >= config_.max_attempts)
                dead_letter(r.id, "failed " + std::to_string(*attempts) + " attempts; last: " +
                                      reason);
            else if (attempts && r.ttl && r.created + *r.ttl <= wall + delay)
                dead_letter(r.id, "ttl of " + std::to_string(r.ttl->count()) +
                                      " ms expired; last attempt: " + reason);
            else
                log(log_level::debug, "titanic: request %s for '%s' failed (%s), retry in %lld ms",
                    r.id.c_str(), r.service.c_str(), reason.c_str(),
                    static_cast<long long>(delay.count()));
        } catch (const std::exception& e) {
            log(log_level::error, "titanic: recording a failure of %s failed: %s", r.id.c_str(),
                e.what());
        }
        release(s);
    }

    void dead_letter(const std::string& id, const std::string& reason) {
        try {
            if (store_->move_to_dlq(id, reason, wall_now())) {
                inc(stats_.dead_lettered);
                log(log_level::warn, "titanic: request %s dead-lettered: %s", id.c_str(),
                    reason.c_str());
            }
        } catch (const std::exception& e) {
            log(log_level::error, "titanic: dead-lettering %s failed: %s", id.c_str(), e.what());
        }
    }

    /// Forgets what @p s sent: a late reply must not be taken for the answer to its next
    /// request. ZMCT03, the shared client drops it by its id (a resend with that id later joins
    /// the request at the broker or gets its kept reply); plain, the slot gets a new socket.
    void renew(slot& s) {
        if (shared_) {
            (void)shared_->abandon(s.id);
            by_id_.erase(s.id);
            return;
        }
        s.client.reset();
        s.client.emplace(make_client());
    }

    /// Extends the claims of the requests in flight, so that a dispatch longer than the lease
    /// is not taken over by another node while this one still waits for its reply.
    void renew_claims() {
        if (in_flight_.empty()) return;
        held_.assign(in_flight_.begin(), in_flight_.end());
        try {
            const auto n = store_->renew(owner_, held_, wall_now() + config_.claim_lease);
            if (n < held_.size())
                log(log_level::debug, "titanic: %zu of %zu claims were lost (lease ended)",
                    held_.size() - n, held_.size());
        } catch (const std::exception& e) {
            log(log_level::warn, "titanic: renewing claims failed: %s", e.what());
        }
    }

    void release(slot& s) {
        in_flight_.erase(s.request.id);
        s.state = slot::phase::idle;
        dirty_ = true;
    }

    zmq::context_t* ctx_;
    titanic_config config_;
    std::unique_ptr<ts::store> store_;
    std::mt19937_64 rng_;
    counters stats_;
    // Loop thread only.
    std::set<std::string, std::less<>> in_flight_;              // ids held by a dispatch slot
    std::optional<mdp::client> shared_;  // the shared dispatch client (ZMCT03)
    std::size_t shared_window_ = 1;
    std::size_t dispatch_index_ = 0;      // the broker dispatches go through (broker_endpoints)
    steady::time_point last_reply_{};     // the last dispatch reply
    steady::time_point moved_at_{};       // the last move to the next broker

    [[nodiscard]] const std::string& dispatch_broker() const {
        return config_.broker_endpoints[dispatch_index_];
    }

    [[nodiscard]] std::string brokers_text() const {
        std::string out;
        for (const auto& b : config_.broker_endpoints) out += (out.empty() ? "" : ",") + b;
        return out;
    }

    /// (Re)opens the shared ZMCT03 dispatch client on dispatch_broker(). What the old one awaited
    /// times out in its slots and is sent again, with the same ids, through the new one.
    void open_shared(std::size_t window) {
        shared_window_ = window;
        shared_.reset();
        // A send never waits on the window: a slot only sends once its previous request was
        // answered or abandoned, so at most one request per slot is outstanding.
        shared_.emplace(*ctx_, dispatch_broker(),
                        mdp::client_options{.timeout = config_.request_timeout, .retries = 1,
                                            .window = window,
                                            .protocol = mdp::client_protocol::zmesh,
                                            .curve = config_.curve});
    }
    std::map<message_id, std::size_t> by_id_; // ids awaited on it -> their slot
    std::string owner_;                  // the name this node claims work under
    std::string store_name_;             // the store, for messages (no password)
    std::vector<std::string> held_;      // renew_claims() scratch
    steady::time_point next_renewal_{};
    std::vector<ts::reply_record> done_; // replies of one dispatch() round, stored together
    std::vector<slot*> done_slots_;      // their slots
    std::map<std::string, steady::time_point, std::less<>> service_up_until_;
    std::map<std::string, steady::time_point, std::less<>> service_down_until_;
    bool dirty_ = true;                  // something changed: scan the store without waiting
    std::vector<ts::new_request> batch_; // submissions of one commit; reused to keep its storage
    std::vector<std::pair<mdp::worker*, mdp::reply_token>> waiting_; // who submitted batch_[i]
    steady::time_point next_scan_{};
    // Shared.
    std::atomic<bool> stop_{false};
    mutable std::mutex mutex_;           // guards running_, stop_requested_ and thread_
    bool running_ = false;
    bool stop_requested_ = false;
    std::thread thread_;
};

titanic_node::titanic_node(zmq::context_t& ctx, titanic_config config)
    : impl_(std::make_unique<impl>(ctx, std::move(config))) {}

titanic_node::~titanic_node() { stop(); }

void titanic_node::run() { impl_->run(); }

void titanic_node::start() { impl_->start(); }

void titanic_node::stop() noexcept { impl_->stop(); }

bool titanic_node::running() const noexcept { return impl_->running(); }

titanic_stats titanic_node::stats() const noexcept { return impl_->stats(); }

} // namespace zmesh::nodes
