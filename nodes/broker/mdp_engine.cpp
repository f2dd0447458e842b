// SPDX-License-Identifier: MPL-2.0
// mdp_engine.cpp — the Majordomo state machine: routing, heartbeats, expiry and re-queue.
#include "mdp_engine.hpp"

#include "codec/decode.hpp"

#include <msgpack.hpp>

#include <algorithm>
#include <bit>
#include <limits>
#include <cstring>
#include <string>

namespace zmesh::nodes::detail {
namespace {

using codec::f_empty;
using codec::f_identity;
using codec::max_service_name;
using codec::request_tag;


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
    r->prev = tail_;
    if (tail_) tail_->next = r;
    else head_ = r;
    tail_ = r;
    ++size_;
}

void request_queue::push_front(request* r) noexcept {
    r->prev = nullptr;
    r->next = head_;
    if (head_) head_->prev = r;
    else tail_ = r;
    head_ = r;
    ++size_;
}

request* request_queue::pop_front() noexcept {
    request* r = head_;
    if (r) remove(r);
    return r;
}

void request_queue::remove(request* r) noexcept {
    if (r->prev) r->prev->next = r->next;
    else head_ = r->next;
    if (r->next) r->next->prev = r->prev;
    else tail_ = r->prev;
    r->next = r->prev = nullptr;
    --size_;
}

mdp_engine::mdp_engine(const broker_config& config, outbox& out)
    : config_(config), outbox_(out),
      expiry_(config.heartbeat_interval * std::max(config.liveness, 1)),
      memory_(config.max_memory), malformed_log_(10) {
    replayer_.internal = true;
    replayer_.connected = false; // its replies go nowhere; they are kept for retries
    replayer_.handle = handles_.next();
    replayer_.replies = new reply_account;
    add_internal_service(std::string(mdp::zmesh_dlq),
                         [this](message& request, message& reply) { on_dlq(request, reply); });
}

mdp_engine::~mdp_engine() {
    for (auto& [id, c] : clients_) reply_account::release(c.replies);
    reply_account::release(replayer_.replies);
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
    r->parts.reset();
    r->stream.clear();
    r->from = nullptr;
    r->tag.rebuild();
    r->has_id = r->has_header = false;
    r->hdr.type.clear();
    r->hdr.extensions.clear();
    r->hdr.id = message_id{};
    r->hdr.ttl_ms = 0;
    r->hdr.attempt = 0;
    r->priority = default_priority;
    r->svc = nullptr;
    r->deadline = clock::time_point::max();
    r->heap_at = request::npos;
    r->attempts = 0;
    r->cost = 0;
    r->in_lane = nullptr;
    r->in_retry = false;
    r->prev = nullptr;
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
    now_ = now;
    const codec::decoded d = codec::decode(m);
    decoded_proto_ = d.proto;
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
    const auto proto = decoded_proto_;
    // ZMCT02/03: the header first, since every answer names the request's id.
    std::optional<header> h;
    std::string why;
    if (req.header_at) {
        std::error_code ec;
        h = decode_header(m[req.header_at], ec, &why);
        // Is it answered already? That slot of a large table is a cache miss: start the load
        // now, so that it overlaps the client lookup below instead of stalling on_duplicate.
        if (h) kept_.prefetch(h->id);
    }
    client* from = client_for(m, now);
    const auto client_id = view(m[f_identity]);
    zmq::message_t tag;
    if (req.tag_at) tag = std::move(m[req.tag_at]);
    if (req.header_at) {
        if (!h) {
            malformed("ZMCT02/03 request with a header that does not decode", client_id);
            send_error(client_id, from, proto, {}, nullptr, name, "400",
                       "invalid request header: " + why);
            return;
        }
    }
    const message_id* co = h ? &h->id : nullptr;
    if (!req.service_ok) {
        // Answered, not only dropped: the client learns at once that the name cannot work.
        malformed("client request with an invalid service name", client_id);
        send_error(client_id, from, proto, std::move(tag), co, "", "400",
                   "invalid service name: it must be 1.." + std::to_string(max_service_name) +
                       " printable ASCII bytes without spaces");
        return;
    }
    inc(stats_.requests);
    if (acl_ && m.size() > 1) {
        const auto who = security::user_id(m[1]);
        if (!acl_->may_call(who, name)) {
            inc(stats_.forbidden);
            inc(stats_.rejected);
            if (acl_log_.allow())
                log(log_level::warn, "refused: '%s' may not call service '%s' (access list)",
                    std::string(who).c_str(), mdp::printable_service_name(name).c_str());
            send_error(client_id, from, proto, std::move(tag), co, name, "403",
                       "forbidden: this client's key may not call service '" +
                           mdp::printable_service_name(name) + "'");
            return;
        }
        // The allowed side of the decision, at debug: one line per request is for diagnosis.
        if (log_enabled(log_level::debug))
            log(log_level::debug, "allowed: '%s' calls service '%s' (access list)",
                std::string(who).c_str(), mdp::printable_service_name(name).c_str());
    }
    if (mdp::is_broker_service(name)) {
        on_internal(m, from, req, proto, std::move(tag), co);
        return;
    }
    if (h && from && on_duplicate(m, from, req, *h)) return;
    if (h && mdp::wants_fail_fast(*h)) {
        auto it = services_.find(name);
        if (it == services_.end() || !it->second.served) {
            inc(stats_.failed_fast);
            inc(stats_.rejected);
            send_error(client_id, from, proto, std::move(tag), co, name, "404",
                       "no worker has served service '" + mdp::printable_service_name(name) +
                           "'" + similar_services(name));
            return;
        }
    }
    request* r = acquire();
    r->from = from;
    r->proto = proto;
    r->tag = std::move(tag);
    if (h) {
        r->hdr = std::move(*h);
        r->has_id = r->has_header = true;
        r->priority = r->hdr.priority;
    }
    m.move_tail_to(req.body_at, r->body);
    r->bytes = r->body.byte_size();
    r->arrived = now;
    // The deadline: the client's time left, within the broker's request_ttl.
    if (config_.request_ttl.count() > 0) r->deadline = now + config_.request_ttl;
    if (r->has_header && r->hdr.ttl_ms > 0)
        r->deadline = std::min(r->deadline, now + std::chrono::milliseconds(r->hdr.ttl_ms));
    if (!from) {
        // The identity frame is still in m: the error reads the routing id from there.
        zmq::message_t t = std::move(r->tag);
        const message_id id = r->hdr.id;
        const bool has_id = r->has_id;
        release(r);
        inc(stats_.rejected);
        send_error(client_id, nullptr, proto, std::move(t), has_id ? &id : nullptr, name, "503",
                   clients_.size() >= config_.max_clients
                       ? "too many clients: the broker already tracks " +
                             std::to_string(config_.max_clients)
                       : "broker memory full: no room for another client");
        return;
    }
    ++from->outstanding;
    if (from->key_outstanding) ++*from->key_outstanding;
    if (from->outstanding > config_.max_client_requests) {
        reject(r, name, reject_reason::client_limit);
        return;
    }
    if (from->key_outstanding && *from->key_outstanding > config_.max_key_requests) {
        // One key over several connections: each within its own limit, together not.
        reject(r, name, reject_reason::key_limit);
        return;
    }
    if (services_.size() >= config_.max_services && services_.find(name) == services_.end()) {
        reject(r, name, reject_reason::too_many_services);
        return;
    }
    service& s = service_for(name, now);
    ++s.requests;
    if (s.queued >= config_.max_queue) {
        reject(r, s.name, reject_reason::queue_full);
        return;
    }
    // What the request will hold until it is answered, in real bytes (memory_meter.hpp).
    // The body's first message::inline_frames frames are inside the record (sizeof(request));
    // only a spilled body has a frame array of its own.
    const std::size_t spilled =
        r->body.capacity() > message::inline_frames ? r->body.capacity() : 0;
    std::size_t cost = sizeof(request) + spilled * frame_slot_cost +
                       frame_heap_cost(r->tag.size()) + r->hdr.type.size();
    for (auto& f : r->body) {
        compact(f);
        cost += frame_heap_cost(f.size());
    }
    make_room(cost); // kept replies give way to new requests
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
    if (r->has_id) track_id(r);
    enqueue(s, r);
    s.last_active = now;
    dispatch(s);
}

bool mdp_engine::on_duplicate(message& m, client* c, const codec::client_request& req,
                              const header& h) {
    const auto client_id = view(m[f_identity]);
    if (request* r = pending_ids_.find(h.id)) {
        if (r->svc->name != req.service) {
            send_error(client_id, c, decoded_proto_, {}, &h.id, req.service, "400",
                       "message id already in use for a request to service '" +
                           mdp::printable_service_name(r->svc->name) + "'");
            return true;
        }
        inc(stats_.duplicates);
        // The retry joins the request: its reply goes to the connection that sent the retry.
        if (r->from != c) transfer(r, *c);
        r->proto = decoded_proto_;
        return true;
    }
    const auto kept = kept_.find(h.id);
    if (!kept) return false;
    if (kept->service != req.service) {
        send_error(client_id, c, decoded_proto_, {}, &h.id, req.service, "400",
                   "message id already used for a request to service '" +
                       mdp::printable_service_name(kept->service) + "'");
        return true;
    }
    inc(stats_.duplicates);
    // Copied first: sending may forget kept replies to make room, and the views with them.
    thread_local std::string parts;
    parts.assign(kept->parts);
    send_kept(client_id, c, req.service, parts);
    return true;
}

void mdp_engine::track_id(request* r) { pending_ids_.insert(r); }

void mdp_engine::observe_reply(service& s, clock::duration took) noexcept {
    ++s.replies;
    const double seconds = std::chrono::duration<double>(took).count();
    s.latency_sum += seconds;
    // 16 bounds: a linear scan is as fast as a search here, and most replies stop early.
    std::size_t b = 0;
    while (b < service_metrics::latency_bounds.size() && seconds > service_metrics::latency_bounds[b])
        ++b;
    ++s.latency_counts[b];
}

void mdp_engine::fill_service_metrics(std::vector<service_metrics>& out) const {
    out.clear();
    out.reserve(services_.size());
    for (const auto& [name, s] : services_) {
        service_metrics m;
        m.name = name;
        m.requests = s.requests;
        m.replies = s.replies;
        m.requeued = s.requeued;
        m.rejected = s.rejected;
        m.expired = s.expired;
        m.queued = s.queued;
        m.workers = s.workers;
        m.in_flight = s.in_flight;
        m.latency_counts = s.latency_counts;
        m.latency_sum = s.latency_sum;
        out.push_back(std::move(m));
    }
    std::sort(out.begin(), out.end(),
              [](const service_metrics& a, const service_metrics& b) { return a.name < b.name; });
}

void mdp_engine::transfer(request* r, client& to) {
    client& from = *r->from;
    const bool waiting = r->in_lane != nullptr;
    if (waiting) {
        // To the back of the new connection's lane: its fair share starts now.
        service& s = *r->svc;
        lane* l = r->in_lane;
        l->queue.remove(r);
        r->in_lane = nullptr;
        if (l->queue.empty()) release_lane(l);
        lane* nl = lane_for(to, s, r->priority);
        nl->queue.push_back(r);
        r->in_lane = nl;
    }
    from.held -= r->cost;
    --from.outstanding;
    if (from.key_outstanding) --*from.key_outstanding;
    to.held += r->cost;
    ++to.outstanding;
    if (to.key_outstanding) ++*to.key_outstanding;
    r->from = &to;
    if (!from.connected) forget_client_if_done(from);
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
        // CURVE: the key it authenticated with, for the per-key limit. Read from the first
        // frame off the wire (the identity frame carries no metadata).
        if (m.size() > 1) {
            if (const auto key = security::user_id(m[1]); !key.empty())
                c.key_outstanding = &key_outstanding_[std::string(key)];
        }
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
    if (r->has_id) pending_ids_.erase(r);
    heap_erase(r);
    client* c = r->from;
    if (r->cost) {
        memory_.unhold(r->cost);
        c->held -= r->cost;
        note_memory();
    }
    release(r);
    if (c) {
        --c->outstanding;
        if (c->key_outstanding) --*c->key_outstanding;
        if (!c->connected) forget_client_if_done(*c);
    }
}

void mdp_engine::forget_client_if_done(client& c) noexcept {
    if (c.outstanding == 0 && !c.internal) erase_client(clients_.find(std::string_view(c.id)));
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

void mdp_engine::on_internal(message& m, client* c, const codec::client_request& req,
                             codec::protocol proto, zmq::message_t&& tag, const message_id* co) {
    const auto name = req.service;
    const auto body_at = req.body_at;
    inc(stats_.mmi);
    message body;
    if (auto handler = internal_.find(name); handler != internal_.end()) {
        message request;
        m.move_tail_to(body_at, request);
        // The first frame after the identity came off the wire and carries the connection's
        // User-Id (the identity frame the ROUTER makes up carries none).
        caller_key_ = m.size() > 1 ? security::user_id(m[1]) : std::string_view();
        handler->second(request, body);
        caller_key_ = {};
    } else if (name == mdp::mmi_service) {
        const auto target = body_at < m.size() ? view(m[body_at]) : std::string_view();
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
            {"duplicates", st.duplicates},
            {"kept_replies", st.kept_replies},
            {"dead_lettered", st.dead_lettered},
            {"dlq", st.dlq},
            {"dlq_dropped", st.dlq_dropped},
            {"partials", st.partials},
            {"parts_dropped", st.parts_dropped},
            {"failed_fast", st.failed_fast},
            {"forwarded", st.forwarded},
            {"dropped", st.dropped},
            {"subscriptions", st.subscriptions},
            {"subscriptions_refused", st.subscriptions_refused},
            {"probes", st.probes},
            {"stalls", st.stalls},
            {"lvc_topics", st.lvc_topics},
            {"lvc_evictions", st.lvc_evictions},
            {"directory_entries", st.directory_entries},
            {"connections_admitted", st.connections_admitted},
            {"connections_refused", st.connections_refused},
            {"cut_off", st.cut_off},
            {"forbidden", st.forbidden},
            {"publications_forbidden", st.publications_forbidden},
            {"subscriptions_forbidden", st.subscriptions_forbidden},
            {"publications_throttled", st.publications_throttled},
            {"ha_state", st.ha_state},
            {"ha_changes", st.ha_changes},
            {"ha_clients_dropped", st.ha_clients_dropped},
            {"ha_workers_refused", st.ha_workers_refused},
            {"ha_peer_updates", st.ha_peer_updates},
            {"ha_malformed", st.ha_malformed},
            {"ha_ledger", st.ha_ledger},
            {"ha_held", st.ha_held},
            {"ha_released", st.ha_released},
            {"ha_replays", st.ha_replays},
            {"ha_replay_answers", st.ha_replay_answers},
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
    // name views the service frame, which stays in m.
    reply_to_client(view(m[f_identity]), c, proto, std::move(tag),
                    codec::has_client_header(proto) ? reply_header(co, {}) : zmq::message_t(),
                    name, body);
}

void mdp_engine::reply_to_client(std::string_view client_id, client* c, codec::protocol proto,
                                 zmq::message_t&& tag, zmq::message_t&& header,
                                 std::string_view service_name, message& body,
                                 std::size_t releasing, bool final) {
    out_.clear();
    codec::reply_envelope(out_, proto, client_id, service_name, std::move(tag), std::move(header),
                          final);
    // 7/MDP wants a body frame in every reply; so does the memory accounting (the last frame).
    if (body.empty() && !codec::is_v2(proto)) out_.push_back(zmq::message_t());
    body.move_tail_to(0, out_);
    send_to_client(c, releasing, final);
}

zmq::message_t mdp_engine::reply_header(const message_id* co, std::string_view type,
                                        const message_id* id) {
    header h;
    h.id = id ? *id : message_id::generate();
    if (co) h.correlation_id = *co;
    h.type = type;
    return encode(h);
}

void mdp_engine::send_error(std::string_view client_id, client* c, codec::protocol proto,
                            zmq::message_t&& tag, const message_id* co, std::string_view service,
                            std::string_view code, std::string reason, std::size_t releasing) {
    message body;
    zmq::message_t header;
    if (codec::has_client_header(proto)) {
        header = reply_header(co, mdp::error_type);
    } else {
        // Plain clients cannot tell an error by the protocol: a first body frame says it
        // (docs/protocol.md).
        body.push_back(mdp::error_type);
    }
    body.push_back(code);
    body.push_back(std::move(reason));
    reply_to_client(client_id, c, proto, std::move(tag), std::move(header), service, body,
                    releasing);
}

void mdp_engine::send_to_client(client* c, std::size_t releasing, bool final) {
    std::size_t cost = 64; // the transit record (memory_meter.cpp)
    for (const auto& f : out_) cost += frame_slot_cost + frame_heap_cost(f.size());
    // Only unread replies count against the client here: a client that reads gets every reply,
    // however many requests it has waiting. The request answered frees @p releasing bytes.
    make_room(cost);
    const char* why = nullptr;
    const auto unread = c ? std::max<std::int64_t>(c->replies->bytes(), 0) : 0;
    if (c && static_cast<std::size_t>(unread) + cost > config_.max_client_memory)
        why = "it does not read: its unread replies would exceed max_client_memory";
    else if (!memory_.fits(cost > releasing ? cost - releasing : 0))
        why = "broker memory full (max_memory)";
    if (why) {
        inc(final ? stats_.replies_dropped : stats_.parts_dropped);
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
    // `replies` and `undeliverable` count answers (FINALs); a PARTIAL that cannot go is counted
    // in `parts_dropped`.
    if (outbox_.send(out_) == send_status::sent) {
        if (final) inc(stats_.replies);
    } else {
        inc(final ? stats_.undeliverable : stats_.parts_dropped); // client gone or at its HWM
    }
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

void mdp_engine::reject(request* r, std::string_view service_name, reject_reason why,
                         std::string detail) {
    inc(stats_.rejected);
    // Its service's count too, when it has one (a request refused before it reached a queue,
    // for a service the broker has no room to track, has none).
    service* sv = r->svc;
    if (!sv) {
        auto it = services_.find(service_name);
        if (it != services_.end()) sv = &it->second;
    }
    if (sv) {
        ++sv->rejected;
        if (why == reject_reason::expired) ++sv->expired;
    }
    std::string_view code = "503";
    std::string reason;
    bool dead = false;
    switch (why) {
    case reject_reason::queue_full:
        reason = "queue full: service '" + std::string(service_name) + "' already holds " +
                 std::to_string(config_.max_queue) + " requests";
        break;
    case reject_reason::memory_full:
        reason = "broker memory full: " + std::to_string(memory_.used()) + " of " +
                 std::to_string(memory_.limit()) + " bytes (max_memory) in use";
        break;
    case reject_reason::too_many_services:
        reason = "too many services: the broker already tracks " +
                 std::to_string(config_.max_services);
        break;
    case reject_reason::client_limit:
        reason = "too many requests outstanding: this client already has " +
                 std::to_string(config_.max_client_requests) + " queued or in flight";
        break;
    case reject_reason::key_limit:
        reason = "too many requests outstanding for this client's key: its connections already "
                 "have " + std::to_string(config_.max_key_requests) +
                 " queued or in flight (max_key_requests)";
        break;
    case reject_reason::client_memory:
        reason = "client over its memory share: its requests and unread replies hold " +
                 std::to_string(client_bytes(*r->from)) + " of " +
                 std::to_string(config_.max_client_memory) + " bytes (max_client_memory)";
        break;
    case reject_reason::too_many_attempts:
        code = "500";
        reason = "request failed: its worker died " + std::to_string(r->attempts) + " times";
        dead = true;
        break;
    case reject_reason::expired:
        inc(stats_.expired);
        code = "504";
        reason = "deadline passed: no worker took the request within " +
                 std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                    r->deadline - r->arrived)
                                    .count()) +
                 " ms";
        dead = true;
        break;
    case reject_reason::refused:
        code = "422";
        reason = "refused by the worker: " + detail;
        dead = true;
        break;
    }
    client* c = r->from;
    // Every rejection at info, with its reason, the client's handle and the service; rate
    // limited, since a flood of requests is exactly when rejections come in numbers.
    if (events_log_.allow()) {
        if (const auto n = events_log_.take_suppressed())
            log(log_level::info, "%llu broker events not logged (rate limit)",
                static_cast<unsigned long long>(n));
        log(log_level::info, "rejected a request for service '%s' from client %s: %.*s %s",
            mdp::printable_service_name(service_name).c_str(), short_handle(*c).c_str(),
            static_cast<int>(code.size()), code.data(), reason.c_str());
    }
    zmq::message_t tag = std::move(r->tag);
    const message_id id = r->hdr.id;
    const bool has_id = r->has_id;
    const auto proto = r->proto;
    const std::size_t releasing = r->cost;
    if (dead) dead_letter_request(r, service_name, code, reason);
    if (c->connected)
        send_error(c->id, c, proto, std::move(tag), has_id ? &id : nullptr, service_name, code,
                   std::move(reason), releasing);
    else if (!c->internal) inc(stats_.undeliverable); // a replay's answer goes nowhere
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
    else if (acl_ && m.size() > 1 &&
             !acl_->allows(security::user_id(m[1]), security::permission::serve, name)) {
        inc(stats_.forbidden);
        inc(stats_.workers_disconnected);
        if (acl_log_.allow())
            log(log_level::warn, "refused: '%s' may not serve service '%s' (access list)",
                std::string(security::user_id(m[1])).c_str(),
                mdp::printable_service_name(name).c_str());
        send_command(identity, proto, mdp::worker_command::disconnect);
        return;
    }
    if (refusal) {
        // One DISCONNECT and nothing else: a zmesh worker takes that as a refusal and stops.
        malformed(refusal, identity);
        inc(stats_.workers_disconnected);
        send_command(identity, proto, mdp::worker_command::disconnect);
        return;
    }
    if (acl_ && m.size() > 1)
        log(log_level::info, "allowed: '%s' serves service '%s' (access list)",
            std::string(security::user_id(m[1])).c_str(),
            mdp::printable_service_name(name).c_str());
    const std::uint32_t credit = ready.credit;
    memory_.hold(worker_entry_cost(credit));
    note_memory();
    service& s = service_for(name, now);
    s.served = true;
    if (served_names_.size() < config_.max_services) served_names_.emplace(name);
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
    if (events_log_.allow())
        log(log_level::info, "worker registered for service '%s' (connection fd %d, credit %u)",
            mdp::printable_service_name(s.name).c_str(), w.fd, credit);
    make_ready(w);
    dispatch(s);
}

std::optional<std::uint32_t> mdp_engine::reply_slot(const worker& w,
                                                    const codec::worker_reply& reply) const {
    std::uint32_t slot = 0;
    const request* r = nullptr;
    if (!codec::has_tags(w.proto)) {
        r = w.slots[0];
    } else {
        if (reply.tag.slot >= w.slots.size()) return std::nullopt;
        slot = reply.tag.slot;
        r = w.slots[slot];
        if (r && r->generation != reply.tag.generation) return std::nullopt;
    }
    // The reply must name the client handle we gave it; anything else could misroute a reply.
    if (!r || reply.client != std::string_view(r->handle.data(), r->handle.size()))
        return std::nullopt;
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
    // A FINAL is kept for retries: start loading its index slot (see on_client).
    if (r->has_id && reply.final) kept_.prefetch(r->hdr.id);
    s.last_active = now;
    // A ZMWC02 worker's header: its type (and its id, kept for the client).
    std::string type;
    std::optional<message_id> reply_id;
    bool names_request = false; // the worker's header has the `co` the broker would write
    if (reply.header_at && m[reply.header_at].size() > 0) {
        std::error_code ec;
        if (auto h = decode_header(m[reply.header_at], ec)) {
            type = std::move(h->type);
            reply_id = h->id;
            names_request = r->has_id && h->correlation_id && *h->correlation_id == r->hdr.id;
        } else {
            malformed("worker reply header that does not decode (reply delivered without it)",
                      w.identity);
        }
    }
    message body;
    m.move_tail_to(reply.body_at, body);
    if (reply.final && type == mdp::refused_type) {
        // The worker refuses the request: to the dead-letter queue, and 422 to the client.
        w.slots[*slot] = nullptr;
        w.free_slots.push_back(*slot);
        --s.in_flight;
        std::string why = body.empty() ? std::string("(no reason given)") : to_string(body[0]);
        if (why.size() > 512) why.resize(512);
        reject(r, s.name, reject_reason::refused, std::move(why));
        if (!w.ready) make_ready(w);
        dispatch(s);
        return;
    }
    const bool typed_client = codec::has_client_header(r->proto);
    zmq::message_t header;
    if (names_request) {
        // zmesh's worker library sets `co` itself: its frame goes on as it is (its other keys
        // with it, as relays keep them), with no encoding and no allocation per reply.
        header = std::move(m[reply.header_at]);
    } else if (typed_client || r->has_id) {
        header = reply_header(r->has_id ? &r->hdr.id : nullptr, type,
                              reply_id ? &*reply_id : nullptr);
    }
    if (!reply.final) {
        inc(stats_.partials);
        // A part: through at once to a client that streams, kept for one that cannot.
        std::size_t extra = r->has_id ? kept_size(header, body) : 0;
        if (!codec::is_v2(r->proto)) {
            for (auto& f : body) {
                compact(f);
                extra += frame_slot_cost + frame_heap_cost(f.size());
            }
        }
        make_room(extra);
        if (!memory_.fits(extra) || client_bytes(*r->from) + extra > config_.max_client_memory) {
            inc(stats_.parts_dropped);
            if (r->from->drop_log.allow())
                log(log_level::warn, "dropped a reply part to client %s: memory bound",
                    short_handle(*r->from).c_str());
            return;
        }
        memory_.hold(extra);
        r->from->held += extra;
        r->cost += extra;
        note_memory();
        if (r->has_id) append_kept(r->stream, header, body);
        if (codec::is_v2(r->proto)) {
            if (r->from->connected)
                reply_to_client(r->from->id, r->from, r->proto, {}, std::move(header), s.name,
                                body, 0, false);
        } else {
            if (!r->parts) r->parts = std::make_unique<message>();
            body.move_tail_to(0, *r->parts);
        }
        return;
    }
    w.slots[*slot] = nullptr;
    w.free_slots.push_back(*slot); // within its reserved capacity: no allocation
    --s.in_flight;
    observe_reply(s, now - r->arrived);
    if (type == mdp::error_type && !codec::has_client_header(r->proto)) {
        // A worker's error (ZMWC02: typed, body = status, reason) reaches a client without a
        // header as plain clients see every error: a first body frame that says so.
        body.push_front(mdp::error_type);
    }
    if (r->parts && !r->parts->empty()) {
        // The parts a plain client could not take one by one come first in its one reply.
        message all;
        r->parts->move_tail_to(0, all);
        body.move_tail_to(0, all);
        body = std::move(all);
    }
    if (r->has_id) keep_reply(r, header, body);
    if (r->from->connected) {
        // 7/MDP wants a body frame in every reply; a worker that sent none still did the work.
        reply_to_client(r->from->id, r->from, r->proto, std::move(r->tag), std::move(header),
                        s.name, body, r->cost, true);
    } else {
        // Its connection closed: nobody reads the reply now (a replay's is only kept).
        if (!r->from->internal) inc(stats_.undeliverable);
    }
    finish(r);
    if (!w.ready) make_ready(w); // a worker that still had credit keeps its place in the line
    dispatch(s);
}

// A kept reply is one flat record, so keeping it costs one copy however many frames and parts it
// has: per part, u32 header size, header, u32 frame count, then per frame
// u32 size and the bytes (host byte order: it never leaves the process).
namespace {

std::uint32_t get_u32(std::string_view& in) {
    std::uint32_t u = 0;
    std::memcpy(&u, in.data(), sizeof u);
    in.remove_prefix(sizeof u);
    return u;
}

} // namespace

std::size_t mdp_engine::kept_size(const zmq::message_t& header, const message& body) noexcept {
    std::size_t n = 8 + header.size();
    for (const auto& f : body) n += 4 + f.size();
    return n;
}

void mdp_engine::append_kept(std::string& blob, const zmq::message_t& header, const message& body) {
    const std::size_t at = blob.size();
    blob.resize(at + kept_size(header, body));
    write_kept(blob.data() + at, header, body);
}

void mdp_engine::write_kept(char* out, const zmq::message_t& header, const message& body) noexcept {
    const auto put = [&out](std::size_t v) {
        const auto u = static_cast<std::uint32_t>(v);
        std::memcpy(out, &u, sizeof u);
        out += sizeof u;
    };
    const auto put_bytes = [&out](const void* data, std::size_t size) {
        if (size == 0) return;
        std::memcpy(out, data, size);
        out += size;
    };
    put(header.size());
    put_bytes(header.data(), header.size());
    put(body.size());
    for (const auto& f : body) {
        put(f.size());
        put_bytes(f.data(), f.size());
    }
}

void mdp_engine::send_kept(std::string_view client_id, client* c, std::string_view service,
                           std::string_view blob) {
    while (!blob.empty()) {
        const auto header_size = get_u32(blob);
        zmq::message_t header(blob.data(), header_size);
        blob.remove_prefix(header_size);
        message body;
        for (auto frames = get_u32(blob); frames > 0; --frames) {
            const auto size = get_u32(blob);
            body.push_back(blob.substr(0, size));
            blob.remove_prefix(size);
        }
        reply_to_client(client_id, c, decoded_proto_, {}, std::move(header), service, body, 0,
                        blob.empty());
    }
}

void mdp_engine::keep_reply(request* r, const zmq::message_t& header, const message& body) {
    if (!r->has_id || config_.dedupe_window.count() <= 0) return;
    const std::size_t final_size = kept_size(header, body);
    const std::size_t size = r->svc->name.size() + r->stream.size() + final_size;
    const std::size_t growth = kept_.growth_for(size);
    make_room(growth);
    if (!memory_.fits(growth)) return; // not kept: finish() forgets the id, a retry runs again
    // Written straight into the log: no copy through a scratch buffer.
    write_kept(kept_.keep_space(r->hdr.id, now_ + config_.dedupe_window, r->svc->name, r->stream,
                                final_size),
               header, body);
    // Two out for each one in: expired replies leave as new ones come, spread evenly, instead
    // of tens of thousands at once at the next tick (a stall the p99.9 latency showed).
    kept_.expire(now_, 2);
    sync_kept();
}

void mdp_engine::sync_kept() noexcept {
    const std::size_t now_held = kept_.bytes();
    if (now_held >= kept_held_) memory_.hold(now_held - kept_held_);
    else memory_.unhold(kept_held_ - now_held);
    kept_held_ = now_held;
    note_memory();
    stats_.kept_replies.store(kept_.size(), std::memory_order_relaxed);
}

void mdp_engine::make_room(std::size_t bytes) {
    while (!memory_.fits(bytes) && kept_.forget_oldest()) sync_kept();
    if (!memory_.fits(bytes) && kept_.size() == 0 && kept_.bytes() != 0) {
        kept_.trim(); // nothing kept: its chunks and table go back too
        sync_kept();
    }
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
    r->svc = &s;
    lane* l = lane_for(*r->from, s, r->priority);
    l->queue.push_back(r);
    r->in_lane = l;
    heap_push(r);
    ++s.queued;
    ++queued_;
    queued_bytes_ += r->bytes;
    stats_.queued.store(queued_, std::memory_order_relaxed);
    stats_.queued_bytes.store(queued_bytes_, std::memory_order_relaxed);
}

void mdp_engine::requeue(service& s, request* r) {
    s.retry.push_front(r);
    r->in_lane = nullptr;
    r->in_retry = true;
    heap_push(r);
    ++s.queued;
    ++queued_;
    queued_bytes_ += r->bytes;
    stats_.queued.store(queued_, std::memory_order_relaxed);
    stats_.queued_bytes.store(queued_bytes_, std::memory_order_relaxed);
}

lane* mdp_engine::lane_for(client& c, service& s, std::uint8_t priority) {
    for (lane* l : c.lanes)
        if (l->svc == &s && l->priority == priority) return l;
    lane* l = free_lanes_;
    if (l) {
        free_lanes_ = l->next;
    } else {
        lane_storage_.push_back(std::make_unique<lane>());
        l = lane_storage_.back().get();
    }
    l->owner = &c;
    l->svc = &s;
    l->priority = priority;
    // Into its priority's ring at the tail: it is served after every lane already waiting.
    lane_ring& ring = s.levels[priority];
    l->next = nullptr;
    l->prev = ring.tail;
    if (ring.tail) ring.tail->next = l;
    else ring.head = l;
    ring.tail = l;
    s.waiting_levels |= static_cast<std::uint16_t>(1u << priority);
    c.lanes.push_back(l);
    return l;
}

void mdp_engine::release_lane(lane* l) noexcept {
    service& s = *l->svc;
    lane_ring& ring = s.levels[l->priority];
    if (l->prev) l->prev->next = l->next;
    else ring.head = l->next;
    if (l->next) l->next->prev = l->prev;
    else ring.tail = l->prev;
    if (!ring.head) s.waiting_levels &= static_cast<std::uint16_t>(~(1u << l->priority));
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
    r->in_lane = nullptr;
    heap_erase(r);
    service& s = *l.svc;
    lane_ring& ring = s.levels[l.priority];
    if (l.queue.empty()) {
        release_lane(&l);
    } else if (ring.tail != &l) {
        // Served once: to the back of the ring, so the other clients' lanes go first.
        if (l.prev) l.prev->next = l.next;
        else ring.head = l.next;
        l.next->prev = l.prev;
        l.prev = ring.tail;
        l.next = nullptr;
        ring.tail->next = &l;
        ring.tail = &l;
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
        r->in_retry = false;
        heap_erase(r);
        count_dequeued(s, r);
        return r;
    }
    if (s.waiting_levels == 0) return nullptr;
    const int top = static_cast<int>(std::bit_width(static_cast<unsigned>(s.waiting_levels))) - 1;
    const auto lower = static_cast<std::uint16_t>(s.waiting_levels & ((1u << top) - 1));
    int level = top;
    if (lower == 0) {
        s.favoured = 0;
    } else if (++s.favoured > priority_share) {
        // Lower priorities are served less, never not at all: this dispatch goes to the lower
        // priority whose next request has waited longest (docs/protocol.md, "Dispatch").
        s.favoured = 0;
        const request* oldest = nullptr;
        for (int p = 0; p < top; ++p) {
            if (!(lower & (1u << p))) continue;
            const request* front = s.levels[p].head->queue.front();
            if (!oldest || front->arrived < oldest->arrived) {
                oldest = front;
                level = p;
            }
        }
    }
    return pop_lane(*s.levels[level].head);
}

void mdp_engine::unqueue(request* r) {
    service& s = *r->svc;
    if (r->in_lane) {
        lane* l = r->in_lane;
        l->queue.remove(r);
        r->in_lane = nullptr;
        if (l->queue.empty()) release_lane(l);
    } else if (r->in_retry) {
        s.retry.remove(r);
        r->in_retry = false;
    }
    heap_erase(r);
    count_dequeued(s, r);
}

void mdp_engine::drop_waiting(client& c) {
    while (!c.lanes.empty()) {
        request* r = pop_lane(*c.lanes.back()); // releases the lane with its last request
        inc(stats_.abandoned);
        finish(r);
    }
}

// ---- deadlines: a binary min-heap of waiting requests, each knowing its index ----------------

void mdp_engine::heap_push(request* r) {
    if (r->deadline == clock::time_point::max()) return; // no deadline: never expires
    r->heap_at = deadlines_.size();
    deadlines_.push_back(r);
    heap_up(r->heap_at);
}

void mdp_engine::heap_erase(request* r) noexcept {
    const std::size_t i = r->heap_at;
    if (i == request::npos) return;
    r->heap_at = request::npos;
    request* last = deadlines_.back();
    deadlines_.pop_back();
    if (last == r) return;
    deadlines_[i] = last;
    last->heap_at = i;
    heap_up(i);
    heap_down(last->heap_at);
}

void mdp_engine::heap_up(std::size_t i) noexcept {
    while (i > 0) {
        const std::size_t parent = (i - 1) / 2;
        if (deadlines_[parent]->deadline <= deadlines_[i]->deadline) break;
        std::swap(deadlines_[parent], deadlines_[i]);
        deadlines_[parent]->heap_at = parent;
        deadlines_[i]->heap_at = i;
        i = parent;
    }
}

void mdp_engine::heap_down(std::size_t i) noexcept {
    for (;;) {
        const std::size_t l = 2 * i + 1, r = l + 1;
        std::size_t least = i;
        if (l < deadlines_.size() && deadlines_[l]->deadline < deadlines_[least]->deadline) least = l;
        if (r < deadlines_.size() && deadlines_[r]->deadline < deadlines_[least]->deadline) least = r;
        if (least == i) return;
        std::swap(deadlines_[least], deadlines_[i]);
        deadlines_[least]->heap_at = least;
        deadlines_[i]->heap_at = i;
        i = least;
    }
}

void mdp_engine::expire_requests(clock::time_point now) {
    now_ = now;
    while (!deadlines_.empty() && deadlines_.front()->deadline <= now) {
        request* r = deadlines_.front();
        service& s = *r->svc;
        unqueue(r);
        reject(r, s.name, reject_reason::expired);
    }
    forget_kept(now);
}

void mdp_engine::forget_kept(clock::time_point now) {
    kept_.expire(now);
    sync_kept();
}

std::optional<clock::time_point> mdp_engine::next_deadline() const noexcept {
    // Kept replies are not deadlines: they are kept for at least the window and forgotten at
    // the next tick or expiry after it. Waking for each one would cost a timer per reply.
    if (deadlines_.empty()) return std::nullopt;
    return deadlines_.front()->deadline;
}

void mdp_engine::dispatch(service& s) {
    while (s.queued > 0 && s.ready_head) {
        request* r = dequeue(s);
        worker& w = *s.ready_head;
        unlink_ready(w);
        const std::uint32_t slot = w.free_slots.back();
        r->generation = next_generation_++;
        out_.clear();
        zmq::message_t header;
        if (w.proto == codec::protocol::zmwc02) {
            // The worker learns the time left (relative: no clock sync) and earlier deliveries.
            if (!r->has_header && r->hdr.id.is_nil()) r->hdr.id = message_id::generate();
            r->hdr.priority = r->priority;
            r->hdr.attempt = r->attempts;
            r->hdr.ttl_ms = 0;
            if (r->deadline != clock::time_point::max()) {
                const auto left = std::chrono::ceil<std::chrono::milliseconds>(r->deadline - now_);
                r->hdr.ttl_ms = static_cast<std::uint32_t>(std::clamp<std::int64_t>(
                    left.count(), 1, std::numeric_limits<std::uint32_t>::max()));
            }
            header = encode(r->hdr);
        }
        std::copy_n(r->from->handle.begin(), r->handle.size(), r->handle.begin());
        codec::request_envelope(out_, w.proto, w.identity, request_tag{slot, r->generation},
                                std::string_view(r->handle.data(), r->handle.size()),
                                std::move(header));
        for (auto& f : r->body) out_.push_back(copy_frame(f));
        // 7/MDP requires a body frame in a REQUEST; an 18/MDP client may have sent none.
        if (r->body.empty() && !codec::is_v2(w.proto)) out_.push_back(zmq::message_t());
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
                ++s->requeued;
            }
        }
        dispatch(*s);
    }
    held.clear();
    scratch_requests_.swap(held); // keep the capacity for the next removal
    stats_.queued.store(queued_, std::memory_order_relaxed);
}

void mdp_engine::on_tick(clock::time_point now) {
    now_ = now;
    forget_kept(now);
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
    s.duplicates = g(stats_.duplicates);
    s.kept_replies = g(stats_.kept_replies);
    s.dead_lettered = g(stats_.dead_lettered);
    s.dlq = g(stats_.dlq);
    s.dlq_dropped = g(stats_.dlq_dropped);
    s.partials = g(stats_.partials);
    s.parts_dropped = g(stats_.parts_dropped);
    s.failed_fast = g(stats_.failed_fast);
    s.forbidden = g(stats_.forbidden);
    for (const auto& fill : stats_sources_) fill(s);
    return s;
}

} // namespace zmesh::nodes::detail

