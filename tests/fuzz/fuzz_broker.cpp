// SPDX-License-Identifier: MPL-2.0
// fuzz_broker.cpp — libFuzzer target: the whole MDP engine of the broker (nodes/broker/
// mdp_engine.cpp with its codecs and worker table), fed arbitrary multipart messages from
// several peers, without sockets.
//
// Input (README.md's frame scheme): several messages. The first frame of each message is not
// sent: its first byte picks the sender and what happens around the message:
//   bits 0-2  the peer, one of 8 routing ids ("peer0".."peer7");
//   bits 3-4  what the outbox answers to the engine's sends meanwhile: sent (0, 1), would block
//             (2), unroutable (3), so the engine's handling of slow and vanished peers runs too;
//   bits 5-7  time moves on by that many times 400 ms before the message, and the engine's
//             tick and expiry run when they are due, so heartbeats, expiry and re-queues happen.
// The remaining frames are the peer's message after its routing id. Handles the broker gives
// workers are random, so a REPLY whose client frame is "$" is sent with the handle (and, for
// ZMWC01, the tag) of the last REQUEST that peer received: replies reach their requests.
//
// Checked: nothing crashes, leaks or is undefined; every message the engine sends is a valid
// command of its protocol (the broker's own codecs decode it); counters stay consistent.
#include "fuzz_input.hpp"

#include "broker/codec/decode.hpp"
#include "broker/mdp_engine.hpp"

#include <zmesh/mdp/protocol.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <string>

namespace {

namespace detail = zmesh::nodes::detail;
namespace codec = detail::codec;
using namespace std::chrono_literals;

constexpr std::size_t peers = 8;

/// What a worker peer last received: enough to answer it.
struct last_request {
    std::string handle;
    std::string tag; // ZMWC01 only
};

class recording_outbox final : public detail::outbox {
  public:
    zmesh::send_status answer = zmesh::send_status::sent;
    std::array<last_request, peers> last{};
    std::uint64_t sent = 0;

    zmesh::send_status send(zmesh::message& m) override {
        ZMESH_FUZZ_CHECK(m.size() >= 3);
        const auto first = zmesh::view(m[1]);
        if (first == zmesh::mdp::client_v2 || first == zmesh::mdp::client_header_v2) {
            // A PARTIAL or FINAL to an 18/MDP or ZMCT02 client (the codecs decode requests only):
            // protocol, command 0x02 or 0x03, service, (header,) body...
            ZMESH_FUZZ_CHECK(m.size() >= (first == zmesh::mdp::client_v2 ? 4u : 5u));
            const auto cmd = zmesh::view(m[2]);
            ZMESH_FUZZ_CHECK(cmd == std::string_view("\x02", 1) || cmd == std::string_view("\x03", 1));
            if (first == zmesh::mdp::client_header_v2) {
                std::error_code ec;
                ZMESH_FUZZ_CHECK(zmesh::decode_header(m[4], ec).has_value());
            }
            return finish(m);
        }
        if (const auto c = zmesh::mdp::client_command_v3(first)) {
            // A PARTIAL or FINAL to a ZMCT03 client: "ZMCT03"+command, service, header, body...
            ZMESH_FUZZ_CHECK(*c == zmesh::mdp::client_command_v2::partial ||
                             *c == zmesh::mdp::client_command_v2::final);
            ZMESH_FUZZ_CHECK(m.size() >= 4u);
            std::error_code ec;
            ZMESH_FUZZ_CHECK(zmesh::decode_header(m[3], ec).has_value());
            return finish(m);
        }
        const auto d = codec::decode(m);
        ZMESH_FUZZ_CHECK(!std::holds_alternative<codec::malformed>(d.cmd));
        if (std::holds_alternative<codec::worker_request>(d.cmd)) {
            // REQUEST: 7/MDP [id, "", header, 0x02, (tag,) handle, "", body...] with a body
            // frame; 18/MDP [id, header, 0x02, (tag,) handle, "", (zmesh header,) body...].
            const bool credit = codec::has_tags(d.proto);
            const bool v2 = codec::is_v2(d.proto);
            const std::size_t handle_at = (v2 ? 3 : 4) + (credit ? 1 : 0);
            ZMESH_FUZZ_CHECK(m.size() > handle_at + (v2 ? 1 : 2));
            ZMESH_FUZZ_CHECK(m[handle_at + 1].size() == 0);
            if (d.proto == codec::protocol::zmwc02) {
                std::error_code ec;
                ZMESH_FUZZ_CHECK(m.size() > handle_at + 2);
                ZMESH_FUZZ_CHECK(zmesh::decode_header(m[handle_at + 2], ec).has_value());
            }
            ZMESH_FUZZ_CHECK(m[handle_at].size() == detail::client_handle_size);
            const auto id = zmesh::view(m[0]);
            if (id.size() == 5 && id.substr(0, 4) == "peer") {
                auto& l = last[static_cast<std::size_t>(id[4] - '0') % peers];
                l.handle = zmesh::to_string(m[handle_at]);
                l.tag = credit ? zmesh::to_string(m[handle_at - 1]) : std::string();
            }
        }
        return finish(m);
    }

