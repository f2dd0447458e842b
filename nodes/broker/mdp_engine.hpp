// SPDX-License-Identifier: MPL-2.0
// mdp_engine.hpp — internal: the Majordomo (7/MDP, 18/MDP and zmesh's extensions) state machine of
// the broker node.
//
// The engine owns no socket and no clock. The broker glue hands it each message read from the
// ROUTER socket, periodic ticks with the current time, and the connections libzmq reports
// closed; the engine answers through an outbox (the ROUTER socket: non-blocking,
// ROUTER_MANDATORY). Keeping time and I/O out makes expiry and re-queue testable step by step,
// and lets a fuzz harness drive the whole engine (tests/fuzz/fuzz_broker.cpp).
//
// Layers: codec/ turns frames into typed commands (one codec per protocol header);
// worker_table.hpp says what each worker command does in each worker state, citing 7/MDP;
// this engine performs it.
//
// State, per the 7/MDP roles:
//   service  a name, its waiting requests (a retry queue, then per priority one lane per client
//            served in turn), and an LRU list of the workers that can take one more (idle 7/MDP
//            workers, workers with credit left).
//   worker   a routing id, its service, when it expires, and the requests it holds: at most
//            one for a 7/MDP worker (MDPW01), up to its credit for a zmesh worker with credit
//            (ZMWC01, docs/broker.md), each in a numbered slot.
//   client   a routing id, the opaque handle workers see instead of it (client_handles.hpp), its
//            connection's descriptor, its lanes, and what it holds of broker memory.
//   request  its client, its header (ZMCT02/03), the body frames, its deadline, and how many
//            workers it was sent to.
// A request lives in exactly one place: a lane, a retry queue, a worker's slot, or the free pool.
// Waiting requests are also in a min-heap by deadline, so that each leaves the queue the moment
// its deadline passes (docs/protocol.md).
//
// Executed once (docs/protocol.md): a ZMCT02/03 request is known by its message id while it is
// pending (a retry joins it) and its reply is kept for dedupe_window after the FINAL (a retry gets
// it). Requests that expire, run out of attempts or are refused go to the dead-letter queue,
// served as zmesh.dlq.
//
// Connections that close (a peer killed, a socket closed) are reported by the broker glue from
// libzmq's socket monitor, matched to peers by the descriptor each message came on (ZMQ_SRCFD):
// a dead worker's requests move on at once instead of after heartbeat expiry.
#pragma once

#include "client_handles.hpp"
#include "kept_store.hpp"
#include "pending_index.hpp"
#include "codec/commands.hpp"
#include "memory_meter.hpp"
#include "worker_table.hpp"

#include <zmesh/log.hpp>
#include <zmesh/mdp/protocol.hpp>
#include <zmesh/message.hpp>
#include <zmesh/nodes/broker.hpp>
#include <zmesh/security/acl.hpp>

#include <zmq.hpp>

#include <zmesh/header.hpp>

#include <array>
#include <atomic>
#include <deque>
#include <functional>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace zmesh::nodes::detail {

using clock = std::chrono::steady_clock;

struct service;
struct lane;

struct client {
    std::string id;             // ROUTER routing id: never shown to any other peer
    bool internal = false;      // the broker's own (replays from the DLQ): never forgotten
    std::string handle;         // what workers see as its address (client_handles.hpp)
    int fd = -1;                // descriptor of its connection; -1 for inproc (no events)
    bool connected = true;      // false once its connection closed: its replies go nowhere
    std::size_t outstanding = 0; // its requests queued or in flight
    std::size_t* key_outstanding = nullptr; // CURVE: its key's count, shared by its connections
    clock::time_point last_active; // for forgetting idle clients
    std::vector<lane*> lanes;   // its requests waiting, one lane per service (usually one)
    reply_account* replies = nullptr; // its replies still inside libzmq (memory_meter.hpp)
    std::uint64_t dropped = 0;  // replies dropped for it (memory bound)
    std::size_t held = 0;       // bytes its requests hold (memory_meter.hpp)
    log_limiter drop_log{1, std::chrono::seconds(10)}; // one line per 10 s about its drops
};

