// SPDX-License-Identifier: MPL-2.0
// message.hpp — a multipart ZeroMQ message whose frames are moved, never copied.
//
// zmesh::message owns a sequence of zmq::message_t frames. Receiving fills it frame by frame,
// sending hands each frame to libzmq (which takes its content without a copy); pushing and
// popping frames moves them. The first inline_frames frames live inside the object itself, so a
// message of up to that many frames (a pub/sub delivery, a forwarded publication) never touches
// the heap; a longer one spills to a heap array, which clear() keeps, so a node that reuses one
// message object per socket allocates nothing of its own per message on the hot path.
#pragma once

#include <zmesh/export.hpp>

#include <zmq.hpp>

#include <cstddef>
#include <initializer_list>
#include <new>
#include <string>
#include <string_view>

namespace zmesh {

/// What became of a send. Anything else (ETERM aside) throws zmq::error_t.
enum class send_status {
    sent,        ///< every frame was queued; the message is now empty
    would_block, ///< the peer is at its high-water mark (dontwait); the message is unchanged
    unroutable,  ///< ROUTER_MANDATORY: no peer has that routing id; the message is unchanged
    terminated,  ///< the context is shutting down; the message is unchanged
};

/// A multipart message: an ordered list of frames.
///
/// Not thread-safe; like a zmq::socket_t it belongs to one thread at a time.
///
/// @par Example
/// @code
/// zmesh::message m{"hello", "world"};
/// m.send(socket);                      // frames moved into libzmq
/// zmesh::message in;
/// if (in.recv(socket)) std::string first = in.front().to_string();
/// @endcode
class ZMESH_EXPORT message {
  public:
    using iterator = zmq::message_t*;
    using const_iterator = const zmq::message_t*;

    /// Frames held inside the object before the message spills to the heap: a pub/sub message
    /// ([topic][header][payload]) and a delivery's payload fit.
    static constexpr std::size_t inline_frames = 4;

    message() noexcept = default;
    /// Builds a message from text frames (copies each; meant for control messages and tests).
    message(std::initializer_list<std::string_view> frames);
    /// Takes @p other's frames; @p other is left empty (a heap array moves with its frames).
    message(message&& other) noexcept;
    message& operator=(message&& other) noexcept;
    message(const message&) = delete;
    message& operator=(const message&) = delete;
    ~message();

    /// Number of frames.
    [[nodiscard]] std::size_t size() const noexcept { return size_; }
    [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
    /// Frames the message holds room for without allocating.
    [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }
    /// Sum of the frame sizes in bytes.
    [[nodiscard]] std::size_t byte_size() const noexcept;

    zmq::message_t& operator[](std::size_t i) noexcept { return data_[i]; }
    const zmq::message_t& operator[](std::size_t i) const noexcept { return data_[i]; }
    zmq::message_t& front() noexcept { return data_[0]; }
    zmq::message_t& back() noexcept { return data_[size_ - 1]; }
    const zmq::message_t& front() const noexcept { return data_[0]; }
    const zmq::message_t& back() const noexcept { return data_[size_ - 1]; }
    iterator begin() noexcept { return data_; }
    iterator end() noexcept { return data_ + size_; }
    const_iterator begin() const noexcept { return data_; }
    const_iterator end() const noexcept { return data_ + size_; }

    /// Makes room for @p n frames (allocates only beyond inline_frames).
    void reserve(std::size_t n);
    /// Appends a frame (moved).
    void push_back(zmq::message_t&& frame) {
        if (size_ == capacity_) grow(size_ + 1);
        new (data_ + size_) zmq::message_t(std::move(frame));
        ++size_;
    }
    /// Appends a copy of some bytes as a new frame.
    void push_back(std::string_view bytes) {
        if (size_ == capacity_) grow(size_ + 1);
        new (data_ + size_) zmq::message_t(bytes.data(), bytes.size());
        ++size_;
    }
    /// Prepends a frame (moved).
    void push_front(zmq::message_t&& frame);
    /// Prepends a copy of some bytes as a new frame.
    void push_front(std::string_view bytes);
    /// Removes and returns the first frame. Precondition: !empty().
    zmq::message_t pop_front();
    /// Removes and returns the last frame. Precondition: !empty().
    zmq::message_t pop_back();
    /// Moves the frames [first, size()) to the end of @p out, leaving the first @p first here.
    void move_tail_to(std::size_t first, message& out);
    /// Removes every frame; keeps the storage for reuse.
    void clear() noexcept;

    /// Receives one whole multipart message, replacing the current content.
    /// @returns false if nothing was ready (recv_flags::dontwait) or the context is terminating.
    /// @throws zmq::error_t on any other socket error.
    [[nodiscard]] bool recv(zmq::socket_ref socket, zmq::recv_flags flags = zmq::recv_flags::none);

    /// Sends every frame. On success the frames' contents are handed to libzmq and the message is
    /// left empty. A multipart message is atomic in libzmq, so a refusal (would_block,
    /// unroutable) can only happen at the first frame and leaves the message intact.
    /// @throws zmq::error_t on any other socket error.
    [[nodiscard]] send_status send(zmq::socket_ref socket,
                                   zmq::send_flags flags = zmq::send_flags::none);

    /// Deep copy: every byte of every frame copied.
    [[nodiscard]] message clone() const;

    /// A copy whose frames share this message's contents (zmq_msg_copy): a frame above libzmq's
    /// 33-byte inline size is not copied but reference-counted, so keeping what one sends (the
    /// client's retry buffer) costs no copy of the body. Both messages stay valid and
    /// independent in their frames' lifetimes; neither may change a frame's bytes in place
    /// afterwards, since the other sees them. Not const: libzmq marks the source shared.
    [[nodiscard]] message share();

  private:
    /// Moves the frames to storage for at least @p n frames (inline_frames → heap, doubling).
    void grow(std::size_t n);
    /// Drops the last @p n frames.
    void drop_back(std::size_t n) noexcept;
    /// Takes @p other's frames into this message, which must be empty.
    void take(message& other) noexcept;
    zmq::message_t* inline_data() noexcept {
        return reinterpret_cast<zmq::message_t*>(inline_);
    }

    zmq::message_t* data_ = inline_data();
    std::size_t size_ = 0;
    std::size_t capacity_ = inline_frames;
    alignas(zmq::message_t) unsigned char inline_[inline_frames * sizeof(zmq::message_t)];
};

/// The text of a frame (a copy), for logs and tests.
[[nodiscard]] inline std::string to_string(const zmq::message_t& frame) {
    return std::string(static_cast<const char*>(frame.data()), frame.size());
}

/// A view of a frame's bytes, valid while the frame lives.
[[nodiscard]] inline std::string_view view(const zmq::message_t& frame) noexcept {
    return {static_cast<const char*>(frame.data()), frame.size()};
}

} // namespace zmesh
