// SPDX-License-Identifier: MPL-2.0
// forwarder_screening.cpp — the forwarder with CURVE: publications and subscriptions checked
// against the access list by the key that sent them, the publish rate per key, and cutting off
// the connections of keys no longer allowed (docs/security.md, "Pub/sub").
//
// Publications are easy: each message carries its connection's User-Id, and a refused one is
// dropped before it is forwarded.
//
// Subscriptions are not. A plain XPUB applies a subscription to its table the moment libzmq reads
// it off the connection, inside whatever call the forwarder happens to make on the socket,
// possibly a send that then delivers to it: checking it afterwards would be too late. So the
// screening XPUB runs in ZMQ_XPUB_MANUAL mode, where libzmq applies nothing by itself; the
// forwarder reads each subscription, checks it, and applies the allowed ones with
// ZMQ_SUBSCRIBE, which libzmq applies to "the last pipe", the connection of the message just
// read. A refused one is never applied: that subscriber receives nothing under it, and keeps
// its connection and its other subscriptions.
//
// libzmq 4.3.4 (Debian 12) keeps "the last pipe" in a queue parallel to the messages, and two
// things make it wrong (both fixed in later libzmq, not here):
//  - a message from a subscriber that is not a subscription joins the message queue but not
//    the pipe queue, so every later subscription would be applied to the next one's connection
//    until the queue has been read empty. Such a message is a protocol violation (zmesh carries
//    nothing upstream): its sender is cut off, and until the queue is empty ("quiet") no
//    subscription is applied;
//  - a connection that closes while its subscription waits in the queue leaves a pointer to its
//    freed pipe there, and applying the subscription would store that pointer in the table
//    (use after free at the next send). libzmq's monitor reports the close (DISCONNECTED)
//    before the pipe is even asked to close, so a subscription whose descriptor was reported
//    closed since the queue was last quiet is not applied either.
// A subscription not applied for either reason gets its subscriber cut off: the subscriber
// reconnects (libzmq does so by itself) and subscribes afresh, in a quiet queue.
//
// Manual mode also means libzmq no longer counts subscribers per prefix for the forwarder (it
// reports every subscribe and cancel of every connection), so the forwarder counts them itself
// (holders_), per connection as libzmq's table holds them: a repeated subscribe or a cancel of a
// prefix the connection never held changes nothing.
#include "forwarder.hpp"

#include "printable.hpp"
#include "socket_monitor.hpp"

#include <zmesh/log.hpp>

#include <sys/socket.h>

#include <algorithm>
#include <cstdlib>

