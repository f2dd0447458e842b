// SPDX-License-Identifier: MPL-2.0
// mdp_engine.cpp — the Majordomo state machine: routing, heartbeats, expiry and re-queue.
#include "mdp_engine.hpp"

#include "codec/decode.hpp"

#include <msgpack.hpp>

#include <algorithm>
#include <cstring>
#include <string>

namespace zmesh::nodes::detail {
namespace {

using codec::f_empty;
using codec::f_identity;
using codec::max_service_name;
using codec::request_tag;

// A rejection is a normal 7/MDP reply whose body starts with this frame, then a status code and
// a reason, so that plain MDP clients still get an answer and zmesh clients can raise an error.
constexpr std::string_view error_frame = "zmesh.error";

void inc(std::atomic<std::uint64_t>& c) noexcept { c.fetch_add(1, std::memory_order_relaxed); }

// The descriptor of the connection a message came on; -1 for inproc, which has none. Read from
// the empty delimiter, a frame that came off the wire: the identity frame the ROUTER makes up
// does not reliably carry it (libzmq 4.3 leaves its descriptor unset at times).
int source_fd(message& m) noexcept {
    const int fd = zmq_msg_get(m[f_empty].handle(), ZMQ_SRCFD);
    return fd < 0 ? -1 : fd;
}

// The first 4 bytes of a client's handle in hex: enough to tell clients apart in a log, and
// never its routing id, which no log shows.
std::string short_handle(const client& c) {
    static constexpr char hex[] = "0123456789abcdef";
    std::string s;
    for (std::size_t i = 0; i < 4 && i < c.handle.size(); ++i) {
        const auto b = static_cast<unsigned char>(c.handle[i]);
        s += hex[b >> 4];
        s += hex[b & 15];
    }
    return s;
}

zmq::message_t copy_frame(zmq::message_t& f) {
    // zmq_msg_copy shares large buffers by reference count: no byte is copied.
    zmq::message_t c;
    c.copy(f);
    return c;
}

} // namespace

void request_queue::push_back(request* r) noexcept {
    r->next = nullptr;
    if (tail_) tail_->next = r;
    else head_ = r;
    tail_ = r;
    ++size_;
}

void request_queue::push_front(request* r) noexcept {
    r->next = head_;
    head_ = r;
    if (!tail_) tail_ = r;
    ++size_;
}

request* request_queue::pop_front() noexcept {
    request* r = head_;
    if (!r) return nullptr;
    head_ = r->next;
    if (!head_) tail_ = nullptr;
    r->next = nullptr;
    --size_;
    return r;
}

mdp_engine::mdp_engine(const broker_config& config, outbox& out)
    : config_(config), outbox_(out),
      expiry_(config.heartbeat_interval * std::max(config.liveness, 1)),
      memory_(config.max_memory), malformed_log_(10) {}

mdp_engine::~mdp_engine() {
    for (auto& [id, c] : clients_) reply_account::release(c.replies);
}

request* mdp_engine::acquire() {
    if (free_) {
        request* r = free_;
        free_ = r->next;
        r->next = nullptr;
        return r;
    }
    request_storage_.push_back(std::make_unique<request>());
    return request_storage_.back().get();
}

void mdp_engine::release(request* r) noexcept {
    r->body.clear(); // keeps the frame vector's capacity for the next request
    r->from = nullptr;
    r->tag.rebuild();
    r->attempts = 0;
    r->cost = 0;
    r->in_lane = nullptr;
    r->older = r->newer = nullptr;
    r->next = free_;
    free_ = r;
}

void mdp_engine::malformed(std::string_view what, std::string_view identity) {
    inc(stats_.malformed);
    if (malformed_log_.allow()) {
        if (auto n = malformed_log_.take_suppressed())
            log(log_level::warn, "%llu malformed messages not logged", static_cast<unsigned long long>(n));
        log(log_level::warn, "dropped malformed message from peer of %zu-byte id: %.*s",
            identity.size(), static_cast<int>(what.size()), what.data());
    }
}

void mdp_engine::on_message(message& m, clock::time_point now) {
    const codec::decoded d = codec::decode(m);
    if (auto* request = std::get_if<codec::client_request>(&d.cmd)) {
        on_client(m, *request, now);
    } else if (codec::is_worker(d.proto)) {
        on_worker(m, d, now);
    } else {
        // Clients have no state to break: 7/MDP "SHOULD respond to invalid messages by dropping
        // them".
        malformed(std::get<codec::malformed>(d.cmd).why,
                  m.empty() ? std::string_view() : view(m[f_identity]));
    }
}

// ---- clients ---------------------------------------------------------------------------------

void mdp_engine::on_client(message& m, const codec::client_request& req, clock::time_point now) {
    const auto name = req.service; // views the service frame, which stays in m
    client* from = client_for(m, now);
    if (!req.service_ok) {
        // Answered, not only dropped: the client learns at once that the name cannot work.
        malformed("client request with an invalid service name", view(m[f_identity]));
        zmq::message_t tag;
        if (req.tag_at) tag = std::move(m[req.tag_at]);
        auto body = rejection("400", "invalid service name: it must be 1.." +
                                         std::to_string(max_service_name) +
                                         " printable ASCII bytes without spaces");
        reply_to_client(view(m[f_identity]), from, std::move(tag), "", body);
        return;
    }
    inc(stats_.requests);
    if (mdp::is_broker_service(name)) {
        on_internal(m, from, req);
        return;
    }
    request* r = acquire();
    r->from = from;
    if (req.tag_at) r->tag = std::move(m[req.tag_at]);
    m.move_tail_to(req.body_at, r->body);
    r->bytes = r->body.byte_size();
    r->arrived = now;
    if (!from) {
        // The identity frame is still in m: reply_to_client reads the routing id from there.
        zmq::message_t tag = std::move(r->tag);
        release(r);
        inc(stats_.rejected);
        auto body = rejection("503", clients_.size() >= config_.max_clients
                                         ? "too many clients: the broker already tracks " +
                                               std::to_string(config_.max_clients)
                                         : "broker memory full: no room for another client");
        reply_to_client(view(m[f_identity]), nullptr, std::move(tag), name, body);
        return;
    }
    ++from->outstanding;
    if (from->outstanding > config_.max_client_requests) {
        reject(r, name, reject_reason::client_limit);
        return;
    }
    if (services_.size() >= config_.max_services && services_.find(name) == services_.end()) {
        reject(r, name, reject_reason::too_many_services);
        return;
    }
    service& s = service_for(name, now);
    if (s.queued >= config_.max_queue) {
        reject(r, s.name, reject_reason::queue_full);
        return;
    }
    // What the request will hold until it is answered, in real bytes (memory_meter.hpp).
    std::size_t cost = sizeof(request) + r->body.size() * frame_slot_cost +
                       frame_heap_cost(r->tag.size());
    for (auto& f : r->body) {
        compact(f);
        cost += frame_heap_cost(f.size());
    }
    if (!memory_.fits(cost)) {
        reject(r, s.name, reject_reason::memory_full);
        return;
    }
    if (client_bytes(*from) + cost > config_.max_client_memory) {
        reject(r, s.name, reject_reason::client_memory);
        return;
    }
    memory_.hold(cost);
    from->held += cost;
    r->cost = cost;
    note_memory();
    enqueue(s, r);
    s.last_active = now;
    dispatch(s);
}

client* mdp_engine::client_for(message& m, clock::time_point now) {
    const auto id = view(m[f_identity]);
    auto it = clients_.find(id);
    if (it == clients_.end()) {
        if (clients_.size() >= config_.max_clients || !memory_.fits(client_entry_cost))
            return nullptr;
        memory_.hold(client_entry_cost);
        note_memory();
        it = clients_.try_emplace(std::string(id)).first;
        client& c = it->second;
        c.id = it->first;
        c.handle = handles_.next();
        c.replies = new reply_account;
        c.fd = track_fd(m, c.id);
        stats_.clients.store(clients_.size(), std::memory_order_relaxed);
    } else if (source_fd(m) != it->second.fd) {
        // The same routing id on a new connection (a peer that set its own id reconnected).
        it->second.fd = track_fd(m, it->second.id);
        it->second.connected = true;
    }
    it->second.last_active = now;
    return &it->second;
}

int mdp_engine::track_fd(message& m, std::string_view id) {
    const int fd = source_fd(m);
    if (fd < 0) return -1;
    if (sync_disconnects_) sync_disconnects_();
    peer_by_fd_.insert_or_assign(fd, std::string(id));
    return fd;
}

void mdp_engine::finish(request* r) noexcept {
    client* c = r->from;
    if (r->cost) {
        memory_.unhold(r->cost);
        c->held -= r->cost;
        note_memory();
    }
    release(r);
    if (c) {
        --c->outstanding;
        if (!c->connected) forget_client_if_done(*c);
    }
}

void mdp_engine::forget_client_if_done(client& c) noexcept {
    if (c.outstanding == 0) erase_client(clients_.find(std::string_view(c.id)));
}

mdp_engine::client_map::iterator mdp_engine::erase_client(client_map::iterator it) noexcept {
    reply_account::release(it->second.replies); // replies still in transit keep it alive
    memory_.unhold(client_entry_cost);
    note_memory();
    it = clients_.erase(it);
    stats_.clients.store(clients_.size(), std::memory_order_relaxed);
    return it;
}

void mdp_engine::on_disconnected(int fd, clock::time_point now) {
    auto p = peer_by_fd_.find(fd);
    if (p == peer_by_fd_.end()) return;
    const std::string id = std::move(p->second);
    peer_by_fd_.erase(p);
    inc(stats_.disconnects);
    if (auto w = workers_.find(std::string_view(id)); w != workers_.end() && w->second.fd == fd) {
        log(log_level::info, "worker of service '%s' disconnected; %zu requests move on",
            w->second.svc ? w->second.svc->name.c_str() : "?", w->second.holding());
        inc(stats_.workers_disconnected);
        remove_worker(w->second, false);
    }
    if (auto c = clients_.find(std::string_view(id)); c != clients_.end() && c->second.fd == fd) {
        // Nobody will read replies to its waiting requests: drop them now. Replies to those in
        // flight are discarded when they come.
        drop_waiting(c->second); // first: while it counts as connected, finish() keeps it
        c->second.connected = false;
        c->second.last_active = now;
        forget_client_if_done(c->second);
    }
}

void mdp_engine::add_internal_service(std::string name, internal_handler handler) {
    internal_.insert_or_assign(std::move(name), std::move(handler));
}

void mdp_engine::add_stats_source(std::function<void(broker_stats&)> fill) {
    stats_sources_.push_back(std::move(fill));
}

void mdp_engine::on_internal(message& m, client* c, const codec::client_request& req) {
    const auto name = req.service;
    const auto body_at = req.body_at;
    inc(stats_.mmi);
    message body;
    if (auto handler = internal_.find(name); handler != internal_.end()) {
        message request;
        m.move_tail_to(body_at, request);
        handler->second(request, body);
    } else if (name == mdp::mmi_service) {
        const auto target = view(m[body_at]);
        auto it = services_.find(target);
        const bool up = it != services_.end() && it->second.workers > 0;
        body.push_back(up ? std::string_view("200") : std::string_view("404"));
    } else if (name == mdp::zmesh_services) {
        // A msgpack map: service name -> {workers, idle, queued, in_flight}.
        msgpack::sbuffer buf;
        msgpack::packer<msgpack::sbuffer> pk(buf);
        pk.pack_map(static_cast<std::uint32_t>(services_.size()));
        for (const auto& [svc_name, s] : services_) {
            pk.pack(svc_name);
            pk.pack_map(4);
            pk.pack(std::string_view("workers"));
            pk.pack(static_cast<std::uint64_t>(s.workers));
            pk.pack(std::string_view("idle")); // workers with room for another request
            pk.pack(static_cast<std::uint64_t>(s.ready_count));
            pk.pack(std::string_view("queued"));
            pk.pack(static_cast<std::uint64_t>(s.queued));
            pk.pack(std::string_view("in_flight"));
            pk.pack(static_cast<std::uint64_t>(s.in_flight));
        }
        body.push_back(zmq::message_t(buf.data(), buf.size()));
    } else if (name == mdp::zmesh_stats) {
        const broker_stats st = stats();
        const std::pair<std::string_view, std::uint64_t> fields[] = {
            {"requests", st.requests},
            {"replies", st.replies},
            {"dispatched", st.dispatched},
            {"requeued", st.requeued},
            {"rejected", st.rejected},
            {"mmi", st.mmi},
            {"malformed", st.malformed},
            {"workers_registered", st.workers_registered},
            {"workers_expired", st.workers_expired},
            {"workers_disconnected", st.workers_disconnected},
            {"undeliverable", st.undeliverable},
            {"workers", st.workers},
            {"services", st.services},
            {"queued", st.queued},
            {"queued_bytes", st.queued_bytes},
            {"expired", st.expired},
            {"clients", st.clients},
            {"disconnects", st.disconnects},
            {"abandoned", st.abandoned},
            {"memory", st.memory},
            {"replies_dropped", st.replies_dropped},
            {"forwarded", st.forwarded},
            {"dropped", st.dropped},
            {"subscriptions", st.subscriptions},
            {"subscriptions_refused", st.subscriptions_refused},
            {"probes", st.probes},
            {"stalls", st.stalls},
            {"lvc_topics", st.lvc_topics},
            {"lvc_evictions", st.lvc_evictions},
            {"directory_entries", st.directory_entries},
        };
        msgpack::sbuffer buf;
        msgpack::packer<msgpack::sbuffer> pk(buf);
        pk.pack_map(static_cast<std::uint32_t>(std::size(fields)));
        for (const auto& [key, value] : fields) {
            pk.pack(key);
            pk.pack(value);
        }
        body.push_back(zmq::message_t(buf.data(), buf.size()));
    } else {
        body.push_back(std::string_view("501")); // 8/MMI: unknown management service
    }
    // name views the service frame, which stays in m while only the tag frame is moved out.
    zmq::message_t tag;
    if (req.tag_at) tag = std::move(m[req.tag_at]);
    reply_to_client(view(m[f_identity]), c, std::move(tag), name, body);
}

void mdp_engine::reply_to_client(std::string_view client_id, client* c, zmq::message_t&& tag,
                                 std::string_view service_name, message& body,
                                 std::size_t releasing) {
    out_.clear();
    codec::reply_envelope(out_, client_id, service_name, std::move(tag));
    body.move_tail_to(0, out_);
    send_to_client(c, releasing);
}

void mdp_engine::send_to_client(client* c, std::size_t releasing) {
    std::size_t cost = 64; // the transit record (memory_meter.cpp)
    for (const auto& f : out_) cost += frame_slot_cost + frame_heap_cost(f.size());
    // Only unread replies count against the client here: a client that reads gets every reply,
    // however many requests it has waiting. The request answered frees @p releasing bytes.
    const char* why = nullptr;
    const auto unread = c ? std::max<std::int64_t>(c->replies->bytes(), 0) : 0;
    if (c && static_cast<std::size_t>(unread) + cost > config_.max_client_memory)
        why = "it does not read: its unread replies would exceed max_client_memory";
    else if (!memory_.fits(cost > releasing ? cost - releasing : 0))
        why = "broker memory full (max_memory)";
    if (why) {
        inc(stats_.replies_dropped);
        if (c) {
            ++c->dropped;
            if (c->drop_log.allow())
                log(log_level::warn, "dropped reply %llu to client %s: %s",
                    static_cast<unsigned long long>(c->dropped), short_handle(*c).c_str(), why);
        } else if (malformed_log_.allow()) {
            log(log_level::warn, "dropped a reply to an untracked client: %s", why);
        }
        return;
    }
    out_.back() = memory_.track(std::move(out_.back()), cost, c ? c->replies : nullptr);
    if (outbox_.send(out_) == send_status::sent) inc(stats_.replies);
    else inc(stats_.undeliverable); // client gone or at its HWM: its own retry covers it
}

std::size_t mdp_engine::worker_entry_cost(std::uint32_t credit) noexcept {
    // The entry and its map node, and a slot plus a free-slot index per unit of credit.
    return sizeof(worker) + 128 + credit * (sizeof(request*) + sizeof(std::uint32_t));
}

std::size_t mdp_engine::client_bytes(const client& c) const noexcept {
    const auto unread = c.replies->bytes();
    return c.held + static_cast<std::size_t>(unread > 0 ? unread : 0);
}

void mdp_engine::note_memory() noexcept {
    stats_.memory.store(memory_.held(), std::memory_order_relaxed);
}

message mdp_engine::rejection(std::string_view code, std::string reason) {
    message body;
    body.push_back(error_frame);
    body.push_back(code);
    body.push_back(reason);
    return body;
}

void mdp_engine::reject(request* r, std::string_view service_name, reject_reason why) {
    inc(stats_.rejected);
    message body;
    switch (why) {
    case reject_reason::queue_full:
        body = rejection("503", "queue full: service '" + std::string(service_name) +
                                    "' already holds " + std::to_string(config_.max_queue) +
                                    " requests");
        break;
    case reject_reason::memory_full:
        body = rejection("503", "broker memory full: " + std::to_string(memory_.used()) +
                                    " of " + std::to_string(memory_.limit()) +
                                    " bytes (max_memory) in use");
        break;
    case reject_reason::too_many_services:
        body = rejection("503", "too many services: the broker already tracks " +
                                    std::to_string(config_.max_services));
        break;
    case reject_reason::client_limit:
        body = rejection("503", "too many requests outstanding: this client already has " +
                                    std::to_string(config_.max_client_requests) +
                                    " queued or in flight");
        break;
    case reject_reason::client_memory:
        body = rejection("503", "client over its memory share: its requests and unread replies "
                                "hold " + std::to_string(client_bytes(*r->from)) + " of " +
                                    std::to_string(config_.max_client_memory) +
                                    " bytes (max_client_memory)");
        break;
    case reject_reason::too_many_attempts:
        body = rejection("500", "request failed: its worker died " +
                                    std::to_string(r->attempts) + " times");
        break;
    case reject_reason::expired:
        inc(stats_.expired);
        body = rejection("504", "request expired: no worker took it within " +
                                    std::to_string(config_.request_ttl.count()) + " ms");
        break;
    }
    client* c = r->from;
    zmq::message_t tag = std::move(r->tag);
    if (c->connected) reply_to_client(c->id, c, std::move(tag), service_name, body, r->cost);
    else inc(stats_.undeliverable);
    finish(r); // may forget c: after the reply, which reads c->id
}

// ---- workers ---------------------------------------------------------------------------------

namespace {

worker_event event_of(const codec::command& c) {
    struct visitor {
        worker_event operator()(const codec::malformed& m) const {
            return m.command ? worker_event::malformed_command : worker_event::malformed_frames;
        }
        worker_event operator()(const codec::client_request&) const {
            return worker_event::malformed_frames; // not reached: on_message routes clients
        }
        worker_event operator()(const codec::worker_ready&) const { return worker_event::ready; }
        worker_event operator()(const codec::worker_reply&) const { return worker_event::reply; }
        worker_event operator()(const codec::worker_heartbeat&) const {
            return worker_event::heartbeat;
        }
        worker_event operator()(const codec::worker_disconnect&) const {
            return worker_event::disconnect;
        }
        worker_event operator()(const codec::worker_request&) const {
            return worker_event::request;
        }
    };
    return std::visit(visitor{}, c);
}

std::string_view what_of(const codec::command& c, worker_event e) {
    if (auto* m = std::get_if<codec::malformed>(&c)) return m->why;
    switch (e) {
    case worker_event::ready: return "READY from a registered worker";
    case worker_event::reply: return "REPLY from a worker that is not registered";
    case worker_event::request: return "REQUEST sent by a worker";
    case worker_event::other_protocol: return "worker changed protocol header after READY";
    default: return "unexpected worker command";
    }
}

} // namespace

void mdp_engine::on_worker(message& m, const codec::decoded& d, clock::time_point now) {
    const auto identity = view(m[f_identity]);
    auto it = workers_.find(identity);
    worker* w = it == workers_.end() ? nullptr : &it->second;
    worker_event event = event_of(d.cmd);
    if (w && d.proto != w->proto) event = worker_event::other_protocol;
    const worker_transition& t =
        worker_transition_for(w ? worker_state::registered : worker_state::unknown, event);
    if (t.protocol_error) malformed(what_of(d.cmd, event), identity);
    if (w && event != worker_event::disconnect) w->expiry = now + expiry_; // a sign of life
    switch (t.action) {
    case worker_action::register_worker:
        on_ready(m, std::get<codec::worker_ready>(d.cmd), d.proto, now);
        return;
    case worker_action::refuse:
        send_command(identity, d.proto, mdp::worker_command::disconnect);
        return;
    case worker_action::deliver_reply:
        on_reply(*w, m, std::get<codec::worker_reply>(d.cmd), now);
        return;
    case worker_action::forget:
        inc(stats_.workers_disconnected);
        remove_worker(*w, false);
        return;
    case worker_action::disconnect_worker:
        remove_worker(*w, true);
        return;
    case worker_action::refresh:
    case worker_action::ignore:
    case worker_action::drop:
        return;
    }
}

void mdp_engine::on_ready(message& m, const codec::worker_ready& ready, codec::protocol proto,
                          clock::time_point now) {
    const auto identity = view(m[f_identity]);
    const auto name = ready.service;
    const char* refusal = nullptr;
    if (!ready.service_ok)
        refusal = "READY for an invalid service name";
    else if (mdp::is_broker_service(name))
        refusal = "READY for a reserved service"; // the broker's own (8/MMI): not to be taken over
    else if (services_.size() >= config_.max_services && services_.find(name) == services_.end())
        refusal = "READY for a new service past max_services";
    else if (!memory_.fits(worker_entry_cost(ready.credit)))
        refusal = "READY past max_memory";
    if (refusal) {
        // One DISCONNECT and nothing else: a zmesh worker takes that as a refusal and stops.
        malformed(refusal, identity);
        inc(stats_.workers_disconnected);
        send_command(identity, proto, mdp::worker_command::disconnect);
        return;
    }
    const std::uint32_t credit = ready.credit;
    memory_.hold(worker_entry_cost(credit));
    note_memory();
    service& s = service_for(name, now);
    auto [it, inserted] = workers_.try_emplace(std::string(identity));
    worker& w = it->second;
    w.identity = it->first;
    w.fd = track_fd(m, w.identity);
    w.svc = &s;
    w.proto = proto;
    w.expiry = now + expiry_;
    // The slots are allocated once, here; dispatch and replies only move pointers and indexes.
    w.slots.assign(credit, nullptr);
    w.free_slots.resize(credit);
    for (std::uint32_t i = 0; i < credit; ++i) w.free_slots[i] = credit - 1 - i; // slot 0 first
    ++s.workers;
    s.last_active = now;
    inc(stats_.workers_registered);
    stats_.workers.store(workers_.size(), std::memory_order_relaxed);
    // An immediate HEARTBEAT acknowledges the READY (7/MDP allows one at any time after READY):
    // a ZMWC01 worker learns at once that this broker speaks its protocol, where a broker that
    // does not would stay silent, and a refused READY is the only one answered by a bare
    // DISCONNECT.
    send_command(w.identity, w.proto, mdp::worker_command::heartbeat);
    w.sent_since_tick = true;
    make_ready(w);
    dispatch(s);
}

std::optional<std::uint32_t> mdp_engine::reply_slot(const worker& w,
                                                    const codec::worker_reply& reply) const {
    std::uint32_t slot = 0;
    const request* r = nullptr;
    if (w.proto == codec::protocol::mdpw01) {
        r = w.slots[0];
    } else {
        if (reply.tag.slot >= w.slots.size()) return std::nullopt;
        slot = reply.tag.slot;
        r = w.slots[slot];
        if (r && r->generation != reply.tag.generation) return std::nullopt;
    }
    // The reply must name the client handle we gave it; anything else could misroute a reply.
    if (!r || reply.client != r->from->handle) return std::nullopt;
    return slot;
}

void mdp_engine::on_reply(worker& w, message& m, const codec::worker_reply& reply,
                          clock::time_point now) {
    const auto slot = reply_slot(w, reply);
    if (!slot) {
        malformed("REPLY naming no request the worker holds", w.identity);
        remove_worker(w, true);
        return;
    }
    service& s = *w.svc;
    request* r = w.slots[*slot];
    w.slots[*slot] = nullptr;
    w.free_slots.push_back(*slot); // within its reserved capacity: no allocation
    --s.in_flight;
    s.last_active = now;
    if (r->from->connected) {
        out_.clear();
        codec::reply_envelope(out_, r->from->id, s.name, std::move(r->tag));
        // 7/MDP wants a body frame in every reply; a worker that sent none still did the work.
        if (m.size() == reply.body_at) out_.push_back(zmq::message_t());
        else m.move_tail_to(reply.body_at, out_);
        send_to_client(r->from, r->cost);
    } else {
        inc(stats_.undeliverable); // its connection closed: nobody would read the reply
    }
    finish(r);
    if (!w.ready) make_ready(w); // a worker that still had credit keeps its place in the line
    dispatch(s);
}

service& mdp_engine::service_for(std::string_view name, clock::time_point now) {
    auto it = services_.find(name);
    if (it == services_.end()) {
        it = services_.try_emplace(std::string(name)).first;
        it->second.name = it->first;
        it->second.last_active = now;
        stats_.services.store(services_.size(), std::memory_order_relaxed);
    }
    return it->second;
}

void mdp_engine::make_ready(worker& w) {
    service& s = *w.svc;
    w.ready = true;
    w.next = nullptr;
    w.prev = s.ready_tail;
    if (s.ready_tail) s.ready_tail->next = &w;
    else s.ready_head = &w;
    s.ready_tail = &w;
    ++s.ready_count;
}

void mdp_engine::unlink_ready(worker& w) noexcept {
    if (!w.ready) return;
    service& s = *w.svc;
    if (w.prev) w.prev->next = w.next;
    else s.ready_head = w.next;
    if (w.next) w.next->prev = w.prev;
    else s.ready_tail = w.prev;
    w.prev = w.next = nullptr;
    w.ready = false;
    --s.ready_count;
}

void mdp_engine::enqueue(service& s, request* r) {
    lane* l = lane_for(*r->from, s);
    l->queue.push_back(r);
    r->in_lane = l;
    // Arrival order across all lanes: new requests are always the newest.
    r->older = newest_;
    r->newer = nullptr;
    if (newest_) newest_->newer = r;
    else oldest_ = r;
    newest_ = r;
    ++s.queued;
    ++queued_;
    queued_bytes_ += r->bytes;
    stats_.queued.store(queued_, std::memory_order_relaxed);
    stats_.queued_bytes.store(queued_bytes_, std::memory_order_relaxed);
}

void mdp_engine::requeue(service& s, request* r) {
    s.retry.push_front(r);
    r->in_lane = nullptr;
    ++retrying_;
    ++s.queued;
    ++queued_;
    queued_bytes_ += r->bytes;
    stats_.queued.store(queued_, std::memory_order_relaxed);
    stats_.queued_bytes.store(queued_bytes_, std::memory_order_relaxed);
}

lane* mdp_engine::lane_for(client& c, service& s) {
    for (lane* l : c.lanes)
        if (l->svc == &s) return l;
    lane* l = free_lanes_;
    if (l) {
        free_lanes_ = l->next;
    } else {
        lane_storage_.push_back(std::make_unique<lane>());
        l = lane_storage_.back().get();
    }
    l->owner = &c;
    l->svc = &s;
    // Into the ring at the tail: it is served after every lane already waiting.
    l->next = nullptr;
    l->prev = s.lanes_tail;
    if (s.lanes_tail) s.lanes_tail->next = l;
    else s.lanes_head = l;
    s.lanes_tail = l;
    c.lanes.push_back(l);
    return l;
}

void mdp_engine::release_lane(lane* l) noexcept {
    service& s = *l->svc;
    if (l->prev) l->prev->next = l->next;
    else s.lanes_head = l->next;
    if (l->next) l->next->prev = l->prev;
    else s.lanes_tail = l->prev;
    auto& lanes = l->owner->lanes;
    lanes.erase(std::find(lanes.begin(), lanes.end(), l)); // a handful at most
    l->owner = nullptr;
    l->svc = nullptr;
    l->prev = nullptr;
    l->next = free_lanes_;
    free_lanes_ = l;
}

request* mdp_engine::pop_lane(lane& l) {
    request* r = l.queue.pop_front();
    if (r->older) r->older->newer = r->newer;
    else oldest_ = r->newer;
    if (r->newer) r->newer->older = r->older;
    else newest_ = r->older;
    r->older = r->newer = nullptr;
    r->in_lane = nullptr;
    service& s = *l.svc;
    if (l.queue.empty()) {
        release_lane(&l);
    } else if (s.lanes_tail != &l) {
        // Served once: to the back of the ring, so the other clients' lanes go first.
        if (l.prev) l.prev->next = l.next;
        else s.lanes_head = l.next;
        l.next->prev = l.prev;
        l.prev = s.lanes_tail;
        l.next = nullptr;
        s.lanes_tail->next = &l;
        s.lanes_tail = &l;
    }
    count_dequeued(s, r);
    return r;
}

void mdp_engine::count_dequeued(service& s, request* r) {
    --s.queued;
    --queued_;
    queued_bytes_ -= r->bytes;
    stats_.queued.store(queued_, std::memory_order_relaxed);
    stats_.queued_bytes.store(queued_bytes_, std::memory_order_relaxed);
}

request* mdp_engine::dequeue(service& s) {
    if (request* r = s.retry.pop_front()) {
        --retrying_;
        count_dequeued(s, r);
        return r;
    }
    return s.lanes_head ? pop_lane(*s.lanes_head) : nullptr;
}

void mdp_engine::drop_waiting(client& c) {
    while (!c.lanes.empty()) {
        request* r = pop_lane(*c.lanes.back()); // releases the lane with its last request
        inc(stats_.abandoned);
        finish(r);
    }
}

void mdp_engine::expire_requests(clock::time_point now) {
    if (config_.request_ttl.count() <= 0) return;
    // The oldest waiting request in all lanes is the front of its own lane (each lane is in
    // arrival order), so expiry pops from the head of the arrival list.
    while (oldest_ && now - oldest_->arrived >= config_.request_ttl) {
        lane& l = *oldest_->in_lane;
        service& s = *l.svc;
        reject(pop_lane(l), s.name, reject_reason::expired);
    }
    if (retrying_ == 0) return;
    for (auto& [name, s] : services_) {
        // Retry queues hold requests that already reached a worker, oldest delivery first.
        while (!s.retry.empty() && now - s.retry.front()->arrived >= config_.request_ttl) {
            request* r = s.retry.pop_front();
            --retrying_;
            count_dequeued(s, r);
            reject(r, s.name, reject_reason::expired);
        }
    }
}

void mdp_engine::dispatch(service& s) {
    while (s.queued > 0 && s.ready_head) {
        request* r = dequeue(s);
        worker& w = *s.ready_head;
        unlink_ready(w);
        const std::uint32_t slot = w.free_slots.back();
        r->generation = next_generation_++;
        out_.clear();
        codec::request_envelope(out_, w.proto, w.identity, request_tag{slot, r->generation},
                                r->from->handle);
        for (auto& f : r->body) out_.push_back(copy_frame(f));
        const auto status = outbox_.send(out_);
        if (status != send_status::sent) {
            // Unroutable: the worker's connection is gone. Would block: it is not reading. Either
            // way it cannot take work; put the request back and forget the worker.
            requeue(s, r);
            remove_worker(w, status == send_status::would_block);
            continue;
        }
        w.free_slots.pop_back();
        w.slots[slot] = r;
        w.sent_since_tick = true;
        r->sent = next_sent_++;
        ++r->attempts;
        ++s.in_flight;
        inc(stats_.dispatched);
        // With credit left it goes to the back of the line: requests spread over the workers.
        if (!w.free_slots.empty()) make_ready(w);
    }
    stats_.queued.store(queued_, std::memory_order_relaxed);
}

void mdp_engine::send_command(std::string_view identity, codec::protocol proto,
                              mdp::worker_command c) {
    out_.clear();
    codec::command_message(out_, proto, identity, c);
    (void)outbox_.send(out_); // best effort: the peer may be gone
}

void mdp_engine::remove_worker(worker& w, bool send_disconnect) {
    service* s = w.svc;
    if (send_disconnect) {
        inc(stats_.workers_disconnected);
        send_command(w.identity, w.proto, mdp::worker_command::disconnect);
    }
    unlink_ready(w);
    // Its requests leave with it; scratch_requests_ keeps them while w is erased.
    std::vector<request*> held;
    held.swap(scratch_requests_);
    held.clear();
    for (request* r : w.slots)
        if (r) held.push_back(r);
    // Slots are reused, so slot order is not sending order; the docs promise the latter.
    std::sort(held.begin(), held.end(),
              [](const request* a, const request* b) { return a->sent < b->sent; });
    if (s) --s->workers;
    memory_.unhold(worker_entry_cost(static_cast<std::uint32_t>(w.slots.size())));
    note_memory();
    workers_.erase(workers_.find(std::string_view(w.identity))); // w is gone from here on
    stats_.workers.store(workers_.size(), std::memory_order_relaxed);
    if (s && !held.empty()) {
        // At-least-once: back to the head of the queue, so they do not wait behind newer
        // requests; the oldest delivery ends up first.
        for (auto r = held.rbegin(); r != held.rend(); ++r) {
            --s->in_flight;
            if ((*r)->attempts >= config_.max_attempts) {
                reject(*r, s->name, reject_reason::too_many_attempts);
            } else {
                requeue(*s, *r);
                inc(stats_.requeued);
            }
        }
        dispatch(*s);
    }
    held.clear();
    scratch_requests_.swap(held); // keep the capacity for the next removal
    stats_.queued.store(queued_, std::memory_order_relaxed);
}

void mdp_engine::on_tick(clock::time_point now) {
    scratch_.clear();
    for (auto& [id, w] : workers_) {
        if (now >= w.expiry) {
            scratch_.push_back(&w);
        } else if (!w.sent_since_tick) {
            // Busy workers are heartbeated too: they must know the broker is alive while they work.
            send_command(w.identity, w.proto, mdp::worker_command::heartbeat);
        }
        w.sent_since_tick = false;
    }
    // Take every expired worker out of the ready lists first, so that a request re-queued by one
    // removal is never dispatched to another worker that is about to be removed.
    for (worker* w : scratch_) unlink_ready(*w);
    expire_requests(now);
    for (worker* w : scratch_) {
        inc(stats_.workers_expired);
        log(log_level::info, "worker of service '%s' expired", w->svc ? w->svc->name.c_str() : "?");
        remove_worker(*w, true);
    }
    for (auto it = clients_.begin(); it != clients_.end();) {
        // An idle client is forgotten like an idle service; it gets a new handle if it returns.
        const client& c = it->second;
        if (c.outstanding == 0 && now - c.last_active >= config_.service_ttl) {
            if (c.fd >= 0) {
                auto p = peer_by_fd_.find(c.fd);
                if (p != peer_by_fd_.end() && p->second == c.id && !workers_.count(c.id))
                    peer_by_fd_.erase(p);
            }
            it = erase_client(it);
        } else {
            ++it;
        }
    }
    for (auto it = services_.begin(); it != services_.end();) {
        const service& s = it->second;
        if (s.workers == 0 && s.queued == 0 && s.in_flight == 0 &&
            now - s.last_active >= config_.service_ttl)
            it = services_.erase(it);
        else
            ++it;
    }
    stats_.services.store(services_.size(), std::memory_order_relaxed);
}

void mdp_engine::disconnect_all() {
    for (auto& [id, w] : workers_) send_command(w.identity, w.proto, mdp::worker_command::disconnect);
    stats_.workers_disconnected.fetch_add(workers_.size(), std::memory_order_relaxed);
}

broker_stats mdp_engine::stats() const noexcept {
    auto g = [](const std::atomic<std::uint64_t>& a) { return a.load(std::memory_order_relaxed); };
    broker_stats s;
    s.requests = g(stats_.requests);
    s.replies = g(stats_.replies);
    s.dispatched = g(stats_.dispatched);
    s.requeued = g(stats_.requeued);
    s.rejected = g(stats_.rejected);
    s.mmi = g(stats_.mmi);
    s.malformed = g(stats_.malformed);
    s.workers_registered = g(stats_.workers_registered);
    s.workers_expired = g(stats_.workers_expired);
    s.workers_disconnected = g(stats_.workers_disconnected);
    s.undeliverable = g(stats_.undeliverable);
    s.workers = g(stats_.workers);
    s.services = g(stats_.services);
    s.queued = g(stats_.queued);
    s.queued_bytes = g(stats_.queued_bytes);
    s.expired = g(stats_.expired);
    s.clients = g(stats_.clients);
    s.disconnects = g(stats_.disconnects);
    s.abandoned = g(stats_.abandoned);
    s.memory = g(stats_.memory) + memory_.in_transit();
    s.replies_dropped = g(stats_.replies_dropped);
    for (const auto& fill : stats_sources_) fill(s);
    return s;
}

} // namespace zmesh::nodes::detail
