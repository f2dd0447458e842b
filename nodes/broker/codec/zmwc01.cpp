// SPDX-License-Identifier: MPL-2.0
// codec/zmwc01.cpp — zmesh credit-worker frames (see zmwc01.hpp).
#include "zmwc01.hpp"

#include <cstring>

namespace zmesh::nodes::detail::codec::zmwc01 {
namespace {
constexpr std::size_t f_command = 3;
constexpr std::size_t f_ready_service = 4, f_ready_credit = 5;                  // READY
constexpr std::size_t f_tag = 4, f_reply_client = 5, f_reply_empty = 6, f_reply_body = 7; // REPLY
} // namespace

command decode(const message& m) {
    const auto c = m.size() > f_command ? mdp::parse_worker_command(m[f_command]) : std::nullopt;
    if (!c) return malformed{"worker message without a valid command", {}};
    switch (*c) {
    case mdp::worker_command::ready: {
        if (m.size() != f_ready_credit + 1)
            return malformed{"READY without exactly a service name and a credit", c};
        const auto credit = mdp::parse_worker_credit(m[f_ready_credit]);
        if (!credit) return malformed{"READY with a credit that is not 1..1024", c};
        const auto service = view(m[f_ready_service]);
        return worker_ready{service, valid_service_name(service), *credit};
    }
    case mdp::worker_command::reply: {
        if (m.size() < f_reply_body || m[f_reply_empty].size() != 0 ||
            m[f_tag].size() != sizeof(request_tag))
            return malformed{"REPLY without tag, client address and empty frame", c};
        worker_reply r{{}, view(m[f_reply_client]), f_reply_body};
        std::memcpy(&r.tag, m[f_tag].data(), sizeof r.tag);
        return r;
    }
    case mdp::worker_command::heartbeat:
        if (m.size() != f_command + 1) return malformed{"HEARTBEAT with frames after it", c};
        return worker_heartbeat{};
    case mdp::worker_command::disconnect:
        return worker_disconnect{};
    case mdp::worker_command::request:
        return worker_request{};
    }
    return malformed{"worker message without a valid command", {}};
}

void request_envelope(message& out, std::string_view worker_id, request_tag tag,
                      std::string_view client) {
    out.push_back(worker_id);
    out.push_back(zmq::message_t());
    out.push_back(mdp::worker_credit_v1);
    out.push_back(mdp::command_frame(mdp::worker_command::request));
    out.push_back(zmq::message_t(&tag, sizeof tag));
    out.push_back(client);
    out.push_back(zmq::message_t());
}

void command_message(message& out, std::string_view worker_id, mdp::worker_command c) {
    out.push_back(worker_id);
    out.push_back(zmq::message_t());
    out.push_back(mdp::worker_credit_v1);
    out.push_back(mdp::command_frame(c));
}

} // namespace zmesh::nodes::detail::codec::zmwc01