struct request {
    client* from = nullptr;     // who sent it, or its latest retry; the reply goes there
    codec::protocol proto = codec::protocol::mdpc01; // the client's protocol: frames its replies
    zmq::message_t tag;         // a tagged client's tag (ZMCT01), returned in the reply; empty
                                // for a plain MDP/0.1 client
    header hdr;                 // ZMCT02/03: the client's header; else made at a ZMWC02 dispatch
    bool has_id = false;        // hdr.id is the client's message id: de-duplicated
    bool has_header = false;    // hdr holds a client's header (ZMCT02/03) or a DLQ replay's
    std::uint8_t priority = default_priority;
    service* svc = nullptr;     // the service it is for, while it lives
    clock::time_point deadline = clock::time_point::max(); // leaves the queue then (504)
    std::size_t heap_at = npos; // its index in the deadline heap while it waits
    message body;               // kept until replied, so a dead worker's request can be sent again
    // PARTIAL frames kept for a client that cannot stream (01); made on the first part, so a
    // request that streams nothing does not carry a message's inline frames for it.
    std::unique_ptr<message> parts;
    std::string stream;         // PARTIALs sent so far, kept for retries (has_id only; the
                                // flat form of mdp_engine::append_kept)
    static constexpr std::size_t npos = static_cast<std::size_t>(-1);
    std::uint32_t attempts = 0; // deliveries to workers so far
    std::size_t bytes = 0;      // body size (queued_bytes while it waits)
    std::size_t cost = 0;       // what it holds of broker memory (memory_meter.hpp)
    clock::time_point arrived;  // for request_ttl
    std::uint32_t generation = 0; // with its slot, the tag a ZMWC01 worker echoes in its REPLY
    std::array<char, client_handle_size> handle{}; // the client handle its worker got: a retry
                                // from another connection changes `from`, not the worker's copy
    std::uint64_t sent = 0;     // dispatch order, so a dead worker's requests re-queue in it
    lane* in_lane = nullptr;    // the lane it waits in; null in a retry queue or with a worker
    bool in_retry = false;      // whether it waits in its service's retry queue
    request* next = nullptr;    // links in a lane, a retry queue or (next) the free pool
    request* prev = nullptr;
};

/// Intrusive doubly linked FIFO of requests: O(1) at both ends and for removal, no allocation.
class request_queue {
  public:
    [[nodiscard]] bool empty() const noexcept { return head_ == nullptr; }
    [[nodiscard]] std::size_t size() const noexcept { return size_; }
    [[nodiscard]] request* front() const noexcept { return head_; }
    void push_back(request* r) noexcept;
    void push_front(request* r) noexcept;
    request* pop_front() noexcept;
    /// Takes @p r, which must be in this queue, out of it.
    void remove(request* r) noexcept;

  private:
    request* head_ = nullptr;
    request* tail_ = nullptr;
    std::size_t size_ = 0;
};

/// One client's requests waiting for one service, oldest first. A service serves its lanes in
/// turn, one request each, so a client with thousands queued delays another's request by at
/// most one request per busy client (fair queueing), not by its whole backlog.
struct lane {
    request_queue queue;
    client* owner = nullptr;
    service* svc = nullptr;
    std::uint8_t priority = default_priority;
    lane* prev = nullptr;       // links in svc's ring of lanes with waiting requests
    lane* next = nullptr;       // (also the free-pool link)
};

struct worker {
    std::string identity;          // ROUTER routing id
    int fd = -1;                   // descriptor of its connection; -1 for inproc
    service* svc = nullptr;        // set by READY
    codec::protocol proto = codec::protocol::mdpw01; // what it speaks (a worker protocol)
    clock::time_point expiry;      // forgotten if nothing is heard from it by then
    bool sent_since_tick = false;  // anything sent since the last tick makes a HEARTBEAT redundant
    std::vector<request*> slots;   // one per unit of credit (1 for 7/MDP); null = free
    std::vector<std::uint32_t> free_slots; // indexes of the null slots
    worker* prev = nullptr;        // links in its service's ready list (LRU order)
    worker* next = nullptr;
    bool ready = false;            // whether it is in that list, i.e. has a free slot

