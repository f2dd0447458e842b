// SPDX-License-Identifier: MPL-2.0
// fuzz_subscriber.cpp — libFuzzer target: what zmesh::pubsub::subscriber does with messages off
// the network (lib/src/pubsub/subscriber.cpp: read_one and admit): [topic][header][payload...]
// from a publisher that may send anything.
//
// Input (README.md's frame scheme): several messages, each sent as is by a raw PUB socket over
// inproc to a fresh subscriber (of every topic, tracking at most 4 streams so that eviction
// runs). A model of docs/pubsub.md's rules predicts, message by message, what is delivered, what
// is counted as control, malformed or duplicate, and which gaps are reported; the subscriber's
// deliveries, counters and gaps must match it exactly.
#include "fuzz_input.hpp"

#include <zmesh/header.hpp>
#include <zmesh/pubsub/subscriber.hpp>

#include <zmq.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace {

using namespace std::chrono_literals;
using namespace std::string_view_literals;
namespace pubsub = zmesh::pubsub;

constexpr std::size_t max_streams = 4;
constexpr std::string_view endpoint = "inproc://fuzz_subscriber";
/// Marks the start and the end of an input's messages; fuzzed messages on it are not sent.
constexpr std::string_view sync_topic = "zmesh-fuzz-sync";

struct publisher_side {
    zmq::context_t ctx;
    zmq::socket_t pub{ctx, zmq::socket_type::pub};
    std::string sync_header = [] {
        zmesh::header h;
        h.id = zmesh::message_id::generate();
        std::string out;
        zmesh::encode(h, out);
        return out;
    }();
    publisher_side() {
        pub.set(zmq::sockopt::linger, 0);
        pub.set(zmq::sockopt::sndhwm, 100000); // an input is at most a few thousand messages
        pub.bind(std::string(endpoint));
    }
    void send(const std::vector<std::string_view>& frames) {
        for (std::size_t i = 0; i < frames.size(); ++i)
            pub.send(zmq::const_buffer(frames[i].data(), frames[i].size()),
                     i + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
    }
    void send_sync(std::string_view mark) { send({sync_topic, sync_header, mark}); }
};

publisher_side& side() {
    static publisher_side s;
    return s;
}

bool is_sync(const pubsub::delivery& d, std::string_view mark) {
    return d.topic == sync_topic && d.payload.size() == 1 && zmesh::view(d.payload[0]) == mark;
}

/// docs/pubsub.md's subscriber rules, written plainly.
struct model {
    struct stream {
        std::uint64_t last = 0;
        std::uint64_t used = 0;
    };
    std::map<std::pair<zmesh::message_id, std::string>, stream> streams;
    std::uint64_t tick = 0;
    pubsub::subscriber_stats stats;
    std::vector<pubsub::gap> gaps;

    void evict() {
        std::vector<std::uint64_t> ticks;
        for (const auto& s : streams) ticks.push_back(s.second.used);
        std::sort(ticks.begin(), ticks.end());
        const std::uint64_t cutoff = ticks[ticks.size() / 10];
        stats.streams_evicted +=
            std::erase_if(streams, [cutoff](const auto& s) { return s.second.used <= cutoff; });
    }