// ---- the dead-letter queue (docs/protocol.md) -------------------------------------------------

namespace zmesh::nodes::detail {
namespace {

std::int64_t wall_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

// Edit distance of two short names (bounded: names are at most 255 bytes), for "did you mean".
std::size_t edit_distance(std::string_view a, std::string_view b) {
    std::vector<std::size_t> row(b.size() + 1);
    for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i) {
        std::size_t diag = row[0];
        row[0] = i;
        for (std::size_t j = 1; j <= b.size(); ++j) {
            const std::size_t up = row[j];
            row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
            diag = up;
        }
    }
    return row[b.size()];
}

void pack_entry(msgpack::packer<msgpack::sbuffer>& pk, const auto& d, bool full) {
    pk.pack_map(full ? (d.has_header ? 10 : 9) : 8);
    pk.pack(std::string_view("id"));
    pk.pack(d.id.to_hex());
    pk.pack(std::string_view("service"));
    pk.pack(d.service);
    pk.pack(std::string_view("reason"));
    pk.pack(d.reason);
    pk.pack(std::string_view("code"));
    pk.pack(d.code);
    pk.pack(std::string_view("time_ms"));
    pk.pack(d.time_ms);
    pk.pack(std::string_view("attempts"));
    pk.pack(d.attempts);
    pk.pack(std::string_view("type"));
    pk.pack(d.hdr.type);
    pk.pack(std::string_view("priority"));
    pk.pack(static_cast<unsigned>(d.hdr.priority));
    if (!full) return;
    pk.pack(std::string_view("body"));
    pk.pack_array(static_cast<std::uint32_t>(d.body.size()));
    for (const auto& f : d.body) {
        pk.pack_bin(static_cast<std::uint32_t>(f.size()));
        pk.pack_bin_body(static_cast<const char*>(f.data()), static_cast<std::uint32_t>(f.size()));
    }
    if (d.has_header) {
        std::string h;
        encode(d.hdr, h);
        pk.pack(std::string_view("header"));
        pk.pack_bin(static_cast<std::uint32_t>(h.size()));
        pk.pack_bin_body(h.data(), static_cast<std::uint32_t>(h.size()));
    }
}

} // namespace

