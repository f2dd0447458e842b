// SPDX-License-Identifier: MPL-2.0
// codec/mdp02.cpp — 18/MDP frames and zmesh's ZMCT02/ZMWC02 (see mdp02.hpp).
#include "mdp02.hpp"

#include <cstring>

namespace zmesh::nodes::detail::codec::mdp02 {
namespace {

using mdp::worker_command_v2;

constexpr std::size_t f_command = 2, f_service = 3;

// The command byte of frame f_command, if it is one byte.
std::optional<std::uint8_t> command_byte(const message& m) {
    if (m.size() <= f_command || m[f_command].size() != 1) return std::nullopt;
    return *static_cast<const std::uint8_t*>(m[f_command].data());
}

// The 7/MDP command a valid 18/MDP worker command corresponds to, for malformed::command (which
// only says "the command byte was valid").
constexpr mdp::worker_command as_v1(worker_command_v2 c) noexcept {
    switch (c) {
    case worker_command_v2::ready: return mdp::worker_command::ready;
    case worker_command_v2::request: return mdp::worker_command::request;
    case worker_command_v2::partial:
    case worker_command_v2::final: return mdp::worker_command::reply;
    case worker_command_v2::heartbeat: return mdp::worker_command::heartbeat;
    case worker_command_v2::disconnect: return mdp::worker_command::disconnect;
    }
    return mdp::worker_command::reply;
}

} // namespace

command decode_client(const message& m, bool with_header) {
    const auto c = command_byte(m);
    if (!c) return malformed{"client message without a command byte", {}};
    if (*c != static_cast<std::uint8_t>(mdp::client_command_v2::request))
        return malformed{"client message that is not a REQUEST", {}};
    if (m.size() <= f_service) return malformed{"client REQUEST without a service", {}};
    const auto service = view(m[f_service]);
    if (!with_header) return client_request{service, valid_service_name(service), 0, f_service + 1, 0};
    constexpr std::size_t f_header = f_service + 1;
    if (m.size() <= f_header || m[f_header].size() == 0)
        return malformed{"ZMCT02 REQUEST without a header", {}};
    return client_request{service, valid_service_name(service), 0, f_header + 1, f_header};
}

command decode_client_v3(const message& m, mdp::client_command_v2 c) {
    // routing id, "ZMCT03"+command, service, header, body...
    constexpr std::size_t f_service_v3 = 2, f_header_v3 = 3;
    if (c != mdp::client_command_v2::request)
        return malformed{"client message that is not a REQUEST", {}};
    if (m.size() <= f_header_v3 || m[f_header_v3].size() == 0)
        return malformed{"ZMCT03 REQUEST without a service and a header", {}};
    const auto service = view(m[f_service_v3]);
    return client_request{service, valid_service_name(service), 0, f_header_v3 + 1, f_header_v3};
}

command decode_worker(const message& m, bool zmesh) {
    const auto b = command_byte(m);
    if (!b || *b < 0x01 || *b > 0x06) return malformed{"worker message without a valid command", {}};
    const auto c = static_cast<worker_command_v2>(*b);
    const auto v1 = as_v1(c);
    switch (c) {
    case worker_command_v2::ready: {
        const std::size_t frames = zmesh ? 5 : 4;
        if (m.size() != frames)
            return malformed{zmesh ? "READY without exactly a service name and a credit"
                                   : "READY without exactly one service name",
                             v1};
        std::uint32_t credit = 1;
        if (zmesh) {
            const auto parsed = mdp::parse_worker_credit(m[4]);
            if (!parsed) return malformed{"READY with a credit that is not 1..1024", v1};
            credit = *parsed;
        }
        const auto service = view(m[f_service]);
        return worker_ready{service, valid_service_name(service), credit};
    }
    case worker_command_v2::partial:
    case worker_command_v2::final: {
        // MDPW02: client "" body...   ZMWC02: tag client "" header body...
        const std::size_t f_tag = 3, f_client = zmesh ? 4 : 3, f_delim = f_client + 1;
        const std::size_t f_header = zmesh ? f_delim + 1 : 0;
        const std::size_t f_body = zmesh ? f_header + 1 : f_delim + 1;
        if (m.size() < f_body || m[f_delim].size() != 0 ||
            (zmesh && m[f_tag].size() != sizeof(request_tag)))
            return malformed{zmesh ? "PARTIAL or FINAL without tag, client address, empty frame "
                                     "and header"
                                   : "PARTIAL or FINAL without client address and empty frame",
                             v1};
        worker_reply r{{}, view(m[f_client]), f_body, f_header,
                       c == worker_command_v2::final};
        if (zmesh) std::memcpy(&r.tag, m[f_tag].data(), sizeof r.tag);
        return r;
    }
    case worker_command_v2::heartbeat:
        if (m.size() != f_command + 1) return malformed{"HEARTBEAT with frames after it", v1};
        return worker_heartbeat{};
    case worker_command_v2::disconnect:
        return worker_disconnect{};
    case worker_command_v2::request:
        return worker_request{};
    }
    return malformed{"worker message without a valid command", {}};
}

void reply_envelope(message& out, bool zmesh, std::string_view client_id, std::string_view service,
                    zmq::message_t&& header, bool final) {
    out.push_back(client_id);
    out.push_back(zmesh ? mdp::client_header_v2 : mdp::client_v2);
    out.push_back(mdp::command_frame_v2(final ? mdp::client_command_v2::final
                                              : mdp::client_command_v2::partial));
    out.push_back(service);
    if (zmesh) out.push_back(std::move(header));
}

void reply_envelope_v3(message& out, std::string_view client_id, std::string_view service,
                       zmq::message_t&& header, bool final) {
    out.push_back(client_id);
    out.push_back(mdp::client_frame_v3(final ? mdp::client_command_v2::final
                                             : mdp::client_command_v2::partial));
    out.push_back(service);
    out.push_back(std::move(header));
}

void request_envelope(message& out, bool zmesh, std::string_view worker_id, request_tag tag,
                      std::string_view client, zmq::message_t&& header) {
    out.push_back(worker_id);
    out.push_back(zmesh ? mdp::worker_header_v2 : mdp::worker_v2);
    out.push_back(mdp::command_frame_v2(worker_command_v2::request));
    if (zmesh) out.push_back(zmq::message_t(&tag, sizeof tag));
    out.push_back(client);
    out.push_back(zmq::message_t());
    if (zmesh) out.push_back(std::move(header));
}

void command_message(message& out, bool zmesh, std::string_view worker_id, mdp::worker_command c) {
    out.push_back(worker_id);
    out.push_back(zmesh ? mdp::worker_header_v2 : mdp::worker_v2);
    const auto v2 = c == mdp::worker_command::heartbeat ? worker_command_v2::heartbeat
                                                        : worker_command_v2::disconnect;
    out.push_back(mdp::command_frame_v2(v2));
}

} // namespace zmesh::nodes::detail::codec::mdp02
