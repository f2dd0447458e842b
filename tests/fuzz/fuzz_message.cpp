// SPDX-License-Identifier: MPL-2.0
// fuzz_message.cpp — libFuzzer target: zmesh::message and the envelope helpers (envelope.hpp)
// on arbitrary multipart input, checked against a plain list of strings as the model.
//
// Input (README.md's frame scheme): the first frame is a script, one operation per byte; the
// other frames are the message. Each operation runs on the message and on the model, and
// after each the two must hold the same frames. Sending goes through a real inproc PAIR, so
// the frames that arrive are compared too.
#include "fuzz_input.hpp"

#include <zmesh/envelope.hpp>
#include <zmesh/message.hpp>

#include <zmq.hpp>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

namespace {

using model = std::vector<std::string>;

/// One inproc PAIR for the whole run: sockets per input would cost more than the rest.
struct pair_link {
    zmq::context_t ctx;
    zmq::socket_t out{ctx, zmq::socket_type::pair};
    zmq::socket_t in{ctx, zmq::socket_type::pair};
    pair_link() {
        out.set(zmq::sockopt::linger, 0);
        in.set(zmq::sockopt::linger, 0);
        in.bind("inproc://fuzz_message");
        out.connect("inproc://fuzz_message");
    }
};

pair_link& link() {
    static pair_link l;
    return l;
}

model texts(const zmesh::message& m) {
    model out;
    for (const auto& f : m) out.push_back(zmesh::to_string(f));
    return out;
}

std::size_t bytes(const model& m) {
    std::size_t n = 0;
    for (const auto& f : m) n += f.size();
    return n;
}

void same(const zmesh::message& m, const model& expected) {
    ZMESH_FUZZ_CHECK(texts(m) == expected);
    ZMESH_FUZZ_CHECK(m.size() == expected.size());
    ZMESH_FUZZ_CHECK(m.empty() == expected.empty());
    ZMESH_FUZZ_CHECK(m.byte_size() == bytes(expected));
}

void run(std::uint8_t op, zmesh::message& m, model& expected, const std::string& spare) {
    switch (op % 9) {
    case 0: { // pop_envelope, then push_envelope puts it back as it was
        const auto delim = std::find(expected.begin(), expected.end(), std::string());
        auto env = zmesh::pop_envelope(m);
        if (delim == expected.end()) {
            ZMESH_FUZZ_CHECK(!env);
            break;
        }
        ZMESH_FUZZ_CHECK(env.has_value());
        same(*env, model(expected.begin(), delim));
        same(m, model(delim + 1, expected.end()));
        zmesh::push_envelope(m, std::move(*env));
        ZMESH_FUZZ_CHECK(env->empty());
        break;
    }
    case 1: { // unwrap
        auto address = zmesh::unwrap(m);
        if (expected.empty()) {
            ZMESH_FUZZ_CHECK(!address);
            break;
        }
        ZMESH_FUZZ_CHECK(address && zmesh::to_string(*address) == expected.front());
        expected.erase(expected.begin());
        if (!expected.empty() && expected.front().empty()) expected.erase(expected.begin());
        break;
    }
    case 2: // wrap
        zmesh::wrap(m, zmq::message_t(spare.data(), spare.size()));
        expected.insert(expected.begin(), {spare, std::string()});
        break;
    case 3: { // move_tail_to, then back
        const std::size_t first = spare.size() % (expected.size() + 2);
        zmesh::message tail;
        tail.push_back(std::string_view(spare));
        m.move_tail_to(first, tail);
        model expected_tail{spare};
        if (first < expected.size()) {
            expected_tail.insert(expected_tail.end(), expected.begin() + static_cast<long>(first),
                                 expected.end());
            expected.resize(first);
        }
        same(tail, expected_tail);
        same(m, expected);
        (void)tail.pop_front();
        tail.move_tail_to(0, m);
        expected.insert(expected.end(), expected_tail.begin() + 1, expected_tail.end());
        ZMESH_FUZZ_CHECK(tail.empty());
        break;
    }
    case 4: { // clone is deep and equal
        zmesh::message copy = m.clone();
        same(copy, expected);
        copy.clear();
        ZMESH_FUZZ_CHECK(copy.empty());
        break;
    }
    case 5: { // through a socket and back
        auto& l = link();
        const bool had_frames = !m.empty();
        ZMESH_FUZZ_CHECK(m.send(l.out) == zmesh::send_status::sent);
        ZMESH_FUZZ_CHECK(m.empty());
        // Nothing is sent for a message of no frames, so nothing is there to receive.
        ZMESH_FUZZ_CHECK(m.recv(l.in, had_frames ? zmq::recv_flags::none
                                                 : zmq::recv_flags::dontwait) == had_frames);
        break;
    }
    case 6: // pop_front and pop_back
        if (!expected.empty()) {
            ZMESH_FUZZ_CHECK(zmesh::to_string(m.pop_front()) == expected.front());
            expected.erase(expected.begin());
        }
        if (!expected.empty()) {
            ZMESH_FUZZ_CHECK(zmesh::to_string(m.pop_back()) == expected.back());
            expected.pop_back();
        }
        break;
    case 7: // push_front, both overloads
        m.push_front(std::string_view(spare));
        m.push_front(zmq::message_t(spare.data(), spare.size()));
        expected.insert(expected.begin(), {spare, spare});
        break;
    case 8: // push_back, both overloads
        m.push_back(std::string_view(spare));
        m.push_back(zmq::message_t(spare.data(), spare.size()));
        expected.insert(expected.end(), {spare, spare});
        break;
    }
    same(m, expected);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto frames = zmesh::fuzz::split_frames(data, size);
    if (frames.empty()) return 0;
    const std::string_view script = frames.front();
    zmesh::message m;
    model expected;
    for (std::size_t i = 1; i < frames.size(); ++i) {
        m.push_back(frames[i]);
        expected.emplace_back(frames[i]);
    }
    same(m, expected);
    // The spare frame for wraps and pushes is made of the script itself: short, and varied.
    for (std::size_t i = 0; i < script.size() && i < 64; ++i)
        run(static_cast<std::uint8_t>(script[i]), m, expected,
            std::string(script.substr(0, i % 4)));
    return 0;
}