std::string mdp_engine::similar_services(std::string_view name) const {
    std::vector<std::pair<std::size_t, std::string_view>> near;
    const std::size_t limit = std::max<std::size_t>(2, name.size() / 3);
    for (const auto& known : served_names_) {
        const bool contains = known.find(name) != std::string::npos ||
                              name.find(known) != std::string_view::npos;
        const std::size_t d = edit_distance(name, known);
        if (d <= limit || contains) near.emplace_back(contains ? std::min<std::size_t>(d, 1) : d, known);
    }
    std::sort(near.begin(), near.end());
    if (near.empty()) {
        return served_names_.empty() ? "; no service has had a worker yet"
                                     : "; no known service has a similar name";
    }
    std::string out = "; similar: ";
    for (std::size_t i = 0; i < near.size() && i < 5; ++i) {
        if (i) out += ", ";
        out += mdp::printable_service_name(near[i].second);
    }
    return out;
}

void mdp_engine::dead_letter_request(request* r, std::string_view service, std::string_view code,
                                     std::string reason) {
    inc(stats_.dead_lettered);
    if (config_.dlq_max == 0) return;
    dead_letter d;
    d.id = r->hdr.id.is_nil() ? message_id::generate() : r->hdr.id;
    d.service = service;
    d.reason = std::move(reason);
    d.code = code;
    d.time_ms = wall_ms();
    d.attempts = r->attempts;
    d.has_header = r->has_header;
    if (r->has_header) d.hdr = r->hdr;
    d.hdr.id = d.id;
    d.hdr.priority = r->priority;
    std::size_t cost = sizeof(dead_letter) + 128 + d.service.size() + d.reason.size();
    for (auto& f : r->body) cost += frame_slot_cost + frame_heap_cost(f.size());
    // Frees room first: the oldest dead letters give way to the newest.
    while (!dlq_.empty() && (dlq_.size() >= config_.dlq_max || !memory_.fits(cost))) {
        memory_.unhold(dlq_.front().cost);
        dlq_.pop_front();
        inc(stats_.dlq_dropped);
    }
    make_room(cost);
    if (!memory_.fits(cost)) {
        inc(stats_.dlq_dropped);
        return;
    }
    r->body.move_tail_to(0, d.body); // the request is done with: the DLQ keeps its body
    d.cost = cost;
    memory_.hold(cost);
    note_memory();
    dlq_.push_back(std::move(d));
    stats_.dlq.store(dlq_.size(), std::memory_order_relaxed);
}