namespace zmesh::nodes::detail {

using pubsub_wire::probe_prefix;
using pubsub_wire::subscribe_byte;
using pubsub_wire::unsubscribe_byte;

bool forwarder::admit_publication() {
    const auto& topic_frame = in_[0];
    const auto key = security::user_id(topic_frame);
    if (const char* identity = identity_of(topic_frame); identity && identity != last_publisher_) {
        // Another connection than the last message's: note its key, so that cut_off_removed()
        // finds it. Logged once per connection: the allowed side of the decisions (refusals are
        // logged below). A connection already reported closed is not noted.
        const int fd = std::atoi(identity);
        drain_monitors();
        if (xsub_live_.contains(fd)) {
            if (claim(publishers_[fd], key, in_[0], identity))
                log(log_level::info, "forwarder: publisher '%s' connected (descriptor %d)",
                    printable(key).c_str(), fd);
            last_publisher_ = identity;
        }
    }
    if (acl_ && !acl_->allows(key, security::permission::publish, view(topic_frame))) {
        inc(publications_forbidden_);
        if (acl_log_.allow())
            log(log_level::warn,
                "forwarder: refused: '%s' may not publish on '%s' (access list); dropped",
                printable(key).c_str(), printable(view(topic_frame)).c_str());
        return false;
    }
    if (publish_rate_.enabled() && !publish_rate_.admit(key, key_rate_limiter::clock::now())) {
        inc(publications_throttled_);
        if (acl_log_.allow())
            log(log_level::warn,
                "forwarder: '%s' is over its publish rate (max_key_publish_rate); dropped",
                printable(key).c_str());
        return false;
    }
    return true;
}

void forwarder::read_screened(int limit) {
    for (int i = 0; i < limit; ++i) {
        if (!xpub_.recv(sub_frame_, zmq::recv_flags::dontwait)) {
            // The queue is empty: libzmq's last-pipe queue is empty too, and in step again.
            tainted_ = false;
            closed_since_quiet_.clear();
            reaccepted_since_quiet_.clear();
            return;
        }
        on_screened_frame(sub_frame_);
    }
}

void forwarder::on_screened_frame(zmq::message_t& frame) {
    // libzmq's own test, frame by frame: a (un)subscription is a frame that starts with 0 or 1.
    const auto bytes = view(frame);
    const bool is_subscription =
        !bytes.empty() && (bytes[0] == subscribe_byte || bytes[0] == unsubscribe_byte);
    const int fd = zmq_msg_get(frame.handle(), ZMQ_SRCFD);
    if (!is_subscription) {
        tainted_ = true;
        if (fd >= 0) {
            drain_monitors();
            if (acl_log_.allow())
                log(log_level::warn,
                    "forwarder: subscriber '%s' sent a message upstream (not a subscription); "
                    "cut off",
                    printable(security::user_id(frame)).c_str());
            cut_off_subscriber(fd);
        }
        return;
    }
    const bool subscribe = bytes[0] == subscribe_byte;
    const auto topic = bytes.substr(1);
    const bool probe = topic.starts_with(probe_prefix);
    if (fd < 0) {
        // No metadata: the cancel libzmq makes up, for each prefix it held, when a subscriber's
        // connection closes (inproc peers are not allowed with CURVE). libzmq has dropped it from
        // its table already; only the count is left.
        if (!subscribe && !probe) remove_holder(topic, frame);
        return;
    }
    drain_monitors();
    const bool in_step = !tainted_ && !closed_since_quiet_.contains(fd);
    const auto key = security::user_id(frame);
    // What this connection holds in libzmq's table, kept per connection as libzmq keeps it: a
    // descriptor reused by another connection gets a fresh entry, even while messages of the
    // one before are still being read.
    auto& entry = subscribers_[fd];
    if (claim(entry, key, frame, identity_of(frame))) entry.prefixes.clear();
    auto& held = entry.prefixes;

    if (!subscribe) {
        // First, while topic still points into the frame (remove_holder() may send it on).
        if (in_step) xpub_.set(zmq::sockopt::unsubscribe, topic);
        else cut_off_subscriber(fd); // libzmq may go on sending it what it cancelled
        if (!probe) {
            // libzmq drops it from the connection's entry if it is there; so does the count.
            if (auto it = held.find(topic); it != held.end()) {
                held.erase(it);
                remove_holder(topic, frame);
            }
        }
        return;
    }
    if (!probe && held.emplace(topic).second) add_holder(topic);
    if (!in_step) {
        // libzmq's last pipe may not be this connection's (see the top of this file): apply
        // nothing, and let the subscriber come back and subscribe afresh.
        if (acl_log_.allow())
            log(log_level::info,
                "forwarder: subscription of '%s' to '%s' arrived out of step with libzmq's "
                "queue; the subscriber is cut off and will subscribe again",
                printable(key).c_str(), printable(topic).c_str());
        cut_off_subscriber(fd);
        return;
    }
    if (probe) {
        // Open to every key: a probe carries no data.
        xpub_.set(zmq::sockopt::subscribe, topic);
        answer_probe(topic);
        return;
    }
    if (acl_ && !acl_->allows(key, security::permission::subscribe, topic)) {
        // Not applied: libzmq sends this subscriber nothing under it.
        inc(subscriptions_forbidden_);
        if (acl_log_.allow())
            log(log_level::warn,
                "forwarder: refused: '%s' may not subscribe to '%s' (access list); it gets "
                "nothing of it",
                printable(key).c_str(), printable(topic).c_str());
        return;
    }
    xpub_.set(zmq::sockopt::subscribe, topic);
    log(log_level::debug, "forwarder: '%s' subscribes to '%s'", printable(key).c_str(),
        printable(topic).c_str());
    subscribe_upstream(frame, topic);
}

bool forwarder::claim(peer& p, std::string_view key, zmq::message_t& frame, const char* identity) {
    if (p.identity == identity) return false;
    p.key.assign(key);
    p.identity = identity;
    p.pin.copy(frame); // shares the metadata: its reference count keeps the identity unique
    return true;
}

void forwarder::add_holder(std::string_view topic) {
    auto it = holders_.find(topic);
    if (it == holders_.end()) it = holders_.emplace(std::string(topic), 0).first;
    ++it->second;
}

void forwarder::remove_holder(std::string_view topic, zmq::message_t& frame) {
    auto it = holders_.find(topic);
    if (it == holders_.end()) return;
    if (--it->second > 0) return;
    holders_.erase(it);
    // The frame is a cancel (first byte 0), as XSUB takes it; sending it ends @p topic.
    cancel_upstream(frame, topic);
}

void forwarder::cut_off(int fd) noexcept {
    // Under libzmq, which then sees the connection end as if the peer had closed it: the pipe
    // goes, with its subscriptions. libzmq 4.3 has no call to close one peer of a socket.
    (void)::shutdown(fd, SHUT_RDWR);
}

void forwarder::cut_off_subscriber(int fd) noexcept {
    // A descriptor reported closed since the queue was quiet may be anyone's now, unless the
    // XPUB has accepted a connection on it again since: only then is it a subscriber's.
    if (closed_since_quiet_.contains(fd) && !reaccepted_since_quiet_.contains(fd)) return;
    cut_off(fd);
}

void forwarder::drain_monitors() {
    if (xsub_monitor_)
        drain_events(*xsub_monitor_, [this](int event, int fd) {
            if (event == ZMQ_EVENT_ACCEPTED) {
                xsub_live_.insert(fd);
            } else if (event == ZMQ_EVENT_DISCONNECTED) {
                xsub_live_.erase(fd);
                if (auto it = publishers_.find(fd); it != publishers_.end()) {
                    if (it->second.identity == last_publisher_) last_publisher_ = nullptr;
                    publishers_.erase(it);
                }
            }
        });
    if (xpub_monitor_)
        drain_events(*xpub_monitor_, [this](int event, int fd) {
            if (event == ZMQ_EVENT_DISCONNECTED) {
                xpub_live_.erase(fd);
                subscribers_.erase(fd);
                closed_since_quiet_.insert(fd);
                reaccepted_since_quiet_.erase(fd);
            } else if (event == ZMQ_EVENT_ACCEPTED) {
                xpub_live_.insert(fd);
                if (closed_since_quiet_.contains(fd)) reaccepted_since_quiet_.insert(fd);
            }
        });
}

void forwarder::set_access_list(std::shared_ptr<const security::access_list> acl) {
    acl_ = std::move(acl);
    if (!acl_ || !screening_) return;
    // A subscription applied under the old list that the new one refuses: libzmq can take a
    // subscription back from one connection only right after reading a message from it, so the
    // subscriber goes, and meets the new list when it subscribes again.
    drain_monitors();
    for (auto it = subscribers_.begin(); it != subscribers_.end();) {
        // Not a structured binding: clang (the fuzz build) will not capture one in a lambda.
        const int fd = it->first;
        const subscriber_peer& sp = it->second;
        const auto refused =
            std::find_if(sp.prefixes.begin(), sp.prefixes.end(), [&](const std::string& p) {
                return !acl_->allows(sp.key, security::permission::subscribe, p);
            });
        if (refused == sp.prefixes.end() || !xpub_live_.contains(fd)) {
            ++it;
            continue;
        }
        inc(subscriptions_forbidden_);
        log(log_level::warn,
            "forwarder: '%s' may no longer subscribe to '%s' (access list reloaded); cut off",
            printable(sp.key).c_str(), printable(*refused).c_str());
        cut_off(fd);
        it = subscribers_.erase(it);
    }
}

std::size_t forwarder::cut_off_removed(const std::function<bool(std::string_view)>& admits) {
    if (!screening_) return 0;
    drain_monitors();
    std::size_t n = 0;
    auto sweep = [&](auto& table, const std::unordered_set<int>& live, const char* role) {
        for (auto it = table.begin(); it != table.end();) {
            const std::string& key = it->second.key;
            // An entry of a connection that closed, noted after its close was reported, is not
            // cut: its descriptor may be anyone's by now.
            if (admits(key) || !live.contains(it->first)) {
                ++it;
                continue;
            }
            log(log_level::warn, "forwarder: cut off %s '%s': its key is no longer allowed", role,
                printable(key).c_str());
            cut_off(it->first);
            it = table.erase(it);
            ++n;
        }
    };
    sweep(publishers_, xsub_live_, "publisher");
    sweep(subscribers_, xpub_live_, "subscriber");
    last_publisher_ = nullptr;
    return n;
}

} // namespace zmesh::nodes::detail
