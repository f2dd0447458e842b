// SPDX-License-Identifier: MPL-2.0
// forwarder.cpp — XSUB/XPUB forwarding, readiness probes, the subscription limit, drop counting
// and back-pressure.
#include "forwarder.hpp"

#include "printable.hpp"
#include "socket_monitor.hpp"

#include <zmesh/endpoint.hpp>
#include <zmesh/error.hpp>
#include <zmesh/header.hpp>
#include <zmesh/log.hpp>
#include <zmesh/socket_options.hpp>

#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <cstring>

namespace zmesh::nodes::detail {
namespace {

using namespace std::string_view_literals;

using pubsub_wire::probe_prefix;
using pubsub_wire::subscribe_byte;
using pubsub_wire::unsubscribe_byte;
constexpr std::string_view probe_type = "zmesh.probe"sv;

// Messages handled per readiness callback. Bounded so that a flood on one socket cannot starve
// the MDP socket or the timers sharing the loop; what is left is reported again at once.
constexpr int batch = 1000;

// Lossless back-pressure never waits inside a send: the loop is the MDP engine's too, and every
// millisecond spent in a blocking send is a millisecond no client or worker is served. Nor can
// it poll for POLLOUT: libzmq 4.3's XPUB always reports itself writable (its distributor has no
// notion of "every matching pipe full"), so POLLOUT would spin. What does signal room is the
// XPUB's ZMQ_FD: a subscriber's pipe tells the socket it has read down to its low-water mark by
// a command, and a command makes ZMQ_FD readable. The loop polls ZMQ_FD while something is
// held (wait_for_room()). A wake-up can still be missed when one of the forwarder's own calls
// on the XPUB consumes that command first, so a timer retries as well. It backs off, because a
// subscriber that never reads must cost next to nothing: 1 ms, doubling up to 100 ms, about 10
// wake-ups a second once the stall has lasted a while.
constexpr auto first_retry = std::chrono::milliseconds(1);
constexpr auto max_retry = std::chrono::milliseconds(100);

// Probe answers a lossless forwarder holds for full subscribers; past it they are dropped (the
// prober probes again), so a subscriber cannot make the broker hoard memory by probing.
constexpr std::size_t max_held_probes = 1024;

// Largest message the XPUB accepts from a subscriber: a subscription is one flag byte or the
// ZMTP 3.1 command name (10 bytes) followed by the prefix, so this allows prefixes of 1 KiB and
// a bit more. libzmq keeps every subscription in a trie with a node per byte (about 64 bytes of
// memory per byte of prefix, measured on 4.3.4), and frees it recursively: a single 200 KB
// subscription from a peer that then disconnects overflows the loop thread's stack and crashes
// the broker. A larger message closes the subscriber's connection before libzmq stores
// anything (tcp and ipc; inproc peers are in-process and not checked).
constexpr std::int64_t max_subscription_message = 1024 + 16;

} // namespace

forwarder::forwarder(zmq::context_t& ctx, const broker_config& config)
    : lossless_(config.lossless), max_subscriptions_(config.max_subscriptions),
      xsub_(ctx, zmq::socket_type::xsub), xpub_(ctx, zmq::socket_type::xpub),
      xpub_fd_(xpub_.get(zmq::sockopt::fd)), retry_delay_(first_retry),
      refused_log_(5, std::chrono::seconds(10)),
      publish_rate_(config.curve ? config.max_key_publish_rate : 0),
      acl_log_(20, std::chrono::seconds(10)) {
    socket_options o;
    o.send_hwm = config.pubsub_hwm;
    o.recv_hwm = config.pubsub_hwm;
    o.max_message_size = config.max_frame_size;
    apply(xsub_, o);
    apply(xpub_, o);
    // The broker's security covers publishers and subscribers too (its ZAP handler decides).
    if (config.curve) {
        security::make_curve_server(xsub_, *config.curve);
        security::make_curve_server(xpub_, *config.curve);
    } else if (!config.access.allow_addresses.empty() || !config.access.deny_addresses.empty()) {
        security::use_zap(xsub_);
        security::use_zap(xpub_);
    }
    if (config.curve) {
        // Every peer has a key name: screen by it (forwarder_screening.cpp). An inproc peer
        // would have none, and would skip the handshake: not allowed.
        for (const auto* e : {&config.xsub_endpoint, &config.xpub_endpoint})
            if (e->starts_with("inproc://"))
                throw error(errc::invalid_argument,
                            "forwarder: " + *e +
                                ": inproc endpoints have no CURVE; use tcp:// or ipc://");
        screening_ = true;
        acl_ = config.acl;
        xsub_monitor_.emplace(watch_connections(ctx, xsub_, "forwarder.xsub",
                                                ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_ACCEPTED));
        xpub_monitor_.emplace(watch_connections(ctx, xpub_, "forwarder.xpub",
                                                ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_ACCEPTED));
    }
    // Only subscriptions (and messages the forwarder drops) come in on the XPUB.
    xpub_.set(zmq::sockopt::maxmsgsize,
              std::min<std::int64_t>(max_subscription_message, config.max_frame_size));
    // Every subscribe comes up, not only the first per prefix, so that a prefix refused while
    // the table was full is admitted when someone subscribes to it again once there is room.
    // Unsubscribes still come up only when a prefix's last subscriber has left (or from a peer
    // that never subscribed: see on_subscription()): libzmq counts subscribers per prefix, and
    // its count is exact where the forwarder's could not be, since XPUB does not say which
    // subscriber a message came from. Hence VERBOSE, not VERBOSER. A screening forwarder
    // (CURVE) runs the XPUB in manual mode instead: it applies each subscription itself, after
    // checking it, and counts subscribers by connection (forwarder_screening.cpp).
    if (screening_) xpub_.set(zmq::sockopt::xpub_manual, 1);
    else xpub_.set(zmq::sockopt::xpub_verbose, 1);
    // A full subscriber makes send fail with EAGAIN instead of being skipped silently: the
    // forwarder decides what to do (drop and count, or hold back). See forward().
    xpub_.set(zmq::sockopt::xpub_nodrop, 1);
    if (config.lvc) {
        lvc_.emplace(config.lvc_max_topics);
        // The cache must see every topic, not only those someone subscribes to now. XSUB passes
        // this subscription to each publisher as it connects.
        const char everything = subscribe_byte;
        (void)xsub_.send(zmq::const_buffer(&everything, 1), zmq::send_flags::dontwait);
    }
    xsub_endpoint_ = zmesh::bind(xsub_, config.xsub_endpoint);
    xpub_endpoint_ = zmesh::bind(xpub_, config.xpub_endpoint);
}

void forwarder::attach(reactor& r) {
    reactor_ = &r;
    // The monitors by their descriptors, not as sockets: see monitor_descriptor().
    if (xsub_monitor_) r.add_fd(monitor_descriptor(*xsub_monitor_), [this](int) { drain_monitors(); });
    if (xpub_monitor_)
        r.add_fd(monitor_descriptor(*xpub_monitor_), [this](int) {
            drain_monitors();
            // Reading the subscriptions until none is left marks the queue quiet, which a
            // subscriber reconnecting on the same descriptor needs to be in step
            // (forwarder_screening.cpp).
            on_downstream(xpub_);
        });
    if (xsub_monitor_ || xpub_monitor_) drain_monitors(); // events from before they were watched
    r.add(xpub_, [this](zmq::socket_ref s) { on_downstream(s); });
    if (holding()) wait_for_room();
    if (!paused_) r.add(xsub_, [this](zmq::socket_ref s) { on_upstream(s); });
}

void forwarder::detach() noexcept {
    if (!reactor_) return;
    stop_waiting();
    reactor_->remove(xsub_);
    reactor_->remove(xpub_);
    if (xsub_monitor_) reactor_->remove_fd(monitor_descriptor(*xsub_monitor_));
    if (xpub_monitor_) reactor_->remove_fd(monitor_descriptor(*xpub_monitor_));
    reactor_ = nullptr;
}

void forwarder::on_upstream(zmq::socket_ref s) {
    for (int i = 0; i < batch && !paused_; ++i) {
        if (!in_.recv(s, zmq::recv_flags::dontwait)) return;
        if (screening_ && !admit_publication()) {
            in_.clear();
            continue;
        }
        if (!forward()) hold();
    }
}

bool forwarder::forward() {
    const bool cache = lvc_ && last_value_cache::cacheable(in_);
    if (cache) {
        // Shared by reference count before the send hands the frames to libzmq. The cache takes
        // them only once the message is really forwarded, so a snapshot never holds a message
        // the live stream has not carried yet.
        staged_.clear();
        for (auto& f : in_) {
            zmq::message_t copy;
            copy.copy(f);
            staged_.push_back(std::move(copy));
        }
    }
    auto status = in_.send(xpub_, zmq::send_flags::dontwait);
    if (status == send_status::would_block) {
        if (lossless_) {
            staged_.clear();
            return false;
        }
        status = send_dropping(in_);
    }
    if (status == send_status::sent) {
        if (cache) lvc_->update(staged_);
        // Last, and released: whoever reads the count (acquire, in fill()) sees the cache as
        // updated for every message it counts.
        forwarded_.fetch_add(1, std::memory_order_release);
    } else {
        // Context shutting down (or, not expected of a lossy XPUB, still refused): the message
        // is lost, never held, so a lossy forwarder can never stall.
        in_.clear();
        staged_.clear();
    }
    return true;
}

send_status forwarder::send_dropping(message& m) {
    // XPUB reads ZMQ_XPUB_NODROP at every send, so turning it off for this one send delivers the
    // message to every matching subscriber with room and drops it for the full ones, then the
    // next send is checked again. The cost is two setsockopt calls, paid only when dropping.
    //
    // libzmq then stops writing to a subscriber it dropped for until that subscriber has read
    // down to its low-water mark (half its queue), and the messages it misses meanwhile are
    // skipped without EAGAIN. So `dropped` counts each message at which the forwarder found a
    // subscriber full: exact for isolated drops, a lower bound during a sustained overload, never
    // zero while some subscriber is losing messages. Subscribers see the exact loss as sequence
    // gaps (docs/pubsub.md).
    inc(dropped_);
    struct restore_nodrop {
        zmq::socket_t& s;
        ~restore_nodrop() {
            try {
                s.set(zmq::sockopt::xpub_nodrop, 1);
            } catch (const zmq::error_t&) {
                // Only ETERM can fail a setsockopt on a live socket; the loop is ending anyway.
            }
        }
    } restore{xpub_};
    xpub_.set(zmq::sockopt::xpub_nodrop, 0);
    return m.send(xpub_, zmq::send_flags::dontwait);
}

void forwarder::hold() {
    // Lossless: in_ stays held and XSUB unread, so publishers' pipes fill up and their sockets
    // block (or drop, if they do not set NODROP themselves). MDP and probes keep being served.
    paused_ = true;
    inc(stalls_);
    if (reactor_) reactor_->remove(xsub_);
    wait_for_room();
}

void forwarder::wait_for_room() {
    if (!reactor_) return; // attach() calls again
    if (!watching_) {
        // Polled as a plain descriptor next to the XPUB itself. In the same zmq::poll the XPUB's
        // own item reads ZMQ_EVENTS, which processes the commands and so clears ZMQ_FD: it is
        // reported once per batch of commands, never again for the same one, and cannot spin.
        reactor_->add_fd(xpub_fd_, [this](int) { on_room(); });
        watching_ = true;
    }
    if (!retry_) {
        retry_ = reactor_->add_timer(retry_delay_, [this] {
            retry_.reset();
            retry_delay_ = std::min<reactor::clock::duration>(retry_delay_ * 2, max_retry);
            on_room();
        });
    }
}

void forwarder::stop_waiting() noexcept {
    if (!reactor_) return;
    if (retry_) reactor_->cancel(*retry_);
    retry_.reset();
    if (watching_) reactor_->remove_fd(xpub_fd_);
    watching_ = false;
    retry_delay_ = first_retry;
}

void forwarder::on_room() {
    while (!held_probes_.empty()) {
        if (held_probes_.front().send(xpub_, zmq::send_flags::dontwait) ==
            send_status::would_block)
            break;
        held_probes_.pop_front();
    }
    if (paused_ && forward()) {
        paused_ = false;
        if (reactor_) reactor_->add(xsub_, [this](zmq::socket_ref s) { on_upstream(s); });
    }
    if (holding()) wait_for_room();
    else stop_waiting();
}

void forwarder::on_downstream(zmq::socket_ref) {
    read_subscriptions(batch);
    // Those receives may have processed the command that reports a subscriber's room, which then
    // never reaches ZMQ_FD: look now rather than at the next timer.
    if (holding()) on_room();
}

void forwarder::read_subscriptions(int limit) {
    if (screening_) return read_screened(limit);
    for (int i = 0; i < limit; ++i) {
        if (!sub_.recv(xpub_, zmq::recv_flags::dontwait)) break;
        // A one-frame message is a (un)subscription. Anything else is a message an XSUB
        // subscriber sent upstream; zmesh does not carry those to publishers, so that a
        // subscriber cannot flood them through the broker.
        if (sub_.size() == 1) on_subscription(sub_[0]);
    }
}

void forwarder::on_subscription(zmq::message_t& frame) {
    const auto bytes = view(frame);
    if (bytes.empty() || (bytes[0] != subscribe_byte && bytes[0] != unsubscribe_byte)) return;
    const auto topic = bytes.substr(1);
    if (topic.starts_with(probe_prefix)) {
        // Answered here and never passed upstream (docs/pubsub.md); its unsubscribe, explicit or
        // from a subscriber that left, is swallowed with it.
        if (bytes[0] == subscribe_byte) answer_probe(topic);
        return;
    }
    // Each prefix goes upstream once, when it is first admitted, and is cancelled once, when
    // libzmq reports that no subscriber holds it any more; XSUB's own count per prefix is then
    // always 0 or 1, so publishers hold at most max_subscriptions prefixes from this broker.
    // libzmq reports a subscribe for every subscriber, and again for a subscriber that repeats
    // it; those find the prefix admitted already.
    if (bytes[0] == subscribe_byte) {
        subscribe_upstream(frame, topic);
    } else {
        // A prefix never admitted (refused) is not upstream, and its cancel is not passed on.
        // Caveat: libzmq also reports a cancel from a peer that never held the prefix. libzmq's
        // own subscribers never send one, but a hand-made ZMTP peer can, and the prefix is then
        // cancelled upstream under the subscribers that hold it (docs/pubsub.md). The screening
        // forwarder counts holders itself and has no such caveat (forwarder_screening.cpp).
        cancel_upstream(frame, topic);
    }
}

void forwarder::subscribe_upstream(zmq::message_t& frame, std::string_view topic) {
    if (topic.starts_with(pubsub_wire::takeover_prefix)) {
        // A Binary Star subscriber asks for service (set by the broker only with --ha).
        if (takeover_) takeover_();
        return;
    }
    if (subscribed_.contains(topic)) return;
    if (subscribed_.size() >= max_subscriptions_) return refuse(topic);
    subscribed_.emplace(topic);
    inc(subscriptions_);
    // XSUB never blocks on a send: it passes the subscription to every publisher with room.
    if (upstream_) (void)xsub_.send(frame, zmq::send_flags::dontwait);
}

void forwarder::cancel_upstream(zmq::message_t& frame, std::string_view topic) {
    auto it = subscribed_.find(topic);
    if (it == subscribed_.end()) return;
    subscribed_.erase(it);
    if (upstream_) (void)xsub_.send(frame, zmq::send_flags::dontwait);
}

void forwarder::send_upstream(char what, std::string_view topic) {
    zmq::message_t m(topic.size() + 1);
    auto* p = static_cast<char*>(m.data());
    p[0] = what;
    if (!topic.empty()) std::memcpy(p + 1, topic.data(), topic.size());
    (void)xsub_.send(m, zmq::send_flags::dontwait);
}

void forwarder::set_upstream(bool on) {
    if (on == upstream_) return;
    upstream_ = on;
    // XSUB keeps what it was sent and hands it to each publisher as it connects; a cancel
    // removes it there too. So this covers the publishers connected now and later.
    const char what = on ? subscribe_byte : unsubscribe_byte;
    if (lvc_) send_upstream(what, std::string_view());
    for (const auto& topic : subscribed_) send_upstream(what, topic);
    log(log_level::info, "forwarder: %s (%zu prefixes%s)",
        on ? "subscriptions passed upstream: this broker forwards"
           : "subscriptions withdrawn upstream: this broker does not forward",
        subscribed_.size(), lvc_ ? " and the cache's catch-all" : "");
}

void forwarder::refuse(std::string_view topic) {
    // Not passed upstream. libzmq's XPUB has stored it already (as it does in ZMQ_XPUB_MANUAL
    // mode too, in a second trie), so the subscriber still gets what other subscriptions bring
    // to the forwarder under this prefix, and the memory is libzmq's until the subscriber
    // cancels or disconnects (docs/pubsub.md, "Faults").
    inc(subscriptions_refused_);
    if (!refused_log_.allow()) return;
    if (auto n = refused_log_.take_suppressed())
        log(log_level::warn, "forwarder: %llu more subscriptions refused, not logged",
            static_cast<unsigned long long>(n));
    log(log_level::warn,
        "forwarder: subscription to '%s' refused: %zu prefixes subscribed, the limit "
        "(max_subscriptions)",
        printable(topic).c_str(), subscribed_.size());
}

void forwarder::answer_probe(std::string_view topic) {
    inc(probes_);
    message answer;
    answer.push_back(topic);
    answer.push_back(encode(make_header(std::string(probe_type))));
    // XPUB applied the probe subscription before handing it to us, so this reaches the prober,
    // after every message forwarded so far, and the subscriptions it sent before the probe are
    // in effect.
    if (answer.send(xpub_, zmq::send_flags::dontwait) != send_status::would_block) return;
    if (!lossless_) {
        // Some subscriber matching the probe topic (the prober, or one taking everything) is
        // full: the same rule as data.
        (void)send_dropping(answer);
        return;
    }
    // A lossless forwarder must not drop for anyone, and must not hold data behind a probe.
    if (held_probes_.size() < max_held_probes) {
        held_probes_.push_back(std::move(answer));
        wait_for_room();
    } else {
        log(log_level::warn, "forwarder: %zu probe answers held for full subscribers; dropped one",
            held_probes_.size());
    }
}

void forwarder::fill(broker_stats& s) const noexcept {
    auto g = [](const std::atomic<std::uint64_t>& a) { return a.load(std::memory_order_relaxed); };
    s.forwarded = forwarded_.load(std::memory_order_acquire); // first: see forward()
    s.dropped = g(dropped_);
    s.subscriptions = g(subscriptions_);
    s.subscriptions_refused = g(subscriptions_refused_);
    s.probes = g(probes_);
    s.stalls = g(stalls_);
    s.publications_forbidden = g(publications_forbidden_);
    s.subscriptions_forbidden = g(subscriptions_forbidden_);
    s.publications_throttled = g(publications_throttled_);
    if (lvc_) {
        s.lvc_topics = lvc_->topics();
        s.lvc_evictions = lvc_->evictions();
    }
}

} // namespace zmesh::nodes::detail