    [[nodiscard]] std::size_t holding() const noexcept { return slots.size() - free_slots.size(); }
};

/// Lanes of one priority with waiting requests, served round robin.
struct lane_ring {
    lane* head = nullptr;
    lane* tail = nullptr;
};

/// Dispatches from the highest waiting priority after which, if a lower one waits, the next
/// dispatch goes to a lower one (docs/protocol.md, "Dispatch").
inline constexpr unsigned priority_share = 15;

struct service {
    std::string name;
    request_queue retry;           // requests whose worker died: served before any lane
    lane_ring levels[max_priority + 1]; // per priority, lanes with waiting requests
    std::uint16_t waiting_levels = 0;   // bit p set: levels[p] has a lane
    unsigned favoured = 0;         // dispatches in a row from the top while a lower level waited
    bool served = false;           // a worker has registered for it (fail fast)
    std::size_t queued = 0;        // waiting requests, retry queue and lanes together
    worker* ready_head = nullptr;  // workers with a free slot, longest waiting first: fair (LRU)
    worker* ready_tail = nullptr;
    std::size_t ready_count = 0;
    std::size_t workers = 0;
    std::size_t in_flight = 0;
    clock::time_point last_active; // for forgetting services nobody uses any more
    // Its counters for broker::metrics(): plain integers, since only the loop thread writes
    // them and only the loop thread's snapshot (fill_service_metrics) reads them.
    std::uint64_t requests = 0, replies = 0, requeued = 0, rejected = 0, expired = 0;
    std::array<std::uint64_t, service_metrics::latency_bounds.size() + 1> latency_counts{};
    double latency_sum = 0; // seconds
};

/// Hashes std::string and std::string_view alike, so lookups by a frame's bytes allocate nothing.
struct string_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept {
        return std::hash<std::string_view>{}(s);
    }
};

/// Atomic mirror of broker_stats, written by the loop and read from any thread.
struct atomic_stats {
    std::atomic<std::uint64_t> requests{0}, replies{0}, dispatched{0}, requeued{0}, rejected{0},
        mmi{0}, malformed{0}, workers_registered{0}, workers_expired{0}, workers_disconnected{0},
        undeliverable{0}, workers{0}, services{0}, queued{0}, expired{0}, queued_bytes{0},
        clients{0}, disconnects{0}, abandoned{0}, memory{0}, replies_dropped{0}, duplicates{0},
        kept_replies{0}, dead_lettered{0}, dlq{0}, dlq_dropped{0}, partials{0}, parts_dropped{0},
        failed_fast{0}, forbidden{0};
};

/// Where the engine's messages go (routing id first): the broker's ROUTER socket, or, in tests
/// and the whole-broker fuzz harness, whatever records them. Sends never block.
class outbox {
  public:
    virtual ~outbox() = default;
    /// Sends @p m (consuming its frames if sent). would_block: the peer is at its high-water
    /// mark; unroutable: no such peer (ROUTER_MANDATORY).
    virtual send_status send(message& m) = 0;
};

/// The outbox of a ROUTER socket with ROUTER_MANDATORY set.
class socket_outbox final : public outbox {
  public:
    explicit socket_outbox(zmq::socket_ref router) noexcept : router_(router) {}
    send_status send(message& m) override { return m.send(router_, zmq::send_flags::dontwait); }

  private:
    zmq::socket_ref router_;
};

class mdp_engine {
  public:
    /// Answers a broker-side service: reads the request body, fills the reply body.
    using internal_handler = std::function<void(message& request, message& reply)>;

    /// @p out must outlive the engine.
    mdp_engine(const broker_config& config, outbox& out);

    /// Makes the broker answer @p name (which must start with "zmesh.") itself, as it answers
    /// zmesh.services. Used by other parts of the node (the forwarder's last-value cache, the
    /// directory). Call before the loop starts.
    void add_internal_service(std::string name, internal_handler handler);

    /// Handles one message as read from the ROUTER socket (sender identity first). The frames
    /// are consumed (moved out) where they are forwarded.
    void on_message(message& m, clock::time_point now);

    /// Replaces @p out with every service's counters and state, sorted by name (broker::metrics).
    /// Loop thread only.
    void fill_service_metrics(std::vector<service_metrics>& out) const;

