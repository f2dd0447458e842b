// SPDX-License-Identifier: MPL-2.0
// codec/mdpw01.cpp — 7/MDP worker frames (see mdpw01.hpp).
#include "mdpw01.hpp"

namespace zmesh::nodes::detail::codec::mdpw01 {
namespace {
constexpr std::size_t f_command = 3;
constexpr std::size_t f_ready_service = 4;                                  // READY
constexpr std::size_t f_reply_client = 4, f_reply_empty = 5, f_reply_body = 6; // REPLY
} // namespace

command decode(const message& m) {
    const auto c = m.size() > f_command ? mdp::parse_worker_command(m[f_command]) : std::nullopt;
    if (!c) return malformed{"worker message without a valid command", {}};
    switch (*c) {
    case mdp::worker_command::ready: {
        if (m.size() != f_ready_service + 1)
            return malformed{"READY without exactly one service name", c};
        const auto service = view(m[f_ready_service]);
        return worker_ready{service, valid_service_name(service), 1};
    }
    case mdp::worker_command::reply:
        // "6 or more frames" in 7/MDP; five (no body) is accepted, see mdpw01.hpp.
        if (m.size() < f_reply_body || m[f_reply_empty].size() != 0)
            return malformed{"REPLY without client address and empty frame", c};
        return worker_reply{{}, view(m[f_reply_client]), f_reply_body};
    case mdp::worker_command::heartbeat:
        if (m.size() != f_command + 1) return malformed{"HEARTBEAT with frames after it", c};
        return worker_heartbeat{};
    case mdp::worker_command::disconnect:
        return worker_disconnect{}; // whatever follows: the worker is leaving anyway
    case mdp::worker_command::request:
        return worker_request{};
    }
    return malformed{"worker message without a valid command", {}};
}

void request_envelope(message& out, std::string_view worker_id, std::string_view client) {
    out.push_back(worker_id);
    out.push_back(zmq::message_t());
    out.push_back(mdp::worker_v1);
    out.push_back(mdp::command_frame(mdp::worker_command::request));
    out.push_back(client);
    out.push_back(zmq::message_t());
}

void command_message(message& out, std::string_view worker_id, mdp::worker_command c) {
    out.push_back(worker_id);
    out.push_back(zmq::message_t());
    out.push_back(mdp::worker_v1);
    out.push_back(mdp::command_frame(c));
}

} // namespace zmesh::nodes::detail::codec::mdpw01
