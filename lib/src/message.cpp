// SPDX-License-Identifier: MPL-2.0
// message.cpp — multipart message I/O and envelope helpers.
#include <zmesh/envelope.hpp>
#include <zmesh/message.hpp>

#include <cerrno>
#include <iterator>

namespace zmesh {

message::message(std::initializer_list<std::string_view> frames) {
    frames_.reserve(frames.size());
    for (auto f : frames) push_back(f);
}

std::size_t message::byte_size() const noexcept {
    std::size_t n = 0;
    for (const auto& f : frames_) n += f.size();
    return n;
}

void message::push_front(zmq::message_t&& frame) {
    frames_.insert(frames_.begin(), std::move(frame));
}

void message::push_front(std::string_view bytes) {
    frames_.emplace(frames_.begin(), bytes.data(), bytes.size());
}

zmq::message_t message::pop_front() {
    zmq::message_t f(std::move(frames_.front()));
    frames_.erase(frames_.begin());
    return f;
}

zmq::message_t message::pop_back() {
    zmq::message_t f(std::move(frames_.back()));
    frames_.pop_back();
    return f;
}

void message::move_tail_to(std::size_t first, message& out) {
    if (first >= frames_.size()) return;
    auto from = frames_.begin() + static_cast<std::ptrdiff_t>(first);
    out.frames_.insert(out.frames_.end(), std::make_move_iterator(from),
                       std::make_move_iterator(frames_.end()));
    frames_.erase(from, frames_.end());
}

bool message::recv(zmq::socket_ref socket, zmq::recv_flags flags) {
    frames_.clear();
    for (;;) {
        zmq::message_t frame;
        zmq::recv_result_t got;
        try {
            got = socket.recv(frame, flags);
        } catch (const zmq::error_t& e) {
            if (e.num() == ETERM) {
                frames_.clear();
                return false;
            }
            throw;
        }
        if (!got) {
            // Only the first frame can be missing: the rest of a multipart message arrives with it.
            frames_.clear();
            return false;
        }
        const bool more = frame.more();
        frames_.push_back(std::move(frame));
        if (!more) return true;
        flags = zmq::recv_flags::none;
    }
}

send_status message::send(zmq::socket_ref socket, zmq::send_flags flags) {
    const std::size_t n = frames_.size();
    for (std::size_t i = 0; i < n; ++i) {
        const bool last = i + 1 == n;
        auto f = last ? flags : (flags | zmq::send_flags::sndmore);
        try {
            if (!socket.send(frames_[i], f)) {
                if (i == 0) return send_status::would_block;
                throw zmq::error_t(); // EAGAIN mid-message cannot happen in libzmq
            }
        } catch (const zmq::error_t& e) {
            if (i == 0 && e.num() == EHOSTUNREACH) return send_status::unroutable;
            if (i == 0 && e.num() == ETERM) return send_status::terminated;
            throw;
        }
    }
    frames_.clear();
    return send_status::sent;
}

message message::clone() const {
    message copy;
    copy.frames_.reserve(frames_.size());
    for (const auto& f : frames_) copy.frames_.emplace_back(f.data(), f.size());
    return copy;
}

std::optional<message> pop_envelope(message& m) {
    std::size_t delim = 0;
    while (delim < m.size() && m[delim].size() != 0) ++delim;
    if (delim == m.size()) return std::nullopt;
    message env;
    for (std::size_t i = 0; i < delim; ++i) env.push_back(m.pop_front());
    (void)m.pop_front(); // the delimiter
    return env;
}

void push_envelope(message& m, message&& envelope) {
    m.push_front(zmq::message_t());
    while (!envelope.empty()) m.push_front(envelope.pop_back());
}

void wrap(message& m, zmq::message_t&& address) {
    m.push_front(zmq::message_t());
    m.push_front(std::move(address));
}

std::optional<zmq::message_t> unwrap(message& m) {
    if (m.empty()) return std::nullopt;
    zmq::message_t address = m.pop_front();
    if (!m.empty() && m.front().size() == 0) (void)m.pop_front();
    return address;
}

} // namespace zmesh