    /// Adds counters kept outside the engine (the forwarder's, the directory's) to stats() and
    /// to the zmesh.stats reply. @p fill runs on any thread that asks for stats, so it may only
    /// read atomics. Call before the loop starts.
    void add_stats_source(std::function<void(broker_stats&)> fill);

    /// Heartbeats workers, forgets expired workers, idle clients and unused services.
    void on_tick(clock::time_point now);

    /// Rejects (504) and dead-letters every waiting request whose deadline has passed, and
    /// forgets kept replies past the de-duplication window.
    void expire_requests(clock::time_point now);

    /// The earliest deadline of a waiting request; the broker calls expire_requests() then, so
    /// that expiry is exact to the millisecond.
    [[nodiscard]] std::optional<clock::time_point> next_deadline() const noexcept;

    /// The connection on descriptor @p fd closed (libzmq socket monitor). A worker on it is
    /// forgotten and its requests go to the next worker; a client on it loses its queued
    /// requests (nobody would read their replies).
    void on_disconnected(int fd, clock::time_point now);

    /// Called before a peer's descriptor is recorded, to deliver every pending disconnect
    /// event first: a descriptor closed and then reused by a new connection must be reported
    /// closed before the new peer is tied to it. Call before the loop starts.
    void set_disconnect_sync(std::function<void()> sync) { sync_disconnects_ = std::move(sync); }

    /// Enforces @p acl from now on (null: everything allowed): requests to services the
    /// sender's key may not call get 403, READYs for services it may not serve a DISCONNECT.
    /// The key is the User-Id of the message's connection. Loop thread only.
    void set_access_list(std::shared_ptr<const security::access_list> acl) { acl_ = std::move(acl); }

    /// Inside an internal service's handler: whether the access list lets the calling client's
    /// key do @p what to @p resource (true without an access list).
    [[nodiscard]] bool caller_may(security::permission what, std::string_view resource) const {
        return !acl_ || acl_->allows(caller_key_, what, resource);
    }

    /// Sends DISCONNECT to every worker and forgets them (broker shutdown).
    void disconnect_all();

    ~mdp_engine();
    mdp_engine(const mdp_engine&) = delete;
    mdp_engine& operator=(const mdp_engine&) = delete;

    [[nodiscard]] broker_stats stats() const noexcept;

  private:
    enum class reject_reason {
        queue_full,
        memory_full,
        too_many_services,
        client_limit,
        key_limit,
        client_memory,
        too_many_attempts,
        expired,
        refused,
    };

    /// A dead-lettered request (docs/protocol.md, "The dead-letter queue").
    struct dead_letter {
        message_id id;
        std::string service;
        std::string reason;
        std::string code;
        std::int64_t time_ms = 0;   // wall clock
        std::uint32_t attempts = 0;
        header hdr;
        bool has_header = false;
        message body;
        std::size_t cost = 0;
    };


