// SPDX-License-Identifier: MPL-2.0
// memory_meter.hpp — internal: the one memory bound of the broker (broker_config::max_memory).
//
// What the broker holds for its peers is counted in real bytes, as it goes:
//  - requests, from the moment they are accepted until their reply (or rejection) leaves: the
//    request record, its frame slots and every body byte. Body frames of 34 bytes to 8 KiB are
//    copied into buffers of their own size when a request is accepted: libzmq receives them
//    zero-copy as slices of a shared 8 KiB buffer (in_batch_size), so a 1 KiB frame kept for
//    minutes would pin 8 KiB, which no count of frame sizes would show.
//  - replies on their way to a client, from the moment the broker sends them until libzmq has
//    written them to the connection. Each reply's last frame is handed to libzmq with a free
//    function (zmq_msg_init_data) that gives the bytes back, on whichever thread libzmq frees
//    it; a client that does not read therefore keeps its replies counted.
// Estimates of libzmq's own bookkeeping per frame (a 64-byte zmq_msg_t slot, the content header
// and malloc's overhead of a heap frame) are part of the count, so the bound holds for the
// process's resident memory up to the fixed overhead docs/broker.md states.
#pragma once

#include <zmq.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace zmesh::nodes::detail {

/// Bytes a frame of @p size occupies beyond its zmq_msg_t slot: frames up to 33 bytes live
/// inside the slot (libzmq's "very small messages"); larger ones on the heap, with a content
/// header and malloc's own overhead.
[[nodiscard]] constexpr std::size_t frame_heap_cost(std::size_t size) noexcept {
    return size <= 33 ? 0 : size + 64;
}
/// Bytes of one zmq_msg_t slot, in a frame vector or in a libzmq pipe.
inline constexpr std::size_t frame_slot_cost = 64;
/// Largest frame libzmq may hand over as a slice of its shared receive buffer.
inline constexpr std::size_t zero_copy_limit = 8192;

/// Replaces @p frame by a copy in a buffer of its own if it may be a slice of a shared receive
/// buffer (see above), so that what it keeps alive is its own size.
void compact(zmq::message_t& frame);

/// A client's replies still inside libzmq. Shared by the client's entry in the broker and by
/// every reply in transit to it, which may outlive the entry; freed by the last of them.
class reply_account {
  public:
    [[nodiscard]] std::int64_t bytes() const noexcept {
        return bytes_.load(std::memory_order_relaxed);
    }
    void add(std::int64_t n) noexcept { bytes_.fetch_add(n, std::memory_order_relaxed); }
    void retain() noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }
    /// Drops one reference; deletes the account with the last one.
    static void release(reply_account* a) noexcept {
        if (a->refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete a;
    }

  private:
    std::atomic<std::int64_t> bytes_{0};
    std::atomic<std::uint32_t> refs_{1};
};

/// The broker's count of what it holds, against its bound. Loop thread only, except that
/// replies in transit are given back from libzmq's threads (atomically).
class memory_meter {
  public:
    explicit memory_meter(std::size_t limit) : limit_(limit), transit_(new reply_account) {}
    ~memory_meter() { reply_account::release(transit_); }
    memory_meter(const memory_meter&) = delete;
    memory_meter& operator=(const memory_meter&) = delete;

    [[nodiscard]] std::size_t limit() const noexcept { return limit_; }
    /// Everything counted now: held requests plus replies in transit.
    [[nodiscard]] std::size_t used() const noexcept {
        const auto transit = transit_->bytes();
        return held_ + static_cast<std::size_t>(transit > 0 ? transit : 0);
    }
    /// Whether @p bytes more would still be within the bound.
    [[nodiscard]] bool fits(std::size_t bytes) const noexcept { return used() + bytes <= limit_; }

    /// Bytes of held requests (loop thread only).
    [[nodiscard]] std::size_t held() const noexcept { return held_; }
    /// Bytes of replies inside libzmq. Thread-safe.
    [[nodiscard]] std::size_t in_transit() const noexcept {
        const auto transit = transit_->bytes();
        return static_cast<std::size_t>(transit > 0 ? transit : 0);
    }
    void hold(std::size_t bytes) noexcept { held_ += bytes; }
    void unhold(std::size_t bytes) noexcept { held_ -= bytes; }

    /// Hands @p frame (the last frame of a reply of @p cost bytes) to libzmq with a free
    /// function that gives @p cost back to this meter and to @p account (may be null) when
    /// libzmq is done with it, which may be after the meter is gone: the in-transit count is a
    /// shared account too. Copies the frame unless it is larger than zero_copy_limit.
    /// @throws std::bad_alloc
    zmq::message_t track(zmq::message_t&& frame, std::size_t cost, reply_account* account);

  private:
    std::size_t limit_;
    std::size_t held_ = 0;     // requests (loop thread only)
    reply_account* transit_;   // replies inside libzmq, all clients together
};

} // namespace zmesh::nodes::detail