    /// @returns whether a valid data message is delivered.
    bool admit(const std::string& topic, const zmesh::header& h) {
        if (h.sequence != 0) {
            const auto key = std::make_pair(h.source.value_or(zmesh::message_id{}), topic);
            auto it = streams.find(key);
            if (it == streams.end()) {
                if (streams.size() >= max_streams) evict();
                streams[key] = {h.sequence, ++tick};
            } else {
                it->second.used = ++tick;
                if (h.sequence <= it->second.last) {
                    ++stats.duplicates;
                    return false;
                }
                if (h.sequence != it->second.last + 1) {
                    ++stats.gaps;
                    stats.missed += h.sequence - (it->second.last + 1);
                    gaps.push_back({key.first, topic, it->second.last + 1, h.sequence});
                }
                it->second.last = h.sequence;
            }
        }
        ++stats.received;
        return true;
    }
};

struct expected_delivery {
    std::string topic;
    zmesh::header header;
    std::vector<std::string_view> payload;
};

std::vector<std::string> texts(const zmesh::message& m) {
    std::vector<std::string> out;
    for (const auto& f : m) out.push_back(zmesh::to_string(f));
    return out;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    auto& pub = side();
    pubsub::subscriber_options opts;
    opts.connect = {std::string(endpoint)};
    opts.topics = {""};
    opts.max_streams = max_streams;
    opts.socket.recv_hwm = 100000;
    pubsub::subscriber sub(pub.ctx, opts);

    // The subscription reaches the PUB asynchronously: until it has, the PUB drops everything.
    // Reading ZMQ_EVENTS makes the PUB process its pending commands (the new inproc pipe and
    // the subscription in it) at once; send() alone does so only about once a millisecond.
    for (int i = 0;; ++i) {
        ZMESH_FUZZ_CHECK(i < 2000);
        static_cast<void>(pub.pub.get(zmq::sockopt::events));
        pub.send_sync("start");
        auto d = sub.recv(2ms);
        if (d && is_sync(*d, "start")) break;
    }

    model m;
    std::vector<expected_delivery> expected;
    for (const auto& frames : zmesh::fuzz::split_messages(data, size)) {
        if (frames.empty() || frames[0] == sync_topic) continue;
        pub.send(frames);
        const std::string topic(frames[0]);
        if (topic.starts_with("\0zmesh."sv)) {
            ++m.stats.control;
            continue;
        }
        std::error_code ec;
        const auto h = frames.size() >= 2
                           ? zmesh::decode_header(frames[1].data(), frames[1].size(), ec)
                           : std::nullopt;
        if (!h) {
            ++m.stats.malformed;
            continue;
        }
        if (m.admit(topic, *h))
            expected.push_back({topic, *h, {frames.begin() + 2, frames.end()}});
    }
    pub.send_sync("end");

    std::size_t next = 0;
    std::uint64_t marks = 1; // the start mark received above
    for (;;) {
        std::optional<pubsub::delivery> d;
        try {
            d = sub.recv(5s);
        } catch (...) {
            zmesh::fuzz::property_failed(__FILE__, __LINE__, "subscriber::recv threw");
        }
        ZMESH_FUZZ_CHECK(d.has_value()); // the end mark always comes
        if (d->topic == sync_topic) {
            ++marks;
            if (is_sync(*d, "end")) break;
            continue; // a late start mark
        }
        ZMESH_FUZZ_CHECK(next < expected.size());
        const auto& e = expected[next++];
        ZMESH_FUZZ_CHECK(d->topic == e.topic);
        ZMESH_FUZZ_CHECK(d->header == e.header);
        ZMESH_FUZZ_CHECK(texts(d->payload) ==
                         std::vector<std::string>(e.payload.begin(), e.payload.end()));
        ZMESH_FUZZ_CHECK(!d->from_snapshot);
    }
    ZMESH_FUZZ_CHECK(next == expected.size());

    const auto s = sub.stats();
    ZMESH_FUZZ_CHECK(s.received == m.stats.received + marks);
    ZMESH_FUZZ_CHECK(s.malformed == m.stats.malformed);
    ZMESH_FUZZ_CHECK(s.control == m.stats.control);
    ZMESH_FUZZ_CHECK(s.duplicates == m.stats.duplicates);
    ZMESH_FUZZ_CHECK(s.gaps == m.stats.gaps && s.missed == m.stats.missed);
    ZMESH_FUZZ_CHECK(s.streams_evicted == m.stats.streams_evicted);
    ZMESH_FUZZ_CHECK(s.snapshot == 0 && s.snapshot_overlap == 0 && s.lagged_out == 0);
    const auto gaps = sub.take_gaps();
    ZMESH_FUZZ_CHECK(gaps.size() == m.gaps.size());
    for (std::size_t i = 0; i < gaps.size(); ++i) {
        ZMESH_FUZZ_CHECK(gaps[i].source == m.gaps[i].source && gaps[i].topic == m.gaps[i].topic);
        ZMESH_FUZZ_CHECK(gaps[i].expected == m.gaps[i].expected && gaps[i].got == m.gaps[i].got);
    }
    return 0;
}