    void on_client(message& m, const codec::client_request& req, clock::time_point now);
    /// A ZMCT02/03 request whose id is pending or answered: joins it or gets the kept reply.
    /// @returns false if the id is unknown (a new request).
    bool on_duplicate(message& m, client* c, const codec::client_request& req, const header& h);
    /// Sends an error to a client: ZMCT02/03 as a FINAL of type zmesh.error with @p co, others as
    /// a reply whose body is "zmesh.error" code reason.
    void send_error(std::string_view client_id, client* c, codec::protocol proto,
                    zmq::message_t&& tag, const message_id* co, std::string_view service,
                    std::string_view code, std::string reason, std::size_t releasing = 0);
    /// The ZMCT02/03 reply header: a fresh id (or @p id), co, type.
    static zmq::message_t reply_header(const message_id* co, std::string_view type,
                                       const message_id* id = nullptr);
    /// Known services with names like @p name, for the fail-fast 404.
    std::string similar_services(std::string_view name) const;
    void dead_letter_request(request* r, std::string_view service, std::string_view code,
                             std::string reason);
    void on_dlq(message& request, message& reply);
    /// Queues a dead letter again (its bytes move to the request). @returns false if it was
    /// not queued (its id is pending already, or max_services): the caller frees the entry.
    bool replay(dead_letter&& d);
    /// Forgets kept replies, oldest first, until @p bytes more fit in the memory bound.
    void make_room(std::size_t bytes);
    void keep_reply(request* r, const zmq::message_t& header, const message& body);
    static std::size_t kept_size(const zmq::message_t& header, const message& body) noexcept;
    static void append_kept(std::string& blob, const zmq::message_t& header, const message& body);
    /// Writes the kept_size(header, body) bytes of append_kept's form at @p out.
    static void write_kept(char* out, const zmq::message_t& header, const message& body) noexcept;
    /// Sends every part of a kept reply to a retry, the last as FINAL.
    void send_kept(std::string_view client_id, client* c, std::string_view service,
                   std::string_view blob);
    /// Records @p r (with a message id) as pending.
    void track_id(request* r);
    /// Counts a final reply of @p s and the time it took from the request's arrival.
    void observe_reply(service& s, clock::duration took) noexcept;
    /// Brings the memory meter and the stats in line with what kept_ holds.
    void sync_kept() noexcept;
    /// Forgets kept replies whose window ended by @p now.
    void forget_kept(clock::time_point now);
    /// Looks up the worker_table row for the sender's state and the command, and performs it.
    void on_worker(message& m, const codec::decoded& d, clock::time_point now);
    void on_ready(message& m, const codec::worker_ready& ready, codec::protocol proto,
                  clock::time_point now);
    void on_reply(worker& w, message& m, const codec::worker_reply& reply, clock::time_point now);
    /// The slot a REPLY answers, from its tag (ZMWC01) or the one slot (MDPW01); nullopt if the
    /// reply names no request the worker holds.
    std::optional<std::uint32_t> reply_slot(const worker& w, const codec::worker_reply& reply) const;
    void on_internal(message& m, client* c, const codec::client_request& req,
                     codec::protocol proto, zmq::message_t&& tag, const message_id* co);

    void malformed(std::string_view what, std::string_view identity);
    service& service_for(std::string_view name, clock::time_point now);
    void dispatch(service& s);
    void make_ready(worker& w);
    void unlink_ready(worker& w) noexcept;
    /// Forgets @p w; the requests it held go to its service's retry queue, first sent first.
    void remove_worker(worker& w, bool send_disconnect);
    void send_command(std::string_view identity, codec::protocol proto, mdp::worker_command c);
    /// Sends a reply in @p proto's frames to the peer @p client_id, the body consumed.
    void reply_to_client(std::string_view client_id, client* c, codec::protocol proto,
                         zmq::message_t&& tag, zmq::message_t&& header,
                         std::string_view service_name, message& body, std::size_t releasing = 0,
                         bool final = true);
    void reject(request* r, std::string_view service_name, reject_reason why,
                std::string detail = {});
    /// The client of routing id @p m[0], made on its first request; nullptr if the table is full.
    client* client_for(message& m, clock::time_point now);
    /// Records the descriptor @p m came on for the peer @p id, after pending disconnects.
    int track_fd(message& m, std::string_view id);
    /// Ends @p r's life: its client holds one request fewer, and r goes back to the pool.
    void finish(request* r) noexcept;
    void forget_client_if_done(client& c) noexcept;
    using client_map = std::unordered_map<std::string, client, string_hash, std::equal_to<>>;
    /// Forgets a client: its entry, its reply account (transit keeps it alive), its memory.
    client_map::iterator erase_client(client_map::iterator it) noexcept;
    /// What a client's entry holds of broker memory: the entry, its map node and reply account.
    static constexpr std::size_t client_entry_cost = sizeof(client) + 192;
    /// What a worker's entry holds of broker memory, with @p credit slots.
    static std::size_t worker_entry_cost(std::uint32_t credit) noexcept;
    /// Queue bookkeeping in one place: counts and bytes follow every push and pop.
    /// A new request joins its client's lane for @p s at its priority.
    void enqueue(service& s, request* r);
    /// Takes a waiting request out of its lane or retry queue (expiry, a retry from another
    /// connection).
    void unqueue(request* r);
    void heap_push(request* r);
    void heap_erase(request* r) noexcept;
    void heap_up(std::size_t i) noexcept;
    void heap_down(std::size_t i) noexcept;
    /// A request back from a dead worker joins @p s's retry queue at its head.
    void requeue(service& s, request* r);
    /// The next request for @p s: the retry queue first, then the lanes in turn.
    request* dequeue(service& s);
    /// Takes the front request of @p l out of it (and out of the arrival list).
    request* pop_lane(lane& l);
    void count_dequeued(service& s, request* r);
    lane* lane_for(client& c, service& s, std::uint8_t priority);
    /// Moves @p r (pending, from a retry on another connection) to client @p to.
    void transfer(request* r, client& to);
    void release_lane(lane* l) noexcept;
    /// Drops every waiting request of @p c (its connection closed).
    void drop_waiting(client& c);
    /// Sends out_ (a reply to @p c, or to an unknown client if null) within the memory
    /// bound: a reply that would exceed it, or pile up past max_client_memory for a client
    /// that does not read, is dropped, counted and logged.
    /// @p releasing: bytes the answered request frees once this is sent.
    void send_to_client(client* c, std::size_t releasing = 0, bool final = true);
    void note_memory() noexcept;
    /// What @p c holds of broker memory: its requests and its unread replies.
    [[nodiscard]] std::size_t client_bytes(const client& c) const noexcept;

