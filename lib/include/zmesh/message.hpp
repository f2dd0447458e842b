// SPDX-License-Identifier: MPL-2.0
// message.hpp — a multipart ZeroMQ message whose frames are moved, never copied.
//
// zmesh::message owns a sequence of zmq::message_t frames. Receiving fills it frame by frame,
// sending hands each frame to libzmq (which takes its content without a copy); pushing and
// popping frames moves them. clear() keeps the frame storage, so a node that reuses one message
// object per socket allocates nothing of its own per message on the hot path.
#pragma once

#include <zmesh/export.hpp>

#include <zmq.hpp>

#include <cstddef>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

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
    using frames_type = std::vector<zmq::message_t>;
    using iterator = frames_type::iterator;
    using const_iterator = frames_type::const_iterator;

    message() = default;
    /// Builds a message from text frames (copies each; meant for control messages and tests).
    message(std::initializer_list<std::string_view> frames);
    message(message&&) noexcept = default;
    message& operator=(message&&) noexcept = default;
    message(const message&) = delete;
    message& operator=(const message&) = delete;
    ~message() = default;

    /// Number of frames.
    [[nodiscard]] std::size_t size() const noexcept { return frames_.size(); }
    [[nodiscard]] bool empty() const noexcept { return frames_.empty(); }
    /// Sum of the frame sizes in bytes.
    [[nodiscard]] std::size_t byte_size() const noexcept;

    zmq::message_t& operator[](std::size_t i) noexcept { return frames_[i]; }
    const zmq::message_t& operator[](std::size_t i) const noexcept { return frames_[i]; }
    zmq::message_t& front() noexcept { return frames_.front(); }
    zmq::message_t& back() noexcept { return frames_.back(); }
    const zmq::message_t& front() const noexcept { return frames_.front(); }
    const zmq::message_t& back() const noexcept { return frames_.back(); }
    iterator begin() noexcept { return frames_.begin(); }
    iterator end() noexcept { return frames_.end(); }
    const_iterator begin() const noexcept { return frames_.begin(); }
    const_iterator end() const noexcept { return frames_.end(); }

    /// Appends a frame (moved).
    void push_back(zmq::message_t&& frame) { frames_.push_back(std::move(frame)); }
    /// Appends a copy of some bytes as a new frame.
    void push_back(std::string_view bytes) { frames_.emplace_back(bytes.data(), bytes.size()); }
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
    void clear() noexcept { frames_.clear(); }

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

    /// Deep copy, for the rare places (retry buffers) that must keep what they send.
    [[nodiscard]] message clone() const;

  private:
    frames_type frames_;
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
