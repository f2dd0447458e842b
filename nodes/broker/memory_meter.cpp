// SPDX-License-Identifier: MPL-2.0
// memory_meter.cpp — counting what the broker holds (see memory_meter.hpp).
#include "memory_meter.hpp"

#include <cstring>
#include <new>
#include <utility>

namespace zmesh::nodes::detail {
namespace {

// One reply frame in transit: what its free function gives back, and the bytes it points to
// (inline after the header when copied, else the original frame kept alive).
struct transit {
    reply_account* all;       // the broker's in-transit count
    reply_account* client;    // the client's, or null
    std::int64_t cost;
    zmq::message_t original;  // empty when the bytes were copied inline
};

void give_back(void* /*data*/, void* hint) noexcept {
    auto* t = static_cast<transit*>(hint);
    t->all->add(-t->cost);
    reply_account::release(t->all);
    if (t->client) {
        t->client->add(-t->cost);
        reply_account::release(t->client);
    }
    t->~transit();
    ::operator delete(t);
}

} // namespace

void compact(zmq::message_t& frame) {
    if (frame.size() <= 33 || frame.size() > zero_copy_limit) return;
    zmq::message_t own(frame.data(), frame.size());
    frame.swap(own);
}

zmq::message_t memory_meter::track(zmq::message_t&& frame, std::size_t cost,
                                   reply_account* account) {
    const std::size_t size = frame.size();
    const bool inline_copy = size <= zero_copy_limit;
    void* block = ::operator new(sizeof(transit) + (inline_copy ? size : 0));
    auto* t = new (block) transit{transit_, account, static_cast<std::int64_t>(cost), {}};
    void* data = nullptr;
    if (inline_copy) {
        data = static_cast<char*>(block) + sizeof(transit);
        if (size > 0) std::memcpy(data, frame.data(), size);
    } else {
        t->original = std::move(frame);
        data = t->original.data();
    }
    transit_->retain();
    transit_->add(t->cost);
    if (account) {
        account->retain();
        account->add(t->cost);
    }
    zmq::message_t out;
    if (zmq_msg_init_data(out.handle(), data, size, give_back, t) != 0) {
        give_back(data, t);
        throw zmq::error_t();
    }
    return out;
}

} // namespace zmesh::nodes::detail