    request* acquire();
    void release(request* r) noexcept;

    broker_config config_;
    outbox& outbox_;
    clock::duration expiry_;        // heartbeat_interval × liveness
    std::unordered_map<std::string, worker, string_hash, std::equal_to<>> workers_;
    client_map clients_; // by routing id
    std::unordered_map<int, std::string> peer_by_fd_; // descriptor -> routing id of its peer
    handle_source handles_;
    std::function<void()> sync_disconnects_;
    std::unordered_map<std::string, service, string_hash, std::equal_to<>> services_;
    std::unordered_map<std::string, internal_handler, string_hash, std::equal_to<>> internal_;
    std::vector<std::function<void(broker_stats&)>> stats_sources_; // fixed once the loop runs
    std::vector<std::unique_ptr<request>> request_storage_; // owns every request ever made
    request* free_ = nullptr;       // pool of released requests, reused to avoid allocation
    std::uint32_t next_generation_ = 0; // tags of ZMWC01 requests: never the same twice in a row
    std::uint64_t next_sent_ = 0;       // dispatch counter (request::sent)
    std::size_t queued_ = 0;        // requests in all queues
    std::size_t queued_bytes_ = 0;  // their body bytes
    std::vector<request*> deadlines_; // min-heap of waiting requests by deadline
    clock::time_point now_{};       // time of the event being handled
    // Executed once: requests pending by message id (a small table: those queued or in
    // flight), then their replies in kept_ for the window.
    pending_index<request> pending_ids_;
    kept_store kept_;
    std::size_t kept_held_ = 0;      // what kept_ holds, as counted by memory_
    std::deque<dead_letter> dlq_;   // oldest first
    client replayer_;               // the client of requests replayed from the DLQ
    codec::protocol decoded_proto_ = codec::protocol::mdpc01; // of the message being handled
    std::unordered_set<std::string, string_hash, std::equal_to<>> served_names_; // fail fast
    std::vector<std::unique_ptr<lane>> lane_storage_; // owns every lane ever made
    lane* free_lanes_ = nullptr;
    memory_meter memory_;
    message out_;                   // reused for every outgoing message
    std::vector<worker*> scratch_;  // reused by on_tick
    std::vector<request*> scratch_requests_; // reused by remove_worker
    log_limiter malformed_log_;
    std::shared_ptr<const security::access_list> acl_; // null: no access list
    std::string_view caller_key_; // the client's key while an internal handler runs
    // CURVE: requests outstanding per key (User-Id), over all of that key's connections; one
    // entry per key ever seen, and keys are those the ZAP handler admits, so it stays small.
    std::unordered_map<std::string, std::size_t> key_outstanding_;
    log_limiter acl_log_{20};
    log_limiter events_log_{50}; // registrations and rejections at info: 50 lines a second
    atomic_stats stats_;
};

} // namespace zmesh::nodes::detail