  private:
    zmesh::send_status finish(zmesh::message& m) {
        if (answer != zmesh::send_status::sent) return answer;
        ++sent;
        m.clear(); // frees the frames, and with them the memory accounting of replies
        return zmesh::send_status::sent;
    }
};

zmesh::nodes::broker_config small_config() {
    zmesh::nodes::broker_config c;
    c.heartbeat_interval = 1000ms;
    c.liveness = 2;
    c.max_queue = 8;
    c.max_attempts = 3;
    c.request_ttl = 3000ms;
    c.max_memory = 64 * 1024;
    c.max_client_memory = 16 * 1024;
    c.max_services = 4;
    c.max_clients = 6;
    c.max_client_requests = 6;
    c.service_ttl = 5000ms;
    return c;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto config = small_config();
    recording_outbox out;
    detail::mdp_engine engine(config, out);
    auto now = detail::clock::time_point{} + 1h;
    auto next_tick = now + config.heartbeat_interval;
    auto next_expiry = now + 150ms; // expiry runs at least this often (the broker: at each deadline)

    for (const auto& frames : zmesh::fuzz::split_messages(data, size)) {
        if (frames.size() < 2 || frames[0].empty()) continue;
        const auto control = static_cast<std::uint8_t>(frames[0][0]);
        const std::size_t peer = control & 7u;
        switch ((control >> 3) & 3u) {
        case 2: out.answer = zmesh::send_status::would_block; break;
        case 3: out.answer = zmesh::send_status::unroutable; break;
        default: out.answer = zmesh::send_status::sent; break;
        }
        now += (control >> 5) * 400ms;
        while (next_expiry <= now) {
            engine.expire_requests(next_expiry);
            next_expiry += 150ms;
            if (next_tick <= next_expiry) {
                engine.on_tick(next_tick);
                next_tick += config.heartbeat_interval;
            }
        }

        zmesh::message m;
        m.push_back("peer" + std::to_string(peer));
        for (std::size_t i = 1; i < frames.size(); ++i) {
            const auto& last = out.last[peer];
            if (frames[i] == "$" && i >= 3 && !last.handle.empty()) {
                // The answer to the last REQUEST: for ZMWC01/02 the tag goes before the handle.
                if (!last.tag.empty() && zmesh::view(m[m.size() - 1]).size() != 8)
                    m.push_back(last.tag);
                m.push_back(last.handle);
            } else {
                m.push_back(frames[i]);
            }
        }
        engine.on_message(m, now);

        const auto st = engine.stats();
        ZMESH_FUZZ_CHECK(st.queued <= config.max_queue * config.max_services);
        ZMESH_FUZZ_CHECK(st.services <= config.max_services);
        ZMESH_FUZZ_CHECK(st.clients <= config.max_clients);
        ZMESH_FUZZ_CHECK(st.memory <= config.max_memory);
        // Each client message is answered at most once: a request (internal ones included) or
        // a request for an invalid name (answered 400, counted as malformed).
        ZMESH_FUZZ_CHECK(st.replies + st.undeliverable + st.replies_dropped <=
                         st.requests + st.malformed);
    }
    out.answer = zmesh::send_status::sent;
    engine.disconnect_all();
    return 0;
}
