// SPDX-License-Identifier: MPL-2.0
// message.cpp — multipart message I/O and envelope helpers.
#include <zmesh/envelope.hpp>
#include <zmesh/message.hpp>

#include <cerrno>
#include <iterator>
#include <new>

namespace zmesh {

message::message(std::initializer_list<std::string_view> frames) {
    reserve(frames.size());
    for (auto f : frames) push_back(f);
}

message::message(message&& other) noexcept { take(other); }

message& message::operator=(message&& other) noexcept {
    if (this != &other) {
        clear();
        if (data_ != inline_data()) {
            ::operator delete(data_);
            data_ = inline_data();
            capacity_ = inline_frames;
        }
        take(other);
    }
    return *this;
}

message::~message() {
    clear();
    if (data_ != inline_data()) ::operator delete(data_);
}

void message::take(message& other) noexcept {
    if (other.data_ != other.inline_data()) {
        // A heap array changes owner with its frames: nothing is moved one by one.
        data_ = other.data_;
        capacity_ = other.capacity_;
        size_ = other.size_;
        other.data_ = other.inline_data();
        other.capacity_ = inline_frames;
        other.size_ = 0;
        return;
    }
    for (std::size_t i = 0; i < other.size_; ++i) {
        new (data_ + i) zmq::message_t(std::move(other.data_[i]));
        other.data_[i].~message_t();
    }
    size_ = other.size_;
    other.size_ = 0;
}

void message::grow(std::size_t n) {
    std::size_t cap = capacity_ * 2;
    if (cap < n) cap = n;
    auto* fresh = static_cast<zmq::message_t*>(::operator new(cap * sizeof(zmq::message_t)));
    for (std::size_t i = 0; i < size_; ++i) {
        new (fresh + i) zmq::message_t(std::move(data_[i]));
        data_[i].~message_t();
    }
    if (data_ != inline_data()) ::operator delete(data_);
    data_ = fresh;
    capacity_ = cap;
}

void message::reserve(std::size_t n) {
    if (n > capacity_) grow(n);
}

void message::drop_back(std::size_t n) noexcept {
    for (; n > 0; --n) data_[--size_].~message_t();
}

void message::clear() noexcept { drop_back(size_); }

std::size_t message::byte_size() const noexcept {
    std::size_t n = 0;
    for (const auto& f : *this) n += f.size();
    return n;
}

void message::push_front(zmq::message_t&& frame) {
    if (size_ == capacity_) grow(size_ + 1);
    // Shift right by one: construct the new last slot, then move each frame up.
    if (size_ == 0) {
        new (data_) zmq::message_t(std::move(frame));
    } else {
        new (data_ + size_) zmq::message_t(std::move(data_[size_ - 1]));
        for (std::size_t i = size_ - 1; i > 0; --i) data_[i] = std::move(data_[i - 1]);
        data_[0] = std::move(frame);
    }
    ++size_;
}

void message::push_front(std::string_view bytes) {
    push_front(zmq::message_t(bytes.data(), bytes.size()));
}

zmq::message_t message::pop_front() {
    zmq::message_t f(std::move(data_[0]));
    for (std::size_t i = 1; i < size_; ++i) data_[i - 1] = std::move(data_[i]);
    drop_back(1);
    return f;
}

zmq::message_t message::pop_back() {
    zmq::message_t f(std::move(data_[size_ - 1]));
    drop_back(1);
    return f;
}

void message::move_tail_to(std::size_t first, message& out) {
    if (first >= size_) return;
    out.reserve(out.size_ + (size_ - first));
    for (std::size_t i = first; i < size_; ++i) out.push_back(std::move(data_[i]));
    drop_back(size_ - first);
}

bool message::recv(zmq::socket_ref socket, zmq::recv_flags flags) {
    clear();
    for (;;) {
        zmq::message_t frame;
        zmq::recv_result_t got;
        try {
            got = socket.recv(frame, flags);
        } catch (const zmq::error_t& e) {
            if (e.num() == ETERM) {
                clear();
                return false;
            }
            throw;
        }
        if (!got) {
            // Only the first frame can be missing: the rest of a multipart message arrives with it.
            clear();
            return false;
        }
        const bool more = frame.more();
        push_back(std::move(frame));
        if (!more) return true;
        flags = zmq::recv_flags::none;
    }
}

send_status message::send(zmq::socket_ref socket, zmq::send_flags flags) {
    const std::size_t n = size_;
    for (std::size_t i = 0; i < n; ++i) {
        const bool last = i + 1 == n;
        auto f = last ? flags : (flags | zmq::send_flags::sndmore);
        try {
            if (!socket.send(data_[i], f)) {
                if (i == 0) return send_status::would_block;
                throw zmq::error_t(); // EAGAIN mid-message cannot happen in libzmq
            }
        } catch (const zmq::error_t& e) {
            if (i == 0 && e.num() == EHOSTUNREACH) return send_status::unroutable;
            if (i == 0 && e.num() == ETERM) return send_status::terminated;
            throw;
        }
    }
    clear();
    return send_status::sent;
}

message message::clone() const {
    message copy;
    copy.reserve(size_);
    for (const auto& f : *this) copy.push_back(view(f));
    return copy;
}

message message::share() {
    message copy;
    copy.reserve(size_);
    for (auto& f : *this) {
        zmq::message_t shared;
        shared.copy(f);
        copy.push_back(std::move(shared));
    }
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
