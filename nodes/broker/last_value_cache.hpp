// SPDX-License-Identifier: MPL-2.0
// last_value_cache.hpp — internal: the forwarder's last-value cache (broker `--lvc`).
//
// Keeps the newest data message of each exact topic, all of its frames, and answers the
// `zmesh.lvc` snapshot service of docs/pubsub.md. Frames are kept with zmq_msg_copy, so the cache
// shares the forwarded bytes by reference count instead of copying them.
//
// The cache is bounded: when it holds max_topics topics, a message on a new topic evicts the topic
// updated least recently. Topics sit in a hash map (looked up by string_view, so updating a known
// topic allocates nothing) and on an intrusive doubly-linked list in update order, oldest first,
// which makes both the update and the eviction O(1). An evicted node is re-used for the new topic.
//
// Not thread-safe: it lives on the broker's loop thread. Only the counters are atomic.
#pragma once

#include <zmesh/message.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace zmesh::nodes::detail {

class last_value_cache {
  public:
    /// @param max_topics at least 1.
    explicit last_value_cache(std::size_t max_topics);
    last_value_cache(const last_value_cache&) = delete;
    last_value_cache& operator=(const last_value_cache&) = delete;

    /// Whether @p m is a message the cache keeps: at least a topic and a header frame, and not
    /// zmesh control traffic ("\0zmesh." topics).
    [[nodiscard]] static bool cacheable(const message& m) noexcept;

    /// Makes @p staged (frames already copied from a forwarded message) the newest value of its
    /// topic. @p staged is left empty, its vector storage kept for re-use.
    /// Precondition: cacheable(staged).
    void update(message& staged);

    /// Appends the snapshot groups of docs/pubsub.md for every topic starting with @p prefix,
    /// oldest update first: the payload frame count, the topic, the header, the payload frames.
    /// A linear scan: a snapshot is rare next to updates, and a prefix index would cost every
    /// update more than it saves here.
    void snapshot(std::string_view prefix, message& out);

    [[nodiscard]] std::size_t size() const noexcept { return map_.size(); }
    [[nodiscard]] std::uint64_t evictions() const noexcept {
        return evictions_.load(std::memory_order_relaxed);
    }
    /// size(), readable from any thread.
    [[nodiscard]] std::uint64_t topics() const noexcept {
        return topics_.load(std::memory_order_relaxed);
    }

  private:
    struct entry {
        message value;          // every frame of the newest message; value[0] is the topic
        entry* prev = nullptr;  // update-order list: prev is older, next is newer
        entry* next = nullptr;
    };
    struct topic_hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const noexcept {
            return std::hash<std::string_view>{}(s);
        }
    };

    void unlink(entry& e) noexcept;
    void link_newest(entry& e) noexcept;

    std::size_t max_topics_;
    // Node-based, so entry addresses stay valid across rehashing and extract/insert.
    std::unordered_map<std::string, entry, topic_hash, std::equal_to<>> map_;
    entry* oldest_ = nullptr;
    entry* newest_ = nullptr;
    std::atomic<std::uint64_t> evictions_{0};
    std::atomic<std::uint64_t> topics_{0};
};

} // namespace zmesh::nodes::detail
