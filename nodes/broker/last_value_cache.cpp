// SPDX-License-Identifier: MPL-2.0
// last_value_cache.cpp — newest message per topic, LRU-bounded, and the zmesh.lvc snapshot.
#include "last_value_cache.hpp"

#include <algorithm>
#include <string>
#include <utility>

namespace zmesh::nodes::detail {
namespace {

using namespace std::string_view_literals;

// Control topics (docs/pubsub.md): never application data, so never worth a snapshot.
constexpr std::string_view control_prefix = "\0zmesh."sv;

// topic + header: the smallest message a snapshot group can describe.
constexpr std::size_t min_frames = 2;

} // namespace

last_value_cache::last_value_cache(std::size_t max_topics) : max_topics_(max_topics) {
    // Cap the up-front reservation: max_topics may be generous while few topics are ever used.
    map_.reserve(std::min<std::size_t>(max_topics_, 4096));
}

bool last_value_cache::cacheable(const message& m) noexcept {
    return m.size() >= min_frames && !view(m[0]).starts_with(control_prefix);
}

void last_value_cache::unlink(entry& e) noexcept {
    if (e.prev) e.prev->next = e.next;
    else oldest_ = e.next;
    if (e.next) e.next->prev = e.prev;
    else newest_ = e.prev;
    e.prev = e.next = nullptr;
}

void last_value_cache::link_newest(entry& e) noexcept {
    e.prev = newest_;
    e.next = nullptr;
    if (newest_) newest_->next = &e;
    else oldest_ = &e;
    newest_ = &e;
}

void last_value_cache::update(message& staged) {
    const std::string_view topic = view(staged[0]);
    entry* e = nullptr;
    if (auto it = map_.find(topic); it != map_.end()) {
        e = &it->second;
        unlink(*e);
    } else if (map_.size() < max_topics_) {
        e = &map_.try_emplace(std::string(topic)).first->second;
    } else {
        // Full: the least recently updated topic makes room. Its node (and its key's capacity)
        // is re-used for the new topic, so a churn of topics does not churn the allocator.
        entry* victim = oldest_;
        unlink(*victim);
        auto node = map_.extract(map_.find(view(victim->value[0])));
        node.key().assign(topic.data(), topic.size());
        victim->value.clear();
        e = &map_.insert(std::move(node)).position->second;
        evictions_.fetch_add(1, std::memory_order_relaxed);
    }
    // Swap rather than move: clear() then releases the replaced frames, and both messages keep
    // their vector storage for the next update.
    std::swap(e->value, staged);
    staged.clear();
    link_newest(*e);
    topics_.store(map_.size(), std::memory_order_relaxed);
}

void last_value_cache::snapshot(std::string_view prefix, message& out) {
    for (entry* e = oldest_; e; e = e->next) {
        if (!view(e->value[0]).starts_with(prefix)) continue;
        out.push_back(std::to_string(e->value.size() - min_frames));
        for (auto& frame : e->value) {
            zmq::message_t copy;
            copy.copy(frame); // shares the bytes by reference count (marks the source shared)
            out.push_back(std::move(copy));
        }
    }
}

} // namespace zmesh::nodes::detail