bool mdp_engine::replay(dead_letter&& d) {
    // Already pending again (a client retried with its id): that request stands for it; the
    // caller frees the entry.
    if (pending_ids_.find(d.id)) return false;
    kept_.erase(d.id); // answered again by the replay: the newer reply will be kept
    sync_kept();
    if (services_.size() >= config_.max_services && services_.find(d.service) == services_.end())
        return false;
    request* r = acquire();
    r->from = &replayer_;
    r->proto = codec::protocol::zmct02;
    r->hdr = std::move(d.hdr);
    r->hdr.ttl_ms = 0; // as Titanic's replay: the old deadline is dropped, request_ttl applies
    r->has_id = true;
    r->has_header = d.has_header;
    r->priority = r->hdr.priority;
    r->body = std::move(d.body);
    r->bytes = r->body.byte_size();
    r->arrived = now_;
    if (config_.request_ttl.count() > 0) r->deadline = now_ + config_.request_ttl;
    // The entry's bytes move to the request.
    r->cost = d.cost;
    replayer_.held += d.cost;
    ++replayer_.outstanding;
    track_id(r);
    service& s = service_for(d.service, now_);
    enqueue(s, r);
    s.last_active = now_;
    dispatch(s);
    return true;
}

void mdp_engine::on_dlq(message& request, message& reply) {
    const auto arg = [&](std::size_t i) {
        return i < request.size() ? view(request[i]) : std::string_view();
    };
    const auto action = arg(0);
    const auto target = arg(1);
    const auto find = [&](std::string_view hex) {
        const auto id = message_id::from_hex(hex);
        return id ? std::find_if(dlq_.begin(), dlq_.end(),
                                 [&](const dead_letter& d) { return d.id == *id; })
                  : dlq_.end();
    };
    msgpack::sbuffer buf;
    msgpack::packer<msgpack::sbuffer> pk(buf);
    if (action == "list" && request.size() == 1) {
        pk.pack_array(static_cast<std::uint32_t>(dlq_.size()));
        for (const auto& d : dlq_) pack_entry(pk, d, false);
        reply.push_back(std::string_view("200"));
        reply.push_back(zmq::message_t(buf.data(), buf.size()));
    } else if (action == "show" && request.size() == 2) {
        auto it = find(target);
        if (it == dlq_.end()) {
            reply.push_back(std::string_view("404"));
            return;
        }
        pack_entry(pk, *it, true);
        reply.push_back(std::string_view("200"));
        reply.push_back(zmq::message_t(buf.data(), buf.size()));
    } else if ((action == "replay" || action == "purge") && request.size() == 2) {
        const bool replaying = action == "replay";
        std::size_t done = 0;
        // A request that cannot be queued now (past max_services) stays in the DLQ: nothing
        // is lost, and the caller is told (503).
        const auto replayable = [&](const dead_letter& d) {
            return services_.size() < config_.max_services || services_.count(d.service) != 0;
        };
        std::size_t kept_back = 0;
        const auto take = [&](std::deque<dead_letter>::iterator it) {
            if (replaying && !replayable(*it)) {
                ++kept_back;
                return std::next(it);
            }
            dead_letter d = std::move(*it);
            it = dlq_.erase(it);
            if (!replaying || !replay(std::move(d))) {
                memory_.unhold(d.cost);
                note_memory();
            }
            ++done;
            return it;
        };
        if (target == "all") {
            for (auto it = dlq_.begin(); it != dlq_.end();) it = take(it);
            reply.push_back(kept_back ? std::string_view("503") : std::string_view("200"));
            reply.push_back(std::to_string(done));
        } else {
            auto it = find(target);
            if (it == dlq_.end()) {
                reply.push_back(std::string_view("404"));
            } else {
                (void)take(it);
                reply.push_back(done ? std::string_view("200") : std::string_view("503"));
            }
        }
        stats_.dlq.store(dlq_.size(), std::memory_order_relaxed);
    } else {
        reply.push_back(std::string_view("400"));
        reply.push_back(std::string_view(
            "zmesh.dlq: expected list | show ID | replay (ID | all) | purge (ID | all)"));
    }
}

} // namespace zmesh::nodes::detail
